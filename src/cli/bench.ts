// SPDX-License-Identifier: GPL-2.0-only
// `tdpmmu bench`: what one page-table operation costs per 4K guest page, with the engine's
// full bookkeeping (default) or as the bare walk-and-SPTE work (--bare, the shape of
// bench/cbase, so the two can be compared as a ratio in one run).
import { performance } from "node:perf_hooks";
import { World, drive } from "../kernel/index.js";
import { join, lo32, spteToPfn } from "../spte/index.js";
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  kvmArchMmuEnableLogDirtyPtMasked,
  kvmCreateVm,
  kvmMmuLoad,
  kvmSetMemoryRegion,
  kvmTdpMmuAgeGfnRange,
  kvmTdpMmuMap,
  kvmTdpMmuTrySplitHugePages,
  kvmTdpMmuZapAll,
  kvmVmIoctlCreateVcpu,
  mmuTopupMemoryCaches,
  type Kvm,
  type KvmMemorySlot,
  type KvmPageFault,
  type KvmVcpu,
} from "../mmu/index.js";

export const BENCH_OPS = ["populate", "zap", "clear-dirty", "age", "split"] as const;
export type BenchOp = (typeof BENCH_OPS)[number];

export interface BenchResult {
  readonly op: BenchOp;
  readonly gib: number;
  readonly bare: boolean;
  readonly nsPerPage: number;
  readonly bytesPerPage: number;
  readonly pages: number;
  readonly reps: number;
}

const PAGES_PER_GIB = 262144;
const BASE_GFN = 1 << 20; // 4 GiB, 1 GiB aligned, as bench/cbase

/**
 * Let the young generation settle before the clock starts: enough short-lived garbage for a
 * few scavenges, which move the set-up (struct pages, populated tables) to the old
 * generation, so copying it is not charged to the operation measured. (A full collection
 * would also do it, but it discards compiled code, and the operation would then run cold.)
 */
const settleSink: unknown[] = [null];
function settleHeap(): void {
  for (let i = 0; i < 1 << 17; i++) settleSink[0] = new Array<number>(64).fill(i);
  settleSink[0] = null;
}

// ---------------------------------------------------------------------------------------
// Full bookkeeping: the engine itself (direct build when run from bin/tdpmmu.js)

interface Vm {
  kvm: Kvm;
  vcpu: KvmVcpu;
  slot: KvmMemorySlot;
}

function makeVm(gib: number, format: "npt" | "ept", pml: boolean): Vm {
  const w = new World();
  const kvm = kvmCreateVm(w, { format, tdpRootLevel: 4, eagerPageSplit: true, nxHugePages: false, physBits: 48, pml, mmioCaching: true });
  kvm.tracer.on = false;
  const hva = 0x7f0000000000;
  kvm.mm.mmapAnon(hva, gib * 0x40000000, true);
  drive(kvmSetMemoryRegion(kvm, { slot: 0, asId: 0, flags: 0, gpa: BASE_GFN * 4096, size: gib * 0x40000000, hva }));
  const vcpu = kvmVmIoctlCreateVcpu(kvm);
  drive(kvmMmuLoad(kvm, vcpu));
  return { kvm, vcpu, slot: kvm.memslots[0]!.slots.get(0)! };
}

/**
 * Host frames for `pages` 4K guest pages, allocated before the clock starts: real struct
 * pages, so that dirty and accessed propagation finds them as the kernel's does.
 */
function hostFrames(kvm: Kvm, pages: number): Float64Array {
  const pfns = new Float64Array(pages);
  for (let i = 0; i < pages; i++) pfns[i] = kvm.w.pages.allocPage("movable").pfn;
  return pfns;
}

/**
 * Fault in every page at `level` through kvm_tdp_mmu_map() under the read lock.
 * MODEL: at 4K the host side (get_user_pages) is replaced by the frames of hostFrames(), as
 * a populate-without-exits benchmark measures only the MMU.
 */
function populate(vm: Vm, pages: number, level: 1 | 2, pfns: Float64Array | null): void {
  const { kvm, vcpu, slot } = vm;
  const step = level === 1 ? 1 : 512;
  // One fault record, refilled for each fault, as the kernel's lives on the stack.
  const fault: { -readonly [K in keyof KvmPageFault]: KvmPageFault[K] } = {
    addr: 0,
    errorCode: 6,
    prefetch: false,
    exec: false,
    write: true,
    present: false,
    rsvd: false,
    user: true,
    isTdp: true,
    nxHugePageWorkaroundEnabled: false,
    hugePageDisallowed: false,
    maxLevel: level,
    reqLevel: 1,
    goalLevel: 1,
    gfn: 0,
    slot,
    mmuSeq: 0,
    pfn: 0,
    hva: 0,
    mapWritable: true,
    page: null,
  };
  drive(kvm.mmuLock.readLock());
  for (let i = 0; i < pages; i += step) {
    const gfn = BASE_GFN + i;
    if (vcpu.shadowPageCache.length < 5) mmuTopupMemoryCaches(kvm, vcpu);
    fault.addr = gfn * 4096;
    fault.maxLevel = level;
    fault.reqLevel = 1;
    fault.goalLevel = 1;
    fault.hugePageDisallowed = false;
    fault.gfn = gfn;
    fault.mmuSeq = kvm.mmuInvalidateSeq;
    fault.pfn = pfns?.[i] ?? -1;
    fault.hva = slot.gfnToHva(gfn);
    if (level === 2) kvm.mm.gupFastOnly(fault.hva, true) ?? drive(kvm.mm.gup(fault.hva, true));
    if (level === 2) fault.pfn = kvm.mm.pte(fault.hva)!.pfn;
    drive(kvmTdpMmuMap(kvm, vcpu, fault));
  }
  drive(kvm.mmuLock.readUnlock());
}

function tableBytesPerPage(kvm: Kvm, pages: number): number {
  // Page-table frames, as the kernel counts them (the root included).
  return ((kvm.arch.tdpMmuPages.size + kvm.arch.tdpMmuRoots.length) * 4096) / pages;
}

function runFull(op: BenchOp, gib: number): { ns: number; bytes: number } {
  const pages = Math.round(gib * PAGES_PER_GIB);
  const pml = op === "clear-dirty";
  const vm = makeVm(gib, pml ? "ept" : "npt", pml);
  const { kvm, slot } = vm;
  const pfns = op === "split" ? null : hostFrames(kvm, pages);
  let t0 = 0;
  let t1 = 0;
  let bytes = 0;
  switch (op) {
    case "populate":
      settleHeap();
      t0 = performance.now();
      populate(vm, pages, 1, pfns);
      t1 = performance.now();
      bytes = tableBytesPerPage(kvm, pages);
      break;
    case "zap":
      populate(vm, pages, 1, pfns);
      bytes = tableBytesPerPage(kvm, pages);
      settleHeap();
      t0 = performance.now();
      drive(kvm.mmuLock.writeLock());
      drive(kvmTdpMmuZapAll(kvm));
      drive(kvm.mmuLock.writeUnlock());
      t1 = performance.now();
      break;
    case "clear-dirty": {
      // KVM_CLEAR_DIRTY_LOG with PML: clear D bits a 64-page word at a time, write lock.
      populate(vm, pages, 1, pfns);
      bytes = tableBytesPerPage(kvm, pages);
      kvm.manualDirtyLogProtect = true;
      slot.flags |= KVM_MEM_LOG_DIRTY_PAGES;
      settleHeap();
      t0 = performance.now();
      drive(kvm.mmuLock.writeLock());
      for (let off = 0; off < pages; off += 64) drive(kvmArchMmuEnableLogDirtyPtMasked(kvm, slot, off, 0xffffffffffffffffn));
      drive(kvm.mmuLock.writeUnlock());
      t1 = performance.now();
      break;
    }
    case "age":
      populate(vm, pages, 1, pfns);
      bytes = tableBytesPerPage(kvm, pages);
      settleHeap();
      t0 = performance.now();
      drive(kvm.mmuLock.writeLock());
      drive(kvmTdpMmuAgeGfnRange(kvm, 0, BASE_GFN, BASE_GFN + pages));
      drive(kvm.mmuLock.writeUnlock());
      t1 = performance.now();
      break;
    case "split":
      populate(vm, pages, 2, null);
      settleHeap();
      t0 = performance.now();
      drive(kvm.mmuLock.readLock());
      drive(kvmTdpMmuTrySplitHugePages(kvm, slot, slot.baseGfn, slot.endGfn, 1, true));
      drive(kvm.mmuLock.readUnlock());
      t1 = performance.now();
      bytes = tableBytesPerPage(kvm, pages);
      break;
  }
  const findings = kvm.w.findings;
  if (findings.length > 0) throw new Error(`bench ${op}: the engine reported ${findings[0]!.check}: ${findings[0]!.message}`);
  return { ns: ((t1 - t0) * 1e6) / pages, bytes };
}

// ---------------------------------------------------------------------------------------
// Bare: the same radix walk and SPTE updates, no locks, stats, RCU or trace

// The engine's SPTE technique (src/spte/spte.ts, "Halves"): an SPTE is loaded and stored as
// a bigint, and tested and built through its two 32-bit halves.
const P = 1;
const A = 0x20;
const D = 0x40;

/** The SPTE with `pfn` in bits 51:12 and `low` in bits 11:0. */
const spteOf = (pfn: number, low: number): bigint => join(((pfn & 0xfffff) << 12) | low, Math.floor(pfn / 0x100000));

/** gfn / LEVEL_DIV[level] & 511 is the entry index at that level (gfns stay below 2^52). */
const LEVEL_DIV = [0, 1, 2 ** 9, 2 ** 18, 2 ** 27, 2 ** 36];

export class BareRadix {
  readonly tables: BigUint64Array[] = [new BigUint64Array(512)];
  private free: number[] = [];

  alloc(): number {
    const i = this.free.pop();
    if (i !== undefined) {
      this.tables[i]!.fill(0n);
      return i;
    }
    this.tables.push(new BigUint64Array(512));
    return this.tables.length - 1;
  }

  populate(base: number, pages: number): void {
    for (let i = 0; i < pages; i++) {
      const gfn = base + i;
      let t = this.tables[0]!;
      for (let level = 4; level > 1; level--) {
        const idx = (gfn / LEVEL_DIV[level]!) & 511;
        const s = t[idx]!;
        let child: number;
        if ((lo32(s) & P) === 0) {
          child = this.alloc();
          t[idx] = spteOf(child, 0x827);
        } else child = spteToPfn(s);
        t = this.tables[child]!;
      }
      t[gfn & 511] = spteOf(0x1000000 + i, 0xe67);
    }
  }

  /** Every leaf table under the root, found by a walk over the non-leaf levels: the shape of a range walk. */
  private leafTables(t: BigUint64Array = this.tables[0]!, level = 4, out: BigUint64Array[] = []): BigUint64Array[] {
    for (let i = 0; i < 512; i++) {
      const s = t[i]!;
      if ((lo32(s) & P) === 0) continue;
      const c = this.tables[spteToPfn(s)]!;
      if (level === 2) out.push(c);
      else this.leafTables(c, level - 1, out);
    }
    return out;
  }

  zap(): void {
    for (const t of this.leafTables()) {
      for (let i = 0; i < 512; i++) {
        if ((lo32(t[i]!) & P) !== 0) t[i] = 0n;
      }
    }
    // Free every table below the root.
    for (let i = 1; i < this.tables.length; i++) this.free.push(i);
    this.tables[0]!.fill(0n);
  }

  /** Clear `mask` (bits 11:0) in every leaf that has any of it. */
  clearBits(mask: number): void {
    // The new value is made as a bigint, loaded and stored in one expression: the optimizing
    // compiler keeps such a bigint in a register rather than allocating it.
    const keep = ~BigInt(mask);
    for (const t of this.leafTables()) {
      for (let i = 0; i < 512; i++) {
        const s = t[i]!;
        if ((lo32(s) & mask) !== 0) t[i] = s & keep;
      }
    }
  }

  tableCount(): number {
    return this.tables.length - this.free.length;
  }
}

function runBare(op: BenchOp, gib: number): { ns: number; bytes: number } {
  const pages = Math.round(gib * PAGES_PER_GIB);
  const r = new BareRadix();
  let t0 = 0;
  let t1 = 0;
  if (op === "populate") {
    settleHeap();
    t0 = performance.now();
    r.populate(BASE_GFN, pages);
    t1 = performance.now();
  } else {
    r.populate(BASE_GFN, pages);
    settleHeap();
    t0 = performance.now();
    if (op === "zap") r.zap();
    else if (op === "clear-dirty") r.clearBits(D);
    else if (op === "age") r.clearBits(A);
    else throw new UsageProblem("--bare has no 'split' (bench/cbase has none to compare with)");
    t1 = performance.now();
  }
  const bytes = op === "zap" ? (515 * 4096 * gib) / pages : (r.tableCount() * 4096) / pages;
  return { ns: ((t1 - t0) * 1e6) / pages, bytes };
}

export class UsageProblem extends Error {}

const WARMUP = 8;

/** Best of `reps` runs (each on a fresh VM), after a warm-up. */
export function bench(op: BenchOp, gib: number, bare: boolean, reps: number): BenchResult {
  // Warm-up: the JIT needs a few runs before it has compiled the hot paths for good (the first
  // runs of an op at 1 GiB are several times slower than the later ones), so the same op first
  // runs WARMUP times on 1/16 GiB (at most `gib`), untimed.
  const warmGib = Math.min(gib, 1 / 16);
  for (let i = 0; i < WARMUP; i++) {
    if (bare) runBare(op, warmGib);
    else runFull(op, warmGib);
  }
  let best = Infinity;
  let bytes = 0;
  for (let i = 0; i < reps; i++) {
    const r = bare ? runBare(op, gib) : runFull(op, gib);
    if (r.ns < best) best = r.ns;
    bytes = r.bytes;
  }
  return { op, gib, bare, nsPerPage: best, bytesPerPage: bytes, pages: Math.round(gib * PAGES_PER_GIB), reps };
}
