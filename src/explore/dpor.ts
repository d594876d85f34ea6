// SPDX-License-Identifier: GPL-2.0-only
// Exhaustive search with dynamic partial-order reduction: of all schedules that only differ
// in the order of commuting steps (one Mazurkiewicz trace), run one.
//
// The algorithm is source-set DPOR with sleep sets (Abdulla, Aronis, Jonsson and Sagonas,
// POPL 2014), stateless: every schedule is re-executed from the start. Races are found
// with vector clocks among the steps of each run. For a race between step i of thread q
// and a later step d of thread p, the steps after i that do not depend on i, then d, are
// the reversed order to try; one thread that can start it is added to the choices still
// to try just before i, unless one is there already. A step that can block (a spinlock or
// mutex, the slow path of a queued rwlock, a wait) races with every earlier step it
// depends on and does not already follow: it may not have been able to run right before
// the latest one. A lock acquisition leaves out the steps another thread made while
// holding that lock in a conflicting mode: it could not have run right before those.
//
// A transition is one announced step plus everything the thread does until its next
// announcement. Its footprint is the announced object plus what the code touched (see
// `touch` in rt). Two footprints conflict on a common object unless both only read it or
// both only made commuting updates ("a"). Lock acquisitions race with each other (read
// acquisitions do not race among themselves); releases only order what follows.
import type { Step } from "../rt/index.js";
import { ModelBug, runOnce, type Program, type RunResult } from "./run.js";

const R = 0;
const W = 1;
const A = 2;

/** What one transition touched. */
export interface Footprint {
  /** Commutes with nothing (a scheduling point, a flush, a grace period, a wait). */
  readonly all: boolean;
  /** Pairs of object and mode (0 read, 1 write, 2 commuting update). */
  readonly objs: readonly number[];
  /**
   * A 64-bit Bloom filter of the objects (two 32-bit halves): footprints with no bit in
   * common share no object.
   */
  readonly mask: number;
  readonly mask2: number;
  /** The lock taken or released, or 0. */
  readonly lock: number;
  readonly lockWrite: boolean;
  readonly acquire: boolean;
}

const modeCode = (m: Step["mode"]): number => (m === "r" ? R : m === "w" ? W : A);

export function footprintOf(s: Step, touchedObjs: readonly number[], all: boolean, lockQueued = false): Footprint {
  // A lock step that only queued took no lock: what it did is in what it touched.
  const isLock = (s.kind === "lock" && !lockQueued) || s.kind === "unlock";
  const objs: number[] = [];
  if (s.kind !== "lock" && s.kind !== "unlock") objs.push(s.obj, modeCode(s.mode));
  for (let i = 0; i < touchedObjs.length; i++) objs.push(touchedObjs[i]!);
  let mask = 0;
  let mask2 = 0;
  for (let i = 0; i < objs.length; i += 2) {
    const b = Math.imul(objs[i]!, 0x9e3779b1) >>> 26;
    if (b < 32) mask |= 1 << b;
    else mask2 |= 1 << (b - 32);
  }
  return {
    // A spin may run only after another thread moved (the scheduler's fairness): it depends
    // on every step. A wait states what its condition reads as its object and touches.
    all: all || s.spin === true,
    objs,
    mask,
    mask2,
    lock: isLock ? s.obj : 0,
    lockWrite: s.mode === "w",
    acquire: s.kind === "lock",
  };
}

/** Do two transitions (of different threads) fail to commute? */
export function dependent(f: Footprint, g: Footprint): boolean {
  if (f.all || g.all) return true;
  if (f.lock !== 0 && f.lock === g.lock && (f.lockWrite || g.lockWrite)) return true;
  if ((f.mask & g.mask) === 0 && (f.mask2 & g.mask2) === 0) return false;
  const a = f.objs;
  const b = g.objs;
  for (let i = 0; i < a.length; i += 2)
    for (let j = 0; j < b.length; j += 2) {
      if (a[i] !== b[j]) continue;
      const x = a[i + 1]!;
      const y = b[j + 1]!;
      if (!((x === R && y === R) || (x === A && y === A))) return true;
    }
  return false;
}

interface Node {
  readonly enabled: readonly number[];
  thread: number;
  fp: Footprint | null;
  /** Threads still to try here (besides `thread`), and those already tried. */
  backtrack: number[] | null;
  /** Threads explored here, with their transitions' footprints (null: none yet). */
  done: Map<number, Footprint> | null;
  /** Threads whose transition here leads only to traces already explored (null: none). */
  readonly sleep: Map<number, Footprint> | null;
}

const inBacktrack = (n: Node, t: number): boolean =>
  n.thread === t || (n.backtrack !== null && n.backtrack.includes(t)) || n.done?.has(t) === true;
const addBacktrack = (n: Node, t: number): void => {
  if (!inBacktrack(n, t)) (n.backtrack ??= []).push(t);
};

/** Per object: the last write, and reads and commuting updates since, per thread (-1: none). */
interface ObjRec {
  w: number;
  reads: number[];
  adds: number[];
}

// Kinds of undo-log entries.
const U_OBJ_NEW = 0;
const U_OBJ_W = 1;
const U_OBJ_R = 2;
const U_OBJ_A = 3;
const U_LOCK_NEW = 4;
const U_LOCK_W = 5;
const U_LOCK_R = 6;
const U_LOCK_REL = 7;

/** Per lock: the last write acquisition, read acquisitions since, releases since. */
interface LockRec {
  wAcq: number;
  rAcqs: number[];
  rels: number[];
  lastWriteRel: number;
}

/**
 * A map from footprint object ids (32-bit integers) to records, in pages of 512 ids: the
 * SPTEs of one table share a page, and a walk's consecutive steps mostly hit the page of
 * the step before, which is looked up without hashing.
 */
class ObjTable<T> {
  private readonly pages = new Map<number, (T | undefined)[]>();
  private lastKey = NaN;
  private last: (T | undefined)[] = [];

  private page(o: number, make: boolean): (T | undefined)[] | undefined {
    const k = o >> 9;
    if (k === this.lastKey) return this.last;
    let p = this.pages.get(k);
    if (p === undefined) {
      if (!make) return undefined;
      this.pages.set(k, (p = []));
    }
    this.lastKey = k;
    this.last = p;
    return p;
  }

  get(o: number): T | undefined {
    return this.page(o, false)?.[o & 511];
  }

  set(o: number, v: T): void {
    if ((o | 0) !== o) throw new ModelBug(`footprint object id ${o} is not a 32-bit integer`);
    this.page(o, true)![o & 511] = v;
  }

  delete(o: number): void {
    const p = this.page(o, false);
    if (p !== undefined) p[o & 511] = undefined;
  }
}

/** Happens-before and race detection over one run. */
export class RaceTracker {
  private readonly vc: number[][] = [];
  private readonly count: number[] = [];
  private readonly tThread: number[] = [];
  private readonly tLocal: number[] = [];
  private readonly tVc: number[][] = [];
  private readonly tFp: Footprint[] = [];
  /**
   * After each transition: a lock its thread holds for write, one it holds for read (0:
   * none known). One of each is enough: forgetting a lock only makes `add()` keep more.
   */
  private readonly tHoldW: number[] = [];
  private readonly tHoldR: number[] = [];
  private readonly byThread: number[][] = [];
  private readonly lastOf: number[] = [];
  private readonly lastAll: number[] = [];
  private readonly objs = new ObjTable<ObjRec>();
  private readonly locks = new Map<number, LockRec>();
  /**
   * What `records()` changed, newest last, so `truncate()` can take it back. Each entry:
   * its kind (U_*), the record, a key or thread, an old index and the old arrays.
   * `undoFrom[d]`: where the entries of transition d start.
   */
  private readonly uKind: number[] = [];
  private readonly uRec: (ObjRec | LockRec)[] = [];
  private readonly uKey: number[] = [];
  private readonly uOld: number[] = [];
  private readonly uArr1: (number[] | null)[] = [];
  private readonly uArr2: (number[] | null)[] = [];
  private readonly undoFrom: number[] = [];
  private readonly cands: number[] = [];
  private readonly joins: number[] = [];
  private readonly cand: number[] = [];

  /**
   * Record transition `d` of thread `p` and push onto `races` the earlier transitions it
   * races with (it depends on them, and on nothing that depends on them). If `d` can
   * block, also every earlier transition of another thread that it depends on and does not
   * already follow: `d` may not have been able to run right before the latest one.
   */
  add(d: number, p: number, f: Footprint, blocking: boolean, races: number[]): void {
    const cands = this.cands;
    cands.length = 0;
    const joins = this.joins;
    joins.length = 0;
    if (f.all) {
      for (let q = 0; q < this.lastOf.length; q++) if (q !== p && this.lastOf[q] !== undefined) cands.push(this.lastOf[q]!);
    } else {
      for (let q = 0; q < this.lastAll.length; q++) if (q !== p && this.lastAll[q] !== undefined) cands.push(this.lastAll[q]!);
      for (let i = 0; i < f.objs.length; i += 2) {
        const rec = this.objs.get(f.objs[i]!);
        if (rec === undefined) continue;
        const m = f.objs[i + 1]!;
        if (rec.w >= 0) cands.push(rec.w);
        if (m !== A) pushAll(cands, rec.adds);
        if (m !== R) pushAll(cands, rec.reads);
      }
      if (f.lock !== 0) {
        const l = this.locks.get(f.lock);
        if (l !== undefined && f.acquire) {
          if (l.wAcq >= 0) cands.push(l.wAcq);
          if (f.lockWrite) {
            pushAll(cands, l.rAcqs);
            pushAll(joins, l.rels);
          } else if (l.lastWriteRel >= 0) joins.push(l.lastWriteRel);
        }
      }
    }
    const vcp = (this.vc[p] ??= []);
    if (!blocking) {
      for (const i of cands) {
        const q = this.tThread[i]!;
        if (q !== p && (vcp[q] ?? 0) < this.tLocal[i]! && !races.includes(i)) races.push(i);
      }
    } else {
      // Every transition of another thread that `d` depends on and does not already follow.
      // Earlier transitions of the same thread are dependent through program order only if
      // `d` touches everything; otherwise walk back from each candidate. If `d` takes a
      // lock, it can never run right before a transition made while the other thread holds
      // that lock in a conflicting mode (they are never co-enabled): those are left out.
      const takes = f.acquire && f.lock !== 0 ? f.lock : 0;
      for (const i of cands) {
        const q = this.tThread[i]!;
        if (q === p) continue;
        const mine = this.byThread[q]!;
        for (let k = this.tLocal[i]! - 1; k >= (vcp[q] ?? 0); k--) {
          const j = mine[k]!;
          if (j !== i && takes !== 0 && k > 0) {
            const before = mine[k - 1]!;
            if (this.tHoldW[before] === takes || (f.lockWrite && this.tHoldR[before] === takes)) continue;
          }
          if (j === i || f.all || dependent(f, this.tFp[j]!)) races.push(j);
        }
      }
    }
    for (const i of cands) joinInto(vcp, this.tVc[i]!);
    for (const i of joins) joinInto(vcp, this.tVc[i]!);
    const c = (this.count[p] = (this.count[p] ?? 0) + 1);
    vcp[p] = c;
    this.tThread[d] = p;
    this.tLocal[d] = c;
    this.tVc[d] = vcp.slice();
    this.tFp[d] = f;
    const prev = this.lastOf[p];
    let holdW = prev === undefined ? 0 : this.tHoldW[prev]!;
    let holdR = prev === undefined ? 0 : this.tHoldR[prev]!;
    if (f.lock !== 0) {
      if (f.acquire) {
        if (f.lockWrite) holdW = f.lock;
        else holdR = f.lock;
      } else if (holdW === f.lock) holdW = 0;
      else if (holdR === f.lock) holdR = 0;
    }
    this.tHoldW[d] = holdW;
    this.tHoldR[d] = holdR;
    (this.byThread[p] ??= []).push(d);
    this.lastOf[p] = d;
    if (f.all) this.lastAll[p] = d;
    this.records(d, p, f);
  }

  /** Transitions recorded. */
  get length(): number {
    return this.tThread.length;
  }

  /**
   * Forget every transition from `from` on: the next run replays the first `from` of this
   * one (the same steps, by determinism) and goes on differently.
   */
  truncate(from: number): void {
    const n = this.tThread.length;
    if (from >= n) return;
    this.tThread.length = from;
    this.tLocal.length = from;
    this.tVc.length = from;
    this.tFp.length = from;
    this.tHoldW.length = from;
    this.tHoldR.length = from;
    for (let p = 0; p < this.byThread.length; p++) {
      const mine = this.byThread[p];
      if (mine === undefined) continue;
      while (mine.length > 0 && mine[mine.length - 1]! >= from) mine.pop();
      const last = mine[mine.length - 1];
      this.count[p] = mine.length;
      if (last === undefined) {
        delete this.lastOf[p];
        delete this.lastAll[p];
        this.vc[p] = [];
        continue;
      }
      this.lastOf[p] = last;
      this.vc[p] = this.tVc[last]!.slice();
      let k = mine.length - 1;
      while (k >= 0 && !this.tFp[mine[k]!]!.all) k--;
      if (k >= 0) this.lastAll[p] = mine[k]!;
      else delete this.lastAll[p];
    }
    // The per-object and per-lock records, as they were before transition `from`.
    const u = this.undoFrom[from]!;
    for (let k = this.uKind.length - 1; k >= u; k--) {
      const rec = this.uRec[k]!;
      const key = this.uKey[k]!;
      const old = this.uOld[k]!;
      switch (this.uKind[k]!) {
        case U_OBJ_NEW:
          this.objs.delete(key);
          break;
        case U_LOCK_NEW:
          this.locks.delete(key);
          break;
        case U_OBJ_W: {
          const r = rec as ObjRec;
          r.w = old;
          r.reads = this.uArr1[k]!;
          r.adds = this.uArr2[k]!;
          break;
        }
        case U_OBJ_R:
          (rec as ObjRec).reads[key] = old;
          break;
        case U_OBJ_A:
          (rec as ObjRec).adds[key] = old;
          break;
        case U_LOCK_W: {
          const l = rec as LockRec;
          l.wAcq = old;
          l.rAcqs = this.uArr1[k]!;
          l.rels = this.uArr2[k]!;
          break;
        }
        case U_LOCK_R:
          (rec as LockRec).rAcqs[key] = old;
          break;
        case U_LOCK_REL: {
          const l = rec as LockRec;
          l.rels.pop();
          l.lastWriteRel = old;
          break;
        }
      }
    }
    this.uKind.length = this.uRec.length = this.uKey.length = this.uOld.length = this.uArr1.length = this.uArr2.length = u;
    this.undoFrom.length = from;
  }

  private undo(kind: number, rec: ObjRec | LockRec, key: number, old: number, arr1: number[] | null, arr2: number[] | null): void {
    this.uKind.push(kind);
    this.uRec.push(rec);
    this.uKey.push(key);
    this.uOld.push(old);
    this.uArr1.push(arr1);
    this.uArr2.push(arr2);
  }

  /** Update the per-object and per-lock records with transition `d` of thread `p`. */
  private records(d: number, p: number, f: Footprint): void {
    this.undoFrom[d] = this.uKind.length;
    for (let i = 0; i < f.objs.length; i += 2) {
      const o = f.objs[i]!;
      let rec = this.objs.get(o);
      if (rec === undefined) {
        this.objs.set(o, (rec = { w: -1, reads: [], adds: [] }));
        this.undo(U_OBJ_NEW, rec, o, 0, null, null);
      }
      const m = f.objs[i + 1]!;
      if (m === W) {
        this.undo(U_OBJ_W, rec, 0, rec.w, rec.reads, rec.adds);
        rec.w = d;
        rec.reads = [];
        rec.adds = [];
      } else if (m === R) {
        this.undo(U_OBJ_R, rec, p, setAt(rec.reads, p, d), null, null);
      } else this.undo(U_OBJ_A, rec, p, setAt(rec.adds, p, d), null, null);
    }
    if (f.lock !== 0) {
      let l = this.locks.get(f.lock);
      if (l === undefined) {
        this.locks.set(f.lock, (l = { wAcq: -1, rAcqs: [], rels: [], lastWriteRel: -1 }));
        this.undo(U_LOCK_NEW, l, f.lock, 0, null, null);
      }
      if (!f.acquire) {
        this.undo(U_LOCK_REL, l, 0, l.lastWriteRel, null, null);
        l.rels.push(d);
        if (f.lockWrite) l.lastWriteRel = d;
      } else if (f.lockWrite) {
        this.undo(U_LOCK_W, l, 0, l.wAcq, l.rAcqs, l.rels);
        l.wAcq = d;
        l.rAcqs = [];
        l.rels = [];
      } else this.undo(U_LOCK_R, l, p, setAt(l.rAcqs, p, d), null, null);
    }
  }

  /** Does transition a happen before transition b? */
  private hb(a: number, b: number): boolean {
    return (this.tVc[b]![this.tThread[a]!] ?? 0) >= this.tLocal[a]!;
  }

  /**
   * The threads that can start the reversal of race (i, d): of the transitions after i that
   * do not depend on i, followed by d, those that nothing earlier in that sequence precedes.
   */
  initials(i: number, d: number): number[] {
    // Within a thread, the transitions after i that do not follow i come before those that
    // do: each thread's candidate is its first transition after i, if that does not follow
    // i (for d's thread, d itself when it has none before d). A candidate is an initial if
    // no earlier candidate happens before it.
    const p = this.tThread[d]!;
    const cand = this.cand;
    cand.length = 0;
    for (let t = 0; t < this.byThread.length; t++) {
      const mine = this.byThread[t];
      if (mine === undefined) continue;
      let lo = 0;
      let hi = mine.length;
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if (mine[m]! <= i) lo = m + 1;
        else hi = m;
      }
      const e = mine[lo];
      if (e !== undefined && e < d && !this.hb(i, e)) cand.push(e);
      else if (t === p) cand.push(d);
    }
    cand.sort((a, b) => a - b);
    const out: number[] = [];
    for (let k = 0; k < cand.length; k++) {
      const e = cand[k]!;
      let first = true;
      for (let j = 0; j < k && first; j++) if (this.hb(cand[j]!, e)) first = false;
      if (first) out.push(this.tThread[e]!);
    }
    return out;
  }
}

/** Per-thread slots: -1 for none. */
function pushAll(out: number[], slots: readonly number[]): void {
  for (let i = 0; i < slots.length; i++) if (slots[i]! >= 0) out.push(slots[i]!);
}

/** Set slot `p` (growing the array with -1s, so it stays dense); returns the old value. */
function setAt(slots: number[], p: number, v: number): number {
  while (slots.length <= p) slots.push(-1);
  const old = slots[p]!;
  slots[p] = v;
  return old;
}

function joinInto(into: number[], from: readonly number[]): void {
  for (let k = 0; k < from.length; k++) if ((into[k] ?? 0) < from[k]!) into[k] = from[k]!;
}

export interface DporOptions {
  readonly maxSteps: number;
  readonly overBudget: () => boolean;
  /** After each schedule: schedules so far. */
  readonly progress?: (schedules: number) => void;
}

export interface DporResult {
  /** The run that broke a check, if any. */
  readonly failing: RunResult | null;
  readonly schedules: number;
  readonly steps: number;
  /** Schedules that ran to the end: one per trace explored. */
  readonly traces: number;
  /** Schedules abandoned because every thread that could run was asleep. */
  readonly cut: number;
  /** True if the whole tree was explored (or a violation found). */
  readonly complete: boolean;
}

/**
 * The search as an object that runs one schedule per `next()`, so the explorer can take
 * turns between it and other searches.
 */
export class DporSearch {
  private readonly stack: Node[] = [];
  private readonly races = new RaceTracker();
  schedules = 0;
  steps = 0;
  traces = 0;
  cut = 0;
  /** True once every trace has been explored. */
  complete = false;

  constructor(
    private readonly program: Program,
    private readonly maxSteps: number,
  ) {}

  /** Run the next schedule; null when there is none left. */
  next(): RunResult | null {
    if (this.complete) return null;
    const stack = this.stack;
    // The run replays the stack up to its top node, whose thread is new. The race tracker
    // keeps what it learned of that prefix from the runs before.
    const from = Math.max(0, stack.length - 1);
    const races = this.races;
    races.truncate(from);
    const found: number[] = [];
    let depth = from;
    const r = runOnce(this.program, {
      maxSteps: this.maxSteps,
      footprintFrom: from,
      choose: (enabled, prev, d) => {
        const known = stack[d];
        if (known !== undefined) {
          if (!sameThreads(known.enabled, enabled))
            throw new ModelBug(`nondeterministic program: at step ${d} threads [${enabled.join(",")}] can run, before [${known.enabled.join(",")}]`);
          return known.thread;
        }
        let sleep: Map<number, Footprint> | null = null;
        const parent = stack[d - 1];
        if (parent !== undefined) {
          const pf = parent.fp!;
          for (const m of [parent.sleep, parent.done])
            if (m !== null) for (const [u, f] of m) if (u !== parent.thread && !dependent(f, pf)) (sleep ??= new Map()).set(u, f);
        }
        let t = -1;
        if (enabled.includes(prev) && sleep?.has(prev) !== true) t = prev;
        else for (const u of enabled) if (sleep?.has(u) !== true) { t = u; break; }
        if (t < 0) return -1;
        // runOnce hands over a fresh `enabled` array at every step: keep it.
        stack.push({ enabled, thread: t, fp: null, backtrack: null, done: null, sleep });
        return t;
      },
      footprint: (p, s, objs, all, lockQueued) => {
        const f = footprintOf(s, objs, all, lockQueued);
        const d = depth++;
        stack[d]!.fp = f;
        found.length = 0;
        races.add(d, p, f, s.enabled !== undefined || s.spin === true, found);
        for (const i of found) {
          // To reverse the race, some thread must run first at i: any thread whose next
          // transition there starts the reversed sequence will do (a source set).
          const node = stack[i]!;
          const initials = races.initials(i, d);
          if (initials.some((q) => inBacktrack(node, q))) continue;
          const q = initials.includes(p) ? p : initials[0]!;
          if (node.enabled.includes(q)) addBacktrack(node, q);
          else for (const u of node.enabled) addBacktrack(node, u);
        }
      },
    });
    this.schedules++;
    this.steps += r.steps;
    if (r.violation !== null) {
      this.complete = true;
      return r;
    }
    if (r.cut === true) this.cut++;
    else this.traces++;
    // Backtrack: the deepest node with a choice not yet tried and not asleep.
    for (;;) {
      const node = stack[stack.length - 1];
      if (node === undefined) {
        this.complete = true;
        return r;
      }
      if (node.fp !== null) (node.done ??= new Map()).set(node.thread, node.fp);
      let next = -1;
      if (node.backtrack !== null)
        for (const u of node.backtrack) if (node.done?.has(u) !== true && node.sleep?.has(u) !== true) { next = u; break; }
      if (next >= 0) {
        node.thread = next;
        node.fp = null;
        return r;
      }
      stack.pop();
    }
  }
}

/** Explore every trace (up to commuting steps) of `program`, or until a run breaks a check. */
export function dpor(program: Program, o: DporOptions): DporResult {
  const search = new DporSearch(program, o.maxSteps);
  const result = (failing: RunResult | null, complete: boolean): DporResult => ({
    failing,
    schedules: search.schedules,
    steps: search.steps,
    traces: search.traces,
    cut: search.cut,
    complete,
  });
  for (;;) {
    if (search.complete) return result(null, true);
    if (o.overBudget()) return result(null, false);
    const r = search.next()!;
    o.progress?.(search.schedules);
    if (r.violation !== null) return result(r, true);
  }
}

function sameThreads(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
