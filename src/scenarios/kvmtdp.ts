// SPDX-License-Identifier: GPL-2.0-only
// The oracle's scenario language (tools/oracle/kvmtdp.c), run inside the model: the same
// harness guest (code at gfn 1, access table at gfns 2-7), the same memslot and host
// memory operations, and the same normalised SPTE-change trace.
import { World, drive } from "../kernel/index.js";
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  defaultParams,
  kvmClearDirtyLog,
  kvmCreateVm,
  kvmDestroyVm,
  kvmGetDirtyLog,
  kvmGuestAccess,
  kvmSetMemoryRegion,
  kvmVmIoctlCreateVcpu,
  type Kvm,
  type KvmParams,
  type KvmVcpu,
} from "../mmu/index.js";
import type { TraceRecord } from "../trace/index.js";

const CODE_GPA = 0x1000;
const TABLE_GPA = 0x2000;
const TABLE_END = 0x8000;
const ENTRY_SIZE = 12;
const MAX_PENDING = (TABLE_END - TABLE_GPA) / ENTRY_SIZE - 1;
const MAXSLOTS = 8;
/** Where the harness's anonymous mappings go (2 MiB aligned, 1 GiB apart). */
const HVA_BASE = 0x7f0000000000;

export type KvmtdpCommand =
  | { readonly op: "mem"; readonly line: number; readonly slot: number; readonly gpa: number; readonly size: number; readonly huge: boolean; readonly hugetlb: boolean; readonly ro: boolean }
  | { readonly op: "manualprotect"; readonly line: number; readonly initSet: boolean }
  | { readonly op: "clearlog"; readonly line: number; readonly slot: number; readonly first: number; readonly count: number }
  | { readonly op: "move"; readonly line: number; readonly slot: number; readonly gpa: number }
  | { readonly op: "r" | "w"; readonly line: number; readonly gpa: number; readonly val: number }
  | { readonly op: "run"; readonly line: number }
  | { readonly op: "madvise"; readonly line: number; readonly slot: number; readonly off: number; readonly len: number }
  | { readonly op: "hostwrite"; readonly line: number; readonly slot: number; readonly off: number; readonly val: number }
  | { readonly op: "dirtylog"; readonly line: number; readonly slot: number; readonly on: boolean }
  | { readonly op: "getdirty" | "delete" | "recreate"; readonly line: number; readonly slot: number }
  | { readonly op: "mark"; readonly line: number; readonly text: string };

/** Bad input: `file:line: what is wrong`. */
export class ScenarioError extends Error {
  readonly kind = "usage";
  constructor(
    readonly file: string,
    readonly line: number,
    what: string,
  ) {
    super(`${file}:${line}: ${what}`);
  }
}

/** A number as C's strtoull(s, NULL, 0) reads it, but the whole token must be a number. */
export function parseCNumber(tok: string): number | null {
  const m = /^\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(tok);
  if (m === null) return null;
  const t = m[1]!;
  const v = /^0[xX]/.test(t) ? Number.parseInt(t.slice(2), 16) : t.length > 1 && t[0] === "0" ? Number.parseInt(t.slice(1), 8) : Number.parseInt(t, 10);
  return Number.isSafeInteger(v) ? v : null;
}

interface SlotState {
  used: boolean;
  ro: boolean;
  dirtyLog: boolean;
  present: boolean;
  gpa: number;
  size: number;
  hva: number;
  huge: boolean;
  hugetlb: boolean;
}

/**
 * Parse and check a whole scenario before anything runs: unknown commands, bad numbers,
 * overlapping or misaligned memslots, host operations outside their slot.
 */
export function parseKvmtdp(file: string, text: string): KvmtdpCommand[] {
  const cmds: KvmtdpCommand[] = [];
  const slots: (SlotState | undefined)[] = [];
  let pending = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const fail = (what: string): never => {
      throw new ScenarioError(file, lineNo, what);
    };
    let line = lines[i]!;
    const hash = line.indexOf("#");
    if (hash >= 0) line = line.slice(0, hash);
    const toks = line.split(/[ \t\r]+/).filter((t) => t.length > 0);
    const cmd = toks[0];
    if (cmd === undefined) continue;
    const num = (k: number, what: string): number => {
      const t = toks[k];
      if (t === undefined) return fail(`${cmd}: missing ${what}`);
      const v = parseCNumber(t);
      if (v === null) return fail(`${cmd}: bad number '${t}' for ${what}`);
      return v;
    };
    const slotArg = (needPresent: boolean): number => {
      const s = num(1, "SLOT");
      if (s >= MAXSLOTS) fail(`slot ${s} out of range 0..${MAXSLOTS - 1}`);
      const st = slots[s];
      if (st === undefined) fail(`slot ${s} was never created with 'mem'`);
      if (needPresent && !st!.present) fail(`slot ${s} is deleted`);
      return s;
    };
    const noMore = (n: number): void => {
      if (toks.length > n) fail(`${cmd}: unexpected argument '${toks[n]}'`);
    };
    if (cmd === "mark") {
      const rest = line.replace(/^[ \t]*mark[ \t]*/, "").replace(/[ \t\r]+$/, "");
      cmds.push({ op: "mark", line: lineNo, text: rest.split(/[ \t]+/).join(" ") });
      continue;
    }
    switch (cmd) {
      case "mem": {
        const slot = num(1, "SLOT");
        if (slot >= MAXSLOTS) fail(`slot ${slot} out of range 0..${MAXSLOTS - 1}`);
        if (slots[slot] !== undefined) fail(`slot ${slot} already created`);
        const gpa = num(2, "GPA");
        const size = num(3, "SIZE");
        const hp = toks[4];
        if (hp !== undefined && hp !== "huge" && hp !== "nohuge" && hp !== "huge1g") fail(`mem: expected 'huge', 'nohuge' or 'huge1g', got '${hp}'`);
        const roTok = toks[5];
        if (roTok !== undefined && roTok !== "ro") fail(`mem: expected 'ro', got '${roTok}'`);
        noMore(6);
        if (gpa % 4096 !== 0) fail(`mem: GPA 0x${gpa.toString(16)} is not page aligned`);
        if (size === 0 || size % 4096 !== 0) fail(`mem: SIZE 0x${size.toString(16)} must be a non-zero multiple of 4096`);
        for (const [id, s] of slots.entries())
          if (s !== undefined && s.present && gpa < s.gpa + s.size && s.gpa < gpa + size) fail(`mem: slot ${slot} overlaps slot ${id}`);
        if (slot === 0 && gpa !== 0) fail("mem: slot 0 must start at GPA 0 (the harness lives at gfns 1-7)");
        if (size > 0x40000000) fail(`mem: SIZE 0x${size.toString(16)} is larger than 1 GiB`);
        const hugetlb = hp === "huge1g";
        // MODEL: each slot's backing has a 1 GiB window of host addresses: one hugetlbfs page.
        if (hugetlb && size !== 0x40000000) fail(`mem: a huge1g backing is one 1 GiB page here: SIZE must be 0x40000000`);
        slots[slot] = { used: true, ro: roTok === "ro", dirtyLog: false, present: true, gpa, size, hva: HVA_BASE + slot * 0x40000000, huge: hp === "huge", hugetlb };
        cmds.push({ op: "mem", line: lineNo, slot, gpa, size, huge: hp === "huge", hugetlb, ro: roTok === "ro" });
        break;
      }
      case "r":
      case "w": {
        const gpa = num(1, "GPA");
        const val = toks[2] !== undefined && cmd === "w" ? num(2, "VAL") : gpa;
        noMore(cmd === "w" ? 3 : 2);
        if (gpa > 0xffffffff) fail(`${cmd}: GPA 0x${gpa.toString(16)} does not fit the 32-bit guest`);
        if (++pending > MAX_PENDING) fail(`too many accesses before 'run' (at most ${MAX_PENDING})`);
        cmds.push({ op: cmd, line: lineNo, gpa, val: val >>> 0 });
        break;
      }
      case "run": {
        noMore(1);
        const s0 = slots[0];
        if (s0 === undefined || !s0.present || s0.gpa !== 0 || s0.size < TABLE_END)
          fail("run: the harness needs slot 0 at GPA 0 covering at least 0x8000");
        pending = 0;
        cmds.push({ op: "run", line: lineNo });
        break;
      }
      case "madvise": {
        const slot = slotArg(false);
        const off = num(2, "OFF");
        const len = num(3, "LEN");
        noMore(4);
        if (off % 4096 !== 0) fail(`madvise: OFF 0x${off.toString(16)} is not page aligned`);
        if (len === 0 || off + len > slots[slot]!.size) fail(`madvise: [0x${off.toString(16)}, 0x${(off + len).toString(16)}) is outside slot ${slot}`);
        // madvise() on hugetlbfs: EINVAL unless the start is huge-page aligned.
        if (slots[slot]!.hugetlb && off % 0x40000000 !== 0) fail(`madvise: OFF 0x${off.toString(16)} must be 1 GiB aligned in a huge1g slot`);
        cmds.push({ op: "madvise", line: lineNo, slot, off, len });
        break;
      }
      case "hostwrite": {
        const slot = slotArg(false);
        const off = num(2, "OFF");
        const val = num(3, "VAL");
        noMore(4);
        if (off + 4 > slots[slot]!.size) fail(`hostwrite: offset 0x${off.toString(16)} is outside slot ${slot}`);
        cmds.push({ op: "hostwrite", line: lineNo, slot, off, val });
        break;
      }
      case "dirtylog": {
        const slot = slotArg(true);
        const a = toks[2];
        if (a !== "on" && a !== "off") fail(`dirtylog: expected 'on' or 'off', got '${a ?? ""}'`);
        noMore(3);
        slots[slot]!.dirtyLog = a === "on";
        cmds.push({ op: "dirtylog", line: lineNo, slot, on: a === "on" });
        break;
      }
      case "getdirty": {
        const slot = slotArg(true);
        noMore(2);
        if (!slots[slot]!.dirtyLog) fail(`getdirty: slot ${slot} does not log dirty pages`);
        cmds.push({ op: "getdirty", line: lineNo, slot });
        break;
      }
      case "delete": {
        const slot = slotArg(true);
        noMore(2);
        slots[slot]!.present = false;
        cmds.push({ op: "delete", line: lineNo, slot });
        break;
      }
      case "recreate": {
        const slot = slotArg(false);
        noMore(2);
        const st = slots[slot]!;
        if (st.present) fail(`recreate: slot ${slot} is present`);
        for (const [id, s] of slots.entries())
          if (s !== undefined && id !== slot && s.present && st.gpa < s.gpa + s.size && s.gpa < st.gpa + st.size)
            fail(`recreate: slot ${slot} overlaps slot ${id}`);
        st.present = true;
        st.dirtyLog = false;
        cmds.push({ op: "recreate", line: lineNo, slot });
        break;
      }
      case "manualprotect": {
        const a = toks[1];
        if (a !== undefined && a !== "initset") fail(`manualprotect: expected 'initset' or nothing, got '${a}'`);
        noMore(2);
        if (cmds.some((c) => c.op === "dirtylog")) fail("manualprotect must come before any 'dirtylog'");
        cmds.push({ op: "manualprotect", line: lineNo, initSet: a === "initset" });
        break;
      }
      case "clearlog": {
        const slot = slotArg(true);
        const first = num(2, "FIRST");
        const count = num(3, "COUNT");
        noMore(4);
        const st = slots[slot]!;
        if (!cmds.some((c) => c.op === "manualprotect")) fail("clearlog needs 'manualprotect' first (KVM_CLEAR_DIRTY_LOG)");
        if (!st.dirtyLog) fail(`clearlog: slot ${slot} does not log dirty pages`);
        const npages = st.size / 4096;
        if (first % 64 !== 0) fail(`clearlog: FIRST ${first} is not a multiple of 64`);
        if (count === 0 || first + count > npages || (count % 64 !== 0 && first + count !== npages))
          fail(`clearlog: [${first}, ${first + count}) must be 64-page aligned and inside the slot's ${npages} pages`);
        cmds.push({ op: "clearlog", line: lineNo, slot, first, count });
        break;
      }
      case "move": {
        const slot = slotArg(true);
        const gpa = num(2, "GPA");
        noMore(3);
        if (slot === 0) fail("move: slot 0 holds the harness and cannot move");
        if (gpa % 4096 !== 0) fail(`move: GPA 0x${gpa.toString(16)} is not page aligned`);
        const st = slots[slot]!;
        for (const [id, s2] of slots.entries())
          if (s2 !== undefined && id !== slot && s2.present && gpa < s2.gpa + s2.size && s2.gpa < gpa + st.size) fail(`move: slot ${slot} would overlap slot ${id}`);
        st.gpa = gpa;
        cmds.push({ op: "move", line: lineNo, slot, gpa });
        break;
      }
      default:
        fail(`unknown command '${cmd}'`);
    }
  }
  return cmds;
}

/** One SPTE change as the oracle's TSV has it, before pfn renaming. */
export interface SpteChangeRow {
  readonly phase: string;
  readonly gfn: number;
  readonly level: number;
  readonly oldSpte: bigint;
  readonly newSpte: bigint;
}

export interface KvmtdpRun {
  readonly kvm: Kvm;
  readonly rows: SpteChangeRow[];
  readonly records: TraceRecord[];
  /** What the harness prints: read values, dirty gfns. */
  readonly log: string[];
}

export interface KvmtdpOptions {
  readonly params?: Partial<KvmParams>;
  readonly trace?: boolean;
  /** Tear the VM down at the end and check nothing leaked. */
  readonly teardown?: boolean;
}

/** Run a parsed scenario in a fresh VM, as kvmtdp does on the real kernel. */
export function runKvmtdp(cmds: readonly KvmtdpCommand[], opts: KvmtdpOptions = {}): KvmtdpRun {
  const w = new World();
  const kvm = kvmCreateVm(w, { ...defaultParams, ...opts.params });
  kvm.tracer.on = opts.trace ?? true;
  const rows: SpteChangeRow[] = [];
  const log: string[] = [];
  let phase = "";
  kvm.tracer.sink = (r) => {
    const e = r.event;
    if (e.ev === "kvm_tdp_mmu_spte_changed") rows.push({ phase, gfn: e.gfn, level: e.level, oldSpte: e.oldSpte, newSpte: e.newSpte });
    else if (e.ev === "tracing_mark_write" && e.text.startsWith("PHASE")) phase = e.text.split(":")[0]!.replace("PHASE ", "");
  };
  const slots: (SlotState & { flags: number })[] = [];
  let vcpu: KvmVcpu | null = null;
  let pending: { op: 1 | 2; gpa: number; val: number }[] = [];

  const setRegion = (s: number): void => {
    const st = slots[s]!;
    drive(
      kvmSetMemoryRegion(kvm, {
        slot: s,
        asId: 0,
        flags: st.present ? st.flags : 0,
        gpa: st.gpa,
        size: st.present ? st.size : 0,
        hva: st.hva,
      }),
    );
  };
  const gpaToHva = (gpa: number): number => {
    for (const st of slots) if (st !== undefined && st.present && gpa >= st.gpa && gpa < st.gpa + st.size) return st.hva + (gpa - st.gpa);
    throw new Error(`no slot covers gpa 0x${gpa.toString(16)}`);
  };
  const access = (gpa: number, a: "read" | "write" | "exec"): void => {
    drive(kvmGuestAccess(kvm, vcpu!, gpa, a));
    // A dword that straddles a page boundary touches the next page too.
    if ((gpa % 4096) > 4092 && a !== "exec") drive(kvmGuestAccess(kvm, vcpu!, gpa + 4, a));
  };

  for (const c of cmds) {
    switch (c.op) {
      case "mark":
        if (kvm.tracer.on) kvm.tracer.emit({ ev: "tracing_mark_write", text: c.text });
        else if (c.text.startsWith("PHASE")) phase = c.text.split(":")[0]!.replace("PHASE ", "");
        break;
      case "r":
      case "w":
        pending.push({ op: c.op === "r" ? 1 : 2, gpa: c.gpa, val: c.val });
        break;
      case "mem": {
        const hva = HVA_BASE + c.slot * 0x40000000;
        kvm.mm.mmapAnon(hva, c.size, c.huge, c.hugetlb);
        slots[c.slot] = { used: true, ro: c.ro, dirtyLog: false, present: true, gpa: c.gpa, size: c.size, hva, huge: c.huge, hugetlb: c.hugetlb, flags: c.ro ? KVM_MEM_READONLY : 0 };
        setRegion(c.slot);
        break;
      }
      case "run": {
        // do_run(): the host writes the guest code and the access table, then KVM_RUN.
        drive(kvm.mm.userWrite(gpaToHva(CODE_GPA)));
        const tableBytes = (pending.length + 1) * ENTRY_SIZE;
        for (let p = TABLE_GPA; p < TABLE_GPA + tableBytes; p += 4096) drive(kvm.mm.userWrite(gpaToHva(p)));
        if (vcpu === null) vcpu = kvmVmIoctlCreateVcpu(kvm);
        for (let i = 0; ; i++) {
          const ent = TABLE_GPA + i * ENTRY_SIZE;
          access(CODE_GPA, "exec");
          access(ent, "read");
          const e = pending[i];
          if (e === undefined) break;
          access(ent + 4, "read");
          if (e.op === 2) {
            access(ent + 8, "read");
            access(e.gpa, "write");
          } else {
            access(e.gpa, "read");
            access(ent + 8, "write");
          }
        }
        log.push(`run: ${pending.length} accesses`);
        pending = [];
        break;
      }
      case "madvise":
        drive(kvm.mm.madviseDontneed(slots[c.slot]!.hva + c.off, c.len));
        break;
      case "hostwrite":
        drive(kvm.mm.userWrite(slots[c.slot]!.hva + c.off));
        break;
      case "dirtylog": {
        const st = slots[c.slot]!;
        st.flags = c.on ? st.flags | KVM_MEM_LOG_DIRTY_PAGES : st.flags & ~KVM_MEM_LOG_DIRTY_PAGES;
        setRegion(c.slot);
        break;
      }
      case "getdirty": {
        const gfns = drive(kvmGetDirtyLog(kvm, 0, c.slot));
        log.push(`dirty slot ${c.slot}:${gfns.length === 0 ? " (none)" : gfns.map((g) => ` gfn 0x${g.toString(16)}`).join("")}`);
        break;
      }
      case "delete":
        slots[c.slot]!.present = false;
        setRegion(c.slot);
        break;
      case "recreate":
        slots[c.slot]!.present = true;
        slots[c.slot]!.flags &= KVM_MEM_READONLY;
        setRegion(c.slot);
        break;
      case "manualprotect":
        // KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)
        kvm.manualDirtyLogProtect = true;
        kvm.manualDirtyLogInitSet = c.initSet;
        break;
      case "clearlog": {
        const gfns = drive(kvmClearDirtyLog(kvm, 0, c.slot, c.first, c.count));
        log.push(`cleared slot ${c.slot} first ${c.first} count ${c.count}: ${gfns.length} dirty`);
        break;
      }
      case "move":
        slots[c.slot]!.gpa = c.gpa;
        setRegion(c.slot);
        break;
    }
  }
  if (opts.teardown) {
    phase = "teardown";
    drive(kvmDestroyVm(kvm));
  }
  return { kvm, rows, records: kvm.tracer.records, log };
}

const PFN_MASK = ((1n << 40n) - 1n) << 12n;

/**
 * The oracle's pfn renaming (summarize.py --norm): `ptN` for a frame first seen in a
 * non-leaf SPTE, `pgN` for one first seen in a leaf, `pgN+0xK` for the K-th frame of huge
 * page pgN; MMIO SPTEs (bit 51) stay raw. Names restart per scenario.
 */
export class PfnNames {
  private readonly names = new Map<bigint, string>();
  private readonly huge = new Map<bigint, bigint>();
  private count = { pt: 0, pg: 0 };

  name(v: bigint, level: number): string {
    if ((v & PFN_MASK) === 0n) return `0x${v.toString(16)}`;
    if (v & (1n << 51n)) return `mmio|0x${v.toString(16)}`;
    const pfn = (v & PFN_MASK) >> 12n;
    const isHuge = level > 1 && (v & 0x80n) !== 0n;
    if (!this.names.has(pfn)) {
      let base: bigint | undefined;
      for (const [b, n] of this.huge)
        if (b <= pfn && pfn < b + n) {
          base = b;
          break;
        }
      if (base !== undefined) {
        this.names.set(pfn, `${this.names.get(base)!}+0x${(pfn - base).toString(16)}`);
      } else {
        const kind = level > 1 && !isHuge ? "pt" : "pg";
        this.names.set(pfn, `${kind}${this.count[kind]}`);
        this.count[kind]++;
      }
    }
    if (isHuge && !this.huge.has(pfn)) this.huge.set(pfn, 1n << BigInt(9 * (level - 1)));
    return `${this.names.get(pfn)!}|0x${(v & ~PFN_MASK).toString(16)}`;
  }
}

export const TSV_HEADER = "scenario\tphase\tgfn\tlevel\told_spte\tnew_spte";

/** The TSV rows of one scenario, as `NORM=1 run.sh` prints them (or raw values). */
export function kvmtdpTsv(scenario: string, rows: readonly SpteChangeRow[], norm: boolean): string[] {
  const names = new PfnNames();
  const fmt = (v: bigint, level: number): string => (norm ? names.name(v, level) : v.toString(16));
  return rows.map((r) => [scenario, r.phase, r.gfn.toString(16), String(r.level), fmt(r.oldSpte, r.level), fmt(r.newSpte, r.level)].join("\t"));
}
