// SPDX-License-Identifier: GPL-2.0-only
// The explorer: the strategies that choose schedules for runOnce() (run.ts), re-executing
// the program from the start for every schedule, and the replay tokens. It knows nothing of
// the model; the same program, seed and schedule always give the same run.
import { fnv1a, Prng } from "../base/index.js";
import { DporSearch } from "./dpor.js";
import { RaceSearch } from "./races.js";
import { StaleToken, runOnce, type Program, type RunResult, type Violation } from "./run.js";

export type Strategy = "dpor" | "races" | "random" | "pct";

/** Schedules searched after the first violation for a shorter one at the same bound. */
const SHRINK_SCHEDULES = 200;

export interface ExploreOptions {
  readonly strategy: Strategy;
  /** The bounded search's largest preemption bound (Infinity: it keeps rising). */
  readonly preemptions: number;
  readonly seed: number;
  readonly maxSchedules: number;
  readonly maxSteps: number;
  readonly budgetMs: number;
  readonly pctDepth: number;
  /**
   * "dpor" only: the default search, in which the bounded searches take turns with the
   * partial-order search over every trace and with PCT samples (see explore()).
   */
  readonly por: boolean;
  /**
   * "dpor" only: the partial-order search over every trace alone, with no bounded search
   * or sampler taking turns: a proof, a violation, or a budget run out.
   */
  readonly prove?: boolean;
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

/** Schedules the default search gives the bounded search alone before others take turns. */
const BOUNDED_FIRST = 200;

/** PCT depths the default search's sampler cycles through. */
const PORTFOLIO_PCT_DEPTHS = [2, 3, 4, 5, 6];

/**
 * Search.
 *
 * "dpor" without `por`: depth-first over schedules with iterative preemption bounding (0,
 * 1, ... up to `preemptions`, every interleaving within the bound), so a violation found has
 * the fewest preemptions.
 *
 * "dpor" with `por` (the default): searches take turns, one schedule each, after the
 * bounded search has had the first BOUNDED_FIRST schedules to itself. One turn in three:
 * every trace with no bound, by dynamic partial-order reduction (dpor.ts), which alone can
 * prove. One in three: PCT samples of increasing depth, which find deep violations that
 * the depth-first searches would reach only after their long tails. The third is shared
 * by the bounded search up to `preemptions` (deepest choice point first, and shallowest
 * first; two turns in five each) and the race-reversal search (races.ts; one in five),
 * which finds a violation behind a switch at a racing step among threads whose other
 * orders do not matter. The first violation wins; the proof is the partial-order search
 * running out of traces.
 *
 * "races": the race-reversal search alone. "random" and "pct": samples. None of these
 * three ever proves.
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
  const count = (r: RunResult): RunResult => {
    schedules++;
    steps += r.steps;
    return r;
  };
  const shrunk = (r: RunResult, summary: (m: { r: RunResult; tries: number }) => string): ExploreResult => {
    const m = shrink(program, r, o.maxSteps, SHRINK_SCHEDULES);
    schedules += m.tries;
    return out(m.r.violation, m.r.schedule, m.r.preemptions, false, summary(m));
  };

  if (o.strategy === "random" || o.strategy === "pct") {
    const sampler = new Sampler(program, o.maxSteps, o.seed, o.strategy === "pct" ? [o.pctDepth] : null);
    while (!overBudget()) {
      const r = count(sampler.next());
      if (schedules % 200 === 0) o.progress?.(schedules, 0);
      if (r.violation !== null) {
        const at = schedules;
        return shrunk(r, (m) => `sampled: violation in schedule ${at}${shrunkBy(r, m)}`);
      }
    }
    return out(null, [], 0, false, `sampled: ${schedules} ${o.strategy} schedules, no violation (not a proof)`);
  }

  if (o.strategy === "races") {
    const search = new RaceSearch(program, o.maxSteps);
    for (;;) {
      if (overBudget()) return out(null, [], 0, false, `sampled: budget ran out after ${schedules} race-reversal schedules, with up to ${search.level} preemption(s) (not a proof)`);
      const next = search.next();
      if (next === null) break;
      const r = count(next);
      if (schedules % 200 === 0) o.progress?.(schedules, search.level);
      if (r.violation !== null) {
        const at = schedules;
        return shrunk(r, (m) => `found by race reversal after ${at} schedules${shrunkBy(r, m)}`);
      }
    }
    return out(null, [], 0, false, `sampled: all ${schedules} race-reversal schedules${search.pruned ? " the queue kept" : ""}, no violation (not a proof)`);
  }

  if (o.prove === true) {
    const reduced = new DporSearch(program, o.maxSteps);
    for (;;) {
      if (overBudget()) return out(null, [], 0, false, `incomplete: budget ran out after ${reduced.traces} traces of the partial-order search (${schedules} schedules; not a proof)`);
      const r = reduced.next();
      if (r === null) break;
      count(r);
      if (schedules % 200 === 0) o.progress?.(schedules, -1);
      if (r.violation !== null) {
        const at = schedules;
        return shrunk(r, (m) => `found by the partial-order search after ${at} schedules${shrunkBy(r, m)}`);
      }
    }
    return out(null, [], 0, true, `exhaustive: all ${reduced.traces} trace${reduced.traces === 1 ? "" : "s"}, no preemption bound (${reduced.schedules} schedules, ${reduced.cut} cut by sleep sets)`);
  }

  // A violation from a bounded search has the fewest preemptions; keep searching that bound
  // a little for a shorter schedule that breaks the same check.
  const fromBounded = (bounded: BoundedSearch, first: RunResult): ExploreResult => {
    const at = schedules;
    const bound = bounded.bound;
    let best = first;
    let tries = 0;
    while (tries < SHRINK_SCHEDULES && bounded.bound === bound) {
      const next = bounded.next();
      if (next === null) break;
      const r = count(next);
      tries++;
      if (r.violation?.check === first.violation!.check && r.schedule.length < best.schedule.length) best = r;
    }
    return out(
      best.violation,
      best.schedule,
      best.preemptions,
      false,
      `found with ${best.preemptions} preemption(s) after ${at} schedules, then shrunk to ${best.schedule.length} steps (${tries} more schedules at that bound)`,
    );
  };
  const deep = new BoundedSearch(program, o.maxSteps, o.preemptions, false);
  if (!o.por) {
    while (!deep.done) {
      if (overBudget()) return out(null, [], 0, false, `incomplete: budget ran out at ${schedules} schedules (preemption bound ${deep.bound})`);
      const next = deep.next();
      if (next === null) break;
      const r = count(next);
      if (schedules % 200 === 0) o.progress?.(schedules, deep.bound);
      if (r.violation !== null) return fromBounded(deep, r);
    }
    return out(null, [], 0, true, `exhaustive: all ${deep.lastCount} interleavings up to ${o.preemptions} preemption(s) (${schedules} schedules run over all bounds)`);
  }

  // The default: the two bounded searches, the partial-order search and the sampler take turns.
  const shallow = new BoundedSearch(program, o.maxSteps, o.preemptions, true);
  const reduced = new DporSearch(program, o.maxSteps);
  const sampler = new Sampler(program, o.maxSteps, o.seed, PORTFOLIO_PCT_DEPTHS);
  const reversals = new RaceSearch(program, o.maxSteps);
  const boundedDone = (): boolean => deep.done || shallow.done;
  const boundNote = (): string => {
    if (deep.all || shallow.all) return "none in all interleavings";
    if (boundedDone()) return `none with up to ${o.preemptions} preemption(s)`;
    const b = Math.max(deep.bound, shallow.bound);
    return b === 0 ? "preemption bound 0 searched in part" : `none with up to ${b - 1} preemption(s), bound ${b} searched in part`;
  };
  let boundedTurns = 0;
  for (let turn = 0; !reduced.complete && !deep.all && !shallow.all; turn++) {
    if (overBudget())
      return out(null, [], 0, false, `incomplete: budget ran out after ${reduced.traces} traces of the unbounded search (${boundNote()}; ${sampler.schedules} PCT samples)`);
    if (schedules % 200 === 0) o.progress?.(schedules, boundedDone() ? -1 : Math.max(deep.bound, shallow.bound));
    // Whose turn: the bounded searches alone at first; then one turn in three each for the
    // partial-order search, the sampler, and the rest (the two bounded searches two turns in
    // five each, the race-reversal search one; those that are done drop out).
    let who: number;
    if (schedules < BOUNDED_FIRST && !boundedDone()) who = boundedTurns++ % 2;
    else if (turn % 3 === 1) who = 3;
    else if (turn % 3 === 2) who = 4;
    else {
      // A race-reversal run costs about three others (it tracks every step for races).
      const k = boundedTurns++ % 5;
      who = k < 4 && !boundedDone() ? k % 2 : !reversals.done ? 2 : boundedDone() ? 3 : 0;
    }
    if (who === 0 || who === 1) {
      const bounded = who === 0 ? deep : shallow;
      const next = bounded.next();
      if (next === null) continue;
      const r = count(next);
      if (r.violation !== null) return fromBounded(bounded, r);
    } else if (who === 3) {
      const r = reduced.next();
      if (r === null) break;
      count(r);
      if (r.violation !== null) {
        const at = reduced.schedules;
        return shrunk(r, (m) => `found by the unbounded search after ${at} of its schedules (${boundNote()})${shrunkBy(r, m)}`);
      }
    } else if (who === 2) {
      const next = reversals.next();
      if (next === null) continue;
      const r = count(next);
      if (r.violation !== null) {
        const at = reversals.schedules;
        return shrunk(r, (m) => `found by race reversal ${at} of the default search, ${r.preemptions} preemption(s) (${boundNote()})${shrunkBy(r, m)}`);
      }
    } else {
      const depth = sampler.depth;
      const r = count(sampler.next());
      if (r.violation !== null) {
        const at = sampler.schedules;
        return shrunk(r, (m) => `found by PCT sample ${at} (depth ${depth}) of the default search (${boundNote()})${shrunkBy(r, m)}`);
      }
    }
  }
  const done = deep.all ? deep : shallow.all ? shallow : null;
  if (done !== null)
    return out(null, [], 0, true, `exhaustive: all ${done.lastCount} interleaving${done.lastCount === 1 ? "" : "s"}, no preemption bound needed (the bounded search ran out of schedules at bound ${done.bound}; ${schedules} schedules in all)`);
  return out(
    null,
    [],
    0,
    true,
    `exhaustive: all ${reduced.traces} trace${reduced.traces === 1 ? "" : "s"}, no preemption bound (${reduced.schedules} schedules, ${reduced.cut} cut by sleep sets; ${schedules - reduced.schedules} more bounded and sampled)`,
  );
}

/**
 * Every schedule with at most 0 preemptions, then 1, ... up to `maxBound`, re-executing from
 * the start each time. Each schedule is the run that keeps to a prefix and then lets the
 * running thread go on while it can; the schedules below a run are those that first differ
 * from it at some later choice point, tried deepest choice point first or shallowest first.
 * The default search runs one of each in turn: a violation that needs a thread preempted
 * late in a long run turns up in the first, one that needs it preempted early in the
 * second, long before the other end of the run has been permuted.
 */
export class BoundedSearch {
  bound = 0;
  done = false;
  /** Schedules run at the current bound, and at the last bound exhausted. */
  count = 0;
  lastCount = 0;
  /** True once a bound was exhausted without leaving out a schedule: that was all of them. */
  all = false;
  /** Whether the current bound has left out a schedule with more preemptions. */
  private pruned = false;
  /** Runs whose later choice points are still being tried, each with its cursor. */
  private readonly frames: BoundedFrame[] = [];
  private started = false;

  constructor(
    private readonly program: Program,
    private readonly maxSteps: number,
    private readonly maxBound: number,
    /** Try the alternatives below a run shallowest choice point first (else deepest first). */
    private readonly shallowFirst: boolean,
  ) {}

  next(): RunResult | null {
    if (this.done) return null;
    const prefix = this.started ? this.nextPrefix() : [];
    if (prefix === null) {
      this.lastCount = this.count;
      this.count = 0;
      this.started = false;
      if (!this.pruned) this.all = true;
      if (this.bound >= this.maxBound || this.all) {
        this.done = true;
        return null;
      }
      this.bound++;
      this.pruned = false;
      return this.next();
    }
    this.started = true;
    const r = runOnce(this.program, {
      maxSteps: this.maxSteps,
      choose: (enabled, prev, depth) => {
        if (depth < prefix.length) return prefix[depth]!;
        // Keep running the same thread (no preemption) if it can.
        return enabled.includes(prev) ? prev : enabled[0]!;
      },
    });
    this.count++;
    // Preemptions before each depth.
    const before = new Int32Array(r.schedule.length + 1);
    for (let d = 0; d < r.schedule.length; d++) {
      const c = r.choices[d]!;
      before[d + 1] = before[d]! + (c.prev >= 0 && r.schedule[d] !== c.prev && c.enabled.includes(c.prev) && !c.yielded ? 1 : 0);
    }
    this.frames.push({ r, before, low: prefix.length, d: this.shallowFirst ? prefix.length : r.schedule.length - 1, alt: 0 });
    return r;
  }

  /** The prefix of the next schedule, or null when the bound is exhausted. */
  private nextPrefix(): number[] | null {
    for (;;) {
      const f = this.frames[this.frames.length - 1];
      if (f === undefined) return null;
      const p = this.take(f);
      if (p !== null) return p;
      this.frames.pop();
    }
  }

  /** The next untried alternative below run `f` (its choice points after its prefix). */
  private take(f: BoundedFrame): number[] | null {
    const { r, before } = f;
    for (; f.d >= f.low && f.d < r.schedule.length; f.d += this.shallowFirst ? 1 : -1, f.alt = 0) {
      const c = r.choices[f.d]!;
      if (c.enabled.length < 2) continue;
      const alts = orderAlternatives(c.enabled, c.prev);
      while (f.alt < alts.length) {
        const cand = alts[f.alt++]!;
        if (cand === r.schedule[f.d]) continue;
        const pre = before[f.d]! + (c.prev >= 0 && cand !== c.prev && c.enabled.includes(c.prev) && !c.yielded ? 1 : 0);
        if (pre > this.bound) {
          this.pruned = true;
          continue;
        }
        return [...r.schedule.slice(0, f.d), cand];
      }
    }
    return null;
  }
}

interface BoundedFrame {
  readonly r: RunResult;
  readonly before: Int32Array;
  /** The first choice point below the run's prefix; the one being tried, and its next alternative. */
  readonly low: number;
  d: number;
  alt: number;
}

/**
 * Random schedules: a uniform choice at every step, or PCT (`depths`: the depth of each
 * sample in turn): the enabled thread with the highest priority runs, and at d-1 change
 * points spread over the length of the runs seen so far the running thread drops to the
 * lowest priority.
 */
class Sampler {
  schedules = 0;
  private readonly rng: Prng;
  private runLength = 400;

  constructor(
    private readonly program: Program,
    private readonly maxSteps: number,
    seed: number,
    private readonly depths: readonly number[] | null,
  ) {
    this.rng = new Prng(seed);
  }

  /** The PCT depth of the next sample (0 for uniform random). */
  get depth(): number {
    return this.depths === null ? 0 : this.depths[this.schedules % this.depths.length]!;
  }

  next(): RunResult {
    const rng = this.rng;
    const change = this.depths === null ? null : pctChangePoints(rng, this.depth, Math.min(this.runLength, this.maxSteps));
    const prio: number[] = [];
    const r = runOnce(this.program, {
      maxSteps: this.maxSteps,
      choose: (enabled, prev, depth) => {
        if (change === null) return enabled[rng.below(enabled.length)]!;
        for (const t of enabled) if (prio[t] === undefined) prio[t] = 1000 + rng.below(1000);
        if (change.has(depth) && prev >= 0) prio[prev] = -depth;
        let best = enabled[0]!;
        for (const t of enabled) if (prio[t]! > prio[best]!) best = t;
        return best;
      },
    });
    this.schedules++;
    this.runLength = Math.max(this.runLength, r.steps);
    return r;
  }
}

/**
 * Make a failing schedule simpler. Two edits, each kept if a run still breaks the same check
 * with no more preemptions and no more steps (and is simpler by one of the two, or by its
 * number of context switches):
 * - merge: a thread's next run of steps moves up to where it was preempted (one context
 *   switch fewer);
 * - hoist: a run of steps moves earlier into the run before it, so the preempted thread
 *   stops sooner (a violation that needs the other thread early shows up in fewer steps).
 * Runs that diverge from the edited schedule follow it where they can.
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
  const attempt = (edited: readonly (readonly [number, number])[]): boolean => {
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
    const ok =
      r.violation?.check === check &&
      r.preemptions <= best.preemptions &&
      r.schedule.length <= best.schedule.length &&
      (r.preemptions < best.preemptions || r.schedule.length < best.schedule.length || blocksOf(r.schedule).length < blocksOf(best.schedule).length);
    if (ok) best = r;
    return ok;
  };
  for (let improved = true; improved && tries < budget; ) {
    improved = false;
    const blocks = blocksOf(best.schedule);
    for (let i = blocks.length - 1; i >= 1 && tries < budget && !improved; i--) {
      const t = blocks[i - 1]![0];
      const j = blocks.findIndex((b, k) => k > i && b[0] === t);
      if (j < 0) continue;
      improved = attempt([...blocks.slice(0, i - 1), [t, blocks[i - 1]![1] + blocks[j]![1]], ...blocks.slice(i, j), ...blocks.slice(j + 1)]);
    }
    for (let i = 1; i < blocks.length && tries < budget && !improved; i++) {
      const [t, len] = blocks[i - 1]!;
      const [u, n] = blocks[i]!;
      // The run alone, or with every later run of its thread (the thread runs on there).
      const rest = blocks.slice(i + 1);
      const later = rest.reduce((a, b) => a + (b[0] === u ? b[1] : 0), 0);
      const without = rest.filter((b) => b[0] !== u);
      // Stop the preempted thread after 0, 1, 2, 4, ... of its steps.
      for (let keep = 0; keep < len && tries < budget; keep = keep === 0 ? 1 : keep * 2) {
        const head = [...blocks.slice(0, i - 1), [t, keep] as [number, number]];
        if (
          attempt([...head, [u, n], [t, len - keep], ...rest]) ||
          (later > 0 && tries < budget && attempt([...head, [u, n + later], [t, len - keep], ...without]))
        ) {
          improved = true;
          break;
        }
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
