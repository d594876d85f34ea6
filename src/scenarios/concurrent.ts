// SPDX-License-Identifier: GPL-2.0-only
// Concurrent scenarios (JSON, docs/scenarios.md): a VM, a sequential setup, and threads
// whose operations the explorer interleaves step by step, with the invariants to check.
import { KernelBug, World, drive, type Gen, type Step } from "../kernel/index.js";
import { Copier, EINVAL } from "../base/index.js";
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KvmMmuNotifier,
  defaultParams,
  kvmClearDirtyLog,
  kvmCreateVm,
  kvmDestroyVm,
  kvmFlushRemoteTlbs,
  kvmGetDirtyLog,
  kvmGuestAccess,
  kvmMmuSlotTrySplitHugePages,
  kvmMmuZapAllFast,
  kvmMmuZapCollapsibleSptes,
  kvmRecoverNxLpages,
  kvmSetMemoryRegion,
  kvmVmIoctlCreateVcpu,
  kvmZapGfnRange,
  IoctlError,
  type Kvm,
  type KvmParams,
} from "../mmu/index.js";
import { stateDigest, stateLines } from "./state-lines.js";
import { checkNoLeaks, checkPageStats, checkTlbCoherence } from "./invariants.js";

export const CHECKS = ["host-uaf", "rcu", "lockdep", "zap-post", "memslot", "tlb", "transitions", "dirty", "write-track", "leaks", "warn", "bug", "deadlock", "progress", "sp-lists", "stats"] as const;
export type CheckName = (typeof CHECKS)[number];

export const VARIANTS: Record<string, { readonly reverts: string; readonly what: string }> = {
  "zap-under-read-lock": {
    reverts: "acbda82a81c7 (v5.18) \"KVM: x86/mmu: Require mmu_lock be held for write to zap TDP MMU range\"",
    what: "correctness zaps (kvm_zap_gfn_range, the MMU notifier's unmap) run with mmu_lock held for read, zapping with the atomic freeze protocol",
  },
  "yield-no-forward-progress": {
    reverts: "ed5e484b79e8 (v5.13) \"KVM: x86/mmu: Ensure forward progress when yielding in TDP MMU iter\"",
    what: "tdp_mmu_iter_cond_resched() may yield again without the walk having moved",
  },
  "yield-drops-pending-flush": {
    reverts: "the flush-before-yield of tdp_mmu_iter_cond_resched() (a1a973... era, v5.11)",
    what: "a pending TLB flush is dropped instead of done before yielding",
  },
  "notifier-unmap-unsafe-root-iter": {
    reverts: "the yield-safe root walk of kvm_tdp_mmu_unmap_gfn_range()",
    what: "the notifier walks roots without references although its body may yield",
  },
  "root-put-without-free": {
    reverts: "the put in tdp_mmu_next_root() (\"KVM: x86/mmu: Don't leak non-leaf SPTEs when zapping all SPTEs\" era, v5.13)",
    what: "the yield-safe root iterator drops its reference with a bare decrement, so a root whose last reference it held is never freed",
  },
  "nx-recovery-flush-overwritten": {
    reverts: "315f02c60d94 (v5.12) \"KVM: x86/mmu: preserve pending TLB flush across calls to kvm_tdp_mmu_zap_sp\"",
    what: "NX recovery assigns each zap's flush result instead of OR-ing it into the pending flush",
  },
  "free-before-flush": {
    reverts: "fcb93eb6d09d (5.18 merge window) \"kvm: x86/mmu: Flush TLB before zap_gfn_range releases RCU\", as a rule: here in kvm_recover_nx_lpages()",
    what: "NX recovery leaves its RCU section before the flush, so zapped tables can be freed while vCPUs still cache walks through them",
  },
  "fault-into-invalid-root": {
    reverts: "the invalid-root test of is_page_fault_stale()",
    what: "faults may install SPTEs into a root that was already invalidated",
  },
  "notifier-skips-invalid-roots": {
    reverts: "the invalid roots in the notifier's root walk (6.1.192 visits them)",
    what: "MMU-notifier unmaps skip invalid roots that vCPUs may still use",
  },
  "fast-zap-defers-root-teardown": {
    reverts: "the synchronous kvm_tdp_mmu_zap_invalidated_roots() of kvm_mmu_zap_all_fast()",
    what: "invalidated roots are left populated when the memslot update returns",
  },
  "invalid-memslot-as-mmio": {
    reverts: "the KVM_MEMSLOT_INVALID test in kvm_faultin_pfn()",
    what: "a fault on a slot being deleted is treated as MMIO",
  },
  "nonatomic-write-drops-ad": {
    reverts: "the exchange in kvm_tdp_mmu_write_spte() for leaves with volatile bits",
    what: "exclusive SPTE writes use a plain store and may lose A/D bits set by hardware",
  },
  "wrprot-skips-mmu-writable": {
    reverts: "7c8a4742c4ab (v5.17) \"KVM: x86/mmu: Fix write-protection of PTs mapped by the TDP MMU\"",
    what: "write_protect_gfn() skips SPTEs whose W bit is already clear, leaving them MMU-writable",
  },
  "mmu-seq-truncation-hang": {
    reverts: "the stable fix \"Fix an sign-extension bug with mmu_seq that hangs vCPUs\"",
    what: "the fault's mmu_invalidate_seq snapshot goes through an int",
  },
  "iter-advance-after-yield": {
    reverts: "3a0f64de479c (v5.13) \"KVM: x86/mmu: Don't advance iterator after restart due to yield\"",
    what: "after a yield the walk steps on from its old position instead of restarting, skipping the SPTE it stopped at",
  },
  "fix-clear-dirty-retry-nonleaf": {
    reverts: "applies 45a61ebb2211 (v6.8) \"KVM: x86/mmu: Check for leaf SPTE when clearing dirty bit in the TDP MMU\"",
    what: "fixes a race 6.1.192 still has: clear-dirty's retry edits a table that replaced the huge leaf it had read",
  },
  "fix-sp-list-link-after-publish": {
    reverts: "applies the later order (list and account a new page table before publishing it; mainline removed the list in d25ceb926436, v6.2)",
    what: "fixes a race 6.1.192 still has: a reader that tears a just-published table down unlinks an SP that was never listed",
  },
  "zap-all-skips-straddling-nonleaf": {
    reverts: "524a1e4e381f (v5.14) \"KVM: x86/mmu: Don't leak non-leaf SPTEs when zapping all SPTEs\"",
    what: "zap-all uses range semantics and keeps a top-level entry that straddles the host's max gfn",
  },
  "leaf-at-wrong-level": {
    reverts: "80a3e4ae962d (v6.2-rc1) \"KVM: x86/mmu: Map TDP MMU leaf SPTE iff target level is reached\" (adapted: 6.1.192 never had the bug)",
    what: "a fault installs its leaf wherever the walk stopped, even above the goal level",
  },
  "map-over-frozen-spte": {
    reverts: "the REMOVED_SPTE test in kvm_tdp_mmu_map()",
    what: "a fault links a table over a frozen SPTE",
  },
};

export class ScenarioJsonError extends Error {
  readonly kind = "usage";
  constructor(
    readonly file: string,
    readonly path: string,
    what: string,
  ) {
    super(`${file}: ${path}: ${what}`);
  }
}

type Op = { readonly op: string; readonly [k: string]: unknown };

export interface ConcurrentScenario {
  readonly name: string;
  readonly description: string;
  readonly params: KvmParams;
  readonly memslots: readonly { slot: number; as: number; gpa: number; size: number; backing: "4k" | "2m" | "1g" }[];
  readonly vcpus: number;
  readonly variants: readonly string[];
  readonly setup: readonly Op[];
  readonly threads: readonly { name: string; ops: readonly Op[] }[];
  readonly checks: readonly CheckName[];
  readonly text: string;
  /** Where kvm->mmu_invalidate_seq starts (a long-running VM). */
  readonly initialSeq: number;
  /** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: off, on, or on with KVM_DIRTY_LOG_INITIALLY_SET. */
  readonly manualProtect: "off" | "on" | "initset";
}

const OPS: Record<string, { req: string[]; opt: string[] }> = {
  access: { req: ["vcpu", "gpa"], opt: ["write", "exec"] },
  madvise: { req: ["slot", "offset", "size"], opt: [] },
  host_write: { req: ["slot", "offset"], opt: ["value"] },
  zap_gfn_range: { req: ["start", "end"], opt: [] },
  zap_all_fast: { req: [], opt: [] },
  memslot: { req: ["action", "slot"], opt: ["as", "gpa", "size", "backing", "flags"] },
  dirty_log: { req: ["action", "slot"], opt: ["first", "count"] },
  nx_recover: { req: [], opt: [] },
  age_gfn_range: { req: ["start", "end"], opt: [] },
  test_age_gfn: { req: ["gfn"], opt: [] },
  split_huge_pages: { req: ["slot"], opt: [] },
  zap_collapsible: { req: ["slot"], opt: [] },
  flush_tlb: { req: [], opt: [] },
};

/** Parse and validate a scenario; every problem names its JSON path. */
export function parseScenario(file: string, text: string, extraVariants: readonly string[] = []): ConcurrentScenario {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new ScenarioJsonError(file, "$", `not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const fail = (p: string, what: string): never => {
    throw new ScenarioJsonError(file, p, what);
  };
  const checkSlotSize = (p: string, size: number, backing: string): void => {
    const why = slotSizeProblem(size, backing);
    if (why !== null) fail(p, why);
  };
  const obj = (v: unknown, p: string, allowed: readonly string[]): Record<string, unknown> => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return fail(p, "expected an object");
    for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${p}.${k}`, `unknown field (allowed: ${allowed.join(", ")})`);
    return v as Record<string, unknown>;
  };
  const arr = (v: unknown, p: string): unknown[] => (Array.isArray(v) ? v : fail(p, "expected an array"));
  const num = (v: unknown, p: string): number => {
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
    if (typeof v === "string" && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) return Number(v);
    return fail(p, `expected a non-negative integer or a hex string, got ${JSON.stringify(v)}`);
  };
  const str = (v: unknown, p: string, choices?: readonly string[]): string => {
    if (typeof v !== "string") return fail(p, "expected a string");
    if (choices !== undefined && !choices.includes(v)) fail(p, `expected one of ${choices.join(", ")}, got '${v}'`);
    return v;
  };
  const bool = (v: unknown, p: string): boolean => (typeof v === "boolean" ? v : fail(p, "expected true or false"));

  const top = obj(j, "$", ["name", "description", "vm", "variants", "setup", "threads", "checks"]);
  if (top["name"] === undefined) fail("$.name", "missing field");
  const name = str(top["name"], "$.name");
  const vm = obj(top["vm"] ?? fail("$.vm", "missing field"), "$.vm", ["format", "levels", "params", "memslots", "vcpus"]);
  const format = str(vm["format"] ?? "npt", "$.vm.format", ["npt", "ept", "ept-noad"]) as KvmParams["format"];
  const levels = num(vm["levels"] ?? 4, "$.vm.levels");
  if (levels !== 4 && levels !== 5) fail("$.vm.levels", "expected 4 or 5");
  const pj = obj(vm["params"] ?? {}, "$.vm.params", ["nx_huge_pages", "eager_page_split", "pml", "mmu_invalidate_seq", "phys_bits", "manual_protect"]);
  const params: KvmParams = {
    ...defaultParams,
    format,
    tdpRootLevel: levels,
    nxHugePages: pj["nx_huge_pages"] === undefined ? false : bool(pj["nx_huge_pages"], "$.vm.params.nx_huge_pages"),
    eagerPageSplit: pj["eager_page_split"] === undefined ? true : bool(pj["eager_page_split"], "$.vm.params.eager_page_split"),
    pml: pj["pml"] === undefined ? false : bool(pj["pml"], "$.vm.params.pml"),
    physBits: pj["phys_bits"] === undefined ? defaultParams.physBits : num(pj["phys_bits"], "$.vm.params.phys_bits"),
  };
  if (params.physBits < 32 || params.physBits > 52) fail("$.vm.params.phys_bits", "expected 32..52 (host physical address bits)");
  const manualProtect =
    pj["manual_protect"] === undefined ? "off" : (str(pj["manual_protect"], "$.vm.params.manual_protect", ["off", "on", "initset"]) as "off" | "on" | "initset");
  const initialSeq = pj["mmu_invalidate_seq"] === undefined ? 0 : num(pj["mmu_invalidate_seq"], "$.vm.params.mmu_invalidate_seq");
  const memslots = arr(vm["memslots"] ?? fail("$.vm.memslots", "missing field"), "$.vm.memslots").map((m, i) => {
    const p = `$.vm.memslots[${i}]`;
    const o = obj(m, p, ["slot", "as", "gpa", "size", "backing"]);
    const ms = {
      slot: num(o["slot"] ?? fail(`${p}.slot`, "missing field"), `${p}.slot`),
      as: num(o["as"] ?? 0, `${p}.as`),
      gpa: num(o["gpa"] ?? fail(`${p}.gpa`, "missing field"), `${p}.gpa`),
      size: num(o["size"] ?? fail(`${p}.size`, "missing field"), `${p}.size`),
      backing: str(o["backing"] ?? "4k", `${p}.backing`, ["4k", "2m", "1g"]) as "4k" | "2m" | "1g",
    };
    if (ms.gpa % 4096 !== 0) fail(`${p}.gpa`, "not page aligned");
    if (ms.size === 0 || ms.size % 4096 !== 0) fail(`${p}.size`, "must be a non-zero multiple of 4096");
    checkSlotSize(`${p}.size`, ms.size, ms.backing);
    if (ms.as > 1) fail(`${p}.as`, "address space must be 0 or 1");
    return ms;
  });
  memslots.forEach((a, i) =>
    memslots.forEach((b, k) => {
      if (k > i && a.as === b.as && a.gpa < b.gpa + b.size && b.gpa < a.gpa + a.size) fail(`$.vm.memslots[${k}]`, `overlaps memslots[${i}]`);
    }),
  );
  const vcpus = num(vm["vcpus"] ?? 1, "$.vm.vcpus");
  if (vcpus < 1 || vcpus > 8) fail("$.vm.vcpus", "expected 1..8");
  const variants = [...arr(top["variants"] ?? [], "$.variants").map((v, i) => str(v, `$.variants[${i}]`, Object.keys(VARIANTS))), ...extraVariants];
  for (const v of extraVariants) if (VARIANTS[v] === undefined) fail("--variant", `unknown variant '${v}' (see 'tdpmmu variants')`);
  const parseOp = (v: unknown, p: string): Op => {
    const o0 = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : fail(p, "expected an object");
    const kind = str(o0["op"] ?? fail(`${p}.op`, "missing field"), `${p}.op`, Object.keys(OPS));
    const spec = OPS[kind]!;
    const o = obj(v, p, ["op", ...spec.req, ...spec.opt]);
    for (const r of spec.req) if (o[r] === undefined) fail(`${p}.${r}`, "missing field");
    const out: Record<string, unknown> = { op: kind };
    for (const [k, val] of Object.entries(o)) {
      if (k === "op") continue;
      if (k === "write" || k === "exec") out[k] = bool(val, `${p}.${k}`);
      else if (k === "action") out[k] = str(val, `${p}.${k}`, kind === "memslot" ? ["create", "delete", "move", "flags"] : ["enable", "get", "clear", "disable"]);
      else if (k === "backing") out[k] = str(val, `${p}.${k}`, ["4k", "2m", "1g"]);
      else out[k] = num(val, `${p}.${k}`);
    }
    if (kind === "access" && (out["vcpu"] as number) >= vcpus) fail(`${p}.vcpu`, `no such vCPU (vm.vcpus is ${vcpus})`);
    if (["madvise", "host_write", "dirty_log", "split_huge_pages", "zap_collapsible"].includes(kind) && !memslots.some((m) => m.slot === out["slot"]))
      fail(`${p}.slot`, "no such memslot");
    if (kind === "madvise") {
      const m = memslots.find((x) => x.slot === out["slot"])!;
      if ((out["offset"] as number) % 4096 !== 0) fail(`${p}.offset`, "not page aligned");
      if ((out["offset"] as number) + (out["size"] as number) > m.size) fail(`${p}.size`, "range ends outside the memslot");
      // madvise() on hugetlb: EINVAL unless the start is huge-page aligned.
      if (m.backing === "1g" && (out["offset"] as number) % SLOT_WINDOW !== 0) fail(`${p}.offset`, "must be 1 GiB aligned in a 1g (hugetlbfs) memslot");
    }
    if (kind === "memslot") {
      const m = memslots.find((x) => x.slot === out["slot"]);
      const size = (out["size"] as number | undefined) ?? m?.size;
      if (size !== undefined) checkSlotSize(`${p}.size`, size, (out["backing"] as string | undefined) ?? m?.backing ?? "4k");
    }
    if ((kind === "zap_gfn_range" || kind === "age_gfn_range") && (out["end"] as number) <= (out["start"] as number))
      fail(`${p}.end`, "must be above start (ranges are half-open)");
    return out as Op;
  };
  const setup = arr(top["setup"] ?? [], "$.setup").map((o, i) => parseOp(o, `$.setup[${i}]`));
  const threads = arr(top["threads"] ?? fail("$.threads", "missing field"), "$.threads").map((t, i) => {
    const p = `$.threads[${i}]`;
    const o = obj(t, p, ["name", "ops"]);
    return { name: str(o["name"] ?? `t${i}`, `${p}.name`), ops: arr(o["ops"] ?? fail(`${p}.ops`, "missing field"), `${p}.ops`).map((x, k) => parseOp(x, `${p}.ops[${k}]`)) };
  });
  if (threads.length === 0) fail("$.threads", "needs at least one thread");
  // KVM_RUN holds vcpu->mutex: a vCPU runs in one thread at a time.
  const runner = new Map<number, number>();
  threads.forEach((t, i) =>
    t.ops.forEach((o, k) => {
      if (o.op !== "access") return;
      const v = o["vcpu"] as number;
      const first = runner.get(v);
      if (first !== undefined && first !== i)
        fail(`$.threads[${i}].ops[${k}].vcpu`, `vCPU ${v} already runs in thread ${threads[first]!.name} (a vCPU runs in one thread: KVM_RUN holds vcpu->mutex)`);
      runner.set(v, i);
    }),
  );
  const checksRaw = arr(top["checks"] ?? ["all"], "$.checks").map((c, i) => str(c, `$.checks[${i}]`, ["all", ...CHECKS]));
  const checks = checksRaw.includes("all") ? [...CHECKS] : (checksRaw as CheckName[]);
  return {
    name,
    description: typeof top["description"] === "string" ? top["description"] : "",
    params,
    memslots,
    vcpus,
    variants: [...new Set(variants)],
    setup,
    threads,
    checks,
    text,
    initialSeq,
    manualProtect,
  };
}

const HVA_BASE = 0x7f0000000000;
const SLOT_WINDOW = 0x40000000;

/** MODEL: each slot's host mapping lives in a 1 GiB window of its own (slotHva). */
function slotSizeProblem(size: number, backing: string): string | null {
  if (size > SLOT_WINDOW) return "at most 1 GiB (0x40000000) per memslot";
  if (backing === "1g" && size !== SLOT_WINDOW) return "a 1g (hugetlbfs) backing is one whole 1 GiB page: size must be 0x40000000";
  return null;
}
const slotHva = (slot: number): number => HVA_BASE + slot * SLOT_WINDOW;

/** The VM state one execution works on. */
export interface Instance {
  readonly kvm: Kvm;
  readonly w: World;
}

/** Build the VM and run the setup sequentially. */
export function instantiate(sc: ConcurrentScenario): Instance {
  const inst = build(sc);
  arm(inst, sc);
  return inst;
}

/** The VM after its setup: plain state, no hooks (so it can be copied). */
function build(sc: ConcurrentScenario): Instance {
  const w = new World();
  const kvm = kvmCreateVm(w, sc.params, new Set(sc.variants));
  kvm.tracer.on = false;
  kvm.mmuInvalidateSeq = sc.initialSeq;
  kvm.manualDirtyLogProtect = sc.manualProtect !== "off";
  kvm.manualDirtyLogInitSet = sc.manualProtect === "initset";
  for (const m of sc.memslots) {
    kvm.mm.mmapAnon(slotHva(m.slot), m.size, m.backing === "2m", m.backing === "1g");
    drive(kvmSetMemoryRegion(kvm, { slot: m.slot, asId: m.as, flags: 0, gpa: m.gpa, size: m.size, hva: slotHva(m.slot) }));
  }
  for (let i = 0; i < sc.vcpus; i++) kvmVmIoctlCreateVcpu(kvm);
  w.current = 100;
  for (const op of sc.setup) drive(runOp(kvm, sc, op));
  kvm.checkZapPost = sc.checks.includes("zap-post");
  kvm.checkMemslot = sc.checks.includes("memslot");
  return { kvm, w };
}

/** The checks that hook into the engine. */
function arm({ kvm, w }: Instance, sc: ConcurrentScenario): void {
  if (sc.checks.includes("tlb"))
    kvm.mmuLock.onWriteRelease = () => {
      const p = checkTlbCoherence(kvm);
      if (p !== null) w.report("tlb", `write_unlock(mmu_lock) with a stale translation: ${p}`);
    };
}

/** One operation as a generator of steps. */
export function* runOp(kvm: Kvm, sc: ConcurrentScenario, op: Op): Gen<void> {
  const n = (k: string): number => op[k] as number;
  switch (op.op) {
    case "access": {
      const vcpu = kvm.vcpus[n("vcpu")]!;
      yield* kvmGuestAccess(kvm, vcpu, n("gpa"), op["exec"] === true ? "exec" : op["write"] === true ? "write" : "read");
      return;
    }
    case "madvise":
      yield* kvm.mm.madviseDontneed(slotHva(n("slot")) + n("offset"), n("size"));
      return;
    case "host_write":
      yield* kvm.mm.userWrite(slotHva(n("slot")) + n("offset"));
      return;
    case "zap_gfn_range":
      yield* kvmZapGfnRange(kvm, n("start"), n("end"));
      return;
    case "zap_all_fast":
      yield* kvm.slotsLock.lock();
      yield* kvmMmuZapAllFast(kvm);
      yield* kvm.slotsLock.unlock();
      return;
    case "nx_recover":
      yield* kvmRecoverNxLpages(kvm);
      return;
    case "flush_tlb":
      yield* kvmFlushRemoteTlbs(kvm);
      return;
    case "age_gfn_range":
    case "test_age_gfn": {
      // The MMU notifier's clear_flush_young / test_young, over the hvas of the gfns.
      const start = op.op === "test_age_gfn" ? n("gfn") : n("start");
      const end = op.op === "test_age_gfn" ? start + 1 : n("end");
      const notifier = kvm.mm.notifiers[0] as KvmMmuNotifier;
      for (const s of kvm.memslots[0]!.sorted()) {
        const a = Math.max(start, s.baseGfn);
        const b = Math.min(end, s.endGfn);
        if (a >= b) continue;
        if (op.op === "test_age_gfn") yield* notifier.testYoung(s.gfnToHva(a));
        else yield* notifier.clearYoung(s.gfnToHva(a), s.gfnToHva(b - 1) + 4096, true);
      }
      return;
    }
    case "split_huge_pages": {
      const slot = kvm.memslots[0]!.slots.get(n("slot"));
      if (slot !== undefined) yield* kvmMmuSlotTrySplitHugePages(kvm, slot, 1);
      return;
    }
    case "zap_collapsible": {
      const slot = kvm.memslots[0]!.slots.get(n("slot"));
      if (slot !== undefined) yield* kvmMmuZapCollapsibleSptes(kvm, slot);
      return;
    }
    case "memslot": {
      const m = sc.memslots.find((x) => x.slot === n("slot"));
      const asId = (op["as"] as number | undefined) ?? m?.as ?? 0;
      const cur = kvm.memslots[asId]!.slots.get(n("slot"));
      const action = op["action"] as string;
      const hva = slotHva(n("slot"));
      const size = (op["size"] as number | undefined) ?? m?.size ?? (cur ? cur.npages * 4096 : 0);
      const gpa = (op["gpa"] as number | undefined) ?? m?.gpa ?? 0;
      const flags = (op["flags"] as number | undefined) ?? cur?.flags ?? 0;
      const backing = op["backing"] ?? m?.backing ?? "4k";
      if (action === "create" && kvm.mm.findVma(hva) === undefined) kvm.mm.mmapAnon(hva, size, backing === "2m", backing === "1g");
      yield* kvmSetMemoryRegion(kvm, {
        slot: n("slot"),
        asId,
        hva,
        size: action === "delete" ? 0 : size,
        gpa: action === "move" ? gpa : cur ? cur.baseGfn * 4096 : gpa,
        flags: action === "flags" ? flags : (cur?.flags ?? 0),
      });
      return;
    }
    case "dirty_log": {
      const slot = n("slot");
      const asId = sc.memslots.find((x) => x.slot === slot)?.as ?? 0;
      const cur = kvm.memslots[asId]!.slots.get(slot);
      if (cur === undefined) throw new IoctlError(EINVAL, `dirty_log ${op["action"] as string}: memslot ${slot} does not exist (any more)`);
      const action = op["action"] as string;
      if (action === "enable" || action === "disable")
        yield* kvmSetMemoryRegion(kvm, {
          slot,
          asId,
          hva: cur.userspaceAddr,
          size: cur.npages * 4096,
          gpa: cur.baseGfn * 4096,
          flags: action === "enable" ? cur.flags | KVM_MEM_LOG_DIRTY_PAGES : cur.flags & ~KVM_MEM_LOG_DIRTY_PAGES,
        });
      else if (action === "get") yield* kvmGetDirtyLog(kvm, asId, slot);
      else yield* kvmClearDirtyLog(kvm, asId, slot, (op["first"] as number | undefined) ?? 0, (op["count"] as number | undefined) ?? cur.npages);
      return;
    }
  }
}

/** The explorer's view of a scenario: a fresh VM per execution. */
export function makeProgram(sc: ConcurrentScenario): () => {
  threads: { name: string; body: () => Gen<void> }[];
  setCurrent(t: number): void;
  afterStep(t: number, s: Step): { check: string; message: string } | null;
  atEnd(): { check: string; message: string } | null;
  classify(e: unknown): { check: string; message: string } | null;
  stateLines(): string[];
  dispose(): void;
  instance: Instance;
} {
  // The leak check tears the VM down, which is most of the cost of a short run. Runs that
  // end in the same state (equal stateLines(), the notion of equal states the footprint
  // audit relies on) get the same verdict, so it is worked out once per final state.
  const leakVerdicts = new Map<string, { check: string; message: string } | null>();
  // Every execution starts from a copy of one host, built and set up once: the setup is
  // deterministic, and copying its result costs a fraction of running it again.
  let built: Instance | null = null;
  return () => {
    built ??= build(sc);
    const inst = new Copier().copy(built);
    arm(inst, sc);
    const { kvm, w } = inst;
    const enabledChecks = new Set<string>(sc.checks);
    let seen = 0;
    const firstFinding = (): { check: string; message: string } | null => {
      while (seen < w.findings.length) {
        const f = w.findings[seen++]!;
        // Name the scenario's threads in the message ("thread 1" -> "thread host").
        const message = f.message.replace(/thread (\d+)/g, (m, id: string) => {
          const t = sc.threads[Number(id)];
          return t === undefined ? m : `thread ${t.name}`;
        });
        if (enabledChecks.has(f.check)) return { check: f.check, message };
      }
      return null;
    };
    const teardown = (): { check: string; message: string } | null => {
      w.current = 99;
      // Teardown zaps without flushing (no vCPU runs again): not a hand-off to check.
      kvm.mmuLock.onWriteRelease = null;
      drive(kvmDestroyVm(kvm));
      const f = firstFinding();
      if (f !== null) return f;
      const l = checkNoLeaks(kvm);
      return l.length > 0 ? { check: "leaks", message: l.join("; ") } : null;
    };
    return {
      instance: inst,
      threads: sc.threads.map((t) => ({
        name: t.name,
        // One op: its generator is the thread (one delegation fewer on every step).
        body:
          t.ops.length === 1
            ? () => runOp(kvm, sc, t.ops[0]!)
            : function* () {
                for (const op of t.ops) yield* runOp(kvm, sc, op);
              },
      })),
      setCurrent: (t: number) => w.runStep(t),
      afterStep: () => firstFinding(),
      atEnd: () => {
        const f = firstFinding();
        if (f !== null) return f;
        if (enabledChecks.has("stats")) {
          const s = checkPageStats(kvm);
          if (s.length > 0) return { check: "stats", message: s.join("; ") };
        }
        if (enabledChecks.has("leaks")) {
          // Two 32-bit hashes and a length: a collision is unlikely enough (about 1e-9 with
          // 100 000 final states) to stand for equality here.
          const key = stateDigest(inst);
          const known = leakVerdicts.get(key);
          if (known !== undefined) return known;
          const v = teardown();
          leakVerdicts.set(key, v);
          return v;
        }
        return null;
      },
      stateLines: () => stateLines(inst),
      dispose: () => w.phys.release(),
      classify: (e: unknown) => (e instanceof KernelBug ? { check: "bug", message: e.message } : null),
    };
  };
}

export { KvmMmuNotifier };
