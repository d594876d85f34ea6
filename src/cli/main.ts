// SPDX-License-Identifier: GPL-2.0-only
// The tdpmmu command line. Only this layer touches files, the process and the clock.
import fs from "node:fs";
import path from "node:path";
import { KernelBug } from "../kernel/index.js";
import { ScenarioError, TSV_HEADER, kvmtdpTsv, parseKvmtdp, runKvmtdp, type KvmtdpCommand } from "../scenarios/index.js";
import { spteCommand } from "./spte-cmd.js";
import { BENCH_OPS, UsageProblem, bench, type BenchOp } from "./bench.js";
import { ExploreUsage, auditCommand, exploreCommand, replayCommand, variantsCommand } from "./explore-cmd.js";
import { StaleToken } from "../explore/index.js";
import { ScenarioJsonError } from "../scenarios/index.js";
import { IoctlError } from "../mmu/index.js";

export class UsageError extends Error {
  readonly kind = "usage";
}

const USAGE = `usage: tdpmmu <command> [options]

commands:
  spte decode HEX [--format npt|ept|ept-noad] [--level N]
                          name every bit of an SPTE value
  spte make --format F --pfn HEX --level 1|2|3 [--writable] [--no-exec] [--nx-huge]
                          the SPTE KVM builds for a fault
  kvmtdp [--norm] [--cpu max|max,-la57] [--kvm-arg K=V]... FILE...
                          run oracle scenario files in the model; print the SPTE changes
  bench --op populate|zap|clear-dirty|age|split --gib N [--bare] [--reps N] [--json]
                          ns per 4K page and table bytes per mapped page (tracing off)
  explore SCENARIO.json [--strategy dpor|races|random|pct] [--preemptions N] [--pct-depth D]
          [--seed S] [--budget 60s] [--max-schedules N] [--max-steps N] [--variant V]...
          [--bystanders] [--prove] [--json]
                          interleave the scenario's threads and check its invariants
                          (exit 0 clean, 1 violation, 2 bad input, 3 internal error);
                          --bystanders adds unrelated threads (a vCPU faulting in a memslot
                          of its own, aging it, harvesting its dirty log); --prove runs the
                          partial-order search over every trace alone (for proofs)
  replay TOKEN SCENARIO.json [--bystanders] [--max-steps N] [--json]
                          re-run the schedule a violation report printed
  variants [--json]       the switches that put historical bugs back
  audit SCENARIO.json [--variant V]... [--runs N] [--seed S]
                          check that steps treated as commuting commute (exit 1 if not)
  seed-demo               the seed rule, shown: explore the bundled seed scenario twice
  demo                    run the oracle's sample scenario and show its trace
  help                    this text
`;

interface Out {
  out: (s: string) => void;
  err: (s: string) => void;
}

export function main(argv: readonly string[], io: Out): number {
  const [cmd, ...rest] = argv;
  // `tdpmmu COMMAND --help`: the usage, which lists every command's options (`spte` has
  // a usage of its own).
  if (cmd !== undefined && cmd !== "spte" && (rest.includes("--help") || rest.includes("-h"))) {
    io.out(USAGE);
    return 0;
  }
  try {
    switch (cmd) {
      case "spte": {
        const r = spteCommand(rest);
        if (r.stdout) io.out(r.stdout);
        if (r.stderr) io.err(r.stderr);
        return r.exitCode;
      }
      case "kvmtdp":
        return kvmtdpCommand(rest, io);
      case "demo":
        return demoCommand(io);
      case "bench":
        return benchCommand(rest, io);
      case "explore":
        return exploreCommand(rest, io);
      case "replay":
        return replayCommand(rest, io);
      case "variants":
        return variantsCommand(rest, io);
      case "audit":
        return auditCommand(rest, io);
      case "seed-demo":
        return seedDemo(io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${cmd}'`);
    }
  } catch (e) {
    if (
      e instanceof UsageError ||
      e instanceof ScenarioError ||
      e instanceof UsageProblem ||
      e instanceof ExploreUsage ||
      e instanceof ScenarioJsonError ||
      e instanceof StaleToken
    ) {
      io.err(`tdpmmu: ${e.message}\n`);
      return 2;
    }
    if (e instanceof IoctlError) {
      io.err(`tdpmmu: a scenario operation failed as the kernel would refuse it (errno ${e.errno}): ${e.message}\n`);
      return 2;
    }
    if (e instanceof KernelBug) {
      io.err(`tdpmmu: the modelled kernel hit BUG(): ${e.message}\n  at ${e.finding.chain.join("\n  at ")}\n`);
      return 1;
    }
    const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
    io.err(`tdpmmu: internal error (a bug in tdpmmu itself, not in the modelled kernel):\n${msg}\n`);
    return 3;
  }
}

const KVM_ARGS: Record<string, (v: string) => Record<string, unknown>> = {
  eager_page_split: (v) => ({ eagerPageSplit: parseBool("eager_page_split", v) }),
  nx_huge_pages: (v) => ({ nxHugePages: parseBool("nx_huge_pages", v) }),
  mmio_caching: (v) => ({ mmioCaching: parseBool("mmio_caching", v) }),
};

function parseBool(name: string, v: string): boolean {
  if (/^(1|y|Y|on|true|force)$/.test(v)) return true;
  if (/^(0|n|N|off|false|never)$/.test(v)) return false;
  throw new UsageError(`--kvm-arg ${name}=${v}: not a boolean`);
}

function kvmtdpCommand(args: readonly string[], io: Out): number {
  let norm = false;
  let cpu = "max,-la57";
  const params: Record<string, unknown> = {};
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--norm") norm = true;
    else if (a === "--cpu") {
      const v = args[++i];
      if (v !== "max" && v !== "max,-la57") throw new UsageError(`--cpu takes 'max' or 'max,-la57', got '${v ?? ""}'`);
      cpu = v;
    } else if (a === "--kvm-arg") {
      const v = args[++i] ?? "";
      const m = /^([a-z_]+)=(.*)$/.exec(v);
      const f = m === null ? undefined : KVM_ARGS[m[1]!];
      if (m === null || f === undefined) throw new UsageError(`--kvm-arg '${v}': known: ${Object.keys(KVM_ARGS).join(", ")} (as K=V)`);
      Object.assign(params, f(m[2]!));
    } else if (a.startsWith("-")) throw new UsageError(`kvmtdp: unknown option '${a}'`);
    else files.push(a);
  }
  if (files.length === 0) throw new UsageError("kvmtdp: no scenario file given");
  params["tdpRootLevel"] = cpu === "max" ? 5 : 4;
  // Parse every file before anything runs.
  const parsed: [string, KvmtdpCommand[]][] = files.map((f, i) => {
    let text: string;
    try {
      text = fs.readFileSync(f, "utf8");
    } catch {
      throw new UsageError(`${f}: cannot read`);
    }
    return [`${String(i + 1).padStart(2, "0")}-${path.basename(f)}`, parseKvmtdp(f, text)];
  });
  const out: string[] = [TSV_HEADER];
  for (const [name, cmds] of parsed) {
    const r = runKvmtdp(cmds, { params });
    out.push(...kvmtdpTsv(name, r.rows, norm));
    for (const f of r.kvm.w.findings) io.err(`${name}: finding [${f.check}] ${f.message}\n`);
  }
  io.out(out.join("\n") + "\n");
  return 0;
}

function demoCommand(io: Out): number {
  const here = path.dirname(new URL(import.meta.url).pathname);
  const file = path.resolve(here, "../../../tools/oracle/scenario.txt");
  io.out(`tdpmmu: running ${path.relative(process.cwd(), file)} (the oracle's sample scenario) in the model\n\n`);
  const cmds = parseKvmtdp(file, fs.readFileSync(file, "utf8"));
  const r = runKvmtdp(cmds, { params: {} });
  const rows = kvmtdpTsv("scenario.txt", r.rows, true);
  // Collapse the long runs the way the oracle's summary does: show the first few.
  let last = "";
  let n = 0;
  for (const row of rows) {
    const f = row.split("\t");
    const key = `${f[1]} ${f[3]} ${f[4]!.replace(/^pg\d+(\+0x[0-9a-f]+)?/, "pg")} ${f[5]!.replace(/^pg\d+(\+0x[0-9a-f]+)?/, "pg")}`;
    if (key === last) {
      n++;
      continue;
    }
    if (n > 0) io.out(`        ... ${n} more like the row above\n`);
    n = 0;
    last = key;
    io.out(`phase ${f[1]!.padEnd(3)} gfn ${f[2]!.padStart(4)} L${f[3]}  ${f[4]!.padEnd(18)} -> ${f[5]}\n`);
  }
  if (n > 0) io.out(`        ... ${n} more like the row above\n`);
  io.out(`\n${rows.length} SPTE changes; page stats now 4K=${r.kvm.stat.pages[0]} 2M=${r.kvm.stat.pages[1]} 1G=${r.kvm.stat.pages[2]}\n`);
  io.out(`compare: tdpmmu kvmtdp --norm tools/oracle/scenario.txt  vs  tools/oracle/samples/spte-6.1.0-56-norm.tsv\n`);
  return 0;
}

function benchCommand(args: readonly string[], io: Out): number {
  let op: BenchOp | null = null;
  let gib = 1;
  let bare = false;
  let json = false;
  let reps = 3;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const val = (): string => {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`bench: ${a} needs a value`);
      return v;
    };
    if (a === "--op") {
      const v = val();
      if (!(BENCH_OPS as readonly string[]).includes(v)) throw new UsageError(`bench: --op takes ${BENCH_OPS.join("|")}, got '${v}'`);
      op = v as BenchOp;
    } else if (a === "--gib") {
      const v = Number(val());
      if (!(v > 0 && v <= 64)) throw new UsageError("bench: --gib takes a number in (0, 64]");
      gib = v;
    } else if (a === "--reps") {
      const v = Number(val());
      if (!Number.isInteger(v) || v < 1 || v > 50) throw new UsageError("bench: --reps takes an integer 1..50");
      reps = v;
    } else if (a === "--bare") bare = true;
    else if (a === "--json") json = true;
    else throw new UsageError(`bench: unknown option '${a}'`);
  }
  if (op === null) throw new UsageError(`bench: --op is required (${BENCH_OPS.join("|")})`);
  const r = bench(op, gib, bare, reps);
  if (json) io.out(JSON.stringify({ op: r.op, gib: r.gib, bare: r.bare, nsPerPage: round(r.nsPerPage), bytesPerPage: round(r.bytesPerPage) }) + "\n");
  else
    io.out(
      `${r.op}${r.bare ? " (bare)" : ""}: ${r.gib} GiB = ${r.pages} pages, best of ${r.reps}: ${r.nsPerPage.toFixed(1)} ns/page, ` +
        `${r.bytesPerPage.toFixed(3)} bytes of page tables per mapped 4K page\n`,
    );
  return 0;
}

const round = (x: number): number => Math.round(x * 1000) / 1000;

function seedDemo(io: Out): number {
  const here = path.dirname(new URL(import.meta.url).pathname);
  const file = path.resolve(here, "../../../scenarios/seed-notifier-vs-fault.json");
  const rel = path.relative(process.cwd(), file);
  io.out("The seed rule: a zap that a caller relies on for correctness must hold mmu_lock for write,\n");
  io.out("otherwise a vCPU faulting with mmu_lock held for read can reinstall the SPTE at once.\n\n");
  io.out(`1) ${rel} with the rule taken away (--variant zap-under-read-lock):\n\n`);
  const a = exploreCommand([rel, "--variant", "zap-under-read-lock", "--preemptions", "1"], io);
  io.out(`\n2) the same scenario on faithful Linux 6.1.192:\n\n`);
  const b = exploreCommand([rel], io);
  return a === 1 && b === 0 ? 0 : 1;
}
