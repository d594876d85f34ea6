// SPDX-License-Identifier: GPL-2.0-only
// Toy programs on which the explorer's strategies prove themselves (used by the tests).
import { blockingStep, step, type Gen } from "../rt/index.js";
import type { Execution, Program } from "./run.js";

/** Two threads doing x++ as a separate load and store. */
export function racyCounter(threads = 2): Program {
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
export function lockOrder(): Program {
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
export function livelock(): Program {
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

/**
 * Thread "w" opens a window, works `n` steps on its own, and closes it; thread "r" looks
 * once. Looking while the window is open is the violation, found as soon as it happens.
 */
export function openWindow(n: number): Program {
  return () => {
    let open = false;
    let seen = false;
    const ex = toyExecution(
      [
        {
          name: "w",
          body: function* () {
            yield step("write", 30, "w", "open = true");
            open = true;
            for (let i = 0; i < n; i++) yield step("read", 31, "r", "own work");
            yield step("write", 30, "w", "open = false");
            open = false;
          },
        },
        {
          name: "r",
          body: function* () {
            yield step("read", 30, "r", "look");
            seen = open;
          },
        },
      ],
      () => null,
    );
    return { ...ex, afterStep: () => (seen ? { check: "saw-window", message: "r looked while the window was open" } : null) };
  };
}

/**
 * The shape of a publish-then-fill race with `bystanders` unrelated threads. "fault"
 * publishes a table, lists it, then fills it; "zapper" tears down what it finds published:
 * it clears the fill and unlists the table. If the zapper runs between publish and list,
 * the fault lists a table already torn down ("listed-dead"). In the run where the fault
 * goes first, the zapper's first conflict is with the fill, which hides the one with the
 * listing. Each bystander writes its own words and bumps a shared statistic (updates that
 * commute), so it races with nobody.
 */
export function publishThenList(bystanders: number, work = 8): Program {
  return () => {
    let published = false;
    let listed = false;
    let dead = false;
    const threads: Execution["threads"][number][] = [
      {
        name: "fault",
        body: function* () {
          yield step("write", 40, "w", "publish");
          published = true;
          yield step("write", 41, "w", "list");
          listed = true;
          yield step("write", 42, "w", "fill");
        },
      },
      {
        name: "zapper",
        body: function* () {
          yield step("read", 40, "r", "look");
          if (!published) return;
          yield step("write", 42, "w", "clear the fill");
          yield step("write", 41, "w", "unlist");
          dead = true;
          listed = false;
        },
      },
    ];
    for (let b = 0; b < bystanders; b++)
      threads.push({
        name: `bystander${b}`,
        body: function* () {
          for (let i = 0; i < work; i++) {
            yield step("write", 100 + b, "w", "own work");
            yield step("rmw", 99, "a", "stat++");
          }
        },
      });
    return toyExecution(threads, () => (listed && dead ? { check: "listed-dead", message: "the fault listed a table the zapper tore down" } : null));
  };
}

export function toyExecution(threads: Execution["threads"], atEnd: () => { check: string; message: string } | null): Execution {
  return { threads, setCurrent: () => {}, afterStep: () => null, atEnd, classify: () => null };
}
