// SPDX-License-Identifier: GPL-2.0-only
// The TDP MMU of Linux 6.1.192 (arch/x86/kvm/mmu/tdp_mmu.c), function for function.
//
// Every SPTE write goes through tdpMmuSetSpteAtomic() (mmu_lock held for read,
// compare-and-swap) or __tdpMmuSetSpte() (held for write); both end in
// handleChangedSpte(), where the tracepoint fires and the bookkeeping happens.
import { cmpxchgInto, FALSE_NOW, objOf, spinStep, step, touch, writeOnceObserved, type Gen, type SpteHalves, type Table } from "../kernel/index.js";
import {
  KVM_MAX_HUGEPAGE_LEVEL,
  PG_LEVEL_1G,
  PG_LEVEL_2M,
  PG_LEVEL_4K,
  PT_WRITABLE_MASK,
  checkSpteWritableInvariants,
  isLastSpte,
  isShadowPresentPte,
  kvmMmuMaxGfn,
  makeHugePageSplitSpte,
  makeNonleafSpte,
  markSpteForAccessTrack,
  spteToPfn,
  kvmMmuChangedPteNotifierMakeSpte, kvmPagesPerHpage,
  PT_WRITABLE_WORDS,
  hi32,
  isLargePteWords,
  isRemovedSpteWords,
  spteAdEnabledWords,
  spteAdNeedWriteProtectWords,
  spteHasAnyOfWords,
  isAccessedSpteWords,
  isDirtySpteWords,
  isLastSpteWords,
  isMmioSpteWords,
  isShadowPresentPteWords,
  isWritablePteWords,
  lo32,
  maskWords,
  spteToPfnWords,
  spteWritableInvariantsBrokenWords,
  join,
  LO_REMOVED,
  type MadeSpte,
  type Words } from "../spte/index.js";
import { EBUSY, ENOMEM } from "../base/index.js";
import type { Kvm, KvmMemorySlot, KvmVcpu } from "./kvm_host.js";
import {
  KvmMmuPage,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  __ffs,
  kvmMmuPageAsId,
  roleInvalid,
  roleLevel,
  roleWithLevel,
  ROLE_INVALID,
  type KvmPageFault,
} from "./mmu_internal.js";
import { TdpIter, kvmTdpMmuReadSpte, kvmTdpMmuWriteSpte, kvmTdpMmuWriteSpteAtomic, __kvmTdpMmuWriteSpte, spteToChildPt, roundGfnForLevel, spteIndexOfGfn } from "./tdp_iter.js";
import {
  kvmFlushRemoteTlbs,
  kvmFlushRemoteTlbsWithAddress,
  kvmSetPfnAccessed,
  kvmSetPfnDirty,
  markPageDirtyInSlot,
  gfnToMemslot,
} from "./kvm_main.js";
import { disallowedHugepageAdjust, kvmMmuHugepageAdjust, kvmMmuMaxMappingLevel, makeMmioSpteForVcpu, makeSpteForVcpu } from "./mmu.js";

const ENT = 512;

// ---------------------------------------------------------------------------------------
// Page-table pages

/** MODEL: a zeroed page-table frame and its SP (the SP header cache is implicit); see tdp_mmu_alloc_sp(). */
function allocSpFromFrame(kvm: Kvm, pfn: number): KvmMmuPage {
  const t = kvm.w.phys.makeTable(pfn);
  kvm.w.phys.forgetPoisoned(pfn);
  const sp = new KvmMmuPage(0, t);
  t.owner = sp;
  return sp;
}

/** sptep_to_sp() / to_shadow_page(): the SP of a page-table page. */
export function tableToSp(t: Table): KvmMmuPage {
  return t.owner as KvmMmuPage;
}

/**
 * tdp_mmu_alloc_sp(): from the vCPU's caches, which mmu_topup_memory_caches() filled
 * before mmu_lock was taken, so this cannot fail.
 * Context: mmu_lock held for read; no sleeping.
 */
export function tdpMmuAllocSp(vcpu: KvmVcpu, kvm: Kvm): KvmMmuPage {
  const pfn = vcpu.shadowPageCache.shift();
  if (pfn === undefined) {
    kvm.w.bugOn(true, "tdp_mmu_alloc_sp: mmu_shadow_page_cache is empty");
    throw new Error("unreachable");
  }
  return allocSpFromFrame(kvm, pfn);
}

/** tdp_mmu_free_sp(): free the table frame and the header at once (never linked, or after RCU). */
export function tdpMmuFreeSp(kvm: Kvm, sp: KvmMmuPage): void {
  const page = kvm.w.pages.pfnToPage(sp.spt.pfn);
  kvm.w.phys.freeTable(sp.spt);
  if (page !== undefined) kvm.w.pages.putPage(page, "unmovable");
}

/** MODEL: the footprint id of an SP's flags. */
const spHeader = (sp: KvmMmuPage): number => objOf.sp(sp.spt.pfn, 1);

/** call_rcu(&sp->rcu_head, tdp_mmu_free_sp_rcu_callback) */
function* callRcuFreeSp(kvm: Kvm, sp: KvmMmuPage): Gen<void> {
  if (sp.freeQueued) kvm.w.report("rcu", `page table 0x${sp.spt.pfn.toString(16)} handed to call_rcu() twice`);
  touch(spHeader(sp), "w");
  sp.freeQueued = true;
  kvm.pendingFree++;
  yield* kvm.rcu.callRcu("tdp_mmu_free_sp_rcu_callback", () => {
    kvm.pendingFree--;
    tdpMmuFreeSp(kvm, sp);
  });
}

/** tdp_mmu_init_sp() */
function tdpMmuInitSp(kvm: Kvm, sp: KvmMmuPage, sptep: { table: Table; idx: number } | null, gfn: number, role: number): void {
  sp.role = role;
  sp.gfn = gfn;
  sp.ptep = sptep;
  if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_mmu_get_page", gfn, role, created: true });
}

/** tdp_mmu_init_child_sp() */
export function tdpMmuInitChildSp(kvm: Kvm, child: KvmMmuPage, iter: TdpIter): void {
  const parent = tableToSp(iter.table);
  tdpMmuInitSp(kvm, child, { table: iter.table, idx: iter.idx }, iter.gfn, roleWithLevel(parent.role, roleLevel(parent.role) - 1));
}

// ---------------------------------------------------------------------------------------
// Roots

/** kvm_tdp_mmu_get_root(): take a reference unless the count already hit zero. */
export function kvmTdpMmuGetRoot(root: KvmMmuPage): boolean {
  touch(objOf.sp(root.spt.pfn, 0), "w");
  if (root.tdpMmuRootCount === 0) return false;
  root.tdpMmuRootCount++;
  return true;
}

/**
 * kvm_tdp_mmu_put_root(): drop a reference; the last one unlinks the root and frees it
 * after a grace period. Only an invalid root may lose its last reference.
 * Context: mmu_lock held for read if `shared`, else for write.
 */
export function* kvmTdpMmuPutRoot(kvm: Kvm, root: KvmMmuPage, shared: boolean): Gen<void> {
  kvm.mmuLock.assertHeldShared(shared);
  yield step("rmw", objOf.sp(root.spt.pfn, 0), "w", "refcount_dec_and_test(tdp_mmu_root_count)");
  if (--root.tdpMmuRootCount > 0) return;
  kvm.w.warnOn(!roleInvalid(root.role), "KVM_BUG_ON: last reference of a valid root put");
  yield* kvm.tdpMmuPagesLock.lock();
  const i = kvm.arch.tdpMmuRoots.indexOf(root);
  touch(kvm.objIds.roots, "w");
  if (i >= 0) kvm.arch.tdpMmuRoots.splice(i, 1);
  root.linked = false;
  yield* kvm.tdpMmuPagesLock.unlock();
  yield* callRcuFreeSp(kvm, root);
}

/**
 * tdp_mmu_next_root(): the root after `prev` (or the first), with a reference taken,
 * skipping invalid roots when `onlyValid`; then put `prev`.
 */
export function* tdpMmuNextRoot(kvm: Kvm, prev: KvmMmuPage | null, shared: boolean, onlyValid: boolean): Gen<KvmMmuPage | null> {
  yield* kvm.rcu.rcuReadLock();
  yield step("read", kvm.objIds.roots, "r", "list_next_or_null_rcu(tdp_mmu_roots)");
  const roots = kvm.arch.tdpMmuRoots;
  let i = prev === null ? 0 : roots.indexOf(prev) + 1;
  // A root removed from the list keeps its place for RCU readers; we hold a reference on
  // `prev`, so it is still listed.
  if (prev !== null && i === 0) i = roots.length;
  let next: KvmMmuPage | null = null;
  for (; i < roots.length; i++) {
    const r = roots[i]!;
    if ((!onlyValid || !roleInvalid(r.role)) && kvmTdpMmuGetRoot(r)) {
      next = r;
      break;
    }
  }
  yield* kvm.rcu.rcuReadUnlock();
  if (prev !== null) {
    // Variant root-put-without-free: the pre-fix iterator dropped its reference with a
    // bare decrement, so a root whose last reference it held was never freed.
    if (kvm.variant("root-put-without-free")) {
      yield step("rmw", objOf.sp(prev.spt.pfn, 0), "w", "atomic_dec(tdp_mmu_root_count)");
      prev.tdpMmuRootCount--;
    } else yield* kvmTdpMmuPutRoot(kvm, prev, shared);
  }
  return next;
}

/**
 * for_each_tdp_mmu_root_yield_safe(): the yield-safe root walks (all roots, every address
 * space), __for_each_tdp_mmu_root_yield_safe and for_each_valid_tdp_mmu_root_yield_safe
 * (one address space). `body` may yield; the reference is held across it.
 */
export function* forEachTdpMmuRootYieldSafe(
  kvm: Kvm,
  asId: number | null,
  shared: boolean,
  onlyValid: boolean,
  body: (root: KvmMmuPage) => Gen<boolean | void>,
): Gen<void> {
  for (let root = yield* tdpMmuNextRoot(kvm, null, shared, onlyValid); root !== null; root = yield* tdpMmuNextRoot(kvm, root, shared, onlyValid)) {
    kvm.mmuLock.assertHeldShared(shared);
    if (asId !== null && kvmMmuPageAsId(root) !== asId) continue;
    if ((yield* body(root)) === false) {
      // An early exit puts the current root itself.
      yield* kvmTdpMmuPutRoot(kvm, root, shared);
      return;
    }
  }
}

/** for_each_tdp_mmu_root(): no references; the write lock must be held and the body must not yield. */
function* forEachTdpMmuRoot(kvm: Kvm, asId: number): Gen<KvmMmuPage[]> {
  kvm.mmuLock.assertHeldWrite();
  yield step("read", kvm.objIds.roots, "r", "list_for_each_entry(tdp_mmu_roots)");
  return kvm.arch.tdpMmuRoots.filter((r) => kvmMmuPageAsId(r) === asId);
}

/**
 * kvm_tdp_mmu_get_vcpu_root_hpa(): reuse a root with the vCPU's role or make a new one,
 * which starts with two references: the vCPU's and the TDP MMU's own.
 * Context: mmu_lock held for write.
 */
export function* kvmTdpMmuGetVcpuRootHpa(kvm: Kvm, vcpu: KvmVcpu, role: number): Gen<KvmMmuPage> {
  kvm.mmuLock.assertHeldWrite();
  const asId = role >>> 24 !== 0 ? 1 : 0;
  for (const root of yield* forEachTdpMmuRoot(kvm, asId)) {
    if (root.role === role && kvmTdpMmuGetRoot(root)) return root;
  }
  const root = tdpMmuAllocSp(vcpu, kvm);
  tdpMmuInitSp(kvm, root, null, 0, role);
  root.tdpMmuRootCount = 2;
  yield* kvm.tdpMmuPagesLock.lock();
  touch(kvm.objIds.roots, "w");
  kvm.arch.tdpMmuRoots.unshift(root);
  root.linked = true;
  yield* kvm.tdpMmuPagesLock.unlock();
  return root;
}

// ---------------------------------------------------------------------------------------
// Bookkeeping

/** tdp_mmu_max_gfn_exclusive() */
export const tdpMmuMaxGfnExclusive = (kvm: Kvm): number => kvmMmuMaxGfn(kvm.masks) + 1;

/** kvm_update_page_stats(): stat.pages[level - 1] += count, an atomic64. */
export function* kvmUpdatePageStats(kvm: Kvm, level: number, count: number): Gen<void> {
  // atomic64_add(): a shared counter update, a step that commutes with its own kind ("rmw",
  // mode "a"). Announced as a plain step so that the direct build drops its label unbuilt.
  yield step("rmw", kvm.statIds.pages[level - 1]!, "a", `kvm_update_page_stats(L${level}, ${count})`);
  kvm.stat.pages[level - 1]! += count;
  if (kvm.tracer.on) {
    const [pages4k, pages2m, pages1g] = kvm.stat.pages as [number, number, number];
    kvm.tracer.emit({ ev: "kvm_tdp_mmu_page_stats", pages4k, pages2m, pages1g });
  }
}

/** account_huge_nx_page() */
function accountHugeNxPage(kvm: Kvm, sp: KvmMmuPage): void {
  if (sp.lpageDisallowed) return;
  kvm.stat.nxLpageSplits++;
  kvm.arch.lpageDisallowedMmuPages.push(sp);
  sp.lpageDisallowed = true;
}

/** unaccount_huge_nx_page() */
function unaccountHugeNxPage(kvm: Kvm, sp: KvmMmuPage): void {
  kvm.stat.nxLpageSplits--;
  sp.lpageDisallowed = false;
  const i = kvm.arch.lpageDisallowedMmuPages.indexOf(sp);
  if (i < 0) kvm.w.report("sp-lists", `unaccount_huge_nx_page: SP 0x${sp.spt.pfn.toString(16)} is not on the NX list (list_del corruption)`);
  else kvm.arch.lpageDisallowedMmuPages.splice(i, 1);
}

/**
 * tdp_mmu_unlink_sp(): take an SP off tdp_mmu_pages (and the NX list).
 * Context: mmu_lock held for write, or for read with tdp_mmu_pages_lock taken here.
 */
function* tdpMmuUnlinkSp(kvm: Kvm, sp: KvmMmuPage, shared: boolean): Gen<void> {
  if (shared) yield* kvm.tdpMmuPagesLock.lock();
  else kvm.mmuLock.assertHeldWrite();
  // CONFIG_DEBUG_LIST + BUG_ON_DATA_CORRUPTION: deleting a node that was never added.
  if (!kvm.arch.tdpMmuPages.delete(sp))
    kvm.w.report("sp-lists", `list_del corruption: SP 0x${sp.spt.pfn.toString(16)} (gfn 0x${sp.gfn.toString(16)}) is not on tdp_mmu_pages`);
  sp.linked = false;
  if (sp.lpageDisallowed) unaccountHugeNxPage(kvm, sp);
  if (shared) yield* kvm.tdpMmuPagesLock.unlock();
}

/**
 * handle_removed_pt(): a page table was disconnected; take every entry out (freezing each
 * one, so nobody can install into it), account for what it mapped, and free it after a
 * grace period. The caller owes the TLB flush.
 * Context: mmu_lock held (read if `shared`), inside rcu_read_lock().
 */
function* handleRemovedPt(kvm: Kvm, pt: Table, shared: boolean): Gen<void> {
  const sp = tableToSp(pt);
  const level = roleLevel(sp.role);
  const baseGfn = sp.gfn;
  if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_mmu_prepare_zap_page", gfn: sp.gfn, role: sp.role });
  yield* tdpMmuUnlinkSp(kvm, sp, shared);
  const asId = kvmMmuPageAsId(sp);
  // old_spte, as its halves.
  const old: SpteHalves = { oldLo: 0, oldHi: 0 };
  for (let i = 0; i < ENT; i++) {
    const gfn = baseGfn + i * kvmPagesPerHpage(level);
    if (shared) {
      // Someone else may be midway through a frozen update of this entry: wait for it.
      for (;;) {
        yield* kvmTdpMmuWriteSpteAtomic(kvm, pt, i, LO_REMOVED, 0, old);
        if (!isRemovedSpteWords(old.oldLo, old.oldHi)) break;
        yield spinStep(pt.sptep(i), "cpu_relax()");
      }
    } else {
      yield* kvmTdpMmuReadSpte(kvm, pt, i, old);
      if (!isShadowPresentPteWords(old.oldLo)) continue;
      yield* kvmTdpMmuWriteSpte(kvm, pt, i, old, LO_REMOVED, 0, level);
    }
    yield* handleChangedSpte(kvm, asId, gfn, old.oldLo, old.oldHi, LO_REMOVED, 0, level, shared);
  }
  yield* callRcuFreeSp(kvm, sp);
}

/** An SPTE given as halves, in hex, for messages. */
const hexWords = (lo: number, hi: number): string => `0x${join(lo, hi).toString(16)}`;

/**
 * __handle_changed_spte(): the one place every SPTE change is accounted for.
 *
 * Both SPTEs come as their 32-bit halves (old: `oLo`, `oHi`; new: `nLo`, `nHi`): the
 * setters hold them so, and every question asked here is one on halves. A 64-bit value is
 * made only for a message or a trace event.
 * Context: mmu_lock held (read if `shared`), inside rcu_read_lock().
 */
function* __handleChangedSpte(kvm: Kvm, asId: number, gfn: number, oLo: number, oHi: number, nLo: number, nHi: number, level: number, shared: boolean): Gen<void> {
  const w = kvm.w;
  const mw = maskWords(kvm.masks);
  const wasPresent = isShadowPresentPteWords(oLo);
  const isPresent = isShadowPresentPteWords(nLo);
  const wasLeaf = wasPresent && isLastSpteWords(oLo, level);
  const isLeaf = isPresent && isLastSpteWords(nLo, level);
  const pfnChanged = spteToPfnWords(oLo, oHi) !== spteToPfnWords(nLo, nHi);

  w.warnOn(level > 5 || level < PG_LEVEL_4K, "__handle_changed_spte: bad level");
  w.warnOn(roundGfnForLevel(gfn, level) !== gfn, "__handle_changed_spte: gfn not aligned to level");

  // A present leaf must never change pfn without going through non-present (and a flush).
  if (wasLeaf && isLeaf && pfnChanged)
    w.bugOn(true, `present leaf changed pfn: as ${asId} gfn 0x${gfn.toString(16)} L${level} ${hexWords(oLo, oHi)} -> ${hexWords(nLo, nHi)}`);

  if (oLo === nLo && oHi === nHi) return;

  if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_tdp_mmu_spte_changed", asId, gfn, level, oldSpte: join(oLo, oHi), newSpte: join(nLo, nHi) });

  if (kvm.checkZapPost) touch(kvm.objIds.obligations, "r");
  if (isLeaf && kvm.zapObligations.length !== 0) checkZapObligations(kvm, asId, gfn, level, join(nLo, nHi));
  // Non-leaf SPTEs are only linked and unlinked; dirty logging and aging never edit them
  // (hardware may set Accessed).
  if (wasPresent && !wasLeaf && isPresent && !isLeaf && (((oLo ^ nLo) & ~mw.accessed.lo) | ((oHi ^ nHi) & ~mw.accessed.hi)) !== 0)
    w.report("transitions", `non-leaf SPTE at gfn 0x${gfn.toString(16)} (L${level}) edited: ${hexWords(oLo, oHi)} -> ${hexWords(nLo, nHi)}`);
  // A present leaf may only go away through non-present plus a flush, never straight to MMIO.
  if (wasLeaf && isMmioSpteWords(kvm.masks, mw, nLo, nHi))
    w.report("transitions", `present leaf ${hexWords(oLo, oHi)} at gfn 0x${gfn.toString(16)} replaced by MMIO SPTE ${hexWords(nLo, nHi)} without a zap and flush`);

  if (isLeaf && spteWritableInvariantsBrokenWords(mw, nLo, nHi))
    w.report("warn", `check_spte_writable_invariants: ${checkSpteWritableInvariants(kvm.masks, join(nLo, nHi))}`);

  if (!wasPresent && !isPresent) {
    // Non-present to non-present needs no bookkeeping, but only MMIO and REMOVED_SPTE
    // are expected to get here.
    w.warnOn(
      !isMmioSpteWords(kvm.masks, mw, oLo, oHi) && !isMmioSpteWords(kvm.masks, mw, nLo, nHi) && !isRemovedSpteWords(nLo, nHi),
      `unexpected non-present SPTE change ${hexWords(oLo, oHi)} -> ${hexWords(nLo, nHi)} at gfn 0x${gfn.toString(16)}`,
    );
    return;
  }

  if (isLeaf !== wasLeaf) yield* kvmUpdatePageStats(kvm, level, isLeaf ? 1 : -1);

  if (wasLeaf && isDirtySpteWords(mw, oLo, oHi) && (!isPresent || !isDirtySpteWords(mw, nLo, nHi) || pfnChanged))
    kvmSetPfnDirty(kvm, spteToPfnWords(oLo, oHi));

  // A page table went away: recursively take it down.
  if (wasPresent && !wasLeaf && (isLeaf || !isPresent || w.warnOn(pfnChanged, "a non-leaf SPTE changed pfn"))) {
    const child = spteToChildPt(kvm, oLo, oHi, level);
    if (child !== null) yield* handleRemovedPt(kvm, child, shared);
    else w.report("bug", `non-leaf SPTE ${hexWords(oLo, oHi)} points to no page table`);
  }
}

/** MODEL: a present leaf appearing inside a range that a correctness zap just emptied. */
function checkZapObligations(kvm: Kvm, asId: number, gfn: number, level: number, newSpte: bigint): void {
  const end = gfn + kvmPagesPerHpage(level);
  for (const o of kvm.zapObligations)
    if (o.asId === asId && gfn < o.end && o.start < end)
      kvm.w.report(
        "zap-post",
        `SPTE 0x${newSpte.toString(16)} installed for gfn 0x${gfn.toString(16)} (L${level}) inside [0x${o.start.toString(16)}, 0x${o.end.toString(16)}), which thread ${o.thread} zapped for correctness and has not finished invalidating`,
      );
}

/** handle_changed_spte_acc_track(), on halves as __handleChangedSpte(). */
function handleChangedSpteAccTrack(kvm: Kvm, oLo: number, oHi: number, nLo: number, nHi: number, level: number): void {
  if (!isShadowPresentPteWords(oLo) || !isLastSpteWords(oLo, level)) return;
  const mw = maskWords(kvm.masks);
  if (!isAccessedSpteWords(mw, oLo, oHi)) return;
  const pfn = spteToPfnWords(oLo, oHi);
  if (!isShadowPresentPteWords(nLo) || !isAccessedSpteWords(mw, nLo, nHi) || pfn !== spteToPfnWords(nLo, nHi)) kvmSetPfnAccessed(kvm, pfn);
}

/** handle_changed_spte_dirty_log(), on halves as __handleChangedSpte(). */
function handleChangedSpteDirtyLog(kvm: Kvm, asId: number, gfn: number, oLo: number, oHi: number, nLo: number, nHi: number, level: number): void {
  if (level > PG_LEVEL_4K) return;
  if (!isWritablePteWords(nLo)) return;
  if (!isWritablePteWords(oLo) || spteToPfnWords(oLo, oHi) !== spteToPfnWords(nLo, nHi)) {
    const slot = gfnToMemslot(kvm, asId, gfn);
    markPageDirtyInSlot(kvm, slot, gfn);
  }
}

/** handle_changed_spte(), on halves as __handleChangedSpte(). */
function* handleChangedSpte(kvm: Kvm, asId: number, gfn: number, oLo: number, oHi: number, nLo: number, nHi: number, level: number, shared: boolean): Gen<void> {
  yield* __handleChangedSpte(kvm, asId, gfn, oLo, oHi, nLo, nHi, level, shared);
  handleChangedSpteAccTrack(kvm, oLo, oHi, nLo, nHi, level);
  handleChangedSpteDirtyLog(kvm, asId, gfn, oLo, oHi, nLo, nHi, level);
}

// ---------------------------------------------------------------------------------------
// The two setters

/**
 * tdp_mmu_set_spte_atomic(): compare-and-swap from iter.oldSpte; on failure iter.oldSpte
 * is refreshed and -EBUSY returned with nothing else done.
 * Context: mmu_lock held for read, inside rcu_read_lock().
 */
export function tdpMmuSetSpteAtomic(kvm: Kvm, iter: TdpIter, newSpte: bigint): Gen<number> {
  return tdpMmuSetSpteAtomicWords(kvm, iter, lo32(newSpte), hi32(newSpte));
}

/** tdp_mmu_set_spte_atomic() with the new SPTE as its halves (under the kernel's name in traces). */
const tdpMmuSetSpteAtomicWords = function* tdpMmuSetSpteAtomic(kvm: Kvm, iter: TdpIter, nLo: number, nHi: number): Gen<number> {
  kvm.w.warnOn(iter.yielded || isRemovedSpteWords(iter.oldLo, iter.oldHi), "tdp_mmu_set_spte_atomic on a yielded iterator or a frozen SPTE");
  kvm.mmuLock.assertHeldRead();
  if (!(yield* cmpxchgInto(kvm.w, iter.table, iter.idx, iter, nLo, nHi))) return EBUSY;
  const { oldLo, oldHi } = iter;
  yield* __handleChangedSpte(kvm, iter.asId, iter.gfn, oldLo, oldHi, nLo, nHi, iter.level, true);
  handleChangedSpteAccTrack(kvm, oldLo, oldHi, nLo, nHi, iter.level);
  return 0;
};

/**
 * tdp_mmu_zap_spte_atomic(): freeze, flush, clear. While the SPTE holds REMOVED_SPTE
 * nobody can install a new mapping before the flush has happened.
 * Context: mmu_lock held for read, inside rcu_read_lock().
 */
export function* tdpMmuZapSpteAtomic(kvm: Kvm, iter: TdpIter): Gen<number> {
  const ret = yield* tdpMmuSetSpteAtomicWords(kvm, iter, LO_REMOVED, 0);
  if (ret !== 0) return ret;
  yield* kvmFlushRemoteTlbsWithAddress(kvm, iter.gfn, kvmPagesPerHpage(iter.level));
  // The frozen value goes away without bookkeeping: REMOVED_SPTE to 0 is not a change
  // anybody accounts for.
  yield* __kvmTdpMmuWriteSpte(kvm, iter.table, iter.idx, 0, 0);
  return 0;
}

/**
 * __tdp_mmu_set_spte(): the exclusive setter, the new SPTE given as its halves. `old` holds
 * the value the caller read and, on return, the value really replaced (an exchange catches
 * A/D bits set by hardware meanwhile): what the kernel returns, left where
 * _tdp_mmu_set_spte() stores it.
 * Context: mmu_lock held for write, inside rcu_read_lock().
 */
export function* __tdpMmuSetSpte(
  kvm: Kvm,
  asId: number,
  table: Table,
  idx: number,
  old: SpteHalves,
  nLo: number,
  nHi: number,
  gfn: number,
  level: number,
  recordAccTrack: boolean,
  recordDirtyLog: boolean,
): Gen<void> {
  kvm.mmuLock.assertHeldWrite();
  kvm.w.warnOn(isRemovedSpteWords(old.oldLo, old.oldHi) || isRemovedSpteWords(nLo, nHi), "__tdp_mmu_set_spte with REMOVED_SPTE");
  if (kvm.variant("nonatomic-write-drops-ad")) {
    // MODEL (I9 check): what the plain store really overwrote.
    const oldSpte = join(old.oldLo, old.oldHi);
    const inMemory = yield* writeOnceObserved(kvm.w, table, idx, join(nLo, nHi));
    const lost = (inMemory & ~oldSpte) & (kvm.masks.shadowDirtyMask | kvm.masks.shadowAccessedMask | PT_WRITABLE_MASK);
    if (lost !== 0n && isShadowPresentPte(oldSpte))
      kvm.w.report("dirty", `a plain store over gfn 0x${gfn.toString(16)} lost bits 0x${lost.toString(16)} set in memory after the writer read 0x${oldSpte.toString(16)}`);
  } else yield* kvmTdpMmuWriteSpte(kvm, table, idx, old, nLo, nHi, level);
  const { oldLo, oldHi } = old;
  yield* __handleChangedSpte(kvm, asId, gfn, oldLo, oldHi, nLo, nHi, level, false);
  if (recordAccTrack) handleChangedSpteAccTrack(kvm, oldLo, oldHi, nLo, nHi, level);
  if (recordDirtyLog) handleChangedSpteDirtyLog(kvm, asId, gfn, oldLo, oldHi, nLo, nHi, level);
}

/** _tdp_mmu_set_spte(): a non-atomic SPTE update under mmu_lock held for write (new SPTE as halves). */
function* _tdpMmuSetSpte(kvm: Kvm, iter: TdpIter, nLo: number, nHi: number, recordAccTrack: boolean, recordDirtyLog: boolean): Gen<void> {
  kvm.w.warnOn(iter.yielded, "_tdp_mmu_set_spte on a yielded iterator");
  // iter->old_spte = __tdp_mmu_set_spte(...): the setter leaves the value replaced there.
  yield* __tdpMmuSetSpte(kvm, iter.asId, iter.table, iter.idx, iter, nLo, nHi, iter.gfn, iter.level, recordAccTrack, recordDirtyLog);
}

/** tdp_mmu_set_spte() */
export function tdpMmuSetSpte(kvm: Kvm, iter: TdpIter, newSpte: bigint): Gen<void> {
  return _tdpMmuSetSpte(kvm, iter, lo32(newSpte), hi32(newSpte), true, true);
}

/** tdp_mmu_set_spte_no_acc_track(), the new SPTE as its halves. */
function tdpMmuSetSpteNoAccTrack(kvm: Kvm, iter: TdpIter, nLo: number, nHi: number): Gen<void> {
  return _tdpMmuSetSpte(kvm, iter, nLo, nHi, false, true);
}

/** tdp_mmu_set_spte_no_dirty_log(), the new SPTE as its halves. */
function tdpMmuSetSpteNoDirtyLog(kvm: Kvm, iter: TdpIter, nLo: number, nHi: number): Gen<void> {
  return _tdpMmuSetSpte(kvm, iter, nLo, nHi, true, false);
}

// ---------------------------------------------------------------------------------------
// Yielding

/**
 * tdp_mmu_iter_cond_resched(): maybe drop mmu_lock and RCU, flushing first if a flush is
 * pending. Returns true if it yielded; the caller must then `continue`, and the walk
 * restarts from the root toward the same gfn.
 * Context: mmu_lock held (read if `shared`), inside rcu_read_lock(); may yield.
 */
export function tdpMmuIterCondResched(kvm: Kvm, iter: TdpIter, flush: boolean, shared: boolean): Gen<boolean> {
  kvm.w.warnOn(iter.yielded, "tdp_mmu_iter_cond_resched on a yielded iterator");
  // Never yield twice without stepping sideways at least once.
  // (Most calls end with no step taken: they cost no generator.)
  if (iter.nextLastLevelGfn === iter.yieldedGfn && !kvm.variant("yield-no-forward-progress")) return FALSE_NOW;
  if (kvm.w.needResched(kvm.w.current, "cond_resched") || kvm.mmuLock.needbreak()) return tdpMmuIterYield(kvm, iter, flush, shared);
  return iter.yielded ? stillYielded() : FALSE_NOW;
}

/**
 * The yielding half of tdp_mmu_iter_cond_resched(), named after it so that traces, which
 * name the kernel function each step was taken in, show the kernel's name.
 */
const tdpMmuIterYield = function* tdpMmuIterCondResched(kvm: Kvm, iter: TdpIter, flush: boolean, shared: boolean): Gen<boolean> {
  if (flush && !kvm.variant("yield-drops-pending-flush")) yield* kvmFlushRemoteTlbs(kvm);
  yield* kvm.rcu.rcuReadUnlock();
  if (shared) {
    yield* kvm.mmuLock.readUnlock();
    yield step("sched", kvm.mmuLock.id, "r", "cond_resched_rwlock_read()");
    yield* kvm.mmuLock.readLock();
  } else {
    yield* kvm.mmuLock.writeUnlock();
    yield step("sched", kvm.mmuLock.id, "r", "cond_resched_rwlock_write()");
    yield* kvm.mmuLock.writeLock();
  }
  yield* kvm.rcu.rcuReadLock();
  kvm.w.warnOn(iter.gfn > iter.nextLastLevelGfn, "tdp_mmu_iter_cond_resched: iterator ran ahead");
  // MODEL (I11a): a walk never yields twice without its position advancing.
  if (iter.lastYieldGfn === iter.nextLastLevelGfn)
    kvm.w.report("progress", `walk yielded twice at gfn 0x${iter.nextLastLevelGfn.toString(16)} without moving: it can livelock under contention`);
  iter.lastYieldGfn = iter.nextLastLevelGfn;
  iter.yielded = true;
  return true;
};

/** A walk that already yielded and was not restarted (warned about above): still yielded. */
function* stillYielded(): Gen<boolean> {
  return true;
}

// ---------------------------------------------------------------------------------------
// Zapping

/** __tdp_mmu_zap_root(): zap everything at `zapLevel`, the levels above are only walked. */
function* __tdpMmuZapRoot(kvm: Kvm, root: KvmMmuPage, shared: boolean, zapLevel: number): Gen<void> {
  const iter = new TdpIter(kvm);
  const end = tdpMmuMaxGfnExclusive(kvm);
  for (yield* iter.tdpIterStart(root, zapLevel, 0); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    retry: for (;;) {
      if (yield* tdpMmuIterCondResched(kvm, iter, false, shared)) break retry;
      if (!isShadowPresentPteWords(iter.oldLo)) break retry;
      if (iter.level > zapLevel) break retry;
      if (!shared) yield* tdpMmuSetSpte(kvm, iter, 0n);
      else if ((yield* tdpMmuSetSpteAtomic(kvm, iter, 0n)) !== 0) continue retry;
      break retry;
    }
  }
}

/**
 * tdp_mmu_zap_root(): the whole root, first at 1G granularity so the walk can yield
 * between regions, then the rest. No flush: nobody runs on this root any more.
 * Context: mmu_lock held (read if `shared`); may yield.
 */
function* tdpMmuZapRoot(kvm: Kvm, root: KvmMmuPage, shared: boolean): Gen<void> {
  kvm.w.warnOn(root.tdpMmuRootCount === 0, "tdp_mmu_zap_root on an unreferenced root");
  kvm.mmuLock.assertHeldShared(shared);
  yield* kvm.rcu.rcuReadLock();
  yield* __tdpMmuZapRoot(kvm, root, shared, PG_LEVEL_1G);
  yield* __tdpMmuZapRoot(kvm, root, shared, roleLevel(root.role));
  yield* kvm.rcu.rcuReadUnlock();
}

/**
 * kvm_tdp_mmu_zap_sp(): disconnect one page table (NX recovery). Returns true: the caller
 * must flush before leaving its RCU section.
 * Context: mmu_lock held for write, inside rcu_read_lock().
 */
export function* kvmTdpMmuZapSp(kvm: Kvm, sp: KvmMmuPage): Gen<boolean> {
  if (kvm.w.warnOn(sp.ptep === null, "kvm_tdp_mmu_zap_sp on a root")) return false;
  const { table, idx } = sp.ptep!;
  const old: SpteHalves = { oldLo: 0, oldHi: 0 };
  yield* kvmTdpMmuReadSpte(kvm, table, idx, old);
  if (kvm.w.warnOn(!isShadowPresentPteWords(old.oldLo), "kvm_tdp_mmu_zap_sp: parent SPTE not present")) return false;
  yield* __tdpMmuSetSpte(kvm, kvmMmuPageAsId(sp), table, idx, old, 0, 0, sp.gfn, roleLevel(sp.role) + 1, true, true);
  return true;
}

/**
 * tdp_mmu_zap_leafs(): zap leaf SPTEs over [start, end) in one root, keeping tables.
 * Returns true if a flush is still owed (the caller flushes before dropping mmu_lock).
 * Context: mmu_lock held for write; yields iff `canYield`.
 */
export function* tdpMmuZapLeafs(kvm: Kvm, root: KvmMmuPage, start: number, end: number, canYield: boolean, flush: boolean): Gen<boolean> {
  end = Math.min(end, tdpMmuMaxGfnExclusive(kvm));
  const readMode = kvm.variant("zap-under-read-lock");
  if (readMode) kvm.mmuLock.assertHeldRead();
  else kvm.mmuLock.assertHeldWrite();
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, PG_LEVEL_4K, start); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    retry: for (;;) {
      if (canYield && (yield* tdpMmuIterCondResched(kvm, iter, flush, readMode))) {
        flush = false;
        break retry;
      }
      if (!isShadowPresentPteWords(iter.oldLo) || !isLastSpteWords(iter.oldLo, iter.level)) break retry;
      if (readMode) {
        // Before the seed patch: the atomic freeze-flush-clear protocol, retried on a lost race.
        if ((yield* tdpMmuZapSpteAtomic(kvm, iter)) !== 0) continue retry;
      } else {
        yield* tdpMmuSetSpte(kvm, iter, 0n);
        flush = true;
      }
      break retry;
    }
  }
  yield* kvm.rcu.rcuReadUnlock();
  return flush;
}

/**
 * kvm_tdp_mmu_zap_leafs(): every root of both address spaces, invalid ones included.
 * Context: mmu_lock held for write; may yield.
 */
export function* kvmTdpMmuZapLeafs(kvm: Kvm, start: number, end: number, flush: boolean): Gen<boolean> {
  const shared = kvm.variant("zap-under-read-lock");
  // for_each_tdp_mmu_root_yield_safe(), spelled out (one delegation fewer on every step).
  for (let root = yield* tdpMmuNextRoot(kvm, null, shared, false); root !== null; root = yield* tdpMmuNextRoot(kvm, root, shared, false)) {
    kvm.mmuLock.assertHeldShared(shared);
    flush = yield* tdpMmuZapLeafs(kvm, root, start, end, true, flush);
  }
  return flush;
}

/**
 * kvm_tdp_mmu_zap_all(): every SPTE of every root (MMU notifier release). No flush: no
 * vCPU will run again.
 * Context: mmu_lock held for write; may yield.
 */
export function* kvmTdpMmuZapAll(kvm: Kvm): Gen<void> {
  yield* forEachTdpMmuRootYieldSafe(kvm, null, false, false, function* (root) {
    if (kvm.variant("zap-all-skips-straddling-nonleaf")) yield* zapAllWithRangeSemantics(kvm, root);
    else yield* tdpMmuZapRoot(kvm, root, false);
  });
}

/**
 * MODEL: variant zap-all-skips-straddling-nonleaf: zap-all as the pre-5.14 range zap over
 * [0, tdp_mmu_max_gfn_exclusive()), which descends into a non-leaf entry that extends past
 * the bound instead of zapping it, so that entry and its tables stay behind.
 */
function* zapAllWithRangeSemantics(kvm: Kvm, root: KvmMmuPage): Gen<void> {
  const end = tdpMmuMaxGfnExclusive(kvm);
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, PG_LEVEL_4K, 0); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    if (yield* tdpMmuIterCondResched(kvm, iter, false, false)) continue;
    if (!isShadowPresentPteWords(iter.oldLo)) continue;
    if (!isLastSpteWords(iter.oldLo, iter.level) && iter.gfn + kvmPagesPerHpage(iter.level) > end) continue;
    yield* tdpMmuSetSpte(kvm, iter, 0n);
  }
  yield* kvm.rcu.rcuReadUnlock();
}

/**
 * kvm_tdp_mmu_zap_invalidated_roots(): zap each root flagged by the last invalidation and
 * drop the TDP MMU's reference on it.
 * Context: slots_lock held, mmu_lock NOT held (taken for read here); may yield.
 */
export function* kvmTdpMmuZapInvalidatedRoots(kvm: Kvm): Gen<void> {
  yield* kvm.mmuLock.readLock();
  yield* forEachTdpMmuRootYieldSafe(kvm, null, true, false, function* (root) {
    if (!root.tdpMmuScheduledRootToZap) return;
    root.tdpMmuScheduledRootToZap = false;
    kvm.w.warnOn(!roleInvalid(root.role), "KVM_BUG_ON: scheduled root is not invalid");
    yield* tdpMmuZapRoot(kvm, root, true);
    yield* kvmTdpMmuPutRoot(kvm, root, true);
  });
  yield* kvm.mmuLock.readUnlock();
}

/**
 * kvm_tdp_mmu_invalidate_all_roots(): mark every valid root invalid and scheduled for the
 * zap above, which consumes the TDP MMU's own reference.
 * Context: mmu_lock held for write (not checked at VM destruction).
 */
export function* kvmTdpMmuInvalidateAllRoots(kvm: Kvm, destroying = false): Gen<void> {
  if (!destroying) kvm.mmuLock.assertHeldWrite();
  yield step("read", kvm.objIds.roots, "r", "list_for_each_entry(tdp_mmu_roots)");
  touch(kvm.objIds.roots, "w"); // marks the roots invalid
  for (const root of kvm.arch.tdpMmuRoots) {
    if (roleInvalid(root.role)) continue;
    root.tdpMmuScheduledRootToZap = true;
    root.role |= ROLE_INVALID;
  }
}

// ---------------------------------------------------------------------------------------
// The fault path

/**
 * tdp_mmu_link_sp(): publish a new table, then list it (and account it as an NX split).
 * Context: mmu_lock held (read if `shared`).
 */
function* tdpMmuLinkSp(kvm: Kvm, iter: TdpIter, sp: KvmMmuPage, accountNx: boolean, shared: boolean): Gen<number> {
  const spte = makeNonleafSpte(kvm.masks, sp.spt.pfn * 4096, kvm.masks.shadowAccessedMask === 0n);
  if (kvm.variant("fix-sp-list-link-after-publish")) {
    // The later upstream order: the SP is listed (and accounted) before anybody can see
    // it, and taken off again if the publication loses its race.
    yield* kvm.tdpMmuPagesLock.lock();
    kvm.arch.tdpMmuPages.add(sp);
    sp.linked = true;
    if (accountNx) accountHugeNxPage(kvm, sp);
    yield* kvm.tdpMmuPagesLock.unlock();
    if (shared) {
      const ret = yield* tdpMmuSetSpteAtomic(kvm, iter, spte);
      if (ret !== 0) {
        yield* kvm.tdpMmuPagesLock.lock();
        kvm.arch.tdpMmuPages.delete(sp);
        sp.linked = false;
        if (sp.lpageDisallowed) unaccountHugeNxPage(kvm, sp);
        yield* kvm.tdpMmuPagesLock.unlock();
        return ret;
      }
    } else yield* tdpMmuSetSpte(kvm, iter, spte);
    return 0;
  }
  if (shared) {
    const ret = yield* tdpMmuSetSpteAtomic(kvm, iter, spte);
    if (ret !== 0) return ret;
  } else {
    yield* tdpMmuSetSpte(kvm, iter, spte);
  }
  yield* kvm.tdpMmuPagesLock.lock();
  // I13: a page table already queued for freeing must never be listed again (in 6.1.192 a
  // reader can tear the table down between its publication and this point).
  touch(spHeader(sp), "r");
  if (sp.freeQueued)
    kvm.w.report("sp-lists", `SP 0x${sp.spt.pfn.toString(16)} (gfn 0x${sp.gfn.toString(16)}) is listed${accountNx ? " and put on the NX list" : ""} after it was queued for freeing`);
  kvm.arch.tdpMmuPages.add(sp);
  sp.linked = true;
  if (accountNx) accountHugeNxPage(kvm, sp);
  yield* kvm.tdpMmuPagesLock.unlock();
  return 0;
}

/** What make_spte() made for the fault being handled; read right after, before any step. */
const madeSpte: MadeSpte = { lo: 0, hi: 0, wrprot: false };

/**
 * tdp_mmu_map_handle_target_level(): install the leaf (or MMIO SPTE) at the goal level.
 * Context: mmu_lock held for read, inside rcu_read_lock().
 */
function* tdpMmuMapHandleTargetLevel(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault, iter: TdpIter): Gen<number> {
  const sp = tableToSp(iter.table);
  let ret = RET_PF_FIXED;
  let wrprot = false;
  // The new SPTE, as its halves (see makeSpteWords()).
  let nLo: number;
  let nHi: number;
  kvm.w.warnOn(roleLevel(sp.role) !== fault.goalLevel, "target level is not the goal level");
  if (fault.slot === null) {
    const spte = makeMmioSpteForVcpu(kvm, vcpu, iter.gfn);
    nLo = lo32(spte);
    nHi = hi32(spte);
  } else {
    const made = madeSpte;
    makeSpteForVcpu(kvm, vcpu, sp, fault.slot, iter.gfn, fault.pfn, iter.oldLo, iter.oldHi, fault.prefetch, fault.mapWritable, made);
    nLo = made.lo;
    nHi = made.hi;
    wrprot = made.wrprot;
  }
  if (nLo === iter.oldLo && nHi === iter.oldHi) ret = RET_PF_SPURIOUS;
  else if ((yield* tdpMmuSetSpteAtomicWords(kvm, iter, nLo, nHi)) !== 0) return RET_PF_RETRY;
  else if (isShadowPresentPteWords(iter.oldLo) && !isLastSpteWords(iter.oldLo, iter.level))
    yield* kvmFlushRemoteTlbsWithAddress(kvm, sp.gfn, kvmPagesPerHpage(iter.level + 1));

  if (wrprot && fault.write) ret = RET_PF_EMULATE;
  if (isMmioSpteWords(kvm.masks, maskWords(kvm.masks), nLo, nHi)) {
    vcpu.stat.pfMmioSpteCreated++;
    if (kvm.tracer.on) kvm.tracer.emit({ ev: "mark_mmio_spte", gfn: iter.gfn, spte: join(nLo, nHi), gen: Number(kvm.memslots[0]!.generation & 0x7ffffn) });
    ret = RET_PF_EMULATE;
  } else if (kvm.tracer.on) {
    kvm.tracer.emit({ ev: "kvm_mmu_set_spte", gfn: iter.gfn, level: iter.level, spte: join(nLo, nHi) });
  }
  return ret;
}

/**
 * kvm_tdp_mmu_map(): walk to the goal level creating tables, zapping a huge SPTE that is
 * in the way, and install the leaf.
 * Context: mmu_lock held for read.
 */
export function* kvmTdpMmuMap(kvm: Kvm, vcpu: KvmVcpu, fault: KvmPageFault): Gen<number> {
  const root = vcpu.root!;
  kvmMmuHugepageAdjust(kvm, vcpu, fault);
  if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_mmu_spte_requested", gfn: fault.gfn, pfn: fault.pfn, level: fault.goalLevel });
  yield* kvm.rcu.rcuReadLock();
  // The walk's struct tdp_iter: the vCPU's own (see KvmVcpu.tdpIter).
  const iter = (vcpu.tdpIter ??= new TdpIter(kvm));
  for (yield* iter.tdpIterStart(root, PG_LEVEL_4K, fault.gfn); iter.valid && iter.gfn < fault.gfn + 1; yield* iter.tdpIterNext()) {
    if (fault.nxHugePageWorkaroundEnabled) disallowedHugepageAdjust(fault, iter.oldSpte, iter.level);
    if (iter.level === fault.goalLevel) break;
    if (isShadowPresentPteWords(iter.oldLo) && isLargePteWords(iter.oldLo)) {
      if ((yield* tdpMmuZapSpteAtomic(kvm, iter)) !== 0) break;
      yield* kvmTdpMmuReadSpte(kvm, iter.table, iter.idx, iter);
    }
    if (!isShadowPresentPteWords(iter.oldLo)) {
      const accountNx = fault.hugePageDisallowed && fault.reqLevel >= iter.level;
      if (isRemovedSpteWords(iter.oldLo, iter.oldHi) && !kvm.variant("map-over-frozen-spte")) break;
      const sp = tdpMmuAllocSp(vcpu, kvm);
      tdpMmuInitChildSp(kvm, sp, iter);
      if ((yield* tdpMmuLinkSp(kvm, iter, sp, accountNx, true)) !== 0) {
        tdpMmuFreeSp(kvm, sp);
        break;
      }
    }
  }
  // Variant leaf-at-wrong-level: the 6.2-rc refactor (before 80a3e4ae962d) installed the
  // leaf wherever the walk stopped.
  if ((iter.level !== fault.goalLevel && !kvm.variant("leaf-at-wrong-level")) || isRemovedSpteWords(iter.oldLo, iter.oldHi)) {
    yield* kvm.rcu.rcuReadUnlock();
    return RET_PF_RETRY;
  }
  const ret = yield* tdpMmuMapHandleTargetLevel(kvm, vcpu, fault, iter);
  yield* kvm.rcu.rcuReadUnlock();
  return ret;
}

/**
 * kvm_tdp_mmu_fast_pf_get_last_sptep(): the lowest SPTE on the path to `gfn`, lockless.
 * Context: inside kvm_tdp_mmu_walk_lockless_begin() (rcu_read_lock()).
 */
export function* kvmTdpMmuFastPfGetLastSptep(kvm: Kvm, vcpu: KvmVcpu, gfn: number): Gen<{ table: Table; idx: number; spte: bigint; level: number } | null> {
  const iter = new TdpIter(kvm);
  let last: { table: Table; idx: number; spte: bigint; level: number } | null = null;
  for (yield* iter.tdpIterStart(vcpu.root!, PG_LEVEL_4K, gfn); iter.valid && iter.gfn < gfn + 1; yield* iter.tdpIterNext()) {
    last = { table: iter.table, idx: iter.idx, spte: iter.oldSpte, level: iter.level };
  }
  return last;
}

/**
 * kvm_tdp_mmu_get_walk(): the SPTE at each level on the way to `gfn`; returns the lowest
 * level reached, or -1.
 * Context: inside rcu_read_lock().
 */
export function* kvmTdpMmuGetWalk(kvm: Kvm, vcpu: KvmVcpu, gfn: number, sptes: bigint[]): Gen<number> {
  const iter = new TdpIter(kvm);
  let leaf = -1;
  for (yield* iter.tdpIterStart(vcpu.root!, PG_LEVEL_4K, gfn); iter.valid && iter.gfn < gfn + 1; yield* iter.tdpIterNext()) {
    leaf = iter.level;
    sptes[leaf] = iter.oldSpte;
  }
  return leaf;
}

// ---------------------------------------------------------------------------------------
// MMU notifier handlers

/**
 * kvm_tdp_mmu_unmap_gfn_range(): leaf zap of [start, end) in every root (valid or not)
 * of the slot's address space. Returns "flush needed".
 * Context: mmu_lock held for write; yields iff `mayBlock`.
 */
export function* kvmTdpMmuUnmapGfnRange(kvm: Kvm, asId: number, start: number, end: number, mayBlock: boolean, flush: boolean): Gen<boolean> {
  const shared = kvm.variant("zap-under-read-lock");
  const onlyValid = kvm.variant("notifier-skips-invalid-roots");
  if (kvm.variant("notifier-unmap-unsafe-root-iter")) {
    // The pre-fix loop: plain list walk without references, yet the body may yield.
    for (const root of yield* forEachTdpMmuRoot(kvm, asId)) flush = yield* tdpMmuZapLeafs(kvm, root, start, end, mayBlock, flush);
    return flush;
  }
  // for_each_tdp_mmu_root_yield_safe(), spelled out (one delegation fewer on every step).
  for (let root = yield* tdpMmuNextRoot(kvm, null, shared, onlyValid); root !== null; root = yield* tdpMmuNextRoot(kvm, root, shared, onlyValid)) {
    kvm.mmuLock.assertHeldShared(shared);
    if (kvmMmuPageAsId(root) !== asId) continue;
    flush = yield* tdpMmuZapLeafs(kvm, root, start, end, mayBlock, flush);
  }
  return flush;
}

type GfnHandler = (kvm: Kvm, iter: TdpIter, newPfn: number, newWritable: boolean) => Gen<boolean>;

/**
 * kvm_tdp_mmu_handle_gfn(): run `handler` on each present leaf of [start, end) in every
 * root of the address space; no yielding.
 * Context: mmu_lock held for write.
 */
function* kvmTdpMmuHandleGfn(kvm: Kvm, asId: number, start: number, end: number, handler: GfnHandler, newPfn = 0, newWritable = false): Gen<boolean> {
  let ret = false;
  for (const root of yield* forEachTdpMmuRoot(kvm, asId)) {
    yield* kvm.rcu.rcuReadLock();
    const iter = new TdpIter(kvm);
    for (yield* iter.tdpIterStart(root, PG_LEVEL_4K, start); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
      if (!isShadowPresentPteWords(iter.oldLo) || !isLastSpteWords(iter.oldLo, iter.level)) continue;
      ret = (yield* handler(kvm, iter, newPfn, newWritable)) || ret;
    }
    yield* kvm.rcu.rcuReadUnlock();
  }
  return ret;
}

/** age_gfn_range(): clear Accessed (or mark for access tracking without A/D). */
function* ageGfnRange(kvm: Kvm, iter: TdpIter): Gen<boolean> {
  const mw = maskWords(kvm.masks);
  if (!isAccessedSpteWords(mw, iter.oldLo, iter.oldHi)) return false;
  if (spteAdEnabledWords(iter.oldHi)) {
    // The new SPTE: the old one without A.
    yield* tdpMmuSetSpteNoAccTrack(kvm, iter, iter.oldLo & ~mw.accessed.lo, iter.oldHi & ~mw.accessed.hi);
  } else {
    // Without A/D bits the Dirty state would be lost with W: hand it to the page first.
    if (isWritablePteWords(iter.oldLo)) kvmSetPfnDirty(kvm, spteToPfnWords(iter.oldLo, iter.oldHi));
    const newSpte = markSpteForAccessTrack(kvm.masks, iter.oldSpte);
    yield* tdpMmuSetSpteNoAccTrack(kvm, iter, lo32(newSpte), hi32(newSpte));
  }
  return true;
}

/** kvm_tdp_mmu_age_gfn_range() */
export function kvmTdpMmuAgeGfnRange(kvm: Kvm, asId: number, start: number, end: number): Gen<boolean> {
  return kvmTdpMmuHandleGfn(kvm, asId, start, end, ageGfnRange);
}

/** test_age_gfn() */
function* testAgeGfn(kvm: Kvm, iter: TdpIter): Gen<boolean> {
  return isAccessedSpteWords(maskWords(kvm.masks), iter.oldLo, iter.oldHi);
}

/** kvm_tdp_mmu_test_age_gfn() */
export function kvmTdpMmuTestAgeGfn(kvm: Kvm, asId: number, gfn: number): Gen<boolean> {
  return kvmTdpMmuHandleGfn(kvm, asId, gfn, gfn + 1, testAgeGfn);
}

/** set_spte_gfn(): change_pte; zap first, then maybe re-install read-only. */
function* setSpteGfn(kvm: Kvm, iter: TdpIter, newPfn: number, newWritable: boolean): Gen<boolean> {
  if (iter.level !== PG_LEVEL_4K || !isShadowPresentPteWords(iter.oldLo)) return false;
  yield* tdpMmuSetSpte(kvm, iter, 0n);
  if (!newWritable) {
    const newSpte = kvmMmuChangedPteNotifierMakeSpte(kvm.masks, iter.oldSpte, newPfn);
    yield* tdpMmuSetSpte(kvm, iter, newSpte);
  }
  return true;
}

/** kvm_tdp_mmu_set_spte_gfn(). Returns "flush needed". */
export function kvmTdpMmuSetSpteGfn(kvm: Kvm, asId: number, gfn: number, newPfn: number, newWritable: boolean): Gen<boolean> {
  return kvmTdpMmuHandleGfn(kvm, asId, gfn, gfn + 1, setSpteGfn, newPfn, newWritable);
}

// ---------------------------------------------------------------------------------------
// Dirty logging

/**
 * wrprot_gfn_range(): clear W on writable leaves at or above `minLevel` (MMU-writable
 * stays, so the fast path may restore W).
 * Context: mmu_lock held for read; may yield.
 */
function* wrprotGfnRange(kvm: Kvm, root: KvmMmuPage, start: number, end: number, minLevel: number): Gen<boolean> {
  kvm.w.bugOn(minLevel > KVM_MAX_HUGEPAGE_LEVEL, "wrprot_gfn_range: min_level too high");
  let spteSet = false;
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, minLevel, start); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    retry: for (;;) {
      if (yield* tdpMmuIterCondResched(kvm, iter, false, true)) break retry;
      if (!isShadowPresentPteWords(iter.oldLo) || !isLastSpteWords(iter.oldLo, iter.level) || !isWritablePteWords(iter.oldLo)) break retry;
      // The new SPTE: the old one without W.
      if ((yield* tdpMmuSetSpteAtomicWords(kvm, iter, iter.oldLo & ~PT_WRITABLE_WORDS.lo, iter.oldHi & ~PT_WRITABLE_WORDS.hi)) !== 0) continue retry;
      spteSet = true;
      break retry;
    }
  }
  yield* kvm.rcu.rcuReadUnlock();
  return spteSet;
}

/**
 * kvm_tdp_mmu_wrprot_slot()
 * Context: mmu_lock held for read; may yield.
 */
export function* kvmTdpMmuWrprotSlot(kvm: Kvm, slot: KvmMemorySlot, minLevel: number): Gen<boolean> {
  kvm.mmuLock.assertHeldRead();
  let spteSet = false;
  yield* forEachTdpMmuRootYieldSafe(kvm, slot.asId, true, true, function* (root) {
    spteSet = (yield* wrprotGfnRange(kvm, root, slot.baseGfn, slot.endGfn, minLevel)) || spteSet;
  });
  return spteSet;
}

/** clear_dirty_gfn_range(): clear D, or W where A/D cannot be used for dirty tracking. */
function* clearDirtyGfnRange(kvm: Kvm, root: KvmMmuPage, start: number, end: number): Gen<boolean> {
  let spteSet = false;
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, PG_LEVEL_4K, start); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    // tdp_root_for_each_leaf_pte(): the leaf test is part of the loop, not of the retry.
    if (!isShadowPresentPteWords(iter.oldLo) || !isLastSpteWords(iter.oldLo, iter.level)) continue;
    retry: for (;;) {
      if (yield* tdpMmuIterCondResched(kvm, iter, false, true)) break retry;
      // 6.1.192 re-checks only presence after a lost race, so a huge leaf replaced by a
      // table meanwhile is edited as if it were a leaf (fixed upstream in 45a61ebb2211).
      if (!isShadowPresentPteWords(iter.oldLo)) break retry;
      if (kvm.variant("fix-clear-dirty-retry-nonleaf") && !isLastSpteWords(iter.oldLo, iter.level)) break retry;
      // The new SPTE is the old one without W, or without D.
      let without: Words;
      if (spteAdNeedWriteProtectWords(iter.oldHi)) {
        if (!isWritablePteWords(iter.oldLo)) break retry;
        without = PT_WRITABLE_WORDS;
      } else {
        without = maskWords(kvm.masks).dirty;
        if (!spteHasAnyOfWords(iter.oldLo, iter.oldHi, without)) break retry;
      }
      if ((yield* tdpMmuSetSpteAtomicWords(kvm, iter, iter.oldLo & ~without.lo, iter.oldHi & ~without.hi)) !== 0) continue retry;
      spteSet = true;
      break retry;
    }
  }
  yield* kvm.rcu.rcuReadUnlock();
  return spteSet;
}

/**
 * kvm_tdp_mmu_clear_dirty_slot()
 * Context: mmu_lock held for read; may yield.
 */
export function* kvmTdpMmuClearDirtySlot(kvm: Kvm, slot: KvmMemorySlot): Gen<boolean> {
  kvm.mmuLock.assertHeldRead();
  let spteSet = false;
  yield* forEachTdpMmuRootYieldSafe(kvm, slot.asId, true, true, function* (root) {
    spteSet = (yield* clearDirtyGfnRange(kvm, root, slot.baseGfn, slot.endGfn)) || spteSet;
  });
  return spteSet;
}

/**
 * clear_dirty_pt_masked(): the 4K SPTEs whose bits are set in `mask` (bit i = gfn + i).
 * Context: mmu_lock held for write; no yielding.
 */
function* clearDirtyPtMasked(kvm: Kvm, root: KvmMmuPage, gfn: number, mask: bigint, wrprot: boolean): Gen<void> {
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  const first = gfn + __ffs(mask);
  // The mask as two 32-bit words (bit i of the mask is bit i % 32 of words[i >> 5]), so the
  // loop makes no bigints.
  const words: [number, number] = [lo32(mask), hi32(mask)];
  const dirty = maskWords(kvm.masks).dirty;
  for (yield* iter.tdpIterStart(root, PG_LEVEL_4K, first); iter.valid && iter.gfn < gfn + 64; yield* iter.tdpIterNext()) {
    if ((words[0] | words[1]) === 0) break;
    if (!isShadowPresentPteWords(iter.oldLo) || !isLastSpteWords(iter.oldLo, iter.level)) continue;
    const i = iter.gfn - gfn;
    const bit = 1 << (i & 31);
    if (iter.level > PG_LEVEL_4K || (words[i >> 5]! & bit) === 0) continue;
    words[i >> 5]! &= ~bit;
    // The new SPTE is the old one without W, or without D.
    let without: Words;
    if (wrprot || spteAdNeedWriteProtectWords(iter.oldHi)) {
      if (!isWritablePteWords(iter.oldLo)) continue;
      without = PT_WRITABLE_WORDS;
    } else {
      if (!spteHasAnyOfWords(iter.oldLo, iter.oldHi, dirty)) continue;
      without = dirty;
    }
    yield* tdpMmuSetSpteNoDirtyLog(kvm, iter, iter.oldLo & ~without.lo, iter.oldHi & ~without.hi);
  }
  yield* kvm.rcu.rcuReadUnlock();
}


/**
 * kvm_tdp_mmu_clear_dirty_pt_masked()
 * Context: mmu_lock held for write.
 */
export function* kvmTdpMmuClearDirtyPtMasked(kvm: Kvm, slot: KvmMemorySlot, gfn: number, mask: bigint, wrprot: boolean): Gen<void> {
  kvm.mmuLock.assertHeldWrite();
  for (const root of yield* forEachTdpMmuRoot(kvm, slot.asId)) yield* clearDirtyPtMasked(kvm, root, gfn, mask, wrprot);
}

/**
 * zap_collapsible_spte_range(): zap the tables that a huge page could replace now that
 * dirty logging is off. Pure optimisation, so the read lock is enough.
 * Context: mmu_lock held for read; may yield.
 */
function* zapCollapsibleSpteRange(kvm: Kvm, root: KvmMmuPage, slot: KvmMemorySlot): Gen<void> {
  const start = slot.baseGfn;
  const end = start + slot.npages;
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, PG_LEVEL_2M, start); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    retry: for (;;) {
      if (yield* tdpMmuIterCondResched(kvm, iter, false, true)) break retry;
      if (iter.level > KVM_MAX_HUGEPAGE_LEVEL || !isShadowPresentPteWords(iter.oldLo)) break retry;
      if (isLastSpteWords(iter.oldLo, iter.level)) break retry;
      if (iter.gfn < start || iter.gfn >= end) break retry;
      const maxMappingLevel = kvmMmuMaxMappingLevel(kvm, slot, iter.gfn, 5);
      if (maxMappingLevel < iter.level) break retry;
      if ((yield* tdpMmuZapSpteAtomic(kvm, iter)) !== 0) continue retry;
      break retry;
    }
  }
  yield* kvm.rcu.rcuReadUnlock();
}

/**
 * kvm_tdp_mmu_zap_collapsible_sptes()
 * Context: mmu_lock held for read; may yield.
 */
export function* kvmTdpMmuZapCollapsibleSptes(kvm: Kvm, slot: KvmMemorySlot): Gen<void> {
  kvm.mmuLock.assertHeldRead();
  yield* forEachTdpMmuRootYieldSafe(kvm, slot.asId, true, true, function* (root) {
    yield* zapCollapsibleSpteRange(kvm, root, slot);
  });
}

/**
 * MODEL: the present leaf at or above `minLevel` mapping `gfn` in `root`, read straight
 * from memory without steps (for checks), with its level.
 */
export function leafMapping(kvm: Kvm, root: KvmMmuPage, gfn: number, minLevel = PG_LEVEL_4K): { spte: bigint; level: number } | null {
  let t = root.spt;
  for (let level = roleLevel(root.role); level >= minLevel; level--) {
    const idx = spteIndexOfGfn(gfn, level);
    touch(t.sptep(idx), "r");
    const s = t.spt[idx]!;
    if (!isShadowPresentPte(s)) return null;
    if (isLastSpte(s, level)) return { spte: s, level };
    const c = kvm.tableAt(spteToPfn(s));
    if (c === undefined || c.freed) return null;
    t = c;
  }
  return null;
}

/** write_protect_gfn(): clear W and MMU-writable on the leaves mapping `gfn`. */
function* writeProtectGfn(kvm: Kvm, root: KvmMmuPage, gfn: number, minLevel: number): Gen<boolean> {
  kvm.w.bugOn(minLevel > KVM_MAX_HUGEPAGE_LEVEL, "write_protect_gfn: min_level too high");
  let spteSet = false;
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, minLevel, gfn); iter.valid && iter.gfn < gfn + 1; yield* iter.tdpIterNext()) {
    if (!isShadowPresentPteWords(iter.oldLo) || !isLastSpteWords(iter.oldLo, iter.level)) continue;
    // Variant wrprot-skips-mmu-writable: the pre-fix test looked at W alone, leaving an
    // SPTE that dirty logging had write-protected still MMU-writable.
    if (kvm.variant("wrprot-skips-mmu-writable") && !isWritablePteWords(iter.oldLo)) continue;
    const newSpte = iter.oldSpte & ~(PT_WRITABLE_MASK | kvm.masks.shadowMmuWritableMask);
    if (newSpte === iter.oldSpte) break;
    yield* tdpMmuSetSpte(kvm, iter, newSpte);
    spteSet = true;
  }
  yield* kvm.rcu.rcuReadUnlock();
  return spteSet;
}

/**
 * kvm_tdp_mmu_write_protect_gfn(): returns "flush needed".
 * Context: mmu_lock held for write.
 */
export function* kvmTdpMmuWriteProtectGfn(kvm: Kvm, slot: KvmMemorySlot, gfn: number, minLevel: number): Gen<boolean> {
  kvm.mmuLock.assertHeldWrite();
  let spteSet = false;
  for (const root of yield* forEachTdpMmuRoot(kvm, slot.asId)) {
    spteSet = (yield* writeProtectGfn(kvm, root, gfn, minLevel)) || spteSet;
    // MODEL (I10): once write-protected for tracking, no leaf mapping gfn may be writable
    // or MMU-writable (the lockless fast path could make it writable again).
    const leaf = leafMapping(kvm, root, gfn, minLevel);
    if (leaf !== null && (leaf.spte & (PT_WRITABLE_MASK | kvm.masks.shadowMmuWritableMask)) !== 0n)
      kvm.w.report("write-track", `gfn 0x${gfn.toString(16)} is still mapped by 0x${leaf.spte.toString(16)} (writable or MMU-writable) after kvm_tdp_mmu_write_protect_gfn()`);
  }
  return spteSet;
}

// ---------------------------------------------------------------------------------------
// Eager huge page splitting

/**
 * tdp_mmu_alloc_sp_for_split(). MODEL: the allocation never fails, so the lock is never
 * dropped for a sleeping allocation.
 */
function tdpMmuAllocSpForSplit(kvm: Kvm): KvmMmuPage {
  return allocSpFromFrame(kvm, kvm.w.pages.allocPage("unmovable").pfn);
}

/**
 * tdp_mmu_split_huge_page(): fill a new table with the huge page's 4K (or 2M) pieces and
 * link it in place of the huge SPTE. No flush: the translations are the same.
 */
function* tdpMmuSplitHugePage(kvm: Kvm, iter: TdpIter, sp: KvmMmuPage, shared: boolean): Gen<number> {
  const hugeSpte = iter.oldSpte;
  const level = iter.level;
  tdpMmuInitChildSp(kvm, sp, iter);
  for (let i = 0; i < ENT; i++)
    sp.spt.spt[i] = makeHugePageSplitSpte(kvm.masks, hugeSpte, level - 1, (sp.role >>> 8) & 7, i, kvm.params.nxHugePages);
  const ret = yield* tdpMmuLinkSp(kvm, iter, sp, false, shared);
  if (ret === 0) yield* kvmUpdatePageStats(kvm, level - 1, ENT);
  if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_mmu_split_huge_page", gfn: iter.gfn, spte: hugeSpte, level, errno: ret });
  return ret;
}

/** tdp_mmu_split_huge_pages_root() */
function* tdpMmuSplitHugePagesRoot(kvm: Kvm, root: KvmMmuPage, start: number, end: number, targetLevel: number, shared: boolean): Gen<number> {
  let sp: KvmMmuPage | null = null;
  let ret = 0;
  yield* kvm.rcu.rcuReadLock();
  const iter = new TdpIter(kvm);
  for (yield* iter.tdpIterStart(root, targetLevel + 1, start); iter.valid && iter.gfn < end; yield* iter.tdpIterNext()) {
    retry: for (;;) {
      if (yield* tdpMmuIterCondResched(kvm, iter, false, shared)) break retry;
      if (!isShadowPresentPteWords(iter.oldLo) || !isLargePteWords(iter.oldLo)) break retry;
      if (sp === null) sp = tdpMmuAllocSpForSplit(kvm);
      if ((yield* tdpMmuSplitHugePage(kvm, iter, sp, shared)) !== 0) continue retry;
      sp = null;
      break retry;
    }
  }
  yield* kvm.rcu.rcuReadUnlock();
  if (sp !== null) tdpMmuFreeSp(kvm, sp);
  return ret === ENOMEM ? ENOMEM : 0;
}

/**
 * kvm_tdp_mmu_try_split_huge_pages()
 * Context: mmu_lock held (read if `shared`); may yield.
 */
export function* kvmTdpMmuTrySplitHugePages(kvm: Kvm, slot: KvmMemorySlot, start: number, end: number, targetLevel: number, shared: boolean): Gen<void> {
  kvm.mmuLock.assertHeldShared(shared);
  yield* forEachTdpMmuRootYieldSafe(kvm, slot.asId, shared, true, function* (root) {
    const r = yield* tdpMmuSplitHugePagesRoot(kvm, root, start, end, targetLevel, shared);
    return r === 0;
  });
}

// ---------------------------------------------------------------------------------------
// VM life cycle

/** kvm_mmu_uninit_tdp_mmu(): at VM destruction, after the notifier's release zapped all. */
export function* kvmMmuUninitTdpMmu(kvm: Kvm): Gen<void> {
  yield* kvmTdpMmuInvalidateAllRoots(kvm, true);
  yield* kvmTdpMmuZapInvalidatedRoots(kvm);
  kvm.w.warnOn(kvm.arch.tdpMmuPages.size !== 0, `kvm_mmu_uninit_tdp_mmu: ${kvm.arch.tdpMmuPages.size} page tables still listed`);
  kvm.w.warnOn(kvm.arch.tdpMmuRoots.length !== 0, `kvm_mmu_uninit_tdp_mmu: ${kvm.arch.tdpMmuRoots.length} roots still listed`);
  yield* kvm.rcu.rcuBarrier();
}

