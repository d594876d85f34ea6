// SPDX-License-Identifier: GPL-2.0-only
// `tdpmmu explore`, `tdpmmu replay` and `tdpmmu variants`.
import fs from "node:fs";
import { ArgReader } from "./args.js";
import { performance } from "node:perf_hooks";
import { kernelFrames } from "../kernel/index.js";
import { StaleToken, auditCommutation, decodeToken, encodeToken, explore, fingerprint, runOnce, type Execution, type Strategy, type Violation } from "../explore/index.js";
import { stepDebug } from "../rt/index.js";
import { VARIANTS, makeProgram, parseScenario, withBystanders, type ConcurrentScenario } from "../scenarios/index.js";
import { TRACE_SCHEMA_VERSION, type TraceEvent } from "../trace/index.js";

export class ExploreUsage extends Error {
  readonly kind = "usage";
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/**
 * Read and check a scenario file. With `bystanders`, the file is checked as written and then
 * run with unrelated threads added (see withBystanders()).
 */
function loadScenario(file: string, variants: readonly string[], bystanders = false): ConcurrentScenario {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new ExploreUsage(`${file}: cannot read`);
  }
  const sc = parseScenario(file, text, variants);
  return bystanders ? parseScenario(file, withBystanders(text), variants) : sc;
}

export interface TraceRow {
  readonly step: number;
  readonly thread: string;
  readonly fn: string;
  readonly action: string;
  readonly spte: string[];
  readonly locks: string[];
}

/** Re-run one schedule with tracing and call sites on, for the report. */
/**
 * Re-run one schedule with tracing and call sites on, for the report. `maxSteps` is the
 * exploration's step bound: a run it cut short (a `progress` violation) is cut there again.
 */
export function traceSchedule(sc: ConcurrentScenario, schedule: readonly number[], maxSteps = 1_000_000): { rows: TraceRow[]; violation: Violation | null } {
  const program = makeProgram(sc);
  const rows: TraceRow[] = [];
  let inst: ReturnType<typeof program>["instance"] | null = null;
  let pendingSpte: string[] = [];
  stepDebug.capture = true;
  try {
    const r = runOnce(
      () => {
        const ex = program();
        inst = ex.instance;
        ex.instance.kvm.tracer.on = true;
        ex.instance.kvm.tracer.sink = (rec) => {
          const e: TraceEvent = rec.event;
          if (e.ev === "kvm_tdp_mmu_spte_changed")
            pendingSpte.push(`gfn 0x${e.gfn.toString(16)} L${e.level}: 0x${e.oldSpte.toString(16)} -> 0x${e.newSpte.toString(16)}`);
        };
        return ex as Execution;
      },
      {
        maxSteps,
        choose: (_e, _p, depth) => {
          const t = schedule[depth];
          if (t === undefined)
            throw new StaleToken(
              `the schedule ends after ${schedule.length} steps but the run goes on (a token for a run cut at the step bound needs the same --max-steps)`,
            );
          return t;
        },
        observe: (rec) => {
          const i = inst!;
          rows.push({
            step: rec.index,
            thread: sc.threads[rec.thread]!.name,
            fn: topFunction(rec.step.stack ?? ""),
            action: rec.step.label,
            spte: pendingSpte,
            locks: i.kvm.lockdep.describe(rec.thread).concat(i.kvm.rcu.inReadSide(rec.thread) ? ["rcu"] : []),
          });
          pendingSpte = [];
        },
      },
    );
    return { rows, violation: r.violation };
  } finally {
    stepDebug.capture = false;
  }
}

/** The innermost modelled kernel function that is not a primitive (a lock, an atomic). */
export function topFunction(stack: string): string {
  const frames = kernelFrames(stack);
  const primitive = /^(step|blocking_step|spin_step|read_once_into|write_once(_observed)?|xchg_into|cmpxchg_into|atomic_add|kvm_tdp_mmu_(read_spte|write_spte(_atomic)?)|__kvm_tdp_mmu_write_spte|refresh|try_step_\w+|read_lock|write_lock|read_unlock|write_unlock|lock|unlock|rcu_read_(un)?lock|call_rcu|kick_and_wait)$/;
  return frames.find((f) => !primitive.test(f)) ?? frames[0] ?? "";
}

/** Thread columns, the way locking.rst draws CPU 0 beside CPU 1. */
export function renderColumns(sc: ConcurrentScenario, rows: readonly TraceRow[], keepLast = 60): string {
  const width = 58;
  const names = sc.threads.map((t) => t.name);
  const head = names.map((n) => n.padEnd(width)).join(" | ");
  const lines = [head, names.map(() => "-".repeat(width)).join("-+-")];
  const shown = rows.length > keepLast ? rows.slice(rows.length - keepLast) : rows;
  if (shown.length < rows.length) lines.push(`(${rows.length - shown.length} earlier steps not shown)`);
  for (const r of shown) {
    const col = names.indexOf(r.thread);
    const cells = [`${r.step}: ${r.fn ? r.fn + ": " : ""}${r.action}`, ...r.spte.map((s) => `    ${s}`)];
    if (r.locks.length > 0) cells[0] += `  [${r.locks.join(" ")}]`;
    for (const c of cells) {
      const parts = names.map((_, i) => (i === col ? clip(c, width) : "").padEnd(width));
      lines.push(parts.join(" | ").trimEnd());
    }
  }
  return lines.join("\n");
}

const clip = (s: string, n: number): string => (s.length > n ? s.slice(0, n - 1) + "…" : s);

export interface ExploreCliResult {
  readonly violation: null | { check: string; message: string; trace: TraceRow[]; token: string; replay: string };
  readonly schedules: number;
  readonly complete: boolean;
  readonly strategy: Strategy;
  readonly variants: string[];
  readonly summary: string;
  readonly preemptions: number;
  readonly steps: number;
}

export function exploreScenario(
  file: string,
  sc: ConcurrentScenario,
  o: { strategy: Strategy; preemptions: number; por: boolean; prove?: boolean; seed: number; budgetMs: number; maxSchedules: number; maxSteps: number; pctDepth: number },
  progress: ((s: number, b: number) => void) | undefined,
  bystanders = false,
): ExploreCliResult {
  const program = makeProgram(sc) as unknown as () => Execution;
  const r = explore(program, { ...o, now: () => performance.now(), ...(progress !== undefined ? { progress } : {}) });
  const base = { schedules: r.schedules, complete: r.complete, strategy: o.strategy, variants: [...sc.variants], summary: r.summary, preemptions: r.preemptions, steps: r.steps };
  if (r.violation === null) return { ...base, violation: null };
  const token = encodeToken(fingerprint(sc.text), sc.variants, r.schedule);
  const t = traceSchedule(sc, r.schedule, o.maxSteps);
  return {
    ...base,
    // A run cut at the step bound replays only with the same bound.
    violation: {
      check: r.violation.check,
      message: r.violation.message,
      trace: t.rows,
      token,
      replay: `npx tdpmmu replay ${token} ${file}${bystanders ? " --bystanders" : ""}${r.schedule.length >= o.maxSteps ? ` --max-steps ${o.maxSteps}` : ""}`,
    },
  };
}

export function exploreCommand(args: readonly string[], io: Io): number {
  let file: string | null = null;
  let strategy: Strategy = "dpor";
  // Without --preemptions: the bounded searches go on raising their bound while the
  // unbounded search and the sampler take their turns.
  let preemptions = Number.POSITIVE_INFINITY;
  let por = true;
  let prove = false;
  let seed = 1;
  let budgetMs = 60_000;
  let maxSchedules = 1_000_000;
  let maxSteps = 20_000;
  let pctDepth = 3;
  let pctDepthGiven = false;
  let json = false;
  let bystanders = false;
  const variants: string[] = [];
  const opts = new ArgReader("explore", args, (m) => new ExploreUsage(m));
  for (let a = opts.next(); a !== undefined; a = opts.next()) {
    if (a === "--strategy") {
      const v = opts.value(a);
      if (v !== "dpor" && v !== "races" && v !== "random" && v !== "pct") throw new ExploreUsage(`explore: --strategy takes dpor|races|random|pct, got '${v}'`);
      strategy = v;
    } else if (a === "--preemptions") {
      preemptions = opts.int(a, 0, 50);
      por = false;
    }
    else if (a === "--pct-depth") {
      pctDepth = opts.int(a, 1, 20);
      pctDepthGiven = true;
    }
    else if (a === "--seed") seed = opts.int(a, 0, 2 ** 31);
    else if (a === "--max-schedules") maxSchedules = opts.int(a, 1, 1e9);
    else if (a === "--max-steps") maxSteps = opts.int(a, 1, 1e8);
    else if (a === "--budget") {
      const v = opts.value(a);
      const m = /^(\d+)(ms|s|m)?$/.exec(v);
      if (m === null) throw new ExploreUsage(`explore: --budget takes a duration like 60s, 500ms or 2m, got '${v}'`);
      budgetMs = Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "m" ? 60_000 : 1000);
    } else if (a === "--variant") {
      const v = opts.value(a);
      if (VARIANTS[v] === undefined) throw new ExploreUsage(`explore: unknown variant '${v}' (see 'tdpmmu variants')`);
      variants.push(v);
    } else if (a === "--json") json = true;
    else if (a === "--bystanders") bystanders = true;
    else if (a === "--prove") prove = true;
    else if (a.startsWith("-")) throw new ExploreUsage(`explore: unknown option '${a}'`);
    else if (file === null) file = a;
    else throw new ExploreUsage(`explore: one scenario file at a time (got '${file}' and '${a}')`);
  }
  if (file === null) throw new ExploreUsage("explore: no scenario file given");
  if (prove && (strategy !== "dpor" || !por || pctDepthGiven))
    throw new ExploreUsage("explore: --prove runs the partial-order search alone; it does not take --strategy races|random|pct, --preemptions or --pct-depth");
  const sc = loadScenario(file, variants, bystanders);
  const tty = !json && process.stderr.isTTY === true;
  const t0 = performance.now();
  const progress = tty
    ? (s: number, b: number): void => {
        const secs = (performance.now() - t0) / 1000;
        process.stderr.write(`\r${s} schedules, ${(s / Math.max(secs, 1e-3)).toFixed(0)}/s, ${b < 0 ? "no preemption bound" : `preemption bound ${b}`}   `);
      }
    : undefined;
  const r = exploreScenario(file, sc, { strategy, preemptions, por, prove, seed, budgetMs, maxSchedules, maxSteps, pctDepth }, progress, bystanders);
  if (tty) process.stderr.write("\r\x1b[K");
  const secs = (performance.now() - t0) / 1000;
  if (json) {
    io.out(
      JSON.stringify({
        schema: TRACE_SCHEMA_VERSION,
        scenario: sc.name,
        violation: r.violation,
        schedules: r.schedules,
        complete: r.complete,
        strategy: r.strategy,
        variants: r.variants,
        summary: r.summary,
        preemptions: r.violation === null ? null : r.preemptions,
        steps: r.steps,
        seconds: Math.round(secs * 1000) / 1000,
      }) + "\n",
    );
  } else io.out(renderResult(sc, r, secs));
  return r.violation === null ? 0 : 1;
}

export function renderResult(sc: ConcurrentScenario, r: ExploreCliResult, secs: number): string {
  const v = r.variants.length > 0 ? ` with variant${r.variants.length > 1 ? "s" : ""} ${r.variants.join(", ")}` : " (faithful 6.1.192)";
  const rate = secs > 0 ? `, ${Math.round(r.schedules / secs)} schedules/s, ${Math.round(r.steps / secs)} steps/s` : "";
  let s = `scenario ${sc.name}${v}: ${r.summary}; ${r.schedules} schedules (${r.steps} steps) in ${secs.toFixed(2)} s${rate}\n`;
  if (r.violation === null) return s + "no violation\n";
  s += `\nVIOLATION [${r.violation.check}] ${r.violation.message}\n`;
  s += `shortest found: ${r.preemptions} preemption(s), ${r.violation.trace.length} steps\n\n`;
  s += renderColumns(sc, r.violation.trace) + "\n\n";
  s += `replay: ${r.violation.replay}\n`;
  return s;
}

export function replayCommand(args: readonly string[], io: Io): number {
  let json = false;
  let bystanders = false;
  let maxSteps = 1_000_000;
  const pos: string[] = [];
  const opts = new ArgReader("replay", args, (m) => new ExploreUsage(m));
  for (let a = opts.next(); a !== undefined; a = opts.next()) {
    if (a === "--json") json = true;
    else if (a === "--bystanders") bystanders = true;
    else if (a === "--max-steps") maxSteps = opts.int(a, 1, 1e8);
    else if (a.startsWith("-")) throw new ExploreUsage(`replay: unknown option '${a}'`);
    else pos.push(a);
  }
  if (pos.length !== 2) throw new ExploreUsage("replay: usage: tdpmmu replay TOKEN SCENARIO [--bystanders] [--max-steps N] [--json]");
  const [token, file] = pos as [string, string];
  const d = decodeToken(token);
  for (const v of d.variants) if (VARIANTS[v] === undefined) throw new StaleToken(`replay token names unknown variant '${v}'`);
  const sc0 = loadScenario(file, [], bystanders);
  if (fingerprint(sc0.text) !== d.fingerprint) {
    // Say so if the token fits the file with the bystanders switched the other way.
    if (fingerprint(loadScenario(file, [], !bystanders).text) === d.fingerprint)
      throw new StaleToken(`replay token was made ${bystanders ? "without" : "with"} --bystanders: replay it ${bystanders ? "without" : "with"} that option`);
    throw new StaleToken(`replay token was made for another version of ${file} (fingerprint ${d.fingerprint}, file has ${fingerprint(sc0.text)})`);
  }
  const sc = parseScenario(file, sc0.text, d.variants.filter((x) => !sc0.variants.includes(x)));
  const t = traceSchedule(sc, d.schedule, maxSteps);
  if (t.rows.length !== d.schedule.length) throw new StaleToken(`replay token does not fit the model any more: the run ended after ${t.rows.length} of ${d.schedule.length} steps`);
  if (json) io.out(JSON.stringify({ schema: TRACE_SCHEMA_VERSION, scenario: sc.name, violation: t.violation, trace: t.rows }) + "\n");
  else {
    io.out(renderColumns(sc, t.rows, 1_000_000) + "\n\n");
    io.out(t.violation === null ? "no violation on this schedule\n" : `VIOLATION [${t.violation.check}] ${t.violation.message}\n`);
  }
  return t.violation === null ? 0 : 1;
}

export function variantsCommand(args: readonly string[], io: Io): number {
  if (args.includes("--json")) io.out(JSON.stringify(Object.entries(VARIANTS).map(([name, v]) => ({ name, ...v }))) + "\n");
  else for (const [name, v] of Object.entries(VARIANTS)) io.out(`${name}\n    ${v.what}\n    reverts: ${v.reverts}\n`);
  return 0;
}

/**
 * tdpmmu audit SCENARIO [--variant V]... [--runs N] [--seed S]: check by experiment that the
 * steps partial-order reduction treats as commuting do commute on this scenario (for a
 * variant that adds shared state: every access to it must be a step or a touch()).
 */
export function auditCommand(args: readonly string[], io: Io): number {
  let file: string | null = null;
  let runs = 40;
  let seed = 1;
  const variants: string[] = [];
  const opts = new ArgReader("audit", args, (m) => new ExploreUsage(m));
  for (let a = opts.next(); a !== undefined; a = opts.next()) {
    if (a === "--runs") runs = opts.int(a, 1, 100_000);
    else if (a === "--seed") seed = opts.int(a, 0, 2 ** 31);
    else if (a === "--variant") {
      const v = opts.value(a);
      if (VARIANTS[v] === undefined) throw new ExploreUsage(`audit: unknown variant '${v}' (see 'tdpmmu variants')`);
      variants.push(v);
    } else if (a.startsWith("-")) throw new ExploreUsage(`audit: unknown option '${a}'`);
    else if (file === null) file = a;
    else throw new ExploreUsage(`audit: one scenario file at a time (got '${file}' and '${a}')`);
  }
  if (file === null) throw new ExploreUsage("audit: no scenario file given");
  const sc = loadScenario(file, variants);
  const t0 = performance.now();
  const findings = auditCommutation(makeProgram(sc) as unknown as () => Execution, { seed, runs, pairsPerRun: 10, maxSteps: 50_000 });
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (findings.length === 0) {
    io.out(`audit ${sc.name}: ${runs} random schedules, up to 10 reorderings each: every step treated as commuting commuted (${secs} s)\n`);
    return 0;
  }
  io.out(`audit ${sc.name}: ${findings.length} reordering(s) changed the outcome (${secs} s): a footprint is missing\n`);
  for (const f of findings.slice(0, 10))
    io.out(`  step ${f.schedule.length - 1}, thread:${f.second}\n    moved before thread:${f.first}: ${f.why}\n    schedule (thread per step): ${f.schedule.join(",")}\n`);
  return 1;
}
