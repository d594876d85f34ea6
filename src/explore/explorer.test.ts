// SPDX-License-Identifier: GPL-2.0-only
// The explorer proves itself on toy programs before it is trusted with the model.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { step, type Gen, type Step } from "../rt/index.js";
import { blockingStep } from "../rt/index.js";
import { BoundedSearch, RaceSearch, decodeToken, encodeToken, explore, runOnce, shrink, type Strategy } from "./index.js";
import { livelock, lockOrder, openWindow, publishThenList, racyCounter, toyExecution } from "./toys.js";
import type { Execution } from "./run.js";

const now = (): number => 0;

const base = { preemptions: 2, por: false, seed: 1, maxSchedules: 10_000, maxSteps: 200, budgetMs: 1e12, pctDepth: 2, now };

test("dpor finds the lost update with one preemption, and proves one thread clean", () => {
  const r = explore(racyCounter(), { ...base, strategy: "dpor" });
  assert.equal(r.violation?.check, "lost-update");
  assert.equal(r.preemptions, 1);
  const clean = explore(racyCounter(1), { ...base, strategy: "dpor" });
  assert.equal(clean.violation, null);
  assert.equal(clean.complete, true);
});

test("--prove: the partial-order search alone finds the lost update, proves one thread clean, and says when the budget cut it short", () => {
  const r = explore(racyCounter(), { ...base, strategy: "dpor", prove: true });
  assert.equal(r.violation?.check, "lost-update");
  assert.match(r.summary, /^found by the partial-order search after \d+ schedules/);
  const clean = explore(racyCounter(1), { ...base, strategy: "dpor", prove: true });
  assert.equal(clean.violation, null);
  assert.equal(clean.complete, true);
  assert.match(clean.summary, /^exhaustive: all 1 trace, no preemption bound/);
  // Three threads: more traces than one schedule; the cap leaves the search incomplete.
  const all = explore(racyCounter(3), { ...base, strategy: "dpor", prove: true, maxSchedules: 1 });
  assert.equal(all.complete, false);
  assert.match(all.summary, /^incomplete: .*not a proof/);
});

test("with preemption bound 0 the racy counter is clean, and the search is complete for that bound", () => {
  const r = explore(racyCounter(), { ...base, strategy: "dpor", preemptions: 0 });
  assert.equal(r.violation, null);
  assert.equal(r.complete, true);
  assert.match(r.summary, /^exhaustive: all 2 interleavings up to 0 preemption/);
});

test("a lock-order inversion is reported as a deadlock", () => {
  for (const strategy of ["dpor", "races", "random", "pct"] as Strategy[]) {
    const r = explore(lockOrder(), { ...base, strategy });
    assert.equal(r.violation?.check, "deadlock", strategy);
    assert.match(r.violation!.message, /waits for lock/);
  }
});

test("a livelock is reported as lack of progress", () => {
  const r = explore(livelock(), { ...base, strategy: "dpor", maxSteps: 60 });
  assert.equal(r.violation?.check, "progress");
});

// The contract every strategy passes.
for (const strategy of ["dpor", "races", "random", "pct"] as Strategy[]) {
  test(`contract (${strategy}): same seed, same schedule; replay gives the same run; bounds respected`, () => {
    const a = explore(racyCounter(3), { ...base, strategy, seed: 7 });
    const b = explore(racyCounter(3), { ...base, strategy, seed: 7 });
    assert.notEqual(a.violation, null);
    assert.deepEqual(a.schedule, b.schedule);
    assert.equal(a.schedules, b.schedules);
    // Replay: the recorded schedule reproduces the same violation step for step.
    const labels: string[] = [];
    const again = runOnce(racyCounter(3), { maxSteps: 1000, choose: (_e, _p, d) => a.schedule[d]!, observe: (r) => labels.push(`${r.thread}:${r.step.label}`) });
    assert.deepEqual(again.schedule, a.schedule);
    assert.deepEqual(again.violation, a.violation);
    assert.equal(labels.length, a.schedule.length);
    // Bounds.
    const capped = explore(racyCounter(1), { ...base, strategy, maxSchedules: 3 });
    assert.ok(capped.schedules <= 3);
    if (strategy === "dpor") assert.ok(a.preemptions <= base.preemptions);
  });
}

test("race reversals: a switch early in a stretch behind a hidden race, as cheap among bystanders as without", () => {
  const cost = (bystanders: number): number => {
    const s = new RaceSearch(publishThenList(bystanders), 1000);
    for (let n = 1; n <= 200; n++) {
      const r = s.next();
      if (r === null) break;
      if (r.violation !== null) {
        assert.equal(r.violation.check, "listed-dead");
        assert.equal(r.preemptions, 1);
        return n;
      }
    }
    return Infinity;
  };
  const alone = cost(0);
  // The first run; the zapper first (no preemption: it sees nothing); the switch before the
  // fill, where the race is (the fault has listed already); the switch one step earlier.
  assert.equal(alone, 4);
  assert.equal(cost(4), alone);
  // The bounded search tries every order of the bystanders at bound 0 first.
  const bounded = new BoundedSearch(publishThenList(4), 1000, 1, false);
  let n = 0;
  for (let r = bounded.next(); r !== null && r.violation === null; r = bounded.next()) n++;
  assert.ok(n > 100, `${n}`);
  // Clean: with no way to break it, the search runs dry and says it proved nothing.
  const clean = explore(racyCounter(1), { ...base, strategy: "races" });
  assert.equal(clean.violation, null);
  assert.equal(clean.complete, false);
  assert.match(clean.summary, /^sampled: all 1 race-reversal schedules, no violation \(not a proof\)/);
});

test("a thread that waits names whom it waits for, and the race-reversal search runs that thread next", () => {
  // "waiter" waits until "kicked" has run; "other" could run too. Without the hint the
  // lowest thread would be picked.
  const program = () => {
    let kicked = false;
    let order = "";
    return toyExecution(
      [
        {
          name: "waiter",
          body: function* () {
            yield step("write", 1, "w", "kick");
            yield blockingStep("flush", 2, "w", "wait", () => kicked, () => [2]);
            order += "w";
          },
        },
        { name: "other", body: function* () { yield step("write", 3, "w", "other"); order += "o"; } },
        { name: "kicked", body: function* () { yield step("write", 2, "w", "leave"); kicked = true; order += "k"; } },
      ],
      () => ({ check: "order", message: order }),
    );
  };
  const seen: (readonly number[])[] = [];
  runOnce(program, { maxSteps: 10, choose: (e, p, _d, awaited) => (seen.push(awaited), e.includes(p) ? p : e[0]!) });
  assert.deepEqual(seen, [[], [2], [], []]);
  const first = new RaceSearch(program, 10).next()!;
  assert.equal(first.violation?.message, "kwo");
});

test("race reversals: a thread switched out at its voluntary scheduling point waits until nothing else can run", () => {
  // "yielder" passes cond_resched() and then looks at what "b" writes; "c" can start only
  // after "b". The violation: "c" finished before "yielder" looked. Reversing the race on
  // what "b" writes switches "yielder" out right after its scheduling point (free); then
  // "c" must run before it.
  const program = () => {
    let bDone = false;
    let cDone = false;
    let saw = false;
    return toyExecution(
      [
        {
          name: "yielder",
          body: function* () {
            yield step("write", 50, "w", "work");
            yield step("sched", 52, "r", "cond_resched()");
            yield step("read", 60, "r", "look");
            saw = cDone;
          },
        },
        { name: "b", body: function* () { yield step("write", 60, "w", "b"); bDone = true; } },
        { name: "c", body: function* () { yield blockingStep("write", 61, "w", "c", () => bDone); cDone = true; } },
      ],
      () => (saw ? { check: "saw-c", message: "yielder looked after c" } : null),
    );
  };
  const s = new RaceSearch(program, 20);
  const first = s.next()!;
  assert.equal(first.violation, null);
  const second = s.next()!;
  assert.equal(second.violation?.check, "saw-c");
  assert.deepEqual(second.schedule, [0, 0, 1, 2, 0]);
  assert.equal(second.preemptions, 0);
});

test("property: replay tokens round-trip", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 300 }), fc.subarray(["zap-under-read-lock", "free-before-flush"]), (s, v) => {
      const t = encodeToken("abc123", v, s);
      const d = decodeToken(t);
      assert.deepEqual(d.schedule, s);
      assert.deepEqual(d.variants, v);
      assert.equal(d.fingerprint, "abc123");
    }),
  );
  assert.throws(() => decodeToken("tdp1.x.-.0xzz!"), /not a replay token/);
});

test("determinism self-check: the same schedule twice gives the same step sequence", () => {
  const run = (): string[] => {
    const out: string[] = [];
    runOnce(racyCounter(2), { maxSteps: 100, choose: (e, _p, d) => e[d % e.length]!, observe: (r) => out.push(`${r.thread}:${(r.step as Step).label}`) });
    return out;
  };
  assert.deepEqual(run(), run());
});

test("shrink: a failing schedule with many switches comes back with fewer, still failing the same way", () => {
  // Three threads doing x++, switched after every step: a lost update with 5 preemptions.
  const r = runOnce(racyCounter(3), { maxSteps: 100, choose: (e, _p, d) => e[d % e.length]! });
  assert.equal(r.violation?.check, "lost-update");
  assert.ok(r.preemptions >= 3, `${r.preemptions}`);
  const m = shrink(racyCounter(3), r, 100, 200);
  assert.equal(m.r.violation?.check, "lost-update");
  assert.ok(m.r.preemptions < r.preemptions, `${m.r.preemptions} < ${r.preemptions}`);
  assert.equal(m.r.preemptions, 1);
  assert.ok(m.tries <= 200);
});

test("shrink: a thread that looks late comes back looking as early as it can", () => {
  // w opens the window and works 30 steps; r looks after all of them: 31 steps, and the
  // only context switch is already needed, so merging runs cannot help; hoisting r can.
  const r = runOnce(openWindow(40), { maxSteps: 100, choose: (e, _p, d) => (d < 31 ? 0 : e[e.length - 1]!) });
  assert.equal(r.violation?.check, "saw-window");
  assert.equal(r.schedule.length, 32);
  const m = shrink(openWindow(40), r, 100, 200);
  assert.equal(m.r.violation?.check, "saw-window");
  assert.deepEqual(m.r.schedule, [0, 1]);
});

test("the bounded search visits the same schedules deepest first and shallowest first, each once", () => {
  for (const program of [racyCounter(3), lockOrder(), openWindow(3)]) {
    // The schedules of the last bound searched (bound 2, or less if that was all of them).
    const seen = (shallowFirst: boolean): string[] => {
      const s = new BoundedSearch(program, 100, 2, shallowFirst);
      const byBound: string[][] = [];
      for (let r = s.next(); r !== null; r = s.next()) (byBound[s.bound] ??= []).push(r.schedule.join(""));
      return byBound[byBound.length - 1]!;
    };
    const deep = seen(false);
    const shallow = seen(true);
    assert.equal(new Set(deep).size, deep.length);
    assert.equal(new Set(shallow).size, shallow.length);
    assert.deepEqual([...shallow].sort(), [...deep].sort());
    assert.notDeepEqual(shallow, deep);
  }
});

test("the default search (bounded, partial-order and sampled in turn) finds and proves", () => {
  const por = { ...base, por: true, preemptions: 1, pctDepth: 3 };
  const r = explore(racyCounter(), { ...por, strategy: "dpor" });
  assert.equal(r.violation?.check, "lost-update");
  assert.equal(r.preemptions, 1);
  assert.match(r.summary, /^found with 1 preemption/);
  const w = explore(openWindow(50), { ...por, strategy: "dpor" });
  assert.deepEqual(w.schedule, [0, 1]);
  // One thread: the bounded search runs out of schedules at bound 0, and says so.
  const one = explore(racyCounter(1), { ...por, strategy: "dpor" });
  assert.equal(one.violation, null);
  assert.equal(one.complete, true);
  assert.match(one.summary, /^exhaustive: all 1 interleaving, no preemption bound needed/);
  // Two threads of 12 independent steps each: 2 704 156 interleavings, one trace.
  const apart = (): Execution => {
    const body = (obj: number) =>
      function* (): Gen<void> {
        for (let i = 0; i < 12; i++) yield step("write", obj, "w", "own store");
      };
    return toyExecution([{ name: "a", body: body(1) }, { name: "b", body: body(2) }], () => null);
  };
  const proof = explore(apart, { ...por, strategy: "dpor", preemptions: Number.POSITIVE_INFINITY });
  assert.equal(proof.complete, true);
  assert.match(proof.summary, /^exhaustive: all 1 trace, no preemption bound/);
  // Out of budget before the partial-order search is done: not a proof.
  const capped = explore(racyCounter(3), { ...por, strategy: "dpor", maxSchedules: 2 });
  assert.equal(capped.complete, false);
});
