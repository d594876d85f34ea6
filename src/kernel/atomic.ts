// SPDX-License-Identifier: GPL-2.0-only
// Single-copy-atomic accesses to page-table memory, each one step. Touching a table that
// was already freed (through RCU or otherwise) is a use-after-free finding.
import { step, STEPPED, type Gen, type Step } from "../rt/index.js";
import type { Table } from "../hw/index.js";
import { HI_HALF, LO_HALF } from "../spte/index.js";
import type { World } from "./world.js";

function checkLive(w: World, t: Table, what: string): void {
  if (t.freed) w.report("rcu", `${what} on page table 0x${t.pfn.toString(16)} after it was freed`);
}

/**
 * Where a walk keeps the SPTE it read (tdp_iter's old_spte): as its two 32-bit halves, each
 * an int32, so that reading and testing it makes no bigint.
 */
export interface SpteHalves {
  oldLo: number;
  oldHi: number;
}

/**
 * The load of READ_ONCE(*sptep) into `into`: the two halves of one 64-bit word, read as two
 * 32-bit loads. MODEL: single-copy atomic here because only one thread runs at a time (as
 * for every access in this file); a runtime on worker threads would have to load the word
 * whole (Atomics.load on a BigInt64Array view) and split it.
 */
function loadOnceInto(w: World, t: Table, idx: number, into: SpteHalves): void {
  checkLive(w, t, "READ_ONCE");
  const words = t.spt32;
  into.oldLo = words[2 * idx + LO_HALF]! | 0;
  into.oldHi = words[2 * idx + HI_HALF]! | 0;
}

/**
 * READ_ONCE(*sptep), the value going to `into` (walks keep what they read in their
 * iterator). MODEL: one load, as the kernel's; halves only in how the value is kept.
 *
 * The most frequent step of all (every move of a walk is one), so in the stepped build it is
 * not a generator but a reusable two-state iterator (see OneRead); in the direct build it is
 * the load itself.
 */
export function readOnceInto(w: World, t: Table, idx: number, into: SpteHalves): Gen<void> {
  if (!STEPPED) {
    loadOnceInto(w, t, idx, into);
    return undefined as unknown as Gen<void>;
  }
  return OneRead.start(w, t, idx, into, step("read", t.sptep(idx), "r", "READ_ONCE(*sptep)")) as unknown as Gen<void>;
}

/**
 * A READ_ONCE in flight in the stepped build: `yield*` on it announces the step, then, when
 * resumed, performs the load. It behaves as the generator it replaces but allocates nothing
 * but its step: finished ones are kept on a free list and reused, and one is only ever
 * reused after it returned its value, when its consumer no longer holds it. (An abandoned
 * one, of a run stopped midway, is never finished and simply collected.)
 */
class OneRead {
  private static readonly idle: OneRead[] = [];
  private w: World | null = null;
  private t: Table | null = null;
  private idx = 0;
  private into: SpteHalves | null = null;
  private announce: Step | null = null;
  private readonly res: { done: boolean; value: Step | undefined } = { done: false, value: undefined };

  /** `announce` is made by the caller, so that a captured stack names the caller's callers. */
  static start(w: World, t: Table, idx: number, into: SpteHalves, announce: Step): Gen<void> {
    const r = OneRead.idle.pop() ?? new OneRead();
    r.w = w;
    r.t = t;
    r.idx = idx;
    r.into = into;
    r.announce = announce;
    return r as unknown as Gen<void>;
  }

  next(): IteratorResult<Step, void> {
    const res = this.res;
    if (this.announce !== null) {
      res.done = false;
      res.value = this.announce;
      this.announce = null;
      return res as IteratorResult<Step, void>;
    }
    res.done = true;
    loadOnceInto(this.w!, this.t!, this.idx, this.into!);
    res.value = undefined;
    this.w = this.t = this.into = null;
    OneRead.idle.push(this);
    return res as IteratorResult<Step, void>;
  }

  return(value: void): IteratorResult<Step, void> {
    // Abandoned by its consumer: not reused (the consumer may still hold it).
    this.announce = null;
    return { done: true, value };
  }

  throw(e: unknown): never {
    this.announce = null;
    throw e;
  }

  [Symbol.iterator](): this {
    return this;
  }
}

/** WRITE_ONCE(*sptep, v), v given as its halves (one store: see cmpxchgInto()). */
export function* writeOnce(w: World, t: Table, idx: number, vLo: number, vHi: number): Gen<void> {
  yield step("write", t.sptep(idx), "w", "WRITE_ONCE(*sptep)");
  checkLive(w, t, "WRITE_ONCE");
  const words = t.spt32;
  words[2 * idx + LO_HALF] = vLo;
  words[2 * idx + HI_HALF] = vHi;
}

/**
 * WRITE_ONCE(*sptep, v) that also tells the model what it overwrote. The kernel's plain
 * store returns nothing; checks use the value to see what a non-atomic writer destroyed.
 */
export function* writeOnceObserved(w: World, t: Table, idx: number, v: bigint): Gen<bigint> {
  yield step("write", t.sptep(idx), "w", "WRITE_ONCE(*sptep)");
  checkLive(w, t, "WRITE_ONCE");
  const old = t.spt[idx]!;
  t.spt[idx] = v;
  return old;
}

/** xchg(sptep, v), v given as its halves; the value replaced goes to `into`. */
export function* xchgInto(w: World, t: Table, idx: number, vLo: number, vHi: number, into: SpteHalves): Gen<void> {
  yield step("rmw", t.sptep(idx), "w", "xchg(sptep)");
  checkLive(w, t, "xchg");
  const words = t.spt32;
  into.oldLo = words[2 * idx + LO_HALF]! | 0;
  into.oldHi = words[2 * idx + HI_HALF]! | 0;
  words[2 * idx + LO_HALF] = vLo;
  words[2 * idx + HI_HALF] = vHi;
}

/**
 * try_cmpxchg64(sptep, &iter->old_spte, new) as the TDP MMU calls it: true if the SPTE held
 * the old value and now holds the new one (halves `vLo`, `vHi`); false, with the value
 * found in `into`, if not. MODEL: the two 32-bit stores are one atomic step, as every
 * access here (one thread runs at a time); a runtime on worker threads would need
 * Atomics.compareExchange on the whole word.
 */
export function* cmpxchgInto(w: World, t: Table, idx: number, into: SpteHalves, vLo: number, vHi: number): Gen<boolean> {
  yield step("rmw", t.sptep(idx), "w", "cmpxchg64(sptep)");
  checkLive(w, t, "cmpxchg64");
  const words = t.spt32;
  const lo = words[2 * idx + LO_HALF]! | 0;
  const hi = words[2 * idx + HI_HALF]! | 0;
  if (lo === into.oldLo && hi === into.oldHi) {
    words[2 * idx + LO_HALF] = vLo;
    words[2 * idx + HI_HALF] = vHi;
    return true;
  }
  into.oldLo = lo;
  into.oldHi = hi;
  return false;
}
