// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { main } from "./main.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");

function run(args: string[]): { code: number; out: string; err: string } {
  let out = "";
  let err = "";
  const code = main(args, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

test("tdpmmu audit: the seed scenario's footprints hold, with and without the variant", () => {
  const file = path.join(root, "scenarios", "seed-notifier-vs-fault.json");
  for (const extra of [[], ["--variant", "zap-under-read-lock"]]) {
    const r = run(["audit", file, "--runs", "8", ...extra]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^audit seed-notifier-vs-fault: 8 random schedules, up to 10 reorderings each: every step treated as commuting commuted/);
  }
});

test("tdpmmu audit: bad arguments exit 2 with the reason", () => {
  const file = path.join(root, "scenarios", "seed-notifier-vs-fault.json");
  for (const [args, msg] of [
    [["audit"], /no scenario file/],
    [["audit", file, "--runs", "zero"], /--runs takes an integer/],
    [["audit", file, "--variant", "nope"], /unknown variant 'nope'/],
    [["audit", "/nonexistent.json"], /cannot read/],
  ] as const) {
    const r = run([...args]);
    assert.equal(r.code, 2);
    assert.match(r.err, msg);
  }
});

test("tdpmmu COMMAND --help prints the usage and exits 0; a real unknown option is still exit 2", () => {
  for (const cmd of ["explore", "replay", "audit", "kvmtdp", "bench", "variants"]) {
    const r = run([cmd, "--help"]);
    assert.equal(r.code, 0, cmd);
    assert.match(r.out, /^usage: tdpmmu <command>/, cmd);
    assert.match(r.out, /explore SCENARIO\.json/, cmd);
  }
  const bad = run(["explore", "--frob"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /unknown option '--frob'/);
});

test("a run cut at --max-steps is reported as progress, and its replay command carries the same bound", () => {
  const file = path.join(root, "scenarios", "seed-notifier-vs-fault.json");
  const r = run(["explore", file, "--max-steps", "30", "--preemptions", "0", "--json"]);
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out) as { violation: { check: string; token: string; replay: string; trace: unknown[] } };
  assert.equal(j.violation.check, "progress");
  assert.equal(j.violation.trace.length, 30);
  assert.match(j.violation.replay, / --max-steps 30$/);
  const again = run(["replay", j.violation.token, file, "--max-steps", "30"]);
  assert.equal(again.code, 1, again.err);
  assert.match(again.out, /VIOLATION \[progress\] still running after 30 steps/);
  const without = run(["replay", j.violation.token, file]);
  assert.equal(without.code, 2);
  assert.match(without.err, /needs the same --max-steps/);
});

test("explore --bystanders finds the seed race among unrelated threads; its token replays only with --bystanders", () => {
  const file = path.join(root, "scenarios", "seed-notifier-vs-fault.json");
  const r = run(["explore", file, "--variant", "zap-under-read-lock", "--bystanders", "--strategy", "pct", "--seed", "1", "--max-schedules", "300", "--json"]);
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out) as { scenario: string; violation: { check: string; token: string; replay: string; trace: { thread: string }[] } };
  assert.equal(j.scenario, "seed-notifier-vs-fault-with-bystanders");
  assert.equal(j.violation.check, "zap-post");
  assert.match(j.violation.replay, / --bystanders$/);
  const again = run(["replay", j.violation.token, file, "--bystanders"]);
  assert.equal(again.code, 1, again.err);
  assert.match(again.out, /VIOLATION \[zap-post\]/);
  assert.match(again.out, /bystander-vcpu/);
  const without = run(["replay", j.violation.token, file]);
  assert.equal(without.code, 2);
  assert.match(without.err, /made with --bystanders: replay it with that option/);
  // The faithful kernel stays clean among the same threads.
  const clean = run(["explore", file, "--bystanders", "--preemptions", "0", "--json"]);
  assert.equal(clean.code, 0, clean.out + clean.err);
});

test("explore --prove: the seed proved over every trace, the variant's race found and replayable; other strategies refused", () => {
  const file = path.join(root, "scenarios", "seed-notifier-vs-fault.json");
  const clean = run(["explore", file, "--prove", "--json"]);
  assert.equal(clean.code, 0, clean.err);
  const c = JSON.parse(clean.out) as { complete: boolean; summary: string; violation: null };
  assert.equal(c.complete, true);
  assert.match(c.summary, /^exhaustive: all 159 traces, no preemption bound/);
  const r = run(["explore", file, "--prove", "--variant", "zap-under-read-lock", "--json"]);
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out) as { violation: { check: string; token: string } };
  assert.equal(j.violation.check, "zap-post");
  assert.equal(run(["replay", j.violation.token, file]).code, 1);
  for (const extra of [["--preemptions", "1"], ["--strategy", "pct"], ["--pct-depth", "3"]]) {
    const bad = run(["explore", file, "--prove", ...extra]);
    assert.equal(bad.code, 2, extra.join(" "));
    assert.match(bad.err, /--prove runs the partial-order search alone/);
  }
});

test("explore --json: each trace step names the kernel function it was taken in", () => {
  const file = path.join(root, "scenarios", "yield-drops-pending-flush.json");
  const r = run(["explore", file, "--variant", "yield-drops-pending-flush", "--json"]);
  assert.equal(r.code, 1, r.err);
  const steps = (JSON.parse(r.out) as { violation: { trace: { fn: string; action: string }[] } }).violation.trace;
  const fnOf = (action: string): string[] => [...new Set(steps.filter((s) => s.action === action).map((s) => s.fn))];
  // The walk's reads come from the iterator, its yield from tdp_mmu_iter_cond_resched().
  assert.deepEqual(fnOf("READ_ONCE(*sptep)").sort(), ["tdp_iter_next", "tdp_iter_restart"]);
  assert.deepEqual(fnOf("write_unlock(mmu_lock)"), ["tdp_mmu_iter_cond_resched"]);
  assert.equal(steps[2]!.fn, "__kvm_handle_hva_range");
});
