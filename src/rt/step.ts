// SPDX-License-Identifier: GPL-2.0-only
// A step is one visible action on shared state. Engine code announces each step with
// `yield step` *before* performing it, so a scheduler can decide who goes next with the
// footprint in hand. The build also emits a "direct" copy of the engine in which every
// announcement is stripped (scripts/strip-steps.mjs): the same source, no generator cost.

/** What a step does; the scheduler and partial-order reduction read only this. */
export type StepKind =
  | "read" //        load of a shared word (an SPTE, a counter)
  | "write" //       store
  | "rmw" //         compare-and-swap, exchange, atomic or/and/add
  | "lock" //        acquire (mode says read/write/exclusive)
  | "unlock"
  | "rcu" //         rcu_read_lock / rcu_read_unlock / call_rcu / grace period
  | "flush" //       TLB flush
  | "sched"; //      a voluntary scheduling point (cond_resched, spin on a frozen SPTE)

/** "a": a commuting update (a counter add, a read-side nesting count): commutes with other "a"s. */
export type AccessMode = "r" | "w" | "a";

export interface Step {
  readonly kind: StepKind;
  /** The object touched: an SPTE slot address, a lock id, a counter id. */
  readonly obj: number;
  readonly mode: AccessMode;
  /** Kernel-terms label for traces, e.g. "write_lock(mmu_lock)". */
  readonly label: string;
  /** False while the step cannot run (a lock held by another thread). */
  readonly enabled?: () => boolean;
  /**
   * A spin or back-off point (a fault retried on a frozen SPTE, cpu_relax()): under a fair
   * scheduler it runs only when no other thread can, so spinning never starves the thread
   * being waited for.
   */
  readonly spin?: boolean;
  /**
   * While the step cannot run: the threads whose steps will let it (the vCPUs a flush waits
   * for). A hint for schedulers that run the awaited thread next, as the kernel's kick does.
   */
  readonly waitsFor?: () => readonly number[];
  /** Where the step was announced (only when `stepDebug.capture` is on: replays for reports). */
  readonly stack?: string;
}

/** Capture the announcing stack of every step: costly, used only to render a counterexample. */
export const stepDebug = { capture: false };

/** An interleavable computation: a generator of steps returning T. */
export type Gen<T> = Generator<Step, T, void>;

export function step(kind: StepKind, obj: number, mode: AccessMode, label: string): Step {
  if (stepDebug.capture) return { kind, obj, mode, label, stack: new Error().stack ?? "" };
  return { kind, obj, mode, label };
}

export function blockingStep(
  kind: StepKind,
  obj: number,
  mode: AccessMode,
  label: string,
  enabled: () => boolean,
  waitsFor?: () => readonly number[],
): Step {
  const s: Step = waitsFor === undefined ? { kind, obj, mode, label, enabled } : { kind, obj, mode, label, enabled, waitsFor };
  return stepDebug.capture ? { ...s, stack: new Error().stack ?? "" } : s;
}

/** A spin point: see Step.spin. */
export function spinStep(obj: number, label: string): Step {
  if (stepDebug.capture) return { kind: "sched", obj, mode: "r", label, spin: true, stack: new Error().stack ?? "" };
  return { kind: "sched", obj, mode: "r", label, spin: true };
}

/**
 * Footprint beyond the announced object: shared state a step's code also reads or writes
 * before the thread's next announcement (a host page's flags, the dirty bitmap, the list of
 * roots). Partial-order reduction treats two steps as commuting only if their footprints do,
 * so every such access must be touched. Recording is on only while an explorer asks.
 */
export const touched = { on: false, objs: [] as number[], all: false, lockQueued: false };

/** Record that the running step also accesses `obj` in `mode`. */
export function touch(obj: number, mode: AccessMode): void {
  if (touched.on) touched.objs.push(obj, mode === "r" ? 0 : mode === "w" ? 1 : 2);
}

// `lockQueued`: the running "lock" step did not take its lock, it only queued for it (the
// lock's slow path follows as a step of its own).

/** Record that the running step touches state too broad to name: it commutes with nothing. */
export function touchAll(): void {
  if (touched.on) touched.all = true;
}

// Footprint objects standing for parts of a lock's state that steps other than its own
// acquire and release read: its queue of waiters (rwlock_needbreak(), arrival), its writer
// and its reader count. Object ids of locks (World.objId(), from 2^20) and SPTEs are
// positive; these are negative, between -2^20 and -2^23 (kernel/footprint.ts has the rest
// of the map). Every id stays within V8's small integers (-2^30 .. 2^30), which keeps the
// explorer's maps and footprint arrays fast.

/** The footprint object for the queue of threads waiting to take lock `lock`. */
export function lockQueueOf(lock: number): number {
  return -lock - 1;
}

/** The footprint object for the writer holding lock `lock`. */
export function lockWriterOf(lock: number): number {
  return -(2 ** 21) - lock - 1;
}

/** The footprint object for the number of readers holding lock `lock`. */
export function lockReadersOf(lock: number): number {
  return -(2 ** 22) - lock - 1;
}
