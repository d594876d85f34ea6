// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import { drive } from "../rt/index.js";
import { masksFor } from "../spte/index.js";
import { PhysMem } from "./phys.js";
import { Tlb, hwTranslate, type WalkerConfig } from "./mmu-hw.js";

/** A 4-level NPT tree mapping gfn 5 to pfn 0x1234 with the given leaf flags. */
function tree(leafFlags: bigint) {
  const mem = new PhysMem();
  const t = [mem.makeTable(0x100), mem.makeTable(0x101), mem.makeTable(0x102), mem.makeTable(0x103)];
  for (let i = 0; i < 3; i++) t[i]!.spt[0] = (BigInt(t[i + 1]!.pfn) << 12n) | 0x827n;
  t[3]!.spt[5] = (0x1234n << 12n) | leafFlags;
  const cfg: WalkerConfig = {
    masks: masksFor("npt"),
    adEnabled: true,
    rootLevel: 4,
    rsvdMask: ((1n << 52n) - 1n) & ~((1n << 48n) - 1n),
    tableAt: (pfn) => mem.table(pfn) ?? mem.poisoned.get(pfn),
  };
  return { mem, t, cfg };
}

test("hardware walk: translates, sets Accessed and, on a write, Dirty", () => {
  const { t, cfg } = tree(0xe07n); // present, writable, user, no A/D yet
  const tlb = new Tlb();
  const r = drive(hwTranslate(cfg, tlb, t[0]!, 5, "read"));
  assert.deepEqual(r, { kind: "ok", pfn: 0x1234, level: 1, viaTlb: false });
  assert.equal(t[3]!.spt[5]! & 0x60n, 0x20n);
  const w = drive(hwTranslate(cfg, tlb, t[0]!, 5, "write"));
  assert.equal(w.kind, "ok");
  assert.equal(t[3]!.spt[5]! & 0x60n, 0x60n, "a write through a clean TLB entry walks again to set D");
  assert.equal(drive(hwTranslate(cfg, tlb, t[0]!, 5, "write")).kind === "ok" && tlb.lookup(5)?.dirty, true);
});

test("hardware walk: write to a write-protected SPTE faults with present|write|user", () => {
  const { t, cfg } = tree(0xe65n);
  const r = drive(hwTranslate(cfg, new Tlb(), t[0]!, 5, "write"));
  assert.equal(r.kind, "fault");
  assert.equal(r.kind === "fault" && r.errorCode % 16, 1 + 2 + 4);
});

test("hardware walk: an NPT MMIO SPTE (reserved bit 51) is a reserved-bit fault; REMOVED_SPTE is not present", () => {
  const { t, cfg } = tree(0n);
  t[3]!.spt[5] = 0x8000000005017n;
  const r = drive(hwTranslate(cfg, new Tlb(), t[0]!, 5, "read"));
  assert.equal(r.kind === "fault" && (r.errorCode & 8) !== 0, true);
  t[3]!.spt[5] = 0x5a0n;
  const r2 = drive(hwTranslate(cfg, new Tlb(), t[0]!, 5, "read"));
  assert.equal(r2.kind === "fault" && r2.errorCode % 16, 4);
});

test("paging-structure caches keep a walk on a table until a flush: a freed table is caught", () => {
  const { mem, t, cfg } = tree(0xe67n);
  const tlb = new Tlb();
  drive(hwTranslate(cfg, tlb, t[0]!, 5, "read"));
  tlb.leaves.clear(); // only the paging-structure caches remain
  mem.freeTable(t[3]!);
  const r = drive(hwTranslate(cfg, tlb, t[0]!, 6, "read"));
  assert.equal(r.kind, "stale-table");
  tlb.flushAll();
  const r2 = drive(hwTranslate(cfg, tlb, t[0]!, 6, "read"));
  assert.equal(r2.kind, "stale-table", "the L2 entry still points at the freed table");
});
