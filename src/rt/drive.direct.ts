// SPDX-License-Identifier: GPL-2.0-only
// Direct-build replacement of drive.ts: generator machinery is stripped, so a
// "computation" is already its value.
import type { Gen } from "./step.js";

export class SelfDeadlock extends Error {
  readonly kind = "deadlock";
}

export function drive<T>(g: Gen<T>): T {
  return g as unknown as T;
}

export const STEPPED = false;

export const FALSE_NOW = false;
