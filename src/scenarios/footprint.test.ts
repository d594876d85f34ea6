// SPDX-License-Identifier: GPL-2.0-only
// The partial-order reduction trusts the footprints the model declares. Check them by
// experiment on every bundled scenario, with and without its variant: steps treated as
// commuting, swapped, must leave the whole host state (page tables, host mm, allocator,
// TLBs, locks, lists) and both threads' next steps the same.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { auditCommutation, type Execution } from "../explore/index.js";
import { makeProgram, parseScenario, VARIANTS } from "./index.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const full = process.env.ZOO_FULL === "1";

for (const f of fs.readdirSync(path.join(root, "scenarios")).filter((x) => x.endsWith(".json")).sort()) {
  const file = path.join(root, "scenarios", f);
  const name = path.basename(f, ".json");
  const variant = name.startsWith("seed-") ? "zap-under-read-lock" : VARIANTS[name] !== undefined ? name : null;
  for (const variants of variant === null ? [[]] : [[], [variant]]) {
    test(`footprints: steps treated as commuting commute on ${name}${variants.length > 0 ? ` with ${variants[0]}` : ""}`, () => {
      const sc = parseScenario(file, fs.readFileSync(file, "utf8"), variants);
      const findings = auditCommutation(makeProgram(sc) as unknown as () => Execution, {
        seed: 3,
        runs: full ? 60 : 4,
        pairsPerRun: full ? 10 : 4,
        maxSteps: 50_000,
      });
      assert.deepEqual(
        findings.map((x) => `${x.first} || ${x.second}: ${x.why}`),
        [],
      );
    });
  }
}
