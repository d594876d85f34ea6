// SPDX-License-Identifier: GPL-2.0-only
// Everything that is global to one modelled host: the running thread, the allocator,
// physical memory, and the sink for rule violations.
import { stateless } from "../base/index.js";
import { PhysMem } from "../hw/index.js";
import { PageAllocator } from "./page_alloc.js";

/** A rule of the kernel broken by the modelled code. */
export interface Finding {
  readonly kind: "finding";
  /** The invariant or kernel check that fired: "lockdep", "warn", "bug", "rcu", ... */
  readonly check: string;
  readonly message: string;
  /** Innermost first: the modelled kernel functions on the stack when it fired. */
  readonly chain: readonly string[];
  readonly thread: number;
}

/** BUG() and friends: the modelled kernel cannot go on. */
export class KernelBug extends Error {
  constructor(readonly finding: Finding) {
    super(`${finding.check}: ${finding.message}`);
  }
}

const neverResched = stateless(() => false);

export class World {
  /** The thread whose step runs now; the scheduler sets it with `runStep()`. */
  current = 0;
  /** Steps taken so far, in all and per thread (for "did anybody else move?"). */
  private stepsTotal = 0;
  private readonly stepsBy: number[] = [];
  readonly phys = new PhysMem();
  readonly pages = new PageAllocator(this);
  readonly findings: Finding[] = [];
  /**
   * need_resched(), asked at every voluntary scheduling point.
   * MODEL: the timer never sets it; a walk yields only when a lock it holds is contended.
   */
  needResched: (thread: number, what: string) => boolean = neverResched;
  /** Called for every finding; the explorer stops an execution here. */
  onFinding: ((f: Finding) => void) | null = null;
  private nextObjId = 1 << 20;

  /** The scheduler is about to run one step of `thread`. */
  runStep(thread: number): void {
    this.current = thread;
    this.stepsTotal++;
    this.stepsBy[thread] = (this.stepsBy[thread] ?? 0) + 1;
  }

  /** Steps taken by threads other than `thread` so far. */
  stepsByOthers(thread: number): number {
    return this.stepsTotal - (this.stepsBy[thread] ?? 0);
  }

  /** A fresh identity for a lock or counter, for step footprints. */
  objId(): number {
    return this.nextObjId++;
  }

  report(check: string, message: string): Finding {
    const f: Finding = { kind: "finding", check, message, chain: callChain(), thread: this.current };
    this.findings.push(f);
    this.onFinding?.(f);
    return f;
  }

  /** WARN_ON(): report and carry on. Returns the condition, as the kernel macro does. */
  warnOn(cond: boolean, message: string): boolean {
    if (cond) this.report("warn", message);
    return cond;
  }

  /** BUG_ON(): report and stop this execution. */
  bugOn(cond: boolean, message: string): void {
    if (cond) throw new KernelBug(this.report("bug", message));
  }
}

/**
 * The modelled kernel functions on the current stack, innermost first. Only mirrored
 * functions have kernel-looking names, so the filter keeps the chain in kernel terms.
 */
export function callChain(): string[] {
  return kernelFrames(new Error().stack ?? "").filter(
    (n) => n !== "report" && n !== "warn_on" && n !== "bug_on" && n !== "call_chain" && !n.startsWith("assert"),
  );
}

/** The modelled kernel functions (and kernel services) in a JS stack, innermost first. */
export function kernelFrames(stack: string): string[] {
  const out: string[] = [];
  for (const line of stack.split("\n").slice(1)) {
    const m = /at (?:Generator\.next \()?(?:[\w$]+\.)?([\w$]+) \(.*\/dist\/(?:gen|direct)\/(mmu|kernel|hw)\//.exec(line);
    if (m?.[1] !== undefined) out.push(kernelName(m[1]));
  }
  return out;
}

/** camelCase back to the kernel's snake_case: tdpMmuZapLeafs -> tdp_mmu_zap_leafs. */
export function kernelName(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}
