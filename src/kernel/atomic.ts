// SPDX-License-Identifier: GPL-2.0-only
// Single-copy-atomic accesses to page-table memory, each one step. Touching a table that
// was already freed (through RCU or otherwise) is a use-after-free finding.
import { step, type Gen } from "../rt/index.js";
import type { Table } from "../hw/index.js";
import type { World } from "./world.js";

function checkLive(w: World, t: Table, what: string): void {
  if (t.freed) w.report("rcu", `${what} on page table 0x${t.pfn.toString(16)} after it was freed`);
}

/** READ_ONCE(*sptep) */
export function* readOnce(w: World, t: Table, idx: number): Gen<bigint> {
  yield step("read", t.sptep(idx), "r", "READ_ONCE(*sptep)");
  checkLive(w, t, "READ_ONCE");
  return t.spt[idx]!;
}

/** WRITE_ONCE(*sptep, v) */
export function* writeOnce(w: World, t: Table, idx: number, v: bigint): Gen<void> {
  yield* writeOnceObserved(w, t, idx, v);
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

/** xchg(sptep, v): returns the value replaced. */
export function* xchg(w: World, t: Table, idx: number, v: bigint): Gen<bigint> {
  yield step("rmw", t.sptep(idx), "w", "xchg(sptep)");
  checkLive(w, t, "xchg");
  const old = t.spt[idx]!;
  t.spt[idx] = v;
  return old;
}

/** try_cmpxchg64(sptep, &old, new): returns the value found (== old on success). */
export function* cmpxchg(w: World, t: Table, idx: number, old: bigint, v: bigint): Gen<bigint> {
  yield step("rmw", t.sptep(idx), "w", "cmpxchg64(sptep)");
  checkLive(w, t, "cmpxchg64");
  const cur = t.spt[idx]!;
  if (cur === old) t.spt[idx] = v;
  return cur;
}

/** A shared counter update (atomic64_add and friends): commutes with its own kind. */
export function* atomicAdd(counterId: number, label: string): Gen<void> {
  yield step("rmw", counterId, "a", label);
}
