// SPDX-License-Identifier: GPL-2.0-only
// One execution of a program under a chooser: the machinery every strategy shares.
//
// A program is a factory of executions; an execution is a set of threads (generators of
// steps) plus a check run after every step. The same factory and the same choices always
// give the same run.
import { touched, type Gen, type Step } from "../rt/index.js";

export interface Violation {
  readonly check: string;
  readonly message: string;
}

export interface ThreadSpec {
  readonly name: string;
  readonly body: () => Gen<void>;
}

export interface Execution {
  readonly threads: readonly ThreadSpec[];
  /** The thread about to run (so the model's notion of "current" follows the scheduler). */
  setCurrent(thread: number): void;
  /** After each step: a broken rule, or null. */
  afterStep(thread: number, step: Step): Violation | null;
  /** When every thread is done. */
  atEnd(): Violation | null;
  /** Turn an exception thrown by a thread into a violation (a kernel BUG) or null (ours). */
  classify(e: unknown): Violation | null;
  /**
   * The shared state as "path=value" lines, for checking that steps the explorer treats as
   * commuting really do (see `auditCommutation`).
   */
  stateLines?(): string[];
  /** The run is over and nothing of it will be looked at again: its resources may be reused. */
  dispose?(): void;
}

export type Program = () => Execution;

/** One executed step, for traces. */
export interface StepRecord {
  readonly thread: number;
  readonly step: Step;
  /** Index into `StepRecord[]` of the schedule; filled by observers. */
  readonly index: number;
}

export interface RunResult {
  readonly schedule: number[];
  readonly steps: number;
  readonly violation: Violation | null;
  readonly preemptions: number;
  /** At each step: the enabled threads (for the DFS), and who ran last. */
  readonly choices: { enabled: readonly number[]; prev: number; yielded: boolean }[];
  /** The chooser stopped the run early (partial-order reduction: nothing new below). */
  readonly cut?: boolean;
}

/** Our own machinery broke: not a finding about the kernel. */
export class ModelBug extends Error {
  readonly kind = "model-bug";
}

/** A schedule token that does not fit the program any more. */
export class StaleToken extends Error {
  readonly kind = "usage";
}

export interface RunOptions {
  readonly maxSteps: number;
  /**
   * Pick a thread among `enabled`; `prev` ran the last step (-1 at the start). -1 stops the
   * run here (it is reported with `cut`). When `prev` cannot go on and its step names the
   * threads it waits for, `awaited` holds those of them that can run (else it is empty).
   */
  readonly choose: (enabled: readonly number[], prev: number, depth: number, awaited: readonly number[]) => number;
  readonly observe?: (r: StepRecord) => void;
  /**
   * After each step, with what it touched beyond its announced object (pairs of object and
   * mode 0 r, 1 w, 2 a; `all` when it commutes with nothing; `lockQueued` when a lock step
   * only queued for its lock) and the thread's next step.
   */
  readonly footprint?: (thread: number, step: Step, objs: readonly number[], all: boolean, lockQueued: boolean, next: Step | null) => void;
  /** The first step `footprint` is wanted for (the steps before it replay a known prefix). */
  readonly footprintFrom?: number;
  /** Called with the execution when the chooser stops the run. */
  readonly atCut?: (ex: Execution) => void;
}

const NONE: readonly number[] = [];

/**
 * A voluntary scheduling point (cond_resched()): switching away right after it is what the
 * kernel's scheduler does, not a preemption.
 */
export function isVoluntaryYield(s: Step): boolean {
  return s.kind === "sched" && s.spin !== true && s.enabled === undefined;
}

/** Run one execution to the end, a violation, or the step bound. */
export function runOnce(program: Program, opts: RunOptions): RunResult {
  const ex = program();
  try {
    return run(ex, opts);
  } finally {
    ex.dispose?.();
  }
}

function run(ex: Execution, opts: RunOptions): RunResult {
  const n = ex.threads.length;
  const gens: (Gen<void> | null)[] = [];
  const pending: (Step | null)[] = [];
  const schedule: number[] = [];
  const choices: { enabled: readonly number[]; prev: number; yielded: boolean }[] = [];
  let preemptions = 0;
  const fail = (v: Violation): RunResult => ({ schedule, steps: schedule.length, violation: v, preemptions, choices });
  // Start every thread: run it to its first announced step.
  for (let t = 0; t < n; t++) {
    ex.setCurrent(t);
    const g = ex.threads[t]!.body();
    try {
      const r = g.next();
      gens.push(r.done ? null : g);
      pending.push(r.done ? null : r.value);
    } catch (e) {
      const v = ex.classify(e);
      if (v === null) throw e;
      return fail(v);
    }
  }
  let prev = -1;
  // Whether `prev`'s last step was a voluntary scheduling point (cond_resched()): switching
  // away there is what the kernel's scheduler does, not a preemption.
  let prevYielded = false;
  // For fair yields: the step index of each thread's last spin and last step.
  const lastSpin: number[] = new Array<number>(n).fill(-1);
  const lastStep: number[] = new Array<number>(n).fill(-1);
  const othersSince = (t: number, k: number): boolean => lastStep.some((s, u) => u !== t && s > k);
  // The enabled threads at each step. Consecutive steps mostly have the same ones: they
  // share one array then (nobody may change an array handed out).
  // (`scratch` holds the first `k` entries: no array is reset or allocated per step.)
  const scratch: number[] = new Array<number>(n).fill(0);
  const fair: number[] = new Array<number>(n).fill(0);
  let lastEnabled: readonly number[] = [];
  for (;;) {
    let k = 0;
    let alive = 0;
    let spinning = false;
    for (let t = 0; t < n; t++) {
      const s = pending[t];
      if (s === null || s === undefined) continue;
      alive++;
      if (s.enabled === undefined || s.enabled()) {
        scratch[k++] = t;
        if (s.spin === true) spinning = true;
      }
    }
    // Fairness (a fair yield): a thread that spun may spin again only after some other
    // thread has taken a step, or when nobody else can run. So a spinner still races with
    // the others, but can never starve the thread it waits for.
    let list = scratch;
    if (spinning && k > 1) {
      let j = 0;
      for (let i = 0; i < k; i++) {
        const t = scratch[i]!;
        if (pending[t]!.spin !== true || lastSpin[t]! < 0 || othersSince(t, lastSpin[t]!)) fair[j++] = t;
      }
      // Unless only spinners that just spun can run: then they all may.
      if (j > 0) (list = fair), (k = j);
    }
    let same = k === lastEnabled.length;
    for (let i = 0; same && i < k; i++) same = list[i] === lastEnabled[i];
    const enabled = same ? lastEnabled : (lastEnabled = list.slice(0, k));
    if (alive === 0) {
      const v = ex.atEnd();
      return { schedule, steps: schedule.length, violation: v, preemptions, choices };
    }
    if (enabled.length === 0) {
      const waits = pending.map((s, t) => (s === null ? null : `${ex.threads[t]!.name} waits for ${s!.label}`)).filter((x) => x !== null);
      return fail({ check: "deadlock", message: `no thread can run: ${waits.join("; ")}` });
    }
    if (schedule.length >= opts.maxSteps) return fail({ check: "progress", message: `still running after ${opts.maxSteps} steps` });
    let awaited: readonly number[] = NONE;
    if (prev >= 0) {
      const w = pending[prev]?.waitsFor;
      if (w !== undefined && !enabled.includes(prev)) awaited = w().filter((u) => enabled.includes(u));
    }
    const t = opts.choose(enabled, prev, schedule.length, awaited);
    if (t === -1) {
      opts.atCut?.(ex);
      return { schedule, steps: schedule.length, violation: null, preemptions, choices, cut: true };
    }
    if (!enabled.includes(t)) throw new StaleToken(`thread ${t} cannot run at step ${schedule.length}`);
    choices.push({ enabled, prev, yielded: prevYielded });
    if (prev >= 0 && t !== prev && enabled.includes(prev) && !prevYielded) preemptions++;
    schedule.push(t);
    const s = pending[t]!;
    lastStep[t] = schedule.length - 1;
    if (s.spin === true) lastSpin[t] = schedule.length - 1;
    ex.setCurrent(t);
    let r: IteratorResult<Step, void>;
    const fp = opts.footprint !== undefined && schedule.length > (opts.footprintFrom ?? 0) ? opts.footprint : undefined;
    if (fp !== undefined) {
      touched.on = true;
      touched.objs.length = 0;
      touched.all = false;
      touched.lockQueued = false;
    }
    try {
      r = gens[t]!.next();
    } catch (e) {
      touched.on = false;
      const v = ex.classify(e);
      if (v === null) throw e;
      opts.observe?.({ thread: t, step: s, index: schedule.length - 1 });
      return fail(v);
    }
    touched.on = false;
    pending[t] = r.done ? null : r.value;
    if (r.done) gens[t] = null;
    fp?.(t, s, touched.objs, touched.all, touched.lockQueued, pending[t] ?? null);
    opts.observe?.({ thread: t, step: s, index: schedule.length - 1 });
    const v = ex.afterStep(t, s);
    if (v !== null) return fail(v);
    prev = t;
    prevYielded = isVoluntaryYield(s);
  }
}
