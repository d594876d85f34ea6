// SPDX-License-Identifier: GPL-2.0-only
import type { Gen, Step } from "./step.js";

/** Thrown when a lone thread waits for something only another thread could give it. */
export class SelfDeadlock extends Error {
  readonly kind = "deadlock";
  constructor(readonly step: Step) {
    super(`deadlock: a single thread blocks on ${step.label}`);
  }
}

/**
 * Run one computation to completion with nobody interleaving. The direct build replaces
 * this file with drive.direct.ts, where a computation is already its result.
 */
export function drive<T>(g: Gen<T>): T {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
    const s = r.value;
    if (s.enabled !== undefined && !s.enabled()) throw new SelfDeadlock(s);
  }
}

/** True in the build where steps are announced to a scheduler. */
export const STEPPED = true;

const FALSE_RESULT: IteratorResult<Step, false> = Object.freeze({ done: true, value: false });
const falseNow = {
  next: () => FALSE_RESULT,
  return: () => FALSE_RESULT,
  throw: (e: unknown) => {
    throw e;
  },
  [Symbol.iterator]() {
    return this;
  },
};

/**
 * A computation that takes no step and returns false: for a helper that usually has nothing
 * to do, so the common case costs no generator (one object, reused).
 */
export const FALSE_NOW = falseNow as unknown as Gen<false>;
