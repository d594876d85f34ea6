// SPDX-License-Identifier: GPL-2.0-only
// `tdpmmu spte`: decode an SPTE copied from a kernel trace, or print the SPTE KVM would build for
// a plain TDP fault. Pure: takes argv, returns the text and exit code; the caller does the I/O.

import {
  ACC_ALL,
  ACC_EXEC_MASK,
  KVM_MAX_HUGEPAGE_LEVEL,
  PG_LEVEL_4K,
  PG_LEVEL_NUM,
  describeSpte,
  kvmAdEnabled,
  kvmPagesPerHpage,
  makeSpte,
  masksFor,
  renderSpteDescription,
  vmxGetMtMask,
  type SpteFormat,
} from "../spte/index.js";

export interface SpteCommandResult {
  stdout: string;
  stderr: string;
  exitCode: 0 | 2;
}

const USAGE = [
  "usage: tdpmmu spte decode HEX [--format npt|ept|ept-noad] [--level N] [--json]",
  "       tdpmmu spte make --format npt|ept|ept-noad --pfn HEX --level 1|2|3 [--writable] [--no-exec] [--nx-huge] [--json]",
  "",
  "decode  name every bit of an SPTE value under one format's masks (default npt).",
  "make    the SPTE KVM 6.1.192 installs for a TDP fault: pte_access ACC_ALL (minus exec with",
  "        --no-exec), host-writable iff --writable, A/D per format, not prefetch, old SPTE 0,",
  "        NX hugepages iff --nx-huge, EPT memtype WB|IPAT (0x70). A huge-level pfn is aligned",
  "        down as kvm_mmu_hugepage_adjust() does.",
  "",
].join("\n");

/** Bad input; told apart by its `kind` tag, as the project's UsageError records are. */
class UsageError extends Error {
  readonly kind = "UsageError" as const;
}

const isUsageError = (e: unknown): e is UsageError =>
  typeof e === "object" && e !== null && "kind" in e && (e as { kind: unknown }).kind === "UsageError";

const FORMATS: readonly SpteFormat[] = ["npt", "ept", "ept-noad"];
const MAX_PFN_BITS = 40; // bits 51:12 of an SPTE

function parseHex(what: string, text: string, maxBits: number): bigint {
  const m = /^(?:0[xX])?([0-9a-fA-F]+)$/.exec(text);
  if (m === null || m[1] === undefined) throw new UsageError(`bad hex value for ${what}: '${text}'`);
  const v = BigInt("0x" + m[1]);
  if (v >> BigInt(maxBits) !== 0n) throw new UsageError(`${what} '${text}' does not fit in ${maxBits} bits`);
  return v;
}

function parseFormat(text: string): SpteFormat {
  const f = FORMATS.find((x) => x === text);
  if (f === undefined) throw new UsageError(`bad --format '${text}' (expected npt, ept or ept-noad)`);
  return f;
}

function parseLevel(text: string, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`bad --level '${text}'`);
  const n = Number(text);
  if (n < PG_LEVEL_4K || n > max) throw new UsageError(`--level ${text} out of range (1..${max})`);
  return n;
}

interface ParsedArgs {
  positional: string[];
  values: Map<string, string>;
  flags: Set<string>;
}

/** Split argv into positionals, `--name value` / `--name=value` options and bare flags. */
function parseArgs(argv: readonly string[], valued: readonly string[], bare: readonly string[]): ParsedArgs {
  const out: ParsedArgs = { positional: [], values: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (!arg.startsWith("--")) {
      out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (valued.includes(name)) {
      let value: string | undefined;
      if (eq >= 0) value = arg.slice(eq + 1);
      else {
        value = argv[i + 1];
        i++;
      }
      if (value === undefined || value === "") throw new UsageError(`missing value for ${name}`);
      if (out.values.has(name)) throw new UsageError(`${name} given twice`);
      out.values.set(name, value);
    } else if (bare.includes(name) && eq < 0) {
      out.flags.add(name);
    } else {
      throw new UsageError(`unknown option '${arg}'`);
    }
  }
  return out;
}

function decode(argv: readonly string[]): SpteCommandResult {
  const a = parseArgs(argv, ["--format", "--level"], ["--json"]);
  if (a.positional.length === 0) throw new UsageError("decode: missing HEX value");
  if (a.positional.length > 1) throw new UsageError(`decode: unexpected argument '${a.positional[1] ?? ""}'`);
  const value = parseHex("SPTE", a.positional[0] ?? "", 64);
  const format = parseFormat(a.values.get("--format") ?? "npt");
  const levelText = a.values.get("--level");
  const level = levelText === undefined ? undefined : parseLevel(levelText, PG_LEVEL_NUM);
  const d = describeSpte(masksFor(format), value, level);
  if (a.flags.has("--json")) {
    const json = {
      value: "0x" + d.value.toString(16),
      format: d.format,
      ...(d.level !== undefined ? { level: d.level } : {}),
      kind: d.kind,
      fields: d.fields,
    };
    return { stdout: JSON.stringify(json, null, 2) + "\n", stderr: "", exitCode: 0 };
  }
  return { stdout: renderSpteDescription(d), stderr: "", exitCode: 0 };
}

function make(argv: readonly string[]): SpteCommandResult {
  const a = parseArgs(argv, ["--format", "--pfn", "--level"], ["--writable", "--no-exec", "--nx-huge", "--json"]);
  if (a.positional.length > 0) throw new UsageError(`make: unexpected argument '${a.positional[0] ?? ""}'`);
  const formatText = a.values.get("--format");
  const pfnText = a.values.get("--pfn");
  const levelText = a.values.get("--level");
  if (formatText === undefined) throw new UsageError("make: missing --format");
  if (pfnText === undefined) throw new UsageError("make: missing --pfn");
  if (levelText === undefined) throw new UsageError("make: missing --level");
  const format = parseFormat(formatText);
  const level = parseLevel(levelText, KVM_MAX_HUGEPAGE_LEVEL);
  const rawPfn = Number(parseHex("--pfn", pfnText, MAX_PFN_BITS));

  // The fault path maps a huge page at the huge-aligned pfn (kvm_mmu_hugepage_adjust()).
  const pagesPerHpage = kvmPagesPerHpage(level);
  const pfn = rawPfn - (rawPfn % pagesPerHpage);
  const stderr = pfn !== rawPfn ? `tdpmmu spte: note: pfn 0x${rawPfn.toString(16)} aligned down to 0x${pfn.toString(16)} for level ${level}\n` : "";

  const m = masksFor(format);
  const { spte, wrprot } = makeSpte(m, {
    level,
    pteAccess: a.flags.has("--no-exec") ? ACC_ALL & ~ACC_EXEC_MASK : ACC_ALL,
    gfn: 0,
    pfn,
    oldSpte: 0n,
    prefetch: false,
    hostWritable: a.flags.has("--writable"),
    adDisabled: !kvmAdEnabled(m),
    adNeedWriteProtect: false,
    nxHugePageEnabled: a.flags.has("--nx-huge"),
    mtMask: vmxGetMtMask({ isMmio: false }),
    isMmioPfn: false,
  });
  const text = "0x" + spte.toString(16);
  if (a.flags.has("--json")) {
    const d = describeSpte(m, spte, level);
    const json = { spte: text, format, level, pfn: "0x" + pfn.toString(16), wrprot, kind: d.kind, fields: d.fields };
    return { stdout: JSON.stringify(json, null, 2) + "\n", stderr, exitCode: 0 };
  }
  return { stdout: text + "\n", stderr, exitCode: 0 };
}

/** Entry point for `tdpmmu spte ...`; `argv` excludes the leading "spte". */
export function spteCommand(argv: readonly string[]): SpteCommandResult {
  const sub = argv[0];
  try {
    switch (sub) {
      case "decode":
        return decode(argv.slice(1));
      case "make":
        return make(argv.slice(1));
      case "help":
      case "--help":
      case "-h":
        return { stdout: USAGE, stderr: "", exitCode: 0 };
      case undefined:
        throw new UsageError("missing subcommand (expected decode or make)");
      default:
        throw new UsageError(`unknown subcommand '${sub}' (expected decode or make)`);
    }
  } catch (e: unknown) {
    if (isUsageError(e)) return { stdout: "", stderr: `tdpmmu spte: ${e.message}\n`, exitCode: 2 };
    throw e;
  }
}
