// SPDX-License-Identifier: GPL-2.0-only
// The parts of arch/x86/kvm/mmu/mmu.c (and spte.c's vCPU-context wrappers) that drive the
// TDP MMU: the page-fault path, huge-page level choice, root load/free, and the callers
// of the zap, dirty-logging and splitting primitives.
import { step, touch, type Gen } from "../kernel/index.js";
import {
  ACC_ALL,
  KVM_MAX_HUGEPAGE_LEVEL,
  PG_LEVEL_2M,
  PG_LEVEL_4K,
  PT_WRITABLE_MASK,
  getMmioSpteGeneration,
  isAccessTrackSpte,
  isExecutablePte,
  isLargePte,
  isLastSpte,
  isMmioSpte,
  isMmuWritableSpte,
  isShadowPresentPte,
  isWritablePte,
  kvmMmuMaxGfn,
  makeMmioSpte,
  mmioSpteGenerationMatches,
  restoreAccTrackSpte,
  vmxGetMtMask, kvmPagesPerHpage, isWritablePteWords, makeSpteWords, type MadeSpte, type MakeSpteWordsParams } from "../spte/index.js";
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMSLOT_INVALID,
  KVM_REQ_MMU_FREE_OBSOLETE_ROOTS,
  type Kvm,
  type KvmMemorySlot,
  type KvmVcpu,
} from "./kvm_host.js";
import {
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
  RET_PF_CONTINUE,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_INVALID,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  ROLE_AD_DISABLED,
  ROLE_CR0_WP,
  ROLE_DIRECT,
  ROLE_EFER_NX,
  ROLE_SMM_SHIFT,
  __ffs,
  __fls,
  roleAdDisabled,
  roleInvalid,
  roleLevel,
  type KvmMmuPage,
  type KvmPageFault,
} from "./mmu_internal.js";
import {
  kvmMmuInvalidateBegin,
  kvmMmuInvalidateEnd,
  kvmFlushRemoteTlbs,
  kvmFlushRemoteTlbsWithAddress,
  kvmMakeAllCpusRequest,
  kvmMemslotsGeneration,
  kvmReleasePfnClean,
  kvmVcpuGfnToMemslot,
  markPageDirtyInSlot,
  zapObligation,
} from "./kvm_main.js";
import {
  kvmTdpMmuClearDirtyPtMasked,
  kvmTdpMmuClearDirtySlot,
  kvmTdpMmuFastPfGetLastSptep,
  kvmTdpMmuGetVcpuRootHpa,
  kvmTdpMmuGetWalk,
  kvmTdpMmuInvalidateAllRoots,
  kvmTdpMmuMap,
  kvmTdpMmuPutRoot,
  kvmTdpMmuTrySplitHugePages,
  kvmTdpMmuWriteProtectGfn,
  kvmTdpMmuWrprotSlot,
  kvmTdpMmuZapCollapsibleSptes,
  kvmTdpMmuZapInvalidatedRoots,
  kvmTdpMmuZapLeafs,
  kvmTdpMmuZapSp,
  tableToSp,
} from "./tdp_mmu.js";

/** KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE and PT64_ROOT_MAX_LEVEL */
const NR_OBJS_PER_MEMORY_CACHE = 40;
const PT64_ROOT_MAX_LEVEL = 5;

// ---------------------------------------------------------------------------------------
// SPTE construction in vCPU context (spte.c)

// make_spte()'s inputs, one record reused by every call (a fault would otherwise allocate it):
// makeSpteWords() runs to completion without yielding and keeps no reference to it.
type Mutable<T> = { -readonly [K in keyof T]: T[K] };
let warnKvm: Kvm | null = null;
const spteParams: Mutable<MakeSpteWordsParams> = {
  level: 0,
  pteAccess: ACC_ALL,
  gfn: 0,
  pfn: 0,
  oldLo: 0,
  oldHi: 0,
  prefetch: false,
  hostWritable: false,
  adDisabled: false,
  adNeedWriteProtect: false,
  nxHugePageEnabled: false,
  mtMask: vmxGetMtMask({ isMmio: false }),
  isMmioPfn: false,
  warn: (m: string) => warnKvm?.w.report("warn", `make_spte: ${m}`),
};

/**
 * make_spte() for the TDP MMU: ACC_ALL, can_unsync, no shadow pages to unsync. The old SPTE
 * comes as its halves and the new one goes to `out` (see makeSpteWords()). Step 17 of the
 * kernel function, marking the gfn dirty for a writable SPTE in a dirty-logged slot,
 * happens here, before the SPTE is installed, as in the kernel.
 */
export function makeSpteForVcpu(
  kvm: Kvm,
  vcpu: KvmVcpu,
  sp: KvmMmuPage,
  slot: KvmMemorySlot,
  gfn: number,
  pfn: number,
  oldLo: number,
  oldHi: number,
  prefetch: boolean,
  hostWritable: boolean,
  out: MadeSpte,
): void {
  const level = roleLevel(sp.role);
  const p = spteParams;
  p.level = level;
  p.gfn = gfn;
  p.pfn = pfn;
  p.oldLo = oldLo;
  p.oldHi = oldHi;
  p.prefetch = prefetch;
  p.hostWritable = hostWritable;
  p.adDisabled = roleAdDisabled(sp.role);
  p.nxHugePageEnabled = kvm.params.nxHugePages;
  warnKvm = kvm;
  makeSpteWords(kvm.masks, p, out);
  warnKvm = null;
  if (isWritablePteWords(out.lo) && (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0) {
    kvm.w.warnOn(level > PG_LEVEL_4K, "make_spte: writable huge SPTE in a dirty-logged slot");
    markPageDirtyInSlot(kvm, slot, gfn, vcpu);
  }
}

/** make_mmio_spte(): with the generation of the vCPU's address space. */
export function makeMmioSpteForVcpu(kvm: Kvm, vcpu: KvmVcpu, gfn: number): bigint {
  const gen = kvmMemslotsGeneration(kvm, vcpu.smm ? 1 : 0);
  return makeMmioSpte(kvm.masks, gfn, ACC_ALL, gen, (m: string) => kvm.w.report("warn", `make_mmio_spte: ${m}`));
}

// ---------------------------------------------------------------------------------------
// Huge pages

/** host_pfn_mapping_level(): the size of the host mapping of the gfn's hva. */
function hostPfnMappingLevel(kvm: Kvm, slot: KvmMemorySlot, gfn: number): number {
  const l = kvm.mm.mappingLevel(slot.gfnToHva(gfn));
  return l === 0 ? PG_LEVEL_4K : l;
}

/** kvm_mmu_max_mapping_level() */
export function kvmMmuMaxMappingLevel(kvm: Kvm, slot: KvmMemorySlot, gfn: number, maxLevel: number): number {
  maxLevel = Math.min(maxLevel, KVM_MAX_HUGEPAGE_LEVEL);
  for (; maxLevel > PG_LEVEL_4K; maxLevel--) if (slot.disallowLpage(gfn, maxLevel) === 0) break;
  if (maxLevel === PG_LEVEL_4K) return PG_LEVEL_4K;
  return Math.min(hostPfnMappingLevel(kvm, slot, gfn), maxLevel);
}

/** kvm_mmu_hugepage_adjust() */
export function kvmMmuHugepageAdjust(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): void {
  fault.hugePageDisallowed = fault.exec && fault.nxHugePageWorkaroundEnabled;
  if (fault.maxLevel === PG_LEVEL_4K) return;
  const slot = fault.slot;
  if (slot === null || fault.pfn < 0) return;
  if (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) return;
  fault.reqLevel = kvmMmuMaxMappingLevel(kvm, slot, fault.gfn, fault.maxLevel);
  if (fault.reqLevel === PG_LEVEL_4K || fault.hugePageDisallowed) return;
  fault.goalLevel = fault.reqLevel;
  const mask = kvmPagesPerHpage(fault.goalLevel);
  kvm.w.bugOn((fault.gfn - fault.pfn) % mask !== 0, "kvm_mmu_hugepage_adjust: gfn and pfn not congruent");
  fault.pfn -= fault.pfn % mask;
  void vcpu;
}

/** disallowed_hugepage_adjust(): do not replace a split NX huge page by a huge mapping. */
export function disallowedHugepageAdjust(fault: KvmPageFault, spte: bigint, curLevel: number): void {
  if (
    curLevel > PG_LEVEL_4K &&
    curLevel === fault.goalLevel &&
    isShadowPresentPte(spte) &&
    !isLargePte(spte)
  ) {
    // pfn |= gfn & (KVM_PAGES_PER_HPAGE(cur) - KVM_PAGES_PER_HPAGE(cur - 1)), on numbers
    // wider than 32 bits.
    fault.pfn += (fault.gfn % kvmPagesPerHpage(curLevel)) - (fault.gfn % kvmPagesPerHpage(curLevel - 1));
    fault.goalLevel--;
  }
}

// ---------------------------------------------------------------------------------------
// Roots

/** kvm_mmu_get_tdp_level() and kvm_calc_tdp_mmu_root_page_role() */
export function kvmCalcTdpMmuRootPageRole(kvm: Kvm, vcpu: KvmVcpu): number {
  let role = kvm.params.tdpRootLevel | ROLE_DIRECT | (ACC_ALL << 8) | ROLE_EFER_NX | ROLE_CR0_WP;
  if (kvm.masks.shadowAccessedMask === 0n) role |= ROLE_AD_DISABLED;
  if (vcpu.smm) role |= 1 << ROLE_SMM_SHIFT;
  return role;
}

/** mmu_topup_memory_caches(): at least PT64_ROOT_MAX_LEVEL table pages, filled to 40. */
export function mmuTopupMemoryCaches(kvm: Kvm, vcpu: KvmVcpu): void {
  if (vcpu.shadowPageCache.length >= PT64_ROOT_MAX_LEVEL) return;
  while (vcpu.shadowPageCache.length < NR_OBJS_PER_MEMORY_CACHE) vcpu.shadowPageCache.push(kvm.w.pages.allocPage("unmovable").pfn);
}

/**
 * kvm_mmu_load(): give the vCPU a root (mmu_alloc_direct_roots under the write lock),
 * then flush the local TLB: the history of a loaded root is unknown.
 */
export function* kvmMmuLoad(kvm: Kvm, vcpu: KvmVcpu): Gen<void> {
  mmuTopupMemoryCaches(kvm, vcpu);
  touch(vcpu.tlb.obj, "w");
  vcpu.loadingRoot = true;
  yield* kvm.mmuLock.writeLock();
  vcpu.root = yield* kvmTdpMmuGetVcpuRootHpa(kvm, vcpu, kvmCalcTdpMmuRootPageRole(kvm, vcpu));
  yield* kvm.mmuLock.writeUnlock();
  yield step("flush", vcpu.vcpuId, "w", "kvm_mmu_load: local TLB flush");
  vcpu.tlb.flushAll();
  touch(vcpu.tlb.obj, "w");
  vcpu.loadingRoot = false;
}

/** kvm_mmu_free_roots() for the current root: drop the vCPU's reference. */
export function* kvmMmuFreeRoots(kvm: Kvm, vcpu: KvmVcpu): Gen<void> {
  if (vcpu.root === null) return;
  yield* kvm.mmuLock.writeLock();
  yield* kvmTdpMmuPutRoot(kvm, vcpu.root, false);
  touch(vcpu.tlb.obj, "w");
  vcpu.root = null;
  yield* kvm.mmuLock.writeUnlock();
}

/** kvm_mmu_free_obsolete_roots(): a root marked invalid is dropped. */
export function* kvmMmuFreeObsoleteRoots(kvm: Kvm, vcpu: KvmVcpu): Gen<void> {
  if (vcpu.root !== null && roleInvalid(vcpu.root.role)) yield* kvmMmuFreeRoots(kvm, vcpu);
}

// ---------------------------------------------------------------------------------------
// Page faults

/** kvm_mmu_do_page_fault(), its struct kvm_page_fault initializer. */
function newFault(kvm: Kvm, gpa: number, errorCode: number, prefetch: boolean): KvmPageFault {
  return {
    addr: gpa,
    errorCode,
    prefetch,
    exec: (errorCode & PFERR_FETCH_MASK) !== 0,
    write: (errorCode & PFERR_WRITE_MASK) !== 0,
    present: (errorCode & PFERR_PRESENT_MASK) !== 0,
    rsvd: (errorCode & PFERR_RSVD_MASK) !== 0,
    user: (errorCode & PFERR_USER_MASK) !== 0,
    isTdp: true,
    nxHugePageWorkaroundEnabled: kvm.params.nxHugePages,
    hugePageDisallowed: false,
    maxLevel: KVM_MAX_HUGEPAGE_LEVEL,
    reqLevel: PG_LEVEL_4K,
    goalLevel: PG_LEVEL_4K,
    gfn: Math.floor(gpa / 4096),
    slot: null,
    mmuSeq: 0,
    pfn: -1,
    hva: 0,
    mapWritable: false,
    page: null,
  };
}

/**
 * kvm_mmu_page_fault(): the nested page fault handler. Returns the RET_PF_* result.
 * Context: vCPU thread, no locks held.
 */
export function* kvmMmuPageFault(kvm: Kvm, vcpu: KvmVcpu, gpa: number, errorCode: number): Gen<number> {
  let r = RET_PF_INVALID;
  if (errorCode & PFERR_RSVD_MASK) {
    r = yield* handleMmioPageFault(kvm, vcpu, gpa);
    if (r === RET_PF_EMULATE) return r;
  }
  if (r === RET_PF_INVALID) r = yield* kvmMmuDoPageFault(kvm, vcpu, gpa, errorCode & ~PFERR_RSVD_MASK, false);
  return r;
}

/** handle_mmio_page_fault() */
function* handleMmioPageFault(kvm: Kvm, vcpu: KvmVcpu, gpa: number): Gen<number> {
  const gfn = Math.floor(gpa / 4096);
  const gen = kvmMemslotsGeneration(kvm, vcpu.smm ? 1 : 0);
  // mmio_info_in_cache()
  if (vcpu.mmioGfn !== 0 && vcpu.mmioGfn === gfn && vcpu.mmioGen === gen) return RET_PF_EMULATE;
  yield* kvm.rcu.rcuReadLock();
  const sptes: bigint[] = [];
  const leaf = yield* kvmTdpMmuGetWalk(kvm, vcpu, gfn, sptes);
  yield* kvm.rcu.rcuReadUnlock();
  if (leaf < 0) return RET_PF_RETRY;
  const spte = sptes[leaf]!;
  if (isMmioSpte(kvm.masks, spte)) {
    const ok = mmioSpteGenerationMatches(kvm.masks, spte, gen);
    if (kvm.tracer.on)
      kvm.tracer.emit({ ev: "check_mmio_spte", spte, kvmGen: Number(gen & 0x7ffffn), spteGen: Number(getMmioSpteGeneration(spte)) });
    if (!ok) return RET_PF_INVALID;
    if (kvm.tracer.on) kvm.tracer.emit({ ev: "handle_mmio_page_fault", gfn, access: 6 });
    vcpuCacheMmioInfo(vcpu, gfn, gen);
    return RET_PF_EMULATE;
  }
  return RET_PF_RETRY;
}

/** vcpu_cache_mmio_info(): not while a memslot update is in flight. */
function vcpuCacheMmioInfo(vcpu: KvmVcpu, gfn: number, gen: bigint): void {
  if (gen & (1n << 63n)) return;
  vcpu.mmioGfn = gfn;
  vcpu.mmioAccess = ACC_ALL;
  vcpu.mmioGen = gen;
}

/** kvm_mmu_do_page_fault() */
function* kvmMmuDoPageFault(kvm: Kvm, vcpu: KvmVcpu, gpa: number, errorCode: number, prefetch: boolean): Gen<number> {
  const fault = newFault(kvm, gpa, errorCode, prefetch);
  if (!prefetch) vcpu.stat.pfTaken++;
  const r = yield* directPageFault(kvm, vcpu, fault);
  if (r === RET_PF_FIXED) vcpu.stat.pfFixed++;
  else if (!prefetch && r === RET_PF_EMULATE) vcpu.stat.pfEmulate++;
  else if (!prefetch && r === RET_PF_SPURIOUS) vcpu.stat.pfSpurious++;
  else if (r === RET_PF_RETRY) vcpu.stat.pfRetry++;
  return r;
}

/** direct_page_fault(), TDP MMU branch (6.1.192 shape). */
function* directPageFault(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): Gen<number> {
  fault.slot = kvmVcpuGfnToMemslot(kvm, vcpu, fault.gfn);
  let r = yield* fastPageFault(kvm, vcpu, fault);
  if (r !== RET_PF_INVALID) return r;
  mmuTopupMemoryCaches(kvm, vcpu);
  r = yield* kvmFaultinPfn(kvm, vcpu, fault);
  if (r !== RET_PF_CONTINUE) return r;
  r = handleAbnormalPfn(kvm, vcpu, fault);
  if (r !== RET_PF_CONTINUE) return r;
  const page = fault.page;
  r = RET_PF_RETRY;
  yield* kvm.mmuLock.readLock();
  if (!isPageFaultStale(kvm, vcpu, fault)) r = yield* kvmTdpMmuMap(kvm, vcpu, fault);
  yield* kvm.mmuLock.readUnlock();
  // kvm_release_pfn_clean(orig_pfn): the reference taken by get_user_pages().
  if (page !== null) kvmReleasePfnClean(kvm, page);
  return r;
}

/**
 * kvm_faultin_pfn(): snapshot mmu_invalidate_seq first, then translate gfn -> hva -> pfn
 * with get_user_pages() (which may fault the host page in, and so run MMU notifiers).
 */
function* kvmFaultinPfn(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): Gen<number> {
  yield step("read", kvm.objIds.invalidateSeq, "r", "READ_ONCE(mmu_invalidate_seq)");
  fault.mmuSeq = kvm.variant("mmu-seq-truncation-hang") ? (kvm.mmuInvalidateSeq | 0) : kvm.mmuInvalidateSeq;
  const slot = fault.slot;
  if (slot !== null && (slot.flags & KVM_MEMSLOT_INVALID) !== 0 && !kvm.variant("invalid-memslot-as-mmio")) return RET_PF_RETRY;
  if (slot === null || (slot.flags & KVM_MEMSLOT_INVALID) !== 0) {
    fault.slot = null;
    fault.pfn = -1; // KVM_PFN_NOSLOT
    fault.mapWritable = false;
    return RET_PF_CONTINUE;
  }
  fault.hva = slot.gfnToHva(fault.gfn);
  const readOnlySlot = (slot.flags & KVM_MEM_READONLY) !== 0;
  if (readOnlySlot && fault.write) {
    fault.pfn = -2; // KVM_PFN_ERR_RO_FAULT
    return RET_PF_CONTINUE;
  }
  // hva_to_pfn(): the fast path asks for a writable page whenever the caller can use one.
  let pte = readOnlySlot ? null : kvm.mm.gupFastOnly(fault.hva, true);
  let writable = pte !== null;
  if (pte === null) {
    pte = yield* kvm.mm.gup(fault.hva, fault.write);
    if (pte === null) {
      fault.pfn = -3; // KVM_PFN_ERR_FAULT
      return RET_PF_CONTINUE;
    }
    writable = pte.writable;
    if (!fault.write && !writable && !readOnlySlot) {
      const wp = kvm.mm.gupFastOnly(fault.hva, true);
      if (wp !== null) {
        kvm.w.pages.putPage(pte.page);
        pte = wp;
        writable = true;
      }
    }
  }
  fault.page = pte.page;
  fault.pfn = pte.pfn;
  fault.mapWritable = writable && !readOnlySlot;
  return RET_PF_CONTINUE;
}

/** handle_abnormal_pfn() */
function handleAbnormalPfn(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): number {
  if (fault.pfn === -2) return RET_PF_EMULATE;
  if (fault.pfn === -3) return RET_PF_EMULATE;
  if (fault.pfn === -1) {
    vcpuCacheMmioInfo(vcpu, fault.gfn, kvmMemslotsGeneration(kvm, vcpu.smm ? 1 : 0));
    if (!kvm.masks.enableMmioCaching || fault.gfn > kvmMmuMaxGfn(kvm.masks)) return RET_PF_EMULATE;
  }
  return RET_PF_CONTINUE;
}

/**
 * is_page_fault_stale(): under mmu_lock, has the root gone invalid or has an invalidation
 * run (or is one running over our hva) since kvm_faultin_pfn() took its snapshot?
 */
function isPageFaultStale(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): boolean {
  const root = vcpu.root;
  if (root !== null && roleInvalid(root.role) && !kvm.variant("fault-into-invalid-root")) return true;
  if (fault.slot === null) return false;
  touch(kvm.objIds.invalidateSeq, "r");
  // mmu_invalidate_retry_hva()
  if (kvm.mmuInvalidateInProgress !== 0 && kvm.mmuInvalidateRangeStart <= fault.hva && fault.hva < kvm.mmuInvalidateRangeEnd)
    return true;
  return kvm.mmuInvalidateSeq !== fault.mmuSeq;
}

/** page_fault_can_be_fast() */
function pageFaultCanBeFast(kvm: Kvm, fault: KvmPageFault): boolean {
  if (fault.rsvd) return false;
  if (!fault.present) return kvm.masks.shadowAccessedMask === 0n;
  return fault.write;
}

/** is_access_allowed() */
function isAccessAllowed(kvm: Kvm, fault: KvmPageFault, spte: bigint): boolean {
  if (fault.exec) return isExecutablePte(kvm.masks, spte);
  if (fault.write) return isWritablePte(spte);
  return (spte & 1n) !== 0n;
}

/**
 * fast_page_fault(): fix a write-protected or access-tracked leaf without mmu_lock, with
 * one compare-and-swap. Such fixes are not traced by kvm_tdp_mmu_spte_changed.
 */
function* fastPageFault(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): Gen<number> {
  if (!pageFaultCanBeFast(kvm, fault)) return RET_PF_INVALID;
  let ret = RET_PF_INVALID;
  let spte = 0n;
  let newSpte = 0n;
  yield* kvm.rcu.rcuReadLock();
  for (let retry = 0; ; retry++) {
    const last = yield* kvmTdpMmuFastPfGetLastSptep(kvm, vcpu, fault.gfn);
    if (last === null) break;
    spte = last.spte;
    if (!isShadowPresentPte(spte)) break;
    const sp = tableToSp(last.table);
    if (!isLastSpte(spte, roleLevel(sp.role))) break;
    if (isAccessAllowed(kvm, fault, spte)) {
      ret = RET_PF_SPURIOUS;
      break;
    }
    newSpte = spte;
    if (kvm.masks.shadowAccessedMask === 0n && isAccessTrackSpte(kvm.masks, spte)) newSpte = restoreAccTrackSpte(kvm.masks, newSpte);
    if (fault.write && isMmuWritableSpte(kvm.masks, spte)) {
      newSpte |= PT_WRITABLE_MASK;
      if (roleLevel(sp.role) > PG_LEVEL_4K && fault.slot !== null && (fault.slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0) break;
    }
    if (newSpte === spte || !isAccessAllowed(kvm, fault, newSpte)) break;
    // fast_pf_fix_direct_spte()
    yield step("rmw", last.table.sptep(last.idx), "w", "try_cmpxchg64(sptep) [fast_pf_fix_direct_spte]");
    if (last.table.freed) kvm.w.report("rcu", "fast_page_fault: cmpxchg on a freed page table");
    if (last.table.spt[last.idx] === spte) {
      last.table.spt[last.idx] = newSpte;
      if (isWritablePte(newSpte) && !isWritablePte(spte)) markPageDirtyInSlot(kvm, fault.slot, fault.gfn, vcpu);
      ret = RET_PF_FIXED;
      break;
    }
    if (retry >= 4) break;
  }
  yield* kvm.rcu.rcuReadUnlock();
  if (kvm.tracer.on) kvm.tracer.emit({ ev: "fast_page_fault", gpa: fault.addr, errorCode: fault.errorCode, oldSpte: spte, newSpte, ret });
  if (ret !== RET_PF_INVALID) vcpu.stat.pfFast++;
  return ret;
}

// ---------------------------------------------------------------------------------------
// Zapping callers

/**
 * kvm_zap_gfn_range(): a correctness zap of [start, end) in every root, fenced by an
 * invalidation over every hva so racing faults retry.
 * Context: takes mmu_lock for write.
 */
export function* kvmZapGfnRange(kvm: Kvm, start: number, end: number): Gen<void> {
  const readMode = kvm.variant("zap-under-read-lock");
  if (readMode) yield* kvm.mmuLock.readLock();
  else yield* kvm.mmuLock.writeLock();
  kvmMmuInvalidateBegin(kvm, 0, Number.MAX_SAFE_INTEGER);
  const flush = yield* kvmTdpMmuZapLeafs(kvm, start, end, false);
  if (kvm.checkZapPost) {
    zapObligation(kvm, 0, start, end);
    zapObligation(kvm, 1, start, end);
  }
  if (flush) yield* kvmFlushRemoteTlbsWithAddress(kvm, start, end - start);
  kvmMmuInvalidateEnd(kvm);
  if (readMode) yield* kvm.mmuLock.readUnlock();
  else yield* kvm.mmuLock.writeUnlock();
}

/**
 * kvm_mmu_zap_all_fast(): invalidate every root and zap them, in this task, under the
 * read lock.
 * Context: slots_lock held.
 */
export function* kvmMmuZapAllFast(kvm: Kvm): Gen<void> {
  yield* kvm.mmuLock.writeLock();
  if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_mmu_zap_all_fast" });
  kvm.arch.mmuValidGen = kvm.arch.mmuValidGen ? 0 : 1;
  yield* kvmTdpMmuInvalidateAllRoots(kvm);
  yield* kvmMakeAllCpusRequest(kvm, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS);
  yield* kvm.mmuLock.writeUnlock();
  if (!kvm.variant("fast-zap-defers-root-teardown")) yield* kvmTdpMmuZapInvalidatedRoots(kvm);
}

/** kvm_mmu_zap_collapsible_sptes(): after dirty logging was switched off. */
export function* kvmMmuZapCollapsibleSptes(kvm: Kvm, slot: KvmMemorySlot): Gen<void> {
  yield* kvm.mmuLock.readLock();
  yield* kvmTdpMmuZapCollapsibleSptes(kvm, slot);
  yield* kvm.mmuLock.readUnlock();
}

/** kvm_mmu_slot_remove_write_access() */
export function* kvmMmuSlotRemoveWriteAccess(kvm: Kvm, slot: KvmMemorySlot, startLevel: number): Gen<void> {
  yield* kvm.mmuLock.readLock();
  yield* kvmTdpMmuWrprotSlot(kvm, slot, startLevel);
  yield* kvm.mmuLock.readUnlock();
}

/** kvm_mmu_slot_leaf_clear_dirty() */
export function* kvmMmuSlotLeafClearDirty(kvm: Kvm, slot: KvmMemorySlot): Gen<void> {
  yield* kvm.mmuLock.readLock();
  yield* kvmTdpMmuClearDirtySlot(kvm, slot);
  yield* kvm.mmuLock.readUnlock();
}

/** kvm_mmu_slot_try_split_huge_pages() */
export function* kvmMmuSlotTrySplitHugePages(kvm: Kvm, slot: KvmMemorySlot, targetLevel: number): Gen<void> {
  yield* kvm.mmuLock.readLock();
  yield* kvmTdpMmuTrySplitHugePages(kvm, slot, slot.baseGfn, slot.endGfn, targetLevel, true);
  yield* kvm.mmuLock.readUnlock();
}

/**
 * kvm_arch_mmu_enable_log_dirty_pt_masked(): re-protect the 4K pages of one bitmap word.
 * Context: mmu_lock held for write.
 */
export function* kvmArchMmuEnableLogDirtyPtMasked(kvm: Kvm, slot: KvmMemorySlot, gfnOffset: number, mask: bigint): Gen<void> {
  // kvm_dirty_log_manual_protect_and_init_set()
  if (kvm.manualDirtyLogInitSet) {
    const lo = __ffs(mask);
    const hi = __fls(mask);
    const start = slot.baseGfn + gfnOffset + lo;
    const end = slot.baseGfn + gfnOffset + hi;
    if (kvm.params.eagerPageSplit) yield* kvmTdpMmuTrySplitHugePages(kvm, slot, start, end, PG_LEVEL_4K, false);
    yield* kvmTdpMmuWriteProtectGfn(kvm, slot, start, PG_LEVEL_2M);
    if (Math.floor(start / 512) !== Math.floor(end / 512)) yield* kvmTdpMmuWriteProtectGfn(kvm, slot, end, PG_LEVEL_2M);
  }
  yield* kvmTdpMmuClearDirtyPtMasked(kvm, slot, slot.baseGfn + gfnOffset, mask, !kvm.params.pml);
}



/**
 * kvm_recover_nx_lpages(): zap the oldest NX-split page tables so huge pages can return.
 * Context: takes mmu_lock for write.
 */
export function* kvmRecoverNxLpages(kvm: Kvm, ratio = 1): Gen<number> {
  yield* kvm.mmuLock.writeLock();
  yield* kvm.rcu.rcuReadLock();
  let toZap = ratio ? Math.ceil(kvm.stat.nxLpageSplits / ratio) : 0;
  let flush = false;
  let zapped = 0;
  for (; toZap > 0 && kvm.arch.lpageDisallowedMmuPages.length > 0; toZap--) {
    const sp = kvm.arch.lpageDisallowedMmuPages[0]!;
    kvm.w.warnOn(!sp.lpageDisallowed, "kvm_recover_nx_lpages: SP on the NX list is not marked");
    const zapFlush = yield* kvmTdpMmuZapSp(kvm, sp);
    // Variant nx-recovery-flush-overwritten: the pre-fix loop assigned instead of OR-ing.
    flush = kvm.variant("nx-recovery-flush-overwritten") ? zapFlush : zapFlush || flush;
    zapped++;
    if (kvm.w.needResched(kvm.w.current, "kvm_recover_nx_lpages") || kvm.mmuLock.needbreak()) {
      if (flush) yield* kvmFlushRemoteTlbs(kvm);
      flush = false;
      yield* kvm.rcu.rcuReadUnlock();
      yield* kvm.mmuLock.writeUnlock();
      yield* kvm.mmuLock.writeLock();
      yield* kvm.rcu.rcuReadLock();
    }
  }
  if (kvm.variant("free-before-flush")) {
    // The flush after leaving the RCU section: the grace period may end, and the zapped
    // tables be freed, while vCPUs still cache walks through them.
    yield* kvm.rcu.rcuReadUnlock();
    if (flush) yield* kvmFlushRemoteTlbs(kvm);
  } else {
    if (flush) yield* kvmFlushRemoteTlbs(kvm);
    yield* kvm.rcu.rcuReadUnlock();
  }
  yield* kvm.mmuLock.writeUnlock();
  return zapped;
}

