// SPDX-License-Identifier: GPL-2.0-only
// The generic KVM core around the TDP MMU (virt/kvm/kvm_main.c): remote TLB flushes,
// dirty tracking, memslot updates, the MMU-notifier protocol and the dirty-log ioctls.
import { EEXIST, EINVAL } from "../base/index.js";
import { blockingStep, isZeroPfn, objOf, step, touch, type Gen, type HostPte, type MmuNotifierOps, type NotifierRange, type Page } from "../kernel/index.js";
import { PG_LEVEL_4K, isLastSpte, isShadowPresentPte, kvmPagesPerHpage, spteToPfn } from "../spte/index.js";
import {
  KVM_ADDRESS_SPACE_NUM,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS,
  KVM_MEMSLOT_INVALID,
  KvmMemorySlot,
  type Kvm,
  type KvmVcpu,
} from "./kvm_host.js";
import {
  kvmArchMmuEnableLogDirtyPtMasked,
  kvmMmuSlotLeafClearDirty,
  kvmMmuSlotRemoveWriteAccess,
  kvmMmuSlotTrySplitHugePages,
  kvmMmuZapAllFast,
  kvmMmuZapCollapsibleSptes,
} from "./mmu.js";
import { kvmTdpMmuAgeGfnRange, kvmTdpMmuSetSpteGfn, kvmTdpMmuTestAgeGfn, kvmTdpMmuUnmapGfnRange } from "./tdp_mmu.js";

// ---------------------------------------------------------------------------------------
// TLB flushes and requests

/**
 * kvm_flush_remote_tlbs(): every vCPU drops its translations before this returns.
 * MODEL: the request-and-kick round trip is one step; it is synchronous, as the kernel's
 * KVM_REQUEST_WAIT makes it.
 */
export function* kvmFlushRemoteTlbs(kvm: Kvm): Gen<void> {
  yield* kickAndWait(kvm, "kvm_flush_remote_tlbs()");
  kvm.stat.remoteTlbFlushRequests++;
  for (const v of kvm.vcpus) v.tlb.flushAll();
  kvm.stat.remoteTlbFlush++;
}

/** kvm_flush_remote_tlbs_with_address(): a ranged flush (kept ranged, see spec 00 §6). */
export function* kvmFlushRemoteTlbsWithAddress(kvm: Kvm, startGfn: number, pages: number): Gen<void> {
  yield* kickAndWait(kvm, "kvm_flush_remote_tlbs_with_address", startGfn, pages);
  kvm.stat.remoteTlbFlushRequests++;
  for (const v of kvm.vcpus) v.tlb.flushRange(startGfn, pages);
  kvm.stat.remoteTlbFlush++;
}

/**
 * MODEL: KVM_REQUEST_WAIT: kick every vCPU out of guest mode and wait until none is in it. While
 * a kick is pending no vCPU enters guest mode, so the wait always ends.
 */
function* kickAndWait(kvm: Kvm, what: string, startGfn = -1, pages = 0): Gen<void> {
  // The labels are built inside the step announcements, which the direct build drops: a ranged
  // flush can be one per SPTE.
  yield step("write", kvm.objIds.kick, "w", `${flushLabel(what, startGfn, pages)}: kick vCPUs`);
  kvm.kicksPending++;
  // The kicker is fixed now: the scheduler evaluates the wait while another thread is current.
  const me = kvm.w.current;
  yield blockingStep(
    "flush",
    kvm.objIds.kick,
    "w",
    `${flushLabel(what, startGfn, pages)}: wait for vCPUs to leave guest mode`,
    () => noVcpuInGuestMode(kvm, me),
    () => vcpuThreadsInGuestMode(kvm, me),
  );
  for (const v of kvm.vcpus) touch(objOf.vcpuMode(v.vcpuId), "r");
  touch(kvm.objIds.kick, "w");
  kvm.kicksPending--;
}

/** `what`, with the range of a ranged flush (startGfn >= 0) as its arguments. */
function flushLabel(what: string, startGfn: number, pages: number): string {
  return startGfn < 0 ? what : `${what}(0x${startGfn.toString(16)}, ${pages})`;
}

/** MODEL: the kick-and-wait of KVM_REQUEST_WAIT completes once no vCPU is in guest mode. */
function noVcpuInGuestMode(kvm: Kvm, kicker: number): boolean {
  for (const v of kvm.vcpus) if (v.inGuestMode && v.runningThread !== kicker) return false;
  return true;
}

/** The threads running the vCPUs that a kick-and-wait by `kicker` waits for. */
function vcpuThreadsInGuestMode(kvm: Kvm, kicker: number): number[] {
  const out: number[] = [];
  for (const v of kvm.vcpus) if (v.inGuestMode && v.runningThread !== kicker && v.runningThread >= 0) out.push(v.runningThread);
  return out;
}

/** kvm_arch_flush_remote_tlbs_memslot() */
export function kvmArchFlushRemoteTlbsMemslot(kvm: Kvm, slot: KvmMemorySlot): Gen<void> {
  return kvmFlushRemoteTlbsWithAddress(kvm, slot.baseGfn, slot.npages);
}

/** kvm_make_all_cpus_request(): set the request on every vCPU and kick it. */
export function* kvmMakeAllCpusRequest(kvm: Kvm, req: string): Gen<void> {
  touch(kvm.objIds.requests, "w");
  for (const v of kvm.vcpus) v.requests.add(req);
  yield* kickAndWait(kvm, `kvm_make_all_cpus_request(${req})`);
}

// ---------------------------------------------------------------------------------------
// Pages and dirty tracking

/** kvm_get_running_vcpu() */
export function kvmGetRunningVcpu(kvm: Kvm): KvmVcpu | null {
  return kvm.vcpus.find((v) => v.runningThread === kvm.w.current) ?? null;
}

/**
 * mark_page_dirty_in_slot(): record a dirty gfn in the slot's bitmap. Only a running vCPU
 * can (x86 builds dirty-ring support in); without one it records nothing.
 */
export function markPageDirtyInSlot(kvm: Kvm, slot: KvmMemorySlot | null, gfn: number, vcpu: KvmVcpu | null = kvmGetRunningVcpu(kvm)): void {
  if (vcpu === null) {
    kvm.w.warnOn(kvm.usersCount !== 0, `mark_page_dirty_in_slot(gfn 0x${gfn.toString(16)}) without a running vCPU`);
    return;
  }
  if (slot === null || (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) return;
  const rel = gfn - slot.baseGfn;
  if (rel < 0 || rel >= slot.npages) return;
  touch(objOf.dirtyBitmap(slot.asId, slot.id), "a");
  slot.dirtyBitmap[Math.floor(rel / 64)]! |= 1n << BigInt(rel % 64);
}

/** kvm_set_pfn_dirty(): the host page gets its dirty flag (SetPageDirty). */
export function kvmSetPfnDirty(kvm: Kvm, pfn: number): void {
  if (isZeroPfn(pfn)) return;
  const p = kvm.w.pages.pfnToPage(pfn);
  if (p !== undefined) touch(objOf.page(p.pfn), "a");
  if (p !== undefined && !p.free) p.dirty = true;
}

/** kvm_set_pfn_accessed(): mark_page_accessed(). */
export function kvmSetPfnAccessed(kvm: Kvm, pfn: number): void {
  if (isZeroPfn(pfn)) return;
  const p = kvm.w.pages.pfnToPage(pfn);
  if (p !== undefined) touch(objOf.page(p.pfn), "a");
  if (p !== undefined && !p.free) p.accessed = true;
}

/** kvm_release_pfn_clean(): drop the reference get_user_pages() took. */
export function kvmReleasePfnClean(kvm: Kvm, page: Page): void {
  kvm.w.pages.putPage(page);
}

// ---------------------------------------------------------------------------------------
// Memslot lookup

/** __gfn_to_memslot() in one address space. */
export function gfnToMemslot(kvm: Kvm, asId: number, gfn: number): KvmMemorySlot | null {
  touch(objOf.memslots(asId), "r");
  for (const s of kvm.memslots[asId]!.slots.values()) if (s.baseGfn <= gfn && gfn < s.endGfn) return s;
  return null;
}

/** kvm_memslots(kvm, as_id)->generation, read by a vCPU for its MMIO caches. */
export function kvmMemslotsGeneration(kvm: Kvm, asId: number): bigint {
  touch(objOf.memslots(asId), "r");
  return kvm.memslots[asId]!.generation;
}

/** kvm_vcpu_gfn_to_memslot() */
export function kvmVcpuGfnToMemslot(kvm: Kvm, vcpu: KvmVcpu, gfn: number): KvmMemorySlot | null {
  return gfnToMemslot(kvm, vcpu.smm ? 1 : 0, gfn);
}

// ---------------------------------------------------------------------------------------
// The MMU-notifier protocol

/** kvm_mmu_invalidate_begin() */
export function kvmMmuInvalidateBegin(kvm: Kvm, start: number, end: number): void {
  touch(kvm.objIds.invalidateSeq, "w");
  kvm.mmuInvalidateInProgress++;
  if (kvm.mmuInvalidateInProgress === 1) {
    kvm.mmuInvalidateRangeStart = start;
    kvm.mmuInvalidateRangeEnd = end;
  } else {
    kvm.mmuInvalidateRangeStart = Math.min(kvm.mmuInvalidateRangeStart, start);
    kvm.mmuInvalidateRangeEnd = Math.max(kvm.mmuInvalidateRangeEnd, end);
  }
}

/** kvm_mmu_invalidate_end(): bump the sequence before dropping the in-progress count. */
export function kvmMmuInvalidateEnd(kvm: Kvm): void {
  touch(kvm.objIds.invalidateSeq, "w");
  if (kvm.zapObligations.length !== 0 && kvm.mmuInvalidateInProgress === 1) {
    touch(kvm.objIds.obligations, "w");
    kvm.zapObligations.length = 0;
  }
  kvm.mmuInvalidateSeq++;
  kvm.mmuInvalidateInProgress--;
  kvm.w.bugOn(kvm.mmuInvalidateInProgress < 0, "mmu_invalidate_in_progress went negative");
}

interface GfnRange {
  readonly slot: KvmMemorySlot;
  readonly start: number;
  readonly end: number;
  readonly mayBlock: boolean;
}

interface HvaRange {
  readonly start: number;
  readonly end: number;
  readonly handler: ((kvm: Kvm, r: GfnRange) => Gen<boolean>) | null;
  readonly onLock: ((kvm: Kvm, start: number, end: number) => void) | null;
  readonly flushOnRet: boolean;
  readonly mayBlock: boolean;
}

/**
 * __kvm_handle_hva_range(): for every memslot overlapping the hva range, take mmu_lock
 * for write (once), run on_lock, then the handler on the slot's gfn range.
 */
function* __kvmHandleHvaRange(kvm: Kvm, r: HvaRange): Gen<boolean> {
  let ret = false;
  let locked = false;
  // Variant zap-under-read-lock: the notifier's correctness zap (Z2) runs as a reader.
  const readLocked = r.handler === kvmUnmapGfnRange && kvm.variant("zap-under-read-lock");
  outer: for (let asId = 0; asId < KVM_ADDRESS_SPACE_NUM; asId++) {
    for (const slot of kvm.memslots[asId]!.sorted()) {
      const slotEnd = slot.userspaceAddr + slot.npages * 4096;
      if (!(slot.userspaceAddr < r.end && r.start < slotEnd)) continue;
      const hvaStart = Math.max(r.start, slot.userspaceAddr);
      const hvaEnd = Math.min(r.end, slotEnd);
      const range: GfnRange = {
        slot,
        start: slot.baseGfn + Math.floor((hvaStart - slot.userspaceAddr) / 4096),
        end: slot.baseGfn + Math.floor((hvaEnd + 4095 - slot.userspaceAddr) / 4096),
        mayBlock: r.mayBlock,
      };
      if (!locked) {
        locked = true;
        if (readLocked) yield* kvm.mmuLock.readLock();
        else yield* kvm.mmuLock.writeLock();
        r.onLock?.(kvm, r.start, r.end);
        if (r.handler === null) break outer;
      }
      if (r.handler !== null) ret = (yield* r.handler(kvm, range)) || ret;
      if (r.handler === kvmUnmapGfnRange && kvm.checkZapPost) zapObligation(kvm, asId, range.start, range.end);
    }
  }
  if (r.flushOnRet && ret) yield* kvmFlushRemoteTlbs(kvm);
  if (locked) {
    if (readLocked) yield* kvm.mmuLock.readUnlock();
    else yield* kvm.mmuLock.writeUnlock();
  }
  return ret;
}

/**
 * MODEL: the zap-post check. Once a correctness zap of [start, end) returns, no present
 * leaf may map the range until the invalidation ends; record the obligation and check
 * that it holds right now.
 */
export function zapObligation(kvm: Kvm, asId: number, start: number, end: number): void {
  touch(kvm.objIds.obligations, "w");
  kvm.zapObligations.push({ asId, start, end, thread: kvm.w.current });
  touch(kvm.objIds.roots, "r");
  for (const root of kvm.arch.tdpMmuRoots) {
    if (((root.role >>> 24) !== 0 ? 1 : 0) !== asId) continue;
    const hit = firstPresentLeaf(kvm, root.spt, root.role & 0xf, 0, start, end);
    if (hit !== null)
      kvm.w.report("zap-post", `gfn 0x${hit.toString(16)} is still mapped right after a correctness zap of [0x${start.toString(16)}, 0x${end.toString(16)})`);
  }
}

/** MODEL: the first gfn in [start, end) that a present leaf under table `t` maps (checks). */
function firstPresentLeaf(kvm: Kvm, t: import("../kernel/index.js").Table, level: number, base: number, start: number, end: number): number | null {
  const span = kvmPagesPerHpage(level);
  for (let i = 0; i < 512; i++) {
    const g = base + i * span;
    if (g >= end || g + span <= start) continue;
    touch(t.sptep(i), "r");
    const s = t.spt[i]!;
    if (!isShadowPresentPte(s)) continue;
    if (isLastSpte(s, level)) return Math.max(g, start);
    const child = kvm.tableAt(spteToPfn(s));
    if (child === undefined) continue;
    const r = firstPresentLeaf(kvm, child, level - 1, g, start, end);
    if (r !== null) return r;
  }
  return null;
}

/** kvm_unmap_gfn_range() */
function kvmUnmapGfnRange(kvm: Kvm, r: GfnRange): Gen<boolean> {
  return kvmTdpMmuUnmapGfnRange(kvm, r.slot.asId, r.start, r.end, r.mayBlock, false);
}

/** The MMU notifier KVM registers on the host mm (struct kvm's mmu_notifier). */
export class KvmMmuNotifier implements MmuNotifierOps {
  constructor(readonly kvm: Kvm) {}

  /** kvm_mmu_notifier_invalidate_range_start() */
  *invalidateRangeStart(range: NotifierRange): Gen<void> {
    const kvm = this.kvm;
    yield* kvm.mnInvalidateLock.lock();
    kvm.mnActiveInvalidateCount++;
    yield* kvm.mnInvalidateLock.unlock();
    yield* __kvmHandleHvaRange(kvm, {
      start: range.start,
      end: range.end,
      handler: kvmUnmapGfnRange,
      onLock: (k, s, e) => kvmMmuInvalidateBegin(k, s, e),
      flushOnRet: true,
      mayBlock: range.blockable,
    });
  }

  /** kvm_mmu_notifier_invalidate_range_end() */
  *invalidateRangeEnd(range: NotifierRange): Gen<void> {
    const kvm = this.kvm;
    yield* __kvmHandleHvaRange(kvm, {
      start: range.start,
      end: range.end,
      handler: null,
      onLock: (k) => kvmMmuInvalidateEnd(k),
      flushOnRet: false,
      mayBlock: range.blockable,
    });
    yield* kvm.mnInvalidateLock.lock();
    kvm.mnActiveInvalidateCount--;
    yield* kvm.mnInvalidateLock.unlock();
  }

  /** kvm_mmu_notifier_change_pte(): only while an invalidation is in progress. */
  *changePte(address: number, pte: HostPte): Gen<void> {
    const kvm = this.kvm;
    kvm.w.warnOn(kvm.mnActiveInvalidateCount === 0, "change_pte outside an invalidation");
    if (kvm.mmuInvalidateInProgress === 0) return;
    yield* __kvmHandleHvaRange(kvm, {
      start: address,
      end: address + 1,
      handler: function* (k, r) {
        // kvm_change_spte_gfn(): never for a slot that is being deleted or moved.
        if (r.slot.flags & KVM_MEMSLOT_INVALID) return false;
        return yield* kvmTdpMmuSetSpteGfn(k, r.slot.asId, r.start, pte.pfn, pte.writable);
      },
      onLock: null,
      flushOnRet: true,
      mayBlock: false,
    });
  }

  /** kvm_mmu_notifier_clear_flush_young() / clear_young() */
  *clearYoung(start: number, end: number, flush: boolean): Gen<boolean> {
    return yield* __kvmHandleHvaRange(this.kvm, {
      start,
      end,
      handler: (k, r) => kvmTdpMmuAgeGfnRange(k, r.slot.asId, r.start, r.end),
      onLock: null,
      flushOnRet: flush,
      mayBlock: false,
    });
  }

  /** kvm_mmu_notifier_test_young() */
  *testYoung(address: number): Gen<boolean> {
    return yield* __kvmHandleHvaRange(this.kvm, {
      start: address,
      end: address + 1,
      handler: (k, r) => kvmTdpMmuTestAgeGfn(k, r.slot.asId, r.start),
      onLock: null,
      flushOnRet: false,
      mayBlock: false,
    });
  }
}

// ---------------------------------------------------------------------------------------
// Memslot updates

export type MrChange = "create" | "delete" | "move" | "flags";

export interface MemoryRegion {
  readonly slot: number;
  readonly asId: number;
  readonly flags: number;
  readonly gpa: number;
  /** 0 deletes the slot. */
  readonly size: number;
  readonly hva: number;
}

/** A KVM ioctl's failure: the errno it returns. */
export class IoctlError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * kvm_swap_active_memslots(): publish a new memslot set. The generation carries the
 * update-in-progress bit while in flux and ends KVM_ADDRESS_SPACE_NUM higher; in-flight
 * notifier invalidations are waited for, so start and end see the same memslots.
 */
function* kvmSwapActiveMemslots(kvm: Kvm, asId: number, apply: () => void): Gen<void> {
  const set = kvm.memslots[asId]!;
  touch(objOf.memslots(asId), "w");
  const gen = set.generation;
  set.generation = gen | KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS;
  yield blockingStep("lock", kvm.mnInvalidateLock.id, "w", "wait for mn_active_invalidate_count == 0", () => kvm.mnActiveInvalidateCount === 0);
  touch(objOf.memslots(asId), "w");
  apply();
  // synchronize_srcu_expedited() waits for every read-side section that began before the
  // new set was published: a fault that may still use the old memslots. Faults that begin
  // later see the new set.
  touch(kvm.objIds.srcu, "r");
  const readers: [KvmVcpu, number][] = [];
  for (const v of kvm.vcpus) if ((v.srcuSeq & 1) === 1) readers.push([v, v.srcuSeq]);
  yield blockingStep("rcu", objOf.memslots(asId), "w", "synchronize_srcu_expedited(&kvm->srcu)", () =>
    readers.every(([v, seq]) => v.srcuSeq !== seq),
  );
  touch(kvm.objIds.srcu, "r"); // what the wait read
  set.generation = (gen & ~KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS) + BigInt(KVM_ADDRESS_SPACE_NUM);
  // kvm_arch_memslots_updated() -> kvm_mmu_invalidate_mmio_sptes()
  const g = set.generation & 0x7ffffn & ~1n;
  if (g === 0n) yield* kvmMmuZapAllFast(kvm);
}

/**
 * kvm_set_memory_region(): KVM_SET_USER_MEMORY_REGION.
 * Context: takes slots_lock.
 */
export function* kvmSetMemoryRegion(kvm: Kvm, mem: MemoryRegion): Gen<MrChange | null> {
  yield* kvm.slotsLock.lock();
  try {
    return yield* __kvmSetMemoryRegion(kvm, mem);
  } finally {
    yield* kvm.slotsLock.unlock();
  }
}

/** __kvm_set_memory_region(): validate the change, then invalidate, publish and commit. */
function* __kvmSetMemoryRegion(kvm: Kvm, mem: MemoryRegion): Gen<MrChange | null> {
  const set = kvm.memslots[mem.asId]!;
  const old = set.slots.get(mem.slot);
  const npages = Math.floor(mem.size / 4096);
  const baseGfn = Math.floor(mem.gpa / 4096);
  let change: MrChange;
  if (mem.size === 0) {
    if (old === undefined) throw new IoctlError(EINVAL, `slot ${mem.slot} does not exist`);
    change = "delete";
  } else if (old === undefined) {
    change = "create";
  } else {
    if (old.userspaceAddr !== mem.hva || old.npages !== npages || ((old.flags ^ mem.flags) & KVM_MEM_READONLY) !== 0)
      throw new IoctlError(EINVAL, `slot ${mem.slot}: only the address or the flags may change`);
    if (old.baseGfn !== baseGfn) change = "move";
    else if (old.flags !== mem.flags) change = "flags";
    else return null;
  }
  if (change === "create" || change === "move") {
    for (const s of set.slots.values())
      if (s.id !== mem.slot && s.baseGfn < baseGfn + npages && baseGfn < s.endGfn)
        throw new IoctlError(EEXIST, `slot ${mem.slot} overlaps slot ${s.id}`);
  }

  if (change === "delete" || change === "move") {
    // kvm_invalidate_memslot(): publish an invalid copy, then flush the old mappings.
    const inv = cloneSlot(old!, old!.baseGfn, old!.flags | KVM_MEMSLOT_INVALID);
    yield* kvmSwapActiveMemslots(kvm, mem.asId, () => set.slots.set(mem.slot, inv));
    // kvm_arch_flush_shadow_memslot() -> kvm_mmu_zap_all_fast()
    yield* kvmMmuZapAllFast(kvm);
  }

  let next: KvmMemorySlot | null = null;
  if (change === "create") next = new KvmMemorySlot(mem.slot, mem.asId, baseGfn, npages, mem.hva, mem.flags);
  else if (change === "move") next = cloneSlot(old!, baseGfn, mem.flags);
  else if (change === "flags") {
    next = cloneSlot(old!, old!.baseGfn, mem.flags);
    // kvm_prepare_memory_region(): a bitmap only while logging; a fresh one when it starts.
    if ((mem.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 && (old!.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) {
      next.dirtyBitmap = new BigUint64Array(Math.ceil(npages / 64));
      if (kvm.manualDirtyLogInitSet)
        for (let i = 0; i < npages; i++) next.dirtyBitmap[Math.floor(i / 64)]! |= 1n << BigInt(i % 64);
    }
  }
  yield* kvmSwapActiveMemslots(kvm, mem.asId, () => {
    if (next === null) set.slots.delete(mem.slot);
    else set.slots.set(mem.slot, next);
  });
  // kvm_arch_commit_memory_region()
  yield* kvmMmuSlotApplyFlags(kvm, old ?? null, next, change);
  if (kvm.checkMemslot && (change === "delete" || change === "move")) {
    touch(kvm.objIds.roots, "r");
    for (const root of kvm.arch.tdpMmuRoots) {
      if (((root.role >>> 24) !== 0 ? 1 : 0) !== mem.asId) continue;
      const hit = firstPresentLeaf(kvm, root.spt, root.role & 0xf, 0, old!.baseGfn, old!.endGfn);
      if (hit !== null)
        kvm.w.report("memslot", `memslot ${mem.slot} ${change} returned but gfn 0x${hit.toString(16)} of its old range is still mapped (root role 0x${root.role.toString(16)})`);
    }
  }
  return change;
}

/** kvm_copy_memslot(), with the new base gfn and flags the update asks for. */
function cloneSlot(s: KvmMemorySlot, baseGfn: number, flags: number): KvmMemorySlot {
  const c = new KvmMemorySlot(s.id, s.asId, baseGfn, s.npages, s.userspaceAddr, flags);
  if (baseGfn === s.baseGfn) c.dirtyBitmap = s.dirtyBitmap;
  return c;
}

/** kvm_mmu_slot_apply_flags() (arch/x86/kvm/x86.c) */
function* kvmMmuSlotApplyFlags(kvm: Kvm, old: KvmMemorySlot | null, next: KvmMemorySlot | null, change: MrChange): Gen<void> {
  const oldFlags = old?.flags ?? 0;
  const newFlags = next?.flags ?? 0;
  const logDirtyPages = (newFlags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  if (change !== "flags" || (newFlags & KVM_MEM_READONLY) !== 0 || next === null) return;
  if (kvm.w.warnOn(((oldFlags ^ newFlags) & KVM_MEM_LOG_DIRTY_PAGES) === 0, "kvm_mmu_slot_apply_flags: dirty logging not toggled")) return;
  if (!logDirtyPages) {
    yield* kvmMmuZapCollapsibleSptes(kvm, next);
    return;
  }
  if (kvm.manualDirtyLogInitSet) return;
  if (kvm.params.eagerPageSplit) yield* kvmMmuSlotTrySplitHugePages(kvm, next, PG_LEVEL_4K);
  if (kvm.params.pml) {
    yield* kvmMmuSlotLeafClearDirty(kvm, next);
    yield* kvmMmuSlotRemoveWriteAccess(kvm, next, 2);
  } else {
    yield* kvmMmuSlotRemoveWriteAccess(kvm, next, PG_LEVEL_4K);
  }
  yield* kvmArchFlushRemoteTlbsMemslot(kvm, next);
}

// ---------------------------------------------------------------------------------------
// Dirty-log ioctls

/**
 * kvm_get_dirty_log_protect(), KVM_GET_DIRTY_LOG: harvest the bitmap and, unless manual
 * protection is on, re-protect what was dirty. Returns the dirty gfns.
 * Context: takes slots_lock, then mmu_lock for write.
 */
export function* kvmGetDirtyLog(kvm: Kvm, asId: number, slotId: number): Gen<number[]> {
  yield* kvm.slotsLock.lock();
  const slot = kvm.memslots[asId]!.slots.get(slotId);
  if (slot === undefined || (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) {
    yield* kvm.slotsLock.unlock();
    throw new IoctlError(-2, `slot ${slotId} has no dirty log`);
  }
  const dirty: number[] = [];
  let flush = false;
  if (kvm.manualDirtyLogProtect) {
    collect(slot, dirty);
  } else {
    yield* kvm.mmuLock.writeLock();
    touch(objOf.dirtyBitmap(slot.asId, slot.id), "r");
    for (let i = 0; i < slot.dirtyBitmap.length; i++) {
      const mask = slot.dirtyBitmap[i]!;
      if (mask === 0n) continue;
      flush = true;
      touch(objOf.dirtyBitmap(slot.asId, slot.id), "w");
      slot.dirtyBitmap[i] = 0n;
      for (let b = 0; b < 64; b++) if ((mask >> BigInt(b)) & 1n) dirty.push(slot.baseGfn + i * 64 + b);
      yield* kvmArchMmuEnableLogDirtyPtMasked(kvm, slot, i * 64, mask);
    }
    yield* kvm.mmuLock.writeUnlock();
  }
  if (flush) yield* kvmArchFlushRemoteTlbsMemslot(kvm, slot);
  yield* kvm.slotsLock.unlock();
  return dirty;
}

/** MODEL: the gfns whose bits are set in the slot's dirty bitmap (what userspace reads). */
function collect(slot: KvmMemorySlot, out: number[]): void {
  touch(objOf.dirtyBitmap(slot.asId, slot.id), "r");
  for (let i = 0; i < slot.dirtyBitmap.length; i++) {
    const mask = slot.dirtyBitmap[i]!;
    for (let b = 0; b < 64; b++) if ((mask >> BigInt(b)) & 1n) out.push(slot.baseGfn + i * 64 + b);
  }
}

/**
 * kvm_clear_dirty_log_protect(), KVM_CLEAR_DIRTY_LOG: clear [first, first + count) of the
 * bitmap and re-protect the pages that really were dirty.
 * Context: takes slots_lock, then mmu_lock for write.
 */
export function* kvmClearDirtyLog(kvm: Kvm, asId: number, slotId: number, first: number, count: number): Gen<number[]> {
  yield* kvm.slotsLock.lock();
  const slot = kvm.memslots[asId]!.slots.get(slotId);
  try {
    if (!kvm.manualDirtyLogProtect) throw new IoctlError(EINVAL, "KVM_CLEAR_DIRTY_LOG needs KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
    if (slot === undefined || (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) throw new IoctlError(-2, `slot ${slotId} has no dirty log`);
    if (first % 64 !== 0 || (count % 64 !== 0 && first + count !== slot.npages) || first + count > slot.npages)
      throw new IoctlError(EINVAL, `clear range [${first}, ${first + count}) is not 64-aligned inside the slot`);
    const cleared: number[] = [];
    let flush = false;
    yield* kvm.mmuLock.writeLock();
    for (let off = first; off < first + count; off += 64) {
      const i = off / 64;
      const n = Math.min(64, first + count - off);
      const want = n === 64 ? ~0n & 0xffffffffffffffffn : (1n << BigInt(n)) - 1n;
      const mask = slot.dirtyBitmap[i]! & want;
      touch(objOf.dirtyBitmap(slot.asId, slot.id), "r");
      if (mask === 0n) continue;
      touch(objOf.dirtyBitmap(slot.asId, slot.id), "w");
      slot.dirtyBitmap[i]! &= ~mask;
      flush = true;
      for (let b = 0; b < 64; b++) if ((mask >> BigInt(b)) & 1n) cleared.push(slot.baseGfn + off + b);
      yield* kvmArchMmuEnableLogDirtyPtMasked(kvm, slot, off, mask);
    }
    yield* kvm.mmuLock.writeUnlock();
    if (flush) yield* kvmArchFlushRemoteTlbsMemslot(kvm, slot);
    return cleared;
  } finally {
    yield* kvm.slotsLock.unlock();
  }
}
