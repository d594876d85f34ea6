// SPDX-License-Identifier: GPL-2.0-only
// Partial-order reduction must not lose a behaviour: on random small programs it reaches
// exactly the final states (shared variables and what each thread read) that running
// every interleaving reaches, and it runs one schedule per trace on programs whose
// traces can be counted by hand.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Lockdep, RwLock, World } from "../kernel/index.js";
import { blockingStep, step, type Gen } from "../rt/index.js";
import { dpor, runOnce, type Execution, type Program } from "./index.js";
import { lockOrder, racyCounter } from "./toys.js";

/** A load, a store, a commuting add, or a wait until the variable is 0 (like a flush waiting for vCPUs to leave guest mode). */
type Op = { k: "r" | "w" | "a" | "wait"; obj: number; val: number; lock: "none" | "r" | "w" };

/** One op on the shared variables `vars`; a load's value goes to the thread's `reads`. */
function* op(vars: number[], reads: number[], o: Op): Gen<void> {
  if (o.k === "r") {
    yield step("read", 100 + o.obj, "r", `load x${o.obj}`);
    reads.push(vars[o.obj]!);
  } else if (o.k === "w") {
    yield step("write", 100 + o.obj, "w", `x${o.obj} = ${o.val}`);
    vars[o.obj] = o.val;
  } else if (o.k === "a") {
    yield step("rmw", 100 + o.obj, "a", `x${o.obj} += 1`);
    vars[o.obj]! += 1;
  } else yield blockingStep("flush", 100 + o.obj, "r", `wait for x${o.obj} == 0`, () => vars[o.obj] === 0);
}

/** Threads of loads, stores and commuting adds on two variables, some under an rwlock. */
function program(spec: readonly (readonly Op[])[], finals: Set<string>): Program {
  return () => {
    const vars = [0, 0];
    const reads: number[][] = spec.map(() => []);
    let writer = -1;
    let readers = 0;
    let cur = 0;
    const threads = spec.map((ops, t) => ({
      name: `t${t}`,
      body: function* (): Gen<void> {
        for (const o of ops) {
          if (o.lock === "w") {
            yield blockingStep("lock", 200, "w", "write_lock", () => writer < 0 && readers === 0);
            writer = cur;
          } else if (o.lock === "r") {
            yield blockingStep("lock", 200, "r", "read_lock", () => writer < 0);
            readers++;
          }
          yield* op(vars, reads[t]!, o);
          if (o.lock === "w") {
            yield step("unlock", 200, "w", "write_unlock");
            writer = -1;
          } else if (o.lock === "r") {
            yield step("unlock", 200, "r", "read_unlock");
            readers--;
          }
        }
      },
    }));
    const ex: Execution = {
      threads,
      setCurrent: (t) => void (cur = t),
      afterStep: () => null,
      atEnd: () => {
        finals.add(JSON.stringify([vars, reads]));
        return null;
      },
      classify: () => null,
    };
    return ex;
  };
}

const opArb: fc.Arbitrary<Op> = fc.record({
  k: fc.constantFrom("r" as const, "w" as const, "w" as const, "a" as const, "wait" as const),
  obj: fc.integer({ min: 0, max: 1 }),
  val: fc.integer({ min: 0, max: 2 }),
  lock: fc.constantFrom("none" as const, "none" as const, "r" as const, "w" as const),
});

/** Run every interleaving of `p` (no reduction); returns how many, or -1 if one deadlocks. */
function runAll(p: Program): number {
  let prefix: number[] = [];
  for (let n = 1; ; n++) {
    const r = runOnce(p, { maxSteps: 1000, choose: (e, _prev, d) => (d < prefix.length ? prefix[d]! : e[0]!) });
    if (r.violation !== null) return -1;
    let d = r.schedule.length - 1;
    for (; d >= 0; d--) {
      const e = r.choices[d]!.enabled;
      const i = e.indexOf(r.schedule[d]!);
      if (i + 1 < e.length) {
        prefix = [...r.schedule.slice(0, d), e[i + 1]!];
        break;
      }
    }
    if (d < 0) return n;
  }
}

const stepsOf = (spec: readonly (readonly Op[])[]): number => spec.flat().reduce((n, o) => n + (o.lock === "none" ? 1 : 3), 0);
const reduce = { maxSteps: 1000, overBudget: () => false };

/** DPOR completes and reaches exactly the final states that all interleavings reach (skip a program that deadlocks). */
function sameFinalStates(make: (finals: Set<string>) => Program): void {
  const everything = new Set<string>();
  const runs = runAll(make(everything));
  fc.pre(runs > 0);
  const reduced = new Set<string>();
  const d = dpor(make(reduced), reduce);
  assert.equal(d.complete, true);
  assert.deepEqual([...reduced].sort(), [...everything].sort());
  assert.ok(d.traces <= runs);
}

test("property: DPOR reaches exactly the final states of all interleavings", () => {
  fc.assert(
    fc.property(fc.array(fc.array(opArb, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 3 }), (spec) => {
      fc.pre(stepsOf(spec) <= 10);
      sameFinalStates((finals) => program(spec, finals));
    }),
    { numRuns: Number(process.env.DPOR_RUNS ?? 300) },
  );
});

/**
 * The same kind of program with the model's queued rwlock (kernel/locking.ts): an acquire
 * that must wait queues as a step of its own, and a holder with `brk` asks
 * rwlock_needbreak() and, if somebody queues, drops the lock and takes it again, as
 * cond_resched_rwlock_*() does. What it saw is part of the final state.
 */
type QOp = Op & { brk: boolean };
function queuedProgram(spec: readonly (readonly QOp[])[], finals: Set<string>): Program {
  return () => {
    const w = new World();
    const l = new RwLock(w, new Lockdep(), "l");
    const vars = [0, 0];
    const reads: number[][] = spec.map(() => []);
    const threads = spec.map((ops, t) => ({
      name: `t${t}`,
      body: function* (): Gen<void> {
        for (const o of ops) {
          const write = o.lock === "w";
          if (o.lock !== "none") yield* write ? l.writeLock() : l.readLock();
          yield* op(vars, reads[t]!, o);
          if (o.lock === "none") continue;
          if (o.brk && l.needbreak()) {
            reads[t]!.push(-1);
            yield* write ? l.writeUnlock() : l.readUnlock();
            yield* write ? l.writeLock() : l.readLock();
          }
          yield* write ? l.writeUnlock() : l.readUnlock();
        }
      },
    }));
    return {
      threads,
      setCurrent: (t) => w.runStep(t),
      afterStep: () => null,
      atEnd: () => {
        finals.add(JSON.stringify([vars, reads]));
        return null;
      },
      classify: () => null,
    };
  };
}

test("property: with the queued rwlock and rwlock_needbreak(), DPOR reaches exactly the final states of all interleavings", () => {
  const qopArb: fc.Arbitrary<QOp> = fc.record({
    k: fc.constantFrom("r" as const, "w" as const, "a" as const, "wait" as const),
    obj: fc.integer({ min: 0, max: 1 }),
    val: fc.integer({ min: 0, max: 2 }),
    lock: fc.constantFrom("none" as const, "r" as const, "r" as const, "w" as const),
    brk: fc.boolean(),
  });
  const size = (spec: readonly (readonly QOp[])[]): number => spec.flat().reduce((n, o) => n + (o.lock === "none" ? 1 : o.brk ? 6 : 3), 0);
  fc.assert(
    fc.property(fc.array(fc.array(qopArb, { minLength: 1, maxLength: 2 }), { minLength: 2, maxLength: 3 }), (spec) => {
      fc.pre(size(spec) <= 12);
      sameFinalStates((finals) => queuedProgram(spec, finals));
    }),
    { numRuns: Number(process.env.DPOR_RUNS ?? 300) },
  );
});

test("DPOR runs one schedule per trace where the traces can be counted", () => {
  const count = (spec: Op[][]): number => dpor(program(spec, new Set()), reduce).traces;
  const w = (obj: number, lock: Op["lock"] = "none"): Op => ({ k: "w", obj, val: 1, lock });
  const r = (obj: number, lock: Op["lock"] = "none"): Op => ({ k: "r", obj, val: 0, lock });
  const a = (obj: number): Op => ({ k: "a", obj, val: 0, lock: "none" });
  // Different variables: everything commutes.
  assert.equal(count([[w(0)], [w(1)]]), 1);
  // Two stores to one variable: two orders.
  assert.equal(count([[w(0)], [w(0)]]), 2);
  // Three threads reading one variable, and three commuting adds: one trace each.
  assert.equal(count([[r(0)], [r(0)], [r(0)]]), 1);
  assert.equal(count([[a(0)], [a(0)], [a(0)]]), 1);
  // A store and two loads of the same variable: the store before, between or after.
  assert.equal(count([[w(0)], [r(0)], [r(0)]]), 4);
  // Readers of an rwlock do not exclude each other; writers do.
  assert.equal(count([[r(1, "r")], [r(1, "r")]]), 1);
  assert.equal(count([[w(0, "w")], [w(1, "w")]]), 2);
});

test("DPOR finds the lost update and the lock-order deadlock, and proves one thread clean", () => {
  assert.equal(dpor(racyCounter(), reduce).failing?.violation?.check, "lost-update");
  assert.equal(dpor(lockOrder(), reduce).failing?.violation?.check, "deadlock");
  const single = new Set<string>();
  const one = dpor(program([[{ k: "w", obj: 0, val: 1, lock: "w" }]], single), reduce);
  assert.equal(one.complete, true);
  assert.equal(one.traces, 1);
});
