// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import { BareRadix, bench } from "./bench.js";

test("bench: the bare walk builds the same tables as the engine for the same pages", () => {
  // 1/64 GiB from a 1 GiB-aligned gfn: a root, one L3, one L2 and 8 leaf tables.
  for (const gib of [1 / 64, 0.25]) {
    const bare = bench("populate", gib, true, 1);
    const full = bench("populate", gib, false, 1);
    assert.equal(bare.pages, full.pages);
    assert.equal(bare.bytesPerPage, full.bytesPerPage, `${gib} GiB`);
  }
  assert.equal(bench("populate", 1 / 64, true, 1).bytesPerPage, (11 * 4096) / 4096);
});

test("bench: the bare walk writes the SPTEs it claims, clears exactly the bits asked, and zaps every leaf", () => {
  const base = 1 << 20;
  const pages = 4096;
  const r = new BareRadix();
  r.populate(base, pages);
  const leaf = (gfn: number): bigint => {
    let t = r.tables[0]!;
    for (let level = 4; level > 1; level--) {
      const s = t[Math.floor(gfn / 512 ** (level - 1)) % 512]!;
      assert.equal(s & 0xfffn, 0x827n, `non-leaf at L${level}`);
      t = r.tables[Number(s >> 12n)]!;
    }
    return t[gfn % 512]!;
  };
  for (const i of [0, 1, 511, 512, 4095]) assert.equal(leaf(base + i), (BigInt(0x1000000 + i) << 12n) | 0xe67n);
  assert.equal(r.tableCount(), 11);
  r.clearBits(0x40);
  for (const i of [0, 1, 511, 512, 4095]) assert.equal(leaf(base + i), (BigInt(0x1000000 + i) << 12n) | 0xe27n);
  r.zap();
  assert.equal(r.tableCount(), 1);
  assert.ok(r.tables[0]!.every((s) => s === 0n));
});
