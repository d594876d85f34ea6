// SPDX-License-Identifier: GPL-2.0-only
// The partial-order reduction is only as sound as the footprints the model declares. This
// audit checks them by experiment: in random schedules it swaps adjacent steps of two
// threads that the reduction treats as commuting, and compares the state afterwards.
import { Prng } from "../base/index.js";
import { dependent, footprintOf, type Footprint } from "./dpor.js";
import { runOnce, type Program } from "./explorer.js";

export interface AuditFinding {
  /** The schedule up to and including the swapped pair (original order). */
  readonly schedule: readonly number[];
  readonly first: string;
  readonly second: string;
  /** What differed after the swap. */
  readonly why: string;
}

export interface AuditOptions {
  readonly seed: number;
  readonly runs: number;
  readonly pairsPerRun: number;
  readonly maxSteps: number;
}

interface Probe {
  lines: string[];
  labels: string[];
  fps: Footprint[];
  violation: string | null;
  nextLabels: string[];
}

/** Run `schedule` and stop right after it; what the state and the last two steps look like. */
function probe(program: Program, schedule: readonly number[], maxSteps: number): Probe {
  const out: Probe = { lines: [], labels: [], fps: [], violation: null, nextLabels: [] };
  const r = runOnce(program, {
    maxSteps,
    choose: (enabled, _prev, d) => (d < schedule.length ? (enabled.includes(schedule[d]!) ? schedule[d]! : -1) : -1),
    footprint: (t, s, objs, all, next) => {
      out.labels.push(`${t}:${s.label}`);
      out.fps.push(footprintOf(s, objs, all, next));
      out.nextLabels[t] = next === null ? "done" : next.label;
    },
    atCut: (ex) => {
      out.lines = ex.stateLines?.() ?? [];
    },
  });
  out.violation = r.violation === null ? null : r.violation.check;
  return out;
}

/** Swap commuting neighbours in random schedules of `program`; report every difference seen. */
export function auditCommutation(program: Program, o: AuditOptions): AuditFinding[] {
  const rng = new Prng(o.seed);
  const findings: AuditFinding[] = [];
  for (let run = 0; run < o.runs; run++) {
    const fps: Footprint[] = [];
    const r = runOnce(program, {
      maxSteps: o.maxSteps,
      choose: (enabled) => enabled[rng.below(enabled.length)]!,
      footprint: (_t, s, objs, all, next) => void fps.push(footprintOf(s, objs, all, next)),
    });
    const sched = r.schedule;
    const pairs: number[] = [];
    for (let k = 0; k + 1 < sched.length; k++) {
      if (sched[k] === sched[k + 1] || !r.choices[k]!.enabled.includes(sched[k + 1]!)) continue;
      if (dependent(fps[k]!, fps[k + 1]!)) continue;
      pairs.push(k);
    }
    for (let n = 0; n < o.pairsPerRun && pairs.length > 0; n++) {
      const k = pairs.splice(rng.below(pairs.length), 1)[0]!;
      const a = sched.slice(0, k + 2);
      const b = [...sched.slice(0, k), sched[k + 1]!, sched[k]!];
      const pa = probe(program, a, o.maxSteps);
      const pb = probe(program, b, o.maxSteps);
      const why = compare(pa, pb, k);
      if (why !== null) findings.push({ schedule: a, first: pa.labels[k] ?? "?", second: pa.labels[k + 1] ?? "?", why });
    }
  }
  return findings;
}

function compare(a: Probe, b: Probe, k: number): string | null {
  if (a.violation !== b.violation) return `check outcome ${a.violation ?? "none"} vs ${b.violation ?? "none"} when swapped`;
  if (a.violation !== null) return null;
  if (b.labels.length < k + 2) return "the swapped schedule could not run";
  if (a.nextLabels.join("|") !== b.nextLabels.join("|")) return `next steps differ: ${a.nextLabels.join(" | ")} vs ${b.nextLabels.join(" | ")}`;
  const fa = JSON.stringify([a.fps[k], a.fps[k + 1]]);
  const fb = JSON.stringify([b.fps[k + 1], b.fps[k]]);
  if (fa !== fb) return `footprints change with the order: ${fa} vs ${fb}`;
  const n = Math.max(a.lines.length, b.lines.length);
  for (let i = 0; i < n; i++) if (a.lines[i] !== b.lines[i]) return `state differs: ${a.lines[i] ?? "(none)"} vs ${b.lines[i] ?? "(none)"}`;
  return null;
}
