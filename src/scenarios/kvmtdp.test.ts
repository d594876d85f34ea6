// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import fs from "node:fs";
import path from "node:path";
import { isLastSpte, isShadowPresentPte } from "../spte/index.js";
import { ScenarioError, checkNoLeaks, checkPageStats, parseCNumber, parseKvmtdp, runKvmtdp, type KvmtdpCommand } from "./index.js";

const ok = "mem 0 0 0x200000 nohuge\n";

function parseError(text: string): string {
  try {
    parseKvmtdp("s.txt", text);
  } catch (e) {
    assert.ok(e instanceof ScenarioError);
    return e.message;
  }
  assert.fail("expected a ScenarioError");
}

test("numbers parse as C's strtoull with base 0, whole token only", () => {
  assert.equal(parseCNumber("0x1f"), 0x1f);
  assert.equal(parseCNumber("017"), 15);
  assert.equal(parseCNumber("0"), 0);
  assert.equal(parseCNumber("42"), 42);
  assert.equal(parseCNumber("0x"), null);
  assert.equal(parseCNumber("12abc"), null);
  assert.equal(parseCNumber("08"), null);
});

test("bad scenarios are rejected with file:line before anything runs", () => {
  assert.equal(parseError(ok + "frob 1\n"), "s.txt:2: unknown command 'frob'");
  assert.equal(parseError(ok + "r 0xzz\n"), "s.txt:2: r: bad number '0xzz' for GPA");
  assert.equal(parseError(ok + "mem 1 0x100000 0x200000\n"), "s.txt:2: mem: slot 1 overlaps slot 0");
  assert.equal(parseError(ok + "mem 1 0x200800 0x1000\n"), "s.txt:2: mem: GPA 0x200800 is not page aligned");
  assert.equal(parseError(ok + "madvise 0 0x1ff000 0x2000\n"), "s.txt:2: madvise: [0x1ff000, 0x201000) is outside slot 0");
  assert.equal(parseError(ok + "getdirty 0\n"), "s.txt:2: getdirty: slot 0 does not log dirty pages");
  assert.equal(parseError(ok + "dirtylog 3 on\n"), "s.txt:2: slot 3 was never created with 'mem'");
  assert.equal(parseError("mem 0 0 0x4000\nrun\n"), "s.txt:2: run: the harness needs slot 0 at GPA 0 covering at least 0x8000");
  assert.equal(parseError(ok + "dirtylog 0 on\nclearlog 0 0 64\n"), "s.txt:3: clearlog needs 'manualprotect' first (KVM_CLEAR_DIRTY_LOG)");
  assert.equal(parseError(ok + "mem 1 0x200000 0x1000 huge rw\n"), "s.txt:2: mem: expected 'ro', got 'rw'");
  assert.equal(parseError(ok + "mem 1 0x200000 0x1000 hugest\n"), "s.txt:2: mem: expected 'huge', 'nohuge' or 'huge1g', got 'hugest'");
  assert.equal(parseError(ok + "mem 1 0x40000000 0x200000 huge1g\n"), "s.txt:2: mem: a huge1g backing is one 1 GiB page here: SIZE must be 0x40000000");
  assert.equal(
    parseError(ok + "mem 1 0x40000000 0x40000000 huge1g\nmadvise 1 0x200000 0x200000\n"),
    "s.txt:3: madvise: OFF 0x200000 must be 1 GiB aligned in a huge1g slot",
  );
});

// Random but valid scenarios: faults, host writes, madvise, dirty logging, delete/recreate.
const arbScenario = fc
  .array(
    fc.oneof(
      fc.record({ k: fc.constant("r" as const), page: fc.integer({ min: 8, max: 1023 }) }),
      fc.record({ k: fc.constant("w" as const), page: fc.integer({ min: 8, max: 1023 }) }),
      fc.record({ k: fc.constant("hostwrite" as const), page: fc.integer({ min: 0, max: 511 }) }),
      fc.record({ k: fc.constant("madvise" as const), page: fc.integer({ min: 0, max: 511 }), n: fc.integer({ min: 1, max: 600 }) }),
      fc.record({ k: fc.constant("dirty" as const) }),
      fc.record({ k: fc.constant("getdirty" as const) }),
      fc.record({ k: fc.constant("delete" as const) }),
      fc.record({ k: fc.constant("run" as const) }),
    ),
    { maxLength: 30 },
  )
  .map((ops) => {
    const lines = ["mem 0 0 0x200000 nohuge", "mem 1 0x200000 0x200000 huge"];
    let logging = false;
    let present = true;
    for (const o of ops) {
      const slot1Gpa = (p: number): string => "0x" + ((p % 512) * 4096 + 0x200000).toString(16);
      switch (o.k) {
        case "r":
        case "w":
          lines.push(`${o.k} ${o.page >= 256 && present ? slot1Gpa(o.page) : "0x" + ((o.page % 504) + 8).toString(16) + "000"}`, "run");
          break;
        case "hostwrite":
          lines.push(`hostwrite 1 0x${(o.page * 4096).toString(16)} 7`);
          break;
        case "madvise": {
          const n = Math.min(o.n, 512 - o.page);
          lines.push(`madvise 1 0x${(o.page * 4096).toString(16)} 0x${(n * 4096).toString(16)}`);
          break;
        }
        case "dirty":
          if (present) {
            logging = !logging;
            lines.push(`dirtylog 1 ${logging ? "on" : "off"}`);
          }
          break;
        case "getdirty":
          if (present && logging) lines.push("getdirty 1");
          break;
        case "delete":
          lines.push(present ? "delete 1" : "recreate 1");
          present = !present;
          logging = false;
          break;
        case "run":
          lines.push("run");
          break;
      }
    }
    lines.push("run");
    return lines.join("\n") + "\n";
  });

test("property: page stats equal the present leaves per level, and teardown leaves nothing behind", () => {
  fc.assert(
    fc.property(arbScenario, (text) => {
      const cmds: KvmtdpCommand[] = parseKvmtdp("random.txt", text);
      const r = runKvmtdp(cmds, { trace: false });
      assert.deepEqual(checkPageStats(r.kvm), []);
      assert.deepEqual(r.kvm.w.findings, []);
      const t = runKvmtdp(cmds, { trace: false, teardown: true });
      assert.deepEqual(checkNoLeaks(t.kvm), []);
      assert.deepEqual(t.kvm.w.findings, []);
    }),
    { numRuns: 60, seed: 0x7d9 },
  );
});

test("page-stats trace events follow the SPTE changes: one event per change of leaf count, with the running totals", () => {
  // The oracle's sample: 4K and huge slots, madvise, dirty logging, memslot changes.
  const file = path.join(path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../.."), "tools/oracle/scenario.txt");
  const r = runKvmtdp(parseKvmtdp(file, fs.readFileSync(file, "utf8")));
  const totals = [0, 0, 0];
  let events = 0;
  let changes = 0;
  let splits = 0;
  // A split fills the new table before linking it (those writes are not traced), then
  // accounts its 512 children in one update, after the traced change of the parent.
  let pendingSplit = 0;
  for (const { event: e } of r.kvm.tracer.records) {
    if (e.ev === "kvm_tdp_mmu_spte_changed" && e.level <= 3) {
      const leaf = (x: bigint): boolean => isShadowPresentPte(x) && isLastSpte(x, e.level);
      const d = (leaf(e.newSpte) ? 1 : 0) - (leaf(e.oldSpte) ? 1 : 0);
      totals[e.level - 1]! += d;
      if (d !== 0) changes++;
      if (leaf(e.oldSpte) && e.level > 1 && isShadowPresentPte(e.newSpte) && !leaf(e.newSpte)) pendingSplit = e.level - 1;
    } else if (e.ev === "kvm_tdp_mmu_page_stats") {
      events++;
      const got = [e.pages4k, e.pages2m, e.pages1g];
      if (pendingSplit > 0 && got.join() !== totals.join()) {
        totals[pendingSplit - 1]! += 512;
        pendingSplit = 0;
        splits++;
      }
      assert.deepEqual(got, totals);
    }
  }
  assert.ok(changes > 0 && splits > 0);
  assert.equal(events, changes + splits);
  assert.deepEqual(totals, r.kvm.stat.pages);
});
