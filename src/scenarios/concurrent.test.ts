// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { explore, runOnce, type Execution } from "../explore/index.js";
import { ScenarioJsonError, makeProgram, parseScenario } from "./index.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const seedFile = path.join(root, "scenarios/seed-notifier-vs-fault.json");
const seedText = fs.readFileSync(seedFile, "utf8");
const opts = { strategy: "dpor" as const, preemptions: 2, por: false, seed: 1, maxSchedules: 2000, maxSteps: 20000, budgetMs: 1e12, pctDepth: 3, now: () => 0 };

test("seed: with zap-under-read-lock a fault reinstalls an SPTE the notifier just zapped", () => {
  const sc = parseScenario("seed.json", seedText, ["zap-under-read-lock"]);
  const r = explore(makeProgram(sc) as unknown as () => Execution, opts);
  assert.equal(r.violation?.check, "zap-post");
  assert.match(r.violation!.message, /installed for gfn 0x11 \(L1\) inside \[0x10, 0x12\)/);
  assert.equal(r.preemptions, 1);
  // Replay of the found schedule gives the same violation, step for step.
  const again = runOnce(makeProgram(sc) as unknown as () => Execution, { maxSteps: 20000, choose: (_e, _p, d) => r.schedule[d]! });
  assert.deepEqual(again.violation, r.violation);
  assert.deepEqual(again.schedule, r.schedule);
});

test("seed: faithful 6.1.192 is clean for every interleaving up to two preemptions", () => {
  const sc = parseScenario("seed.json", seedText);
  const r = explore(makeProgram(sc) as unknown as () => Execution, opts);
  assert.equal(r.violation, null);
  assert.equal(r.complete, true);
});

test("seed: the host-uaf consequence shows without the zap-post check", () => {
  const j = JSON.parse(seedText) as Record<string, unknown>;
  j["checks"] = ["host-uaf", "rcu", "lockdep", "bug"];
  // The guest must touch the page after the host freed it: one more access by the vCPU,
  // after the host's madvise finished (a second preemption).
  const threads = j["threads"] as { ops: unknown[] }[];
  threads[0]!.ops.push({ op: "access", vcpu: 0, gpa: "0x11000", write: false });
  const sc2 = parseScenario("seed.json", JSON.stringify(j), ["zap-under-read-lock"]);
  const r = explore(makeProgram(sc2) as unknown as () => Execution, opts);
  assert.equal(r.preemptions, 2);
  assert.equal(r.violation?.check, "host-uaf");
  assert.match(r.violation!.message, /after the host freed it/);
});

function jsonError(text: string): string {
  try {
    parseScenario("s.json", text);
  } catch (e) {
    assert.ok(e instanceof ScenarioJsonError);
    return e.message;
  }
  assert.fail("expected a ScenarioJsonError");
}

test("bad scenarios are rejected naming the JSON path", () => {
  const ok = JSON.parse(seedText) as { threads: { ops: Record<string, unknown>[] }[]; vm: Record<string, unknown> };
  const edit = (f: (j: typeof ok) => void): string => {
    const j = structuredClone(ok);
    f(j);
    return JSON.stringify(j);
  };
  assert.equal(jsonError("{"), "s.json: $: not JSON (Expected property name or '}' in JSON at position 1)");
  assert.equal(jsonError(edit((j) => (j.threads[1]!.ops[0]!["op"] = "frob"))), "s.json: $.threads[1].ops[0].op: expected one of access, madvise, host_write, zap_gfn_range, zap_all_fast, memslot, dirty_log, nx_recover, age_gfn_range, test_age_gfn, split_huge_pages, zap_collapsible, flush_tlb, got 'frob'");
  assert.equal(jsonError(edit((j) => (j.threads[1]!.ops[0]!["offset"] = "0x10001"))), "s.json: $.threads[1].ops[0].offset: not page aligned");
  assert.equal(jsonError(edit((j) => (j.threads[0]!.ops[0]!["colour"] = 1))), "s.json: $.threads[0].ops[0].colour: unknown field (allowed: op, vcpu, gpa, write, exec)");
  assert.equal(jsonError(edit((j) => delete j.threads[0]!.ops[0]!["gpa"])), "s.json: $.threads[0].ops[0].gpa: missing field");
  assert.equal(jsonError(edit((j) => (j.vm["levels"] = 3))), "s.json: $.vm.levels: expected 4 or 5");
  assert.equal(
    jsonError(edit((j) => ((j.vm["memslots"] as Record<string, unknown>[])[0]!["backing"] = "1g"))),
    "s.json: $.vm.memslots[0].backing: 1g (hugetlbfs) backing is not modelled yet; use 4k or 2m",
  );
  assert.equal(jsonError(edit((j) => (j.threads[0]!.ops[0]!["gpa"] = "zz"))), 's.json: $.threads[0].ops[0].gpa: expected a non-negative integer or a hex string, got "zz"');
});
