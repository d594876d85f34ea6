// SPDX-License-Identifier: GPL-2.0-only
// RCU, classic flavour: read-side sections per thread, call_rcu() callbacks that run once
// every reader that was inside a section at call time has left it.
//
// MODEL: a grace period ends at the rcu_read_unlock() of the last such reader (or at once
// if there was none), and the callbacks run right there. The real kernel runs them later
// from softirq; running them as early as is legal is the hardest case for the walkers.
import { step, touchAll, type Gen } from "../rt/index.js";
import type { World } from "./world.js";

interface Pending {
  readonly waitFor: Set<number>;
  readonly cb: () => void;
  readonly what: string;
}

export class Rcu {
  readonly id: number;
  /** Read-side nesting per thread (thread ids are small integers). */
  private readonly depth: number[] = [];
  /** Threads with depth > 0, for call_rcu()'s snapshot. */
  private readers = 0;
  private pending: Pending[] = [];

  constructor(private readonly w: World) {
    this.id = w.objId();
  }

  inReadSide(thread = this.w.current): boolean {
    return (this.depth[thread] ?? 0) > 0;
  }

  /** rcu_read_lock() */
  *rcuReadLock(): Gen<void> {
    yield step("rcu", this.id, "a", "rcu_read_lock()");
    const t = this.w.current;
    const d = this.depth[t] ?? 0;
    if (d === 0) this.readers++;
    this.depth[t] = d + 1;
  }

  /** rcu_read_unlock() */
  *rcuReadUnlock(): Gen<void> {
    yield step("rcu", this.id, "a", "rcu_read_unlock()");
    const t = this.w.current;
    const d = this.depth[t] ?? 0;
    if (d <= 0) {
      this.w.report("rcu", "rcu_read_unlock() without rcu_read_lock()");
      return;
    }
    this.depth[t] = d - 1;
    if (d > 1) return;
    this.readers--;
    this.quiescent(t);
  }

  /** call_rcu(): run `cb` after a grace period. */
  *callRcu(what: string, cb: () => void): Gen<void> {
    yield step("rcu", this.id, "w", `call_rcu(${what})`);
    const waitFor = new Set<number>();
    if (this.readers > 0) this.depth.forEach((d, t) => d > 0 && waitFor.add(t));
    if (waitFor.size === 0) {
      touchAll();
      cb();
    }
    else this.pending.push({ waitFor, cb, what });
  }

  /** rcu_barrier(): wait for every queued callback. Legal only outside read-side sections. */
  *rcuBarrier(): Gen<void> {
    yield step("rcu", this.id, "w", "rcu_barrier()");
    if (this.inReadSide()) this.w.report("rcu", "rcu_barrier() inside a read-side section");
    touchAll();
    const ready = this.pending;
    this.pending = [];
    for (const p of ready) p.cb();
  }

  private quiescent(t: number): void {
    if (this.pending.length === 0) return;
    const still: Pending[] = [];
    const ready: Pending[] = [];
    for (const p of this.pending) {
      p.waitFor.delete(t);
      (p.waitFor.size === 0 ? ready : still).push(p);
    }
    this.pending = still;
    // The callbacks free page tables: this step now commutes with nothing.
    if (ready.length > 0) touchAll();
    for (const p of ready) p.cb();
  }

  get pendingCallbacks(): number {
    return this.pending.length;
  }
}
