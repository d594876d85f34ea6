// SPDX-License-Identifier: GPL-2.0-only
// The trace's "function" column: the innermost kernel function above the primitives.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as atomic from "../kernel/atomic.js";
import { __kvmTdpMmuWriteSpte, kvmTdpMmuReadSpte, kvmTdpMmuWriteSpte, kvmTdpMmuWriteSpteAtomic } from "../mmu/tdp_iter.js";
import { topFunction } from "./explore-cmd.js";

/** A stack as V8 prints it, innermost frame first, the frames given as [function, layer]. */
const stackOf = (frames: [string, string][]): string =>
  ["Error", ...frames.map(([fn, layer]) => `    at ${fn} (file:///repo/dist/gen/${layer}/x.js:1:1)`)].join("\n");

test("trace function column: every SPTE access primitive, by its own name, is skipped for the kernel function that called it", () => {
  // Derived from the modules, so that renaming a primitive cannot leave it named in traces.
  const primitives = [
    ...(Object.values(atomic) as unknown[]).filter((f): f is { name: string } => typeof f === "function"),
    kvmTdpMmuReadSpte,
    kvmTdpMmuWriteSpte,
    kvmTdpMmuWriteSpteAtomic,
    __kvmTdpMmuWriteSpte,
  ];
  assert.ok(primitives.length >= 8);
  for (const f of primitives) {
    const stack = stackOf([
      ["step", "rt"],
      [f.name, "kernel"],
      ["handleRemovedPt", "mmu"],
      ["tdpMmuZapRoot", "mmu"],
    ]);
    assert.equal(topFunction(stack), "handle_removed_pt", `${f.name} is not taken for a primitive`);
  }
  // And a kernel function is not taken for one.
  assert.equal(topFunction(stackOf([["tdpMmuSetSpteAtomic", "mmu"], ["kvmTdpMmuMap", "mmu"]])), "tdp_mmu_set_spte_atomic");
});
