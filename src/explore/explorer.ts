// SPDX-License-Identifier: GPL-2.0-only
// The explorer: the strategies that choose schedules for runOnce() (run.ts), re-executing
// the program from the start for every schedule, and the replay tokens. It knows nothing of
// the model; the same program, seed and schedule always give the same run.
import { fnv1a, Prng } from "../base/index.js";
import { dpor } from "./dpor.js";
import { StaleToken, runOnce, type Program, type RunResult, type Violation } from "./run.js";

export type Strategy = "dpor" | "random" | "pct";

/** Schedules searched after the first violation for a shorter one at the same bound. */
const SHRINK_SCHEDULES = 200;

export interface ExploreOptions {
  readonly strategy: Strategy;
  readonly preemptions: number;
  readonly seed: number;
  readonly maxSchedules: number;
  readonly maxSteps: number;
  readonly budgetMs: number;
  readonly pctDepth: number;
  /**
   * "dpor" only: after the bounded search up to `preemptions`, search every trace with no
   * bound (partial-order reduction with sleep sets).
   */
  readonly por: boolean;
  /** Called now and then with progress (schedules so far, current bound). */
  readonly progress?: (schedules: number, bound: number) => void;
  /** The clock, from the CLI (the explorer itself never reads time). */
  readonly now: () => number;
}

export interface ExploreResult {
  readonly violation: Violation | null;
  readonly schedule: number[];
  readonly preemptions: number;
  readonly schedules: number;
  readonly steps: number;
  /** True if the search space (up to the bound) was exhausted. */
  readonly complete: boolean;
  /** What was proved: e.g. "exhaustive: all 31 interleavings up to 2 preemptions". */
  readonly summary: string;
}

/**
 * Search. "dpor" is the default systematic strategy: first depth-first over schedules with
 * iterative preemption bounding (0, 1, ... up to `preemptions`, every interleaving within
 * the bound), so a violation found has the fewest preemptions; then, if `por`, every trace
 * with no bound, by dynamic partial-order reduction (dpor.ts).
 */
export function explore(program: Program, o: ExploreOptions): ExploreResult {
  const t0 = o.now();
  let schedules = 0;
  let steps = 0;
  const out = (violation: Violation | null, schedule: number[], pre: number, complete: boolean, summary: string): ExploreResult => ({
    violation,
    schedule,
    preemptions: pre,
    schedules,
    steps,
    complete,
    summary,
  });
  const overBudget = (): boolean => schedules >= o.maxSchedules || o.now() - t0 > o.budgetMs;

  if (o.strategy === "random" || o.strategy === "pct") {
    const rng = new Prng(o.seed);
    // PCT spreads its change points over the length of the runs it has seen.
    let runLength = 400;
    while (!overBudget()) {
      const change = o.strategy === "pct" ? pctChangePoints(rng, o.pctDepth, Math.min(runLength, o.maxSteps)) : null;
      const prio: number[] = [];
      const r = runOnce(program, {
        maxSteps: o.maxSteps,
        choose: (enabled, prev, depth) => {
          if (change === null) return enabled[rng.below(enabled.length)]!;
          // PCT: the enabled thread with the highest priority runs; at a change point the
          // running thread drops to the lowest priority.
          for (const t of enabled) if (prio[t] === undefined) prio[t] = 1000 + rng.below(1000);
          if (change.has(depth) && prev >= 0) prio[prev] = -depth;
          let best = enabled[0]!;
          for (const t of enabled) if (prio[t]! > prio[best]!) best = t;
          return best;
        },
      });
      schedules++;
      steps += r.steps;
      runLength = Math.max(runLength, r.steps);
      if (schedules % 200 === 0) o.progress?.(schedules, 0);
      if (r.violation !== null) {
        const at = schedules;
        const m = shrink(program, r, o.maxSteps, SHRINK_SCHEDULES);
        schedules += m.tries;
        return out(m.r.violation, m.r.schedule, m.r.preemptions, false, `sampled: violation in schedule ${at}${shrunkBy(r, m)}`);
      }
    }
    return out(null, [], 0, false, `sampled: ${schedules} ${o.strategy} schedules, no violation (not a proof)`);
  }

  // Depth-first search with a preemption bound, re-executing from the start each time.
  let best: { r: RunResult; at: number } | null = null;
  let shrinkTries = 0;
  const found = (b: { r: RunResult; at: number }): ExploreResult =>
    out(
      b.r.violation,
      b.r.schedule,
      b.r.preemptions,
      false,
      `found with ${b.r.preemptions} preemption(s) after ${b.at} schedules, then shrunk to ${b.r.schedule.length} steps (${shrinkTries} more schedules at that bound)`,
    );
  for (let bound = 0; bound <= o.preemptions; bound++) {
    const prefix: number[] = [];
    let exhausted = false;
    let count = 0;
    while (!exhausted) {
      if (overBudget())
        return out(null, [], 0, false, `incomplete: budget ran out at ${schedules} schedules (preemption bound ${bound})`);
      const r = runOnce(program, {
        maxSteps: o.maxSteps,
        choose: (enabled, prev, depth) => {
          if (depth < prefix.length) return prefix[depth]!;
          // Default: keep running the same thread (no preemption) if it can.
          return enabled.includes(prev) ? prev : enabled[0]!;
        },
      });
      schedules++;
      count++;
      steps += r.steps;
      if (schedules % 200 === 0) o.progress?.(schedules, bound);
      if (r.violation !== null) {
        // Shrink: the bound is already minimal; keep searching it a little for a shorter
        // schedule that breaks the same check.
        if (best === null || (r.violation.check === best.r.violation!.check && r.schedule.length < best.r.schedule.length))
          best = { r, at: schedules };
        if (++shrinkTries > SHRINK_SCHEDULES) return found(best);
      } else if (best !== null && ++shrinkTries > SHRINK_SCHEDULES) return found(best);
      // Next schedule: the deepest choice point with an untried alternative within the bound.
      exhausted = true;
      // Preemptions before each depth, computed once.
      const before = new Int32Array(r.schedule.length + 1);
      for (let d = 0; d < r.schedule.length; d++) {
        const c = r.choices[d]!;
        before[d + 1] = before[d]! + (c.prev >= 0 && r.schedule[d] !== c.prev && c.enabled.includes(c.prev) ? 1 : 0);
      }
      for (let d = r.schedule.length - 1; d >= 0; d--) {
        const c = r.choices[d]!;
        if (c.enabled.length < 2) continue;
        const tried = r.schedule[d]!;
        const alts = orderAlternatives(c.enabled, c.prev);
        const i = alts.indexOf(tried);
        let next = -1;
        for (let j = i + 1; j < alts.length; j++) {
          const cand = alts[j]!;
          const pre = before[d]! + (c.prev >= 0 && cand !== c.prev && c.enabled.includes(c.prev) ? 1 : 0);
          if (pre <= bound) {
            next = cand;
            break;
          }
        }
        if (next >= 0) {
          prefix.length = 0;
          prefix.push(...r.schedule.slice(0, d), next);
          exhausted = false;
          break;
        }
      }
    }
    if (best !== null) return found(best);
    if (bound === o.preemptions && !o.por)
      return out(null, [], 0, true, `exhaustive: all ${count} interleavings up to ${bound} preemption(s) (${schedules} schedules run over all bounds)`);
  }
  // Then everything, with no preemption bound, one schedule per trace.
  const before = schedules;
  const d = dpor(program, {
    maxSteps: o.maxSteps,
    overBudget,
    progress: (n) => {
      schedules = before + n;
      if (n % 200 === 0) o.progress?.(schedules, -1);
    },
  });
  steps += d.steps;
  const bounded = `none with up to ${o.preemptions} preemption(s)`;
  if (d.failing !== null) {
    const m = shrink(program, d.failing, o.maxSteps, SHRINK_SCHEDULES);
    schedules += m.tries;
    return out(m.r.violation, m.r.schedule, m.r.preemptions, false, `found by the unbounded search after ${d.schedules} schedules (${bounded})${shrunkBy(d.failing, m)}`);
  }
  if (!d.complete)
    return out(null, [], 0, false, `incomplete: budget ran out after ${d.traces} traces of the unbounded search (${bounded}: exhaustive)`);
  return out(null, [], 0, true, `exhaustive: all ${d.traces} traces, no preemption bound (${d.schedules} schedules, ${d.cut} cut by sleep sets)`);
}

/**
 * Make a failing schedule simpler by moving a thread's next run of steps up to where it
 * was preempted (one context switch fewer), keeping each change after which a run still
 * breaks the same check with no more preemptions and no more steps. Runs that diverge from
 * the edited schedule follow it where they can.
 */
export function shrink(program: Program, failing: RunResult, maxSteps: number, budget: number): { r: RunResult; tries: number } {
  let best = failing;
  let tries = 0;
  const check = failing.violation!.check;
  const blocksOf = (s: readonly number[]): [number, number][] => {
    const out: [number, number][] = [];
    for (const t of s) {
      const last = out[out.length - 1];
      if (last !== undefined && last[0] === t) last[1]++;
      else out.push([t, 1]);
    }
    return out;
  };
  for (let improved = true; improved && tries < budget; ) {
    improved = false;
    const blocks = blocksOf(best.schedule);
    for (let i = blocks.length - 1; i >= 1 && tries < budget && !improved; i--) {
      const t = blocks[i - 1]![0];
      const j = blocks.findIndex((b, k) => k > i && b[0] === t);
      if (j < 0) continue;
      const edited = [...blocks.slice(0, i - 1), [t, blocks[i - 1]![1] + blocks[j]![1]] as [number, number], ...blocks.slice(i, j), ...blocks.slice(j + 1)];
      const want = edited.flatMap(([u, n]) => new Array<number>(n).fill(u));
      tries++;
      const r = runOnce(program, {
        maxSteps,
        choose: (enabled, prev) => {
          // The next thread the edited schedule wants that can run now; else carry on.
          for (let m = 0; m < want.length; m++)
            if (enabled.includes(want[m]!)) {
              const u = want[m]!;
              want.splice(m, 1);
              return u;
            }
          return enabled.includes(prev) ? prev : enabled[0]!;
        },
      });
      if (r.violation?.check === check && r.preemptions <= best.preemptions && r.schedule.length <= best.schedule.length && (r.preemptions < best.preemptions || r.schedule.length < best.schedule.length || blocksOf(r.schedule).length < blocks.length)) {
        best = r;
        improved = true;
      }
    }
  }
  return { r: best, tries };
}

function shrunkBy(from: RunResult, m: { r: RunResult; tries: number }): string {
  if (m.r === from) return "";
  return `, shrunk from ${from.preemptions} to ${m.r.preemptions} preemption(s) and ${from.schedule.length} to ${m.r.schedule.length} steps (${m.tries} more schedules)`;
}

/** The order in which a choice point's alternatives are tried: the running thread first. */
function orderAlternatives(enabled: readonly number[], prev: number): number[] {
  return enabled.includes(prev) ? [prev, ...enabled.filter((t) => t !== prev)] : [...enabled];
}

/** PCT's d-1 priority change points, uniform over the run length seen so far. */
function pctChangePoints(rng: Prng, depth: number, runLength: number): Set<number> {
  const s = new Set<number>();
  for (let i = 1; i < depth; i++) s.add(rng.below(Math.max(1, runLength)));
  return s;
}

// ---------------------------------------------------------------------------------------
// Replay tokens: "tdp1.<program fingerprint>.<variants>.<schedule>", the schedule as runs
// of "<thread>_<count>" (base 36) joined by "-".

export function encodeToken(fingerprint: string, variants: readonly string[], schedule: readonly number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < schedule.length; ) {
    let j = i;
    while (j < schedule.length && schedule[j] === schedule[i]) j++;
    runs.push(`${schedule[i]!.toString(36)}_${(j - i).toString(36)}`);
    i = j;
  }
  return `tdp1.${fingerprint}.${variants.join("+") || "-"}.${runs.join("-")}`;
}

export function decodeToken(token: string): { fingerprint: string; variants: string[]; schedule: number[] } {
  const m = /^tdp1\.([0-9a-z]+)\.([a-z0-9+-]+|-)\.((?:[0-9a-z]+_[0-9a-z]+)(?:-[0-9a-z]+_[0-9a-z]+)*)?$/.exec(token);
  if (m === null) throw new StaleToken(`not a replay token: '${token.slice(0, 40)}${token.length > 40 ? "..." : ""}'`);
  const schedule: number[] = [];
  for (const run of (m[3] ?? "").split("-").filter((x) => x.length > 0)) {
    const [t, c] = run.split("_");
    const count = Number.parseInt(c!, 36);
    if (count > 1_000_000) throw new StaleToken("replay token: run too long");
    for (let i = 0; i < count; i++) schedule.push(Number.parseInt(t!, 36));
  }
  return { fingerprint: m[1]!, variants: m[2] === "-" ? [] : m[2]!.split("+"), schedule };
}

/** A short fingerprint of a program's text, so a token for another program is refused. */
export function fingerprint(text: string): string {
  return fnv1a(text).toString(36);
}
