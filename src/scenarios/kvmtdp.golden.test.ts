// SPDX-License-Identifier: GPL-2.0-only
// Golden traces from the real Linux 6.1.192 TDP MMU (captured with tools/oracle): the
// model must print every SPTE change the kernel made, byte for byte. This file runs on
// both builds (generator and direct).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { TSV_HEADER, kvmtdpTsv, parseKvmtdp, runKvmtdp } from "./index.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");

interface Golden {
  /** Scenario files, in the order they were passed to the oracle. */
  readonly files: readonly string[];
  /** The oracle's NORM=1 TSV output for them. */
  readonly tsv: string;
  readonly params?: Record<string, unknown>;
}

const goldens: Golden[] = [
  {
    files: ["tools/oracle/scenario.txt", "tools/oracle/scenario-mmio.txt"],
    tsv: "tools/oracle/samples/spte-6.1.0-56-norm.tsv",
  },
];

// Fixtures captured for this project: fixtures/oracle/NAME.txt with NAME.tsv beside it
// (and NAME.json for non-default kernel parameters).
const fixDir = path.join(root, "fixtures/oracle");
for (const f of fs.readdirSync(fixDir).sort()) {
  if (!f.endsWith(".txt") || !fs.existsSync(path.join(fixDir, f.replace(/\.txt$/, ".tsv")))) continue;
  const json = path.join(fixDir, f.replace(/\.txt$/, ".json"));
  goldens.push({
    files: [path.join("fixtures/oracle", f)],
    tsv: path.join("fixtures/oracle", f.replace(/\.txt$/, ".tsv")),
    ...(fs.existsSync(json) ? { params: JSON.parse(fs.readFileSync(json, "utf8")) as Record<string, unknown> } : {}),
  });
}

for (const g of goldens) {
  test(`kernel trace reproduced: ${g.files.join(" + ")}`, () => {
    const out = [TSV_HEADER];
    g.files.forEach((f, i) => {
      const cmds = parseKvmtdp(f, fs.readFileSync(path.join(root, f), "utf8"));
      const r = runKvmtdp(cmds, { params: g.params ?? {} });
      assert.deepEqual(r.kvm.w.findings, [], "the faithful model must raise no finding on a kernel trace");
      out.push(...kvmtdpTsv(`${String(i + 1).padStart(2, "0")}-${path.basename(f)}`, r.rows, true));
    });
    const want = fs.readFileSync(path.join(root, g.tsv), "utf8").trimEnd().split("\n");
    // Compare row by row first so a failure names the first differing row.
    for (let i = 0; i < Math.max(want.length, out.length); i++) assert.equal(out[i], want[i], `row ${i + 1} of ${g.tsv}`);
  });
}
