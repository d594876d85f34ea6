// SPDX-License-Identifier: GPL-2.0-only
// The bug zoo: every bundled variant scenario is found with its variant at a pinned seed
// within a small budget, and the same scenario shows nothing without it (exhaustively up to
// its preemption bound). `npm run test:zoo` (ZOO_FULL=1) adds a deeper PCT sample of every
// clean side, the fixed present bugs included.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { dpor, explore, type Execution } from "../explore/index.js";
import { makeProgram, parseScenario, withBystanders } from "./index.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const full = process.env["ZOO_FULL"] === "1";

interface ZooEntry {
  readonly scenario: string;
  readonly variant: string;
  readonly check: string;
  /** Preemption bound that finds it. */
  readonly preemptions: number;
  /** Preemption bound for the clean run in the default (fast) test. */
  readonly cleanBound: number;
  /** Large scenarios are searched with PCT at a pinned seed (sampled, not exhaustive). */
  readonly pct?: boolean;
  /** PCT's depth, seed and schedule budget, if not 3, 1 and 100. */
  readonly pctAt?: readonly [depth: number, seed: number, schedules: number];
  /** Found by the default strategy (seed 1) within this many schedules, not by the bound. */
  readonly portfolio?: number;
}

const zoo: ZooEntry[] = [
  { scenario: "seed-notifier-vs-fault", variant: "zap-under-read-lock", check: "zap-post", preemptions: 1, cleanBound: 2 },
  { scenario: "fast-zap-defers-root-teardown", variant: "fast-zap-defers-root-teardown", check: "memslot", preemptions: 0, cleanBound: 0 },
  { scenario: "fault-into-invalid-root", variant: "fault-into-invalid-root", check: "stats", preemptions: 0, cleanBound: 0 },
  { scenario: "invalid-memslot-as-mmio", variant: "invalid-memslot-as-mmio", check: "transitions", preemptions: 1, cleanBound: 1, portfolio: 300 },
  { scenario: "mmu-seq-truncation-hang", variant: "mmu-seq-truncation-hang", check: "progress", preemptions: 0, cleanBound: 1 },
  { scenario: "map-over-frozen-spte", variant: "map-over-frozen-spte", check: "warn", preemptions: 0, cleanBound: 1 },
  { scenario: "nonatomic-write-drops-ad", variant: "nonatomic-write-drops-ad", check: "dirty", preemptions: 1, cleanBound: 2 },
  { scenario: "root-put-without-free", variant: "root-put-without-free", check: "warn", preemptions: 0, cleanBound: 0 },
  { scenario: "yield-drops-pending-flush", variant: "yield-drops-pending-flush", check: "tlb", preemptions: 1, cleanBound: 1 },
  { scenario: "iter-advance-after-yield", variant: "iter-advance-after-yield", check: "zap-post", preemptions: 1, cleanBound: 1 },
  { scenario: "free-before-flush", variant: "free-before-flush", check: "rcu", preemptions: 0, cleanBound: 1 },
  { scenario: "yield-no-forward-progress", variant: "yield-no-forward-progress", check: "progress", preemptions: 1, cleanBound: 1 },
  { scenario: "leaf-at-wrong-level", variant: "leaf-at-wrong-level", check: "warn", preemptions: 1, cleanBound: 1 },
  { scenario: "zap-all-skips-straddling-nonleaf", variant: "zap-all-skips-straddling-nonleaf", check: "leaks", preemptions: 0, cleanBound: 1 },
  { scenario: "wrprot-skips-mmu-writable", variant: "wrprot-skips-mmu-writable", check: "write-track", preemptions: 0, cleanBound: 1 },
  { scenario: "notifier-skips-invalid-roots", variant: "notifier-skips-invalid-roots", check: "zap-post", preemptions: 1, cleanBound: 1, pct: true },
  { scenario: "notifier-unmap-unsafe-root-iter", variant: "notifier-unmap-unsafe-root-iter", check: "rcu", preemptions: 0, cleanBound: 0 },
  { scenario: "nx-recovery-flush-overwritten", variant: "nx-recovery-flush-overwritten", check: "tlb", preemptions: 1, cleanBound: 1 },
];

const run = (file: string, variants: string[], preemptions: number, pct = false, pctAt: ZooEntry["pctAt"] = [3, 1, 100]) => {
  const sc = parseScenario(file, fs.readFileSync(file, "utf8"), variants);
  return explore(makeProgram(sc) as unknown as () => Execution, {
    strategy: pct ? "pct" : "dpor",
    preemptions,
    por: false,
    seed: pct ? pctAt[1] : 1,
    maxSchedules: pct ? pctAt[2] : 10_000,
    maxSteps: 50_000,
    budgetMs: 1e12,
    pctDepth: pctAt[0],
    now: () => performance.now(),
  });
};

/** The default strategy (`tdpmmu explore` without options) at seed 1. */
const portfolio = (program: () => Execution, maxSchedules: number) =>
  explore(program, {
    strategy: "dpor", preemptions: Infinity, por: true, seed: 1, maxSchedules, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0,
  });

for (const z of zoo) {
  const file = path.join(root, "scenarios", `${z.scenario}.json`);
  test(`zoo: ${z.variant} is found on ${z.scenario}`, () => {
    const r =
      z.portfolio !== undefined
        ? portfolio(makeProgram(parseScenario(file, fs.readFileSync(file, "utf8"), [z.variant])) as unknown as () => Execution, z.portfolio)
        : run(file, [z.variant], z.preemptions, z.pct === true, z.pctAt);
    assert.equal(r.violation?.check, z.check, r.violation?.message ?? r.summary);
  });
  test(`zoo: ${z.scenario} is clean without the variant`, () => {
    const r = run(file, [], z.cleanBound, z.pct === true, z.pctAt);
    assert.equal(r.violation, null, r.violation?.message);
    if (z.pct !== true) assert.equal(r.complete, true, r.summary);
    if (full) {
      // The long run adds a PCT sample with deeper interleavings than the bound.
      const sc = parseScenario(file, fs.readFileSync(file, "utf8"), []);
      const p = explore(makeProgram(sc) as unknown as () => Execution, {
        strategy: "pct", preemptions: 0, por: false, seed: 7, maxSchedules: 1000, maxSteps: 50_000, budgetMs: 120_000, pctDepth: 4, now: () => performance.now(),
      });
      assert.equal(p.violation, null, p.violation?.message);
    }
  });
}

// Bugs that Linux 6.1.192 still has: found in the faithful model, gone with the fix switch.
const present = [
  { scenario: "sp-list-link-after-publish", fix: "fix-sp-list-link-after-publish", check: "sp-lists", preemptions: 1, cleanBound: 1 },
  { scenario: "clear-dirty-retry-nonleaf", fix: "fix-clear-dirty-retry-nonleaf", check: "transitions", preemptions: 1, cleanBound: 1 },
];
for (const p of present) {
  const file = path.join(root, "scenarios", `${p.scenario}.json`);
  test(`present bug: ${p.scenario} is found in faithful 6.1.192`, () => {
    const r = run(file, [], p.preemptions);
    assert.equal(r.violation?.check, p.check, r.violation?.message ?? r.summary);
  });
  test(`present bug: ${p.scenario} is clean with ${p.fix}`, () => {
    const r = run(file, [p.fix], p.cleanBound);
    assert.equal(r.violation, null, r.violation?.message);
    assert.equal(r.complete, true, r.summary);
    if (full) {
      const sc = parseScenario(file, fs.readFileSync(file, "utf8"), [p.fix]);
      const s = explore(makeProgram(sc) as unknown as () => Execution, {
        strategy: "pct", preemptions: 0, por: false, seed: 7, maxSchedules: 1000, maxSteps: 50_000, budgetMs: 120_000, pctDepth: 4, now: () => performance.now(),
      });
      assert.equal(s.violation, null, s.violation?.message);
    }
  });
}

// The seed race among unrelated threads (another vCPU faulting elsewhere, aging, a dirty-log
// harvest): PCT finds it quickly at a pinned seed; the faithful kernel stays clean on a sample.
test("zoo: zap-under-read-lock is found among bystander threads (pct)", () => {
  const file = path.join(root, "scenarios", "seed-with-bystanders.json");
  const sc = parseScenario(file, fs.readFileSync(file, "utf8"), ["zap-under-read-lock"]);
  const r = explore(makeProgram(sc) as unknown as () => Execution, {
    strategy: "pct", preemptions: 0, por: false, seed: 1, maxSchedules: 200, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0,
  });
  assert.equal(r.violation?.check, "zap-post");
  const clean = explore(makeProgram(parseScenario(file, fs.readFileSync(file, "utf8"))) as unknown as () => Execution, {
    strategy: "pct", preemptions: 0, por: false, seed: 1, maxSchedules: full ? 5000 : 300, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0,
  });
  assert.equal(clean.violation, null, clean.violation?.message);
});

// The race-reversal search finds the notifier's use of a freed root among bystanders with no
// preemption: the notifier, switched out at its cond_resched(), comes back only when
// nothing else can run (about 290 runs of 4300 steps: only in the long run).
test("bystanders: the race-reversal search finds notifier-unmap-unsafe-root-iter", { skip: !full }, () => {
  const file = path.join(root, "scenarios", "notifier-unmap-unsafe-root-iter.json");
  const text = withBystanders(fs.readFileSync(file, "utf8"));
  const r = explore(makeProgram(parseScenario(file, text, ["notifier-unmap-unsafe-root-iter"])) as unknown as () => Execution, {
    strategy: "races", preemptions: 0, por: false, seed: 1, maxSchedules: 400, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0,
  });
  assert.equal(r.violation?.check, "rcu", r.summary);
  assert.equal(r.preemptions, 0);
});

test("every variant switch read in src/mmu is registered, and every registered variant is read", async () => {
  const { VARIANTS } = await import("./index.js");
  const dir = path.join(root, "src/mmu");
  const read = new Set<string>();
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith(".ts") || f.endsWith(".test.ts")) continue;
    for (const m of fs.readFileSync(path.join(dir, f), "utf8").matchAll(/variant\("([a-z0-9-]+)"\)/g)) read.add(m[1]!);
  }
  assert.deepEqual([...read].sort(), Object.keys(VARIANTS).sort());
});

// With no preemption bound: the partial-order reduction alone finds each variant, and
// proves the faithful scenario clean over every trace.
const unbounded = [
  ["free-before-flush", "free-before-flush", "rcu"],
  ["iter-advance-after-yield", "iter-advance-after-yield", "zap-post"],
  ["seed-notifier-vs-fault", "zap-under-read-lock", "zap-post"],
  ["nonatomic-write-drops-ad", "nonatomic-write-drops-ad", "dirty"],
  ["yield-drops-pending-flush", "yield-drops-pending-flush", "tlb"],
  ["yield-no-forward-progress", "yield-no-forward-progress", "progress"],
  ["mmu-seq-truncation-hang", "mmu-seq-truncation-hang", "progress"],
  ["wrprot-skips-mmu-writable", "wrprot-skips-mmu-writable", "write-track"],
  ["zap-all-skips-straddling-nonleaf", "zap-all-skips-straddling-nonleaf", "leaks"],
] as const;
for (const [scenario, variant, check] of unbounded) {
  const file = path.join(root, "scenarios", `${scenario}.json`);
  test(`unbounded: ${variant} is found by partial-order reduction alone, and ${scenario} is proved clean over all traces`, () => {
    const load = (v: string[]) => makeProgram(parseScenario(file, fs.readFileSync(file, "utf8"), v)) as unknown as () => Execution;
    const found = dpor(load([variant]), { maxSteps: 50_000, overBudget: () => false });
    assert.equal(found.failing?.violation?.check, check);
    const proof = explore(load([]), {
      strategy: "dpor", preemptions: 0, por: true, seed: 1, maxSchedules: 5000, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0,
    });
    assert.equal(proof.violation, null, proof.violation?.message);
    assert.equal(proof.complete, true, proof.summary);
    // A proof over every schedule: by the partial-order search, or by the bounded search
    // when no schedule has a preemption to leave out (a single thread).
    assert.match(proof.summary, /^exhaustive: all \d+ (traces, no preemption bound|interleavings?, no preemption bound needed)/);
  });
}

// Every variant and present bug again, among bystanders (a vCPU faulting in another memslot,
// a thread aging it and one harvesting its dirty log): found at a pinned seed or bound, clean
// on a sample without it.
type Hunt = { pct: [depth: number, seed: number] } | { bound: number } | { races: true };
const crowded: [scenario: string, variant: string | null, check: string, hunt: Hunt][] = [
  ["seed-notifier-vs-fault", "zap-under-read-lock", "zap-post", { pct: [3, 1] }],
  ["fast-zap-defers-root-teardown", "fast-zap-defers-root-teardown", "memslot", { pct: [3, 1] }],
  ["fault-into-invalid-root", "fault-into-invalid-root", "stats", { pct: [3, 1] }],
  ["invalid-memslot-as-mmio", "invalid-memslot-as-mmio", "transitions", { pct: [3, 1] }],
  ["mmu-seq-truncation-hang", "mmu-seq-truncation-hang", "progress", { pct: [3, 1] }],
  ["map-over-frozen-spte", "map-over-frozen-spte", "warn", { pct: [3, 1] }],
  ["nonatomic-write-drops-ad", "nonatomic-write-drops-ad", "dirty", { pct: [3, 1] }],
  ["root-put-without-free", "root-put-without-free", "warn", { pct: [3, 1] }],
  ["yield-drops-pending-flush", "yield-drops-pending-flush", "tlb", { pct: [3, 1] }],
  ["iter-advance-after-yield", "iter-advance-after-yield", "zap-post", { pct: [3, 1] }],
  ["free-before-flush", "free-before-flush", "rcu", { pct: [3, 1] }],
  ["yield-no-forward-progress", "yield-no-forward-progress", "progress", { pct: [3, 1] }],
  ["leaf-at-wrong-level", "leaf-at-wrong-level", "warn", { pct: [5, 1] }],
  ["zap-all-skips-straddling-nonleaf", "zap-all-skips-straddling-nonleaf", "leaks", { pct: [3, 1] }],
  ["wrprot-skips-mmu-writable", "wrprot-skips-mmu-writable", "write-track", { pct: [3, 1] }],
  ["notifier-skips-invalid-roots", "notifier-skips-invalid-roots", "zap-post", { pct: [3, 1] }],
  ["notifier-unmap-unsafe-root-iter", "notifier-unmap-unsafe-root-iter", "rcu", { pct: [3, 1] }],
  // One preemption, at the step after the fault published its table, and one choice among
  // the threads the bystanders add (the zapper's flush waits for the bystander vCPU; NX
  // recovery must not queue for mmu_lock before the fault's retry): the race-reversal search.
  ["nx-recovery-flush-overwritten", "nx-recovery-flush-overwritten", "tlb", { races: true }],
  ["sp-list-link-after-publish", null, "sp-lists", { pct: [3, 3] }],
  ["clear-dirty-retry-nonleaf", null, "transitions", { pct: [3, 1] }],
];
for (const [scenario, variant, check, hunt] of crowded) {
  const file = path.join(root, "scenarios", `${scenario}.json`);
  const text = withBystanders(fs.readFileSync(file, "utf8"));
  const bug = variant ?? `the present bug`;
  test(`bystanders: ${bug} is found on ${scenario} with unrelated threads, and it is clean without`, () => {
    const load = (v: string[]) => makeProgram(parseScenario(file, text, v)) as unknown as () => Execution;
    const common = { preemptions: 0, por: false, seed: 1, maxSchedules: 1500, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0 };
    const program = load(variant === null ? [] : [variant]);
    const r =
      "pct" in hunt
        ? explore(program, { ...common, strategy: "pct", pctDepth: hunt.pct[0], seed: hunt.pct[1] })
        : "races" in hunt
          ? explore(program, { ...common, strategy: "races", maxSchedules: 400 })
          : explore(program, { ...common, strategy: "dpor", preemptions: hunt.bound });
    assert.equal(r.violation?.check, check, r.violation?.message ?? r.summary);
    const fix = variant === null ? [`fix-${scenario}`] : [];
    const clean = explore(load(fix), { ...common, strategy: "pct", maxSchedules: full ? 1000 : 60, pctDepth: 3 });
    assert.equal(clean.violation, null, clean.violation?.message);
  });
}
