// SPDX-License-Identifier: GPL-2.0-only
// The partial-order reduction is only as sound as the footprints the model declares. This
// audit checks them by experiment: in random schedules it reorders steps of different
// threads that the reduction treats as commuting, and compares the state afterwards.
import { Prng } from "../base/index.js";
import { dependent, footprintOf, type Footprint } from "./dpor.js";
import { runOnce, type Program } from "./run.js";

export interface AuditFinding {
  /** The schedule up to and including the moved step (original order). */
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
    footprint: (t, s, objs, all, lockQueued, next) => {
      out.labels.push(`${t}:${s.label}`);
      out.fps.push(footprintOf(s, objs, all, lockQueued));
      out.nextLabels[t] = next === null ? "done" : next.label;
    },
    atCut: (ex) => {
      out.lines = ex.stateLines?.() ?? [];
    },
  });
  out.violation = r.violation === null ? null : r.violation.check;
  return out;
}

/**
 * In random schedules of `program`, move a step of one thread earlier, past steps of other
 * threads that the reduction treats as commuting with it, and report every difference seen
 * once both schedules have run the same steps.
 */
export function auditCommutation(program: Program, o: AuditOptions): AuditFinding[] {
  const rng = new Prng(o.seed);
  const findings: AuditFinding[] = [];
  for (let run = 0; run < o.runs; run++) {
    const fps: Footprint[] = [];
    const r = runOnce(program, {
      maxSteps: o.maxSteps,
      choose: (enabled) => enabled[rng.below(enabled.length)]!,
      footprint: (_t, s, objs, all, lockQueued) => void fps.push(footprintOf(s, objs, all, lockQueued)),
    });
    const sched = r.schedule;
    // Candidates (k, j): step j is the first of its thread after k, that thread could run at
    // k, and j commutes with every step in between.
    const moves: [number, number][] = [];
    for (let k = 0; k + 1 < sched.length; k++) {
      const seen = new Set<number>([sched[k]!]);
      for (let j = k + 1; j < sched.length && j < k + 64; j++) {
        const u = sched[j]!;
        if (seen.has(u)) continue;
        seen.add(u);
        if (!r.choices[k]!.enabled.includes(u)) continue;
        let ok = true;
        for (let m = k; m < j && ok; m++) if (dependent(fps[m]!, fps[j]!)) ok = false;
        if (ok) moves.push([k, j]);
      }
    }
    for (let n = 0; n < o.pairsPerRun && moves.length > 0; n++) {
      const [k, j] = moves.splice(rng.below(moves.length), 1)[0]!;
      const a = sched.slice(0, j + 1);
      const b = [...sched.slice(0, k), sched[j]!, ...sched.slice(k, j)];
      const pa = probe(program, a, o.maxSteps);
      const pb = probe(program, b, o.maxSteps);
      const why = compare(pa, pb, k, j);
      if (why !== null) findings.push({ schedule: a, first: pa.labels[k] ?? "?", second: pa.labels[j] ?? "?", why });
    }
  }
  return findings;
}

function compare(a: Probe, b: Probe, k: number, j: number): string | null {
  if (a.violation !== b.violation) return `check outcome ${a.violation ?? "none"} vs ${b.violation ?? "none"} when reordered`;
  if (a.violation !== null) return null;
  if (b.labels.length < j + 1) return "the reordered schedule could not run";
  if (a.nextLabels.join("|") !== b.nextLabels.join("|")) return `next steps differ: ${a.nextLabels.join(" | ")} vs ${b.nextLabels.join(" | ")}`;
  // The moved step and the steps it passed must have the same footprints in either order.
  const fa = JSON.stringify([a.fps[j], ...a.fps.slice(k, j)]);
  const fb = JSON.stringify(b.fps.slice(k, j + 1));
  if (fa !== fb) return `footprints change with the order: ${fa} vs ${fb}`;
  const n = Math.max(a.lines.length, b.lines.length);
  for (let i = 0; i < n; i++) if (a.lines[i] !== b.lines[i]) return `state differs: ${a.lines[i] ?? "(none)"} vs ${b.lines[i] ?? "(none)"}`;
  return null;
}
