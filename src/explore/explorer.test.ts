// SPDX-License-Identifier: GPL-2.0-only
// The explorer proves itself on toy programs before it is trusted with the model.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { blockingStep, step, type Gen, type Step } from "../rt/index.js";
import { decodeToken, encodeToken, explore, runOnce, type Execution, type Program, type Strategy } from "./index.js";

const now = (): number => 0;

/** Two threads doing x++ as a separate load and store. */
function racyCounter(threads = 2): Program {
  return () => {
    let x = 0;
    const inc = function* (): Gen<void> {
      yield step("read", 1, "r", "load x");
      const t = x;
      yield step("write", 1, "w", "store x");
      x = t + 1;
    };
    return toyExecution(
      Array.from({ length: threads }, (_, i) => ({ name: `t${i}`, body: inc })),
      () => (x === threads ? null : { check: "lost-update", message: `x = ${x}, expected ${threads}` }),
    );
  };
}

/** Two locks taken in opposite orders. */
function lockOrder(): Program {
  return () => {
    const owner = [-1, -1];
    let cur = 0;
    const take = function* (l: number): Gen<void> {
      yield blockingStep("lock", 10 + l, "w", `lock ${l}`, () => owner[l] === -1);
      owner[l] = cur;
    };
    const drop = function* (l: number): Gen<void> {
      yield step("unlock", 10 + l, "w", `unlock ${l}`);
      owner[l] = -1;
    };
    const ex = toyExecution(
      [
        { name: "ab", body: function* () { yield* take(0); yield* take(1); yield* drop(1); yield* drop(0); } },
        { name: "ba", body: function* () { yield* take(1); yield* take(0); yield* drop(0); yield* drop(1); } },
      ],
      () => null,
    );
    return { ...ex, setCurrent: (t: number) => void (cur = t) };
  };
}

/** Each thread waits politely for the other to go first: a livelock. */
function livelock(): Program {
  return () => {
    const want = [false, false];
    const polite = (me: number) =>
      function* (): Gen<void> {
        for (;;) {
          yield step("write", 20 + me, "w", "want = true");
          want[me] = true;
          yield step("read", 21 - me, "r", "other wants?");
          if (!want[1 - me]) return;
          yield step("write", 20 + me, "w", "want = false (back off)");
          want[me] = false;
        }
      };
    return toyExecution(
      [
        { name: "p0", body: polite(0) },
        { name: "p1", body: polite(1) },
      ],
      () => null,
    );
  };
}

function toyExecution(threads: Execution["threads"], atEnd: () => { check: string; message: string } | null): Execution {
  return { threads, setCurrent: () => {}, afterStep: () => null, atEnd, classify: () => null };
}

const base = { preemptions: 2, por: false, seed: 1, maxSchedules: 10_000, maxSteps: 200, budgetMs: 1e12, pctDepth: 2, now };

test("dpor finds the lost update with one preemption, and proves one thread clean", () => {
  const r = explore(racyCounter(), { ...base, strategy: "dpor" });
  assert.equal(r.violation?.check, "lost-update");
  assert.equal(r.preemptions, 1);
  const clean = explore(racyCounter(1), { ...base, strategy: "dpor" });
  assert.equal(clean.violation, null);
  assert.equal(clean.complete, true);
});

test("with preemption bound 0 the racy counter is clean, and the search is complete for that bound", () => {
  const r = explore(racyCounter(), { ...base, strategy: "dpor", preemptions: 0 });
  assert.equal(r.violation, null);
  assert.equal(r.complete, true);
  assert.match(r.summary, /^exhaustive: all 2 interleavings up to 0 preemption/);
});

test("a lock-order inversion is reported as a deadlock", () => {
  for (const strategy of ["dpor", "random", "pct"] as Strategy[]) {
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
for (const strategy of ["dpor", "random", "pct"] as Strategy[]) {
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
