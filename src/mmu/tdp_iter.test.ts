// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { drive } from "../kernel/index.js";
import { isLastSpte, isShadowPresentPte } from "../spte/index.js";
import { parseKvmtdp, runKvmtdp } from "../scenarios/index.js";
import { TdpIter, roundGfnForLevel, spteIndexOfGfn } from "./tdp_iter.js";
import { kvmTdpMmuZapLeafs, kvmTdpMmuWrprotSlot } from "./tdp_mmu.js";
import type { Kvm } from "./kvm_host.js";

/** A VM whose root maps the given 4K pages of slot 0 and maybe a 2M page of slot 1. */
function populated(pages: readonly number[], huge: boolean): Kvm {
  const lines = ["mem 0 0 0x200000 nohuge", "mem 1 0x200000 0x200000 huge"];
  for (const p of pages) lines.push(`w 0x${(p * 4096).toString(16)}`);
  if (huge) lines.push("w 0x200000");
  lines.push("run");
  return runKvmtdp(parseKvmtdp("t", lines.join("\n")), { trace: false }).kvm;
}

/** Present leaves found by walking [start, end) with the iterator; `yieldEvery` forces restarts. */
function walkLeaves(kvm: Kvm, start: number, end: number, yieldEvery: number): { leaves: number[]; visits: number } {
  const iter = new TdpIter(kvm);
  const leaves = new Set<number>();
  let visits = 0;
  let lastGfn = -1;
  let lastLevel = 6;
  let restarted = false;
  const root = kvm.arch.tdpMmuRoots[0]!;
  for (drive(iter.tdpIterStart(root, 1, start)); iter.valid && iter.gfn < end; drive(iter.tdpIterNext())) {
    visits++;
    assert.ok(visits < 100000, "the walk must terminate");
    // Pre-order: never back to a lower gfn except by going down a level within the same range.
    if (!restarted) assert.ok(iter.gfn >= lastGfn || iter.level < lastLevel, `pre-order violated at gfn 0x${iter.gfn.toString(16)}`);
    restarted = false;
    lastGfn = iter.gfn;
    lastLevel = iter.level;
    // old_spte, kept as halves, is the SPTE the walk stands on (nothing else runs here).
    assert.equal(iter.oldSpte, iter.table.spt[iter.idx]);
    if (isShadowPresentPte(iter.oldSpte) && isLastSpte(iter.oldSpte, iter.level)) leaves.add(iter.gfn);
    // A yield restarts the walk from the root toward next_last_level_gfn.
    if (yieldEvery > 0 && visits % yieldEvery === 0 && iter.nextLastLevelGfn !== iter.yieldedGfn) {
      iter.yielded = true;
      restarted = true;
    }
  }
  return { leaves: [...leaves].sort((a, b) => a - b), visits };
}

test("property: SPTE_INDEX() and round_gfn_for_level() on gfns up to 2^40, at every level", () => {
  const gfnArb = fc.oneof(fc.integer({ min: 0, max: 2 ** 40 - 1 }), fc.integer({ min: 2 ** 31 - 600, max: 2 ** 32 + 600 }), fc.integer({ min: 0, max: 2 ** 20 }));
  fc.assert(
    fc.property(gfnArb, fc.integer({ min: 1, max: 5 }), (gfn, level) => {
      const shift = 9n * BigInt(level - 1);
      const g = BigInt(gfn);
      assert.equal(spteIndexOfGfn(gfn, level), Number((g >> shift) & 511n));
      assert.equal(roundGfnForLevel(gfn, level), Number((g >> shift) << shift));
    }),
    { numRuns: 5000 },
  );
});

test("property: the iterator visits exactly the leaves of its range, also across restarts", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 8, max: 511 }), { maxLength: 12 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 1100 }),
      fc.integer({ min: 1, max: 1100 }),
      fc.integer({ min: 0, max: 7 }),
      (pages, huge, a, len, yieldEvery) => {
        const kvm = populated(pages, huge);
        const start = a;
        const end = a + len;
        const mapped = [1, 2, ...pages];
        // A huge leaf is visited (and reported at its base gfn) if it overlaps the range.
        const want = mapped.filter((g) => g >= start && g < end);
        if (huge && start < 0x400 && end > 0x200) want.push(0x200);
        const got = walkLeaves(kvm, start, end, yieldEvery);
        assert.deepEqual(got.leaves, [...new Set(want)].sort((x, y) => x - y));
      },
    ),
    { numRuns: 150, seed: 42 },
  );
});

test("lockdep: a correctness zap without mmu_lock held for write is a finding with the call chain", () => {
  const kvm = populated([0x10], false);
  drive(kvmTdpMmuZapLeafs(kvm, 0, 0x200, false));
  const f = kvm.w.findings.find((x) => x.check === "lockdep");
  assert.ok(f !== undefined, "expected a lockdep finding");
  assert.match(f.message, /mmu_lock must be held for write \(held: nothing\)/);
  // The root walk's assertion, in the caller's frame (a macro in the kernel, spelled out here).
  assert.deepEqual(f.chain, ["kvm_tdp_mmu_zap_leafs"], `chain: ${f.chain.join(" <- ")}`);
});

test("lockdep: dirty-log write-protection under the write lock is a finding (it asserts the read lock)", () => {
  const kvm = populated([0x10], false);
  drive(kvm.mmuLock.writeLock());
  drive(kvmTdpMmuWrprotSlot(kvm, kvm.memslots[0]!.slots.get(0)!, 1));
  drive(kvm.mmuLock.writeUnlock());
  const f = kvm.w.findings.find((x) => x.check === "lockdep");
  assert.ok(f !== undefined);
  assert.match(f.message, /must be held for read \(held: mmu_lock\(W\)\)/);
  assert.ok(f.chain.includes("kvm_tdp_mmu_wrprot_slot"));
});

test("a correctness zap under the write lock zaps every leaf in range and owes a flush", () => {
  const kvm = populated([0x10, 0x11, 0x40], false);
  drive(kvm.mmuLock.writeLock());
  const flush = drive(kvmTdpMmuZapLeafs(kvm, 0x10, 0x12, false));
  drive(kvm.mmuLock.writeUnlock());
  assert.equal(flush, true);
  assert.deepEqual(kvm.w.findings, []);
  assert.deepEqual(walkLeaves(kvm, 0, 0x200, 0).leaves, [1, 2, 0x40]);
});
