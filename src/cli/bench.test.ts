// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import { bench } from "./bench.js";

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
