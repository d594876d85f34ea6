// SPDX-License-Identifier: GPL-2.0-only
// Search by race reversals, fewest preemptions first.
//
// The first run lets each thread go on while it can. Every run is watched for races as the
// partial-order search watches them (dpor.ts): two dependent transitions of different
// threads with nothing ordering them in between. Each race gives new schedules to try: the
// run's choices up to the earlier transition, then a thread that starts the reversed order
// there, or at any earlier step of the same stretch of the earlier thread (a race seen late
// in a stretch often hides one earlier in it: a fault that published a table and then
// filled it races with a zapper on the fill, and only switching before the fill shows what
// the zapper does to a table it was never meant to see). After that, each thread goes on
// while it can; when it cannot, the thread it waits for runs, if it names one, or else
// the lowest-numbered thread, except one switched out at a voluntary scheduling point
// (cond_resched()): that one waits until nothing else can run, as a thread that yielded
// its lock waits behind the others that want it.
//
// The schedules wait in buckets by their number of preemptions; bucket b gets one turn in
// 2^(b+1), so the deeper ones are never starved, and each bucket is first in, first out.
// Against the preemption-bounded search, this tries only the switches that change what
// some step sees: among threads that touch nothing in common (a vCPU faulting in a memslot
// of its own, an ager of other pages) the order costs nothing, where the bounded search
// tries every order of them at every bound. It proves nothing: runs may repeat orders the
// others ran, and the queue is capped.
import { RaceTracker, footprintOf } from "./dpor.js";
import { isVoluntaryYield, runOnce, type Program, type RunResult } from "./run.js";

/** A schedule to try: the first `at` choices of the run `from`, then `thread`. */
interface Reversal {
  readonly from: readonly number[];
  readonly at: number;
  readonly thread: number;
}

/** Reversals with the same number of preemptions, first in first out. */
interface Bucket {
  items: (Reversal | undefined)[];
  head: number;
}

export class RaceSearch {
  /** The most preemptions of any schedule run so far. */
  level = 0;
  schedules = 0;
  /** True once no schedule is left to try. */
  done = false;
  /** Whether some reversal was dropped because the queue was full. */
  pruned = false;
  private readonly buckets: Bucket[] = [];
  private queued = 0;
  private turn = 0;
  private started = false;
  /** Schedule prefixes already queued or run. */
  private readonly seen = new PrefixSet();
  /**
   * The previous run, as the race tracker holds it: its choices, the threads that could run
   * at each step, and where the stretch of its thread that holds each step began.
   */
  private readonly races = new RaceTracker();
  private readonly last: number[] = [];
  private readonly enabledAt: (readonly number[])[] = [];
  private readonly stretchAt: number[] = [];

  constructor(
    private readonly program: Program,
    private readonly maxSteps: number,
    /** At most this many reversals wait. */
    private readonly maxQueued = 200_000,
  ) {}

  next(): RunResult | null {
    if (this.done) return null;
    let prefix: number[] = [];
    if (this.started) {
      const rev = this.take();
      if (rev === null) {
        this.done = true;
        return null;
      }
      prefix = rev.from.slice(0, rev.at);
      prefix.push(rev.thread);
    }
    this.started = true;

    // The run replays its prefix; where that is also the start of the previous run, the race
    // tracker keeps what it learned of it, and only the rest is tracked again (the races
    // within it were queued by that run).
    const races = this.races;
    const schedule = this.last;
    const enabledAt = this.enabledAt;
    const stretchAt = this.stretchAt;
    let common = 0;
    const same = Math.min(prefix.length, schedule.length, races.length);
    while (common < same && prefix[common] === schedule[common]) common++;
    races.truncate(common);
    schedule.length = enabledAt.length = stretchAt.length = common;
    const found: number[] = [];
    // Reversals at each race, then at the earlier steps of its stretch: (position, thread).
    const exact: number[] = [];
    const earlier: number[] = [];
    // Per stretch of one thread's steps and thread to switch to (start * 1024 + thread), the
    // last race in it.
    const reach = new Map<number, number>();
    let depth = common;
    // Whether the last step was a voluntary scheduling point (cond_resched()), and the threads
    // switched out at one.
    let yielded = false;
    const deferred = new Set<number>();
    const r = runOnce(this.program, {
      maxSteps: this.maxSteps,
      footprintFrom: common,
      choose: (enabled, prev, d, awaited) => {
        enabledAt[d] = enabled;
        let t: number;
        if (d < prefix.length) t = prefix[d]!;
        else if (enabled.includes(prev)) t = prev;
        else if (awaited.length > 0) t = awaited[0]!;
        else {
          t = enabled[0]!;
          for (const u of enabled)
            if (!deferred.has(u)) {
              t = u;
              break;
            }
        }
        // A thread switched out at a voluntary scheduling point waits until it is the only
        // one that can run, or a reversal picks it.
        if (yielded && t !== prev && enabled.includes(prev)) deferred.add(prev);
        deferred.delete(t);
        schedule[d] = t;
        stretchAt[d] = d > 0 && schedule[d - 1] === t ? stretchAt[d - 1]! : d;
        return t;
      },
      observe: (rec) => {
        yielded = isVoluntaryYield(rec.step);
      },
      footprint: (p, s, objs, all, lockQueued) => {
        const f = footprintOf(s, objs, all, lockQueued);
        const d = depth++;
        found.length = 0;
        races.add(d, p, f, s.enabled !== undefined || s.spin === true, found);
        for (const i of found) {
          const initials = races.initials(i, d);
          const q = initials.includes(p) ? p : initials[0]!;
          const enabled = enabledAt[i]!;
          if (!enabled.includes(q)) {
            for (const u of enabled) exact.push(i, u);
            continue;
          }
          exact.push(i, q);
          // The stretch's earlier steps are expanded once, after the run, up to its last race.
          const key = stretchAt[i]! * 1024 + q;
          if (q < 1024 && (reach.get(key) ?? -1) < i) reach.set(key, i);
        }
      },
    });
    for (const [key, i] of reach) {
      const q = key % 1024;
      for (let j = i - 1, start = (key - q) / 1024; j >= start; j--) if (enabledAt[j]!.includes(q)) earlier.push(j, q);
    }
    this.schedules++;
    this.level = Math.max(this.level, r.preemptions);
    if (r.violation === null) {
      for (let k = 0; k < earlier.length; k++) exact.push(earlier[k]!);
      this.queue(r, prefix.length, exact);
    }
    return r;
  }

  /**
   * The next reversal: bucket b has one turn in 2^(b+1); an empty bucket's turn goes to the
   * nearest non-empty one below it, or else to the lowest non-empty one.
   */
  private take(): Reversal | null {
    const t = ++this.turn;
    const want = 31 - Math.clz32(t & -t);
    let pick: Bucket | null = null;
    for (let b = 0; b < this.buckets.length; b++) {
      const k = this.buckets[b]!;
      if (k.head === k.items.length) continue;
      if (pick === null || b <= want) pick = k;
      if (b >= want) break;
    }
    if (pick === null) return null;
    const rev = pick.items[pick.head]!;
    pick.items[pick.head++] = undefined;
    if (pick.head > 1024 && pick.head * 2 > pick.items.length) {
      pick.items.splice(0, pick.head);
      pick.head = 0;
    }
    this.queued--;
    return rev;
  }

  /**
   * Queue a run's reversals, fewest preemptions first, leaving out those whose schedule was
   * queued before or that some run already followed: a run's choice at a racing step after
   * its forced prefix is the one a reversal to that thread there would make (another run's
   * race at the same step often asks for it).
   */
  private queue(r: RunResult, forced: number, reversals: readonly number[]): void {
    const schedule = r.schedule;
    // Hashes of the schedule's prefixes and the preemptions before each step.
    const n = schedule.length;
    const h1 = new Int32Array(n + 1);
    const h2 = new Int32Array(n + 1);
    const pre = new Int32Array(n + 1);
    let a = 0x811c9dc5 | 0;
    let b = 0x2545f491;
    let p = 0;
    for (let i = 0; i < n; i++) {
      h1[i] = a;
      h2[i] = b;
      pre[i] = p;
      const t = schedule[i]!;
      if (preempts(r, i, t)) p++;
      a = Math.imul(a ^ t, 0x01000193);
      b = Math.imul(b ^ (t + 0x9e37), 0x85ebca6b) ^ (b >>> 13);
    }
    for (let k = 0; k < reversals.length; k += 2) {
      const i = reversals[k]!;
      const q = reversals[k + 1]!;
      if (this.queued >= this.maxQueued) {
        this.pruned = true;
        return;
      }
      if (i >= forced - 1) this.seen.add(h1[i]!, h2[i]!, i, schedule[i]!);
      if (!this.seen.add(h1[i]!, h2[i]!, i, q)) continue;
      const cost = pre[i]! + (preempts(r, i, q) ? 1 : 0);
      while (this.buckets.length <= cost) this.buckets.push({ items: [], head: 0 });
      this.buckets[cost]!.items.push({ from: schedule, at: i, thread: q });
      this.queued++;
    }
  }
}

/**
 * A set of schedule prefixes, each a pair of 32-bit words mixed from the hashes of its first
 * `i` choices, `i` and the thread that comes next (open addressing, no allocation per key).
 * Two prefixes share a key with a chance of about 2^-64: the search would then skip one.
 */
class PrefixSet {
  private lo = new Int32Array(1 << 12);
  private hi = new Int32Array(1 << 12);
  private size = 0;

  /** Add the key; false if it was there already. */
  add(h1: number, h2: number, i: number, q: number): boolean {
    const lo = h1 ^ Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(q + 1, 0x7feb352d);
    // Never 0: a zero high word marks an empty slot.
    const hi = (h2 ^ Math.imul(q + 1, 0x846ca68b) ^ Math.imul(i, 0x2545f491)) | 1;
    const mask = this.lo.length - 1;
    let k = Math.imul(lo ^ (hi >>> 15), 0x85ebca6b) & mask;
    for (;;) {
      const h = this.hi[k]!;
      if (h === 0) break;
      if (h === hi && this.lo[k] === lo) return false;
      k = (k + 1) & mask;
    }
    this.lo[k] = lo;
    this.hi[k] = hi;
    if (++this.size * 2 > this.lo.length) this.grow();
    return true;
  }

  private grow(): void {
    const { lo, hi } = this;
    this.lo = new Int32Array(lo.length * 2);
    this.hi = new Int32Array(hi.length * 2);
    const mask = this.lo.length - 1;
    for (let j = 0; j < lo.length; j++) {
      if (hi[j] === 0) continue;
      let k = Math.imul(lo[j]! ^ (hi[j]! >>> 15), 0x85ebca6b) & mask;
      while (this.hi[k] !== 0) k = (k + 1) & mask;
      this.lo[k] = lo[j]!;
      this.hi[k] = hi[j]!;
    }
  }
}

/** Is running `t` at step `i` of run `r` a preemption (as the bounded search counts them)? */
function preempts(r: RunResult, i: number, t: number): boolean {
  const c = r.choices[i]!;
  return c.prev >= 0 && t !== c.prev && c.enabled.includes(c.prev) && !c.yielded;
}
