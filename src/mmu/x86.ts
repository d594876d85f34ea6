// SPDX-License-Identifier: GPL-2.0-only
// VM and vCPU life cycle and the guest side of a memory access (arch/x86/kvm/x86.c,
// virt/kvm/kvm_main.c): requests are processed before entry, the root is (re)loaded, the
// CPU translates through its TLB and the TDP tables, and a nested page fault goes to
// kvm_mmu_page_fault().
import { blockingStep, spinStep, hwTranslate, isZeroPfn, objOf, step, touch, type Access, type Gen, type WalkResult, type World } from "../kernel/index.js";
import { SPTE_BASE_ADDR_MASK, isShadowPresentPte, rsvdBits } from "../spte/index.js";
import { Kvm, KvmVcpu, KVM_MEMSLOT_INVALID, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, KVM_REQ_TLB_FLUSH, defaultParams, type KvmParams, type Variants } from "./kvm_host.js";
import { KvmMmuNotifier } from "./kvm_main.js";
import { kvmMmuFreeObsoleteRoots, kvmMmuFreeRoots, kvmMmuLoad, kvmMmuPageFault } from "./mmu.js";
import { RET_PF_EMULATE, RET_PF_NAMES, RET_PF_RETRY, roleLevel } from "./mmu_internal.js";
import { kvmMmuUninitTdpMmu, kvmTdpMmuZapAll } from "./tdp_mmu.js";

/** kvm_create_vm(): a VM with its MMU notifier registered on the host mm. */
export function kvmCreateVm(w: World, params: KvmParams = defaultParams, variants: Variants = new Set()): Kvm {
  const kvm = new Kvm(w, params, variants);
  kvm.mm.notifiers.push(new KvmMmuNotifier(kvm));
  return kvm;
}

/** kvm_vm_ioctl_create_vcpu(): KVM_CREATE_VCPU. */
export function kvmVmIoctlCreateVcpu(kvm: Kvm): KvmVcpu {
  const v = new KvmVcpu(kvm.vcpus.length);
  kvm.vcpus.push(v);
  return v;
}

/** vcpu_enter_guest(), the part that the MMU cares about: requests, then the root. */
export function* vcpuEnterGuest(kvm: Kvm, vcpu: KvmVcpu): Gen<void> {
  touch(kvm.objIds.requests, "r");
  if (vcpu.requests.size !== 0) {
    yield step("rmw", kvm.objIds.requests, "w", "kvm_check_request()");
    if (vcpu.requests.delete(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)) yield* kvmMmuFreeObsoleteRoots(kvm, vcpu);
    if (vcpu.requests.delete(KVM_REQ_TLB_FLUSH)) vcpu.tlb.flushAll();
  }
  // kvm_mmu_reload()
  if (vcpu.root === null) yield* kvmMmuLoad(kvm, vcpu);
}

export type GuestAccessResult =
  | { readonly kind: "ok"; readonly pfn: number }
  | { readonly kind: "mmio" }
  | { readonly kind: "stuck"; readonly faults: number };

/** MODEL: an MMU-notifier invalidation is running, or a memslot is marked KVM_MEMSLOT_INVALID. */
function somethingInFlight(kvm: Kvm): boolean {
  touch(kvm.objIds.invalidateSeq, "r");
  for (let as = 0; as < kvm.memslots.length; as++) touch(objOf.memslots(as), "r");
  if (kvm.mmuInvalidateInProgress > 0) return true;
  for (const set of kvm.memslots) for (const s of set.slots.values()) if (s.flags & KVM_MEMSLOT_INVALID) return true;
  return false;
}

/** Retries, with no other thread moving, after which an access is reported as no progress. */
export const MAX_FAULTS_PER_ACCESS = 64;

/**
 * MODEL: one guest memory access by `vcpu`, repeated after each fault until it completes: what
 * the CPU and KVM_RUN together do for one instruction's memory operand.
 */
export function* kvmGuestAccess(kvm: Kvm, vcpu: KvmVcpu, gpa: number, access: Access): Gen<GuestAccessResult> {
  const gfn = Math.floor(gpa / 4096);
  const cfg = {
    masks: kvm.masks,
    adEnabled: kvm.masks.shadowAccessedMask !== 0n,
    rootLevel: kvm.params.tdpRootLevel,
    rsvdMask: kvm.params.format === "npt" ? rsvdBits(kvm.masks.shadowPhysBits, 51) & SPTE_BASE_ADDR_MASK : 0n,
    tableAt: (pfn: number) => kvm.tableAt(pfn),
  };
  vcpu.runningThread = kvm.w.current;
  try {
    let othersSeen = kvm.w.stepsByOthers(kvm.w.current);
    for (let faults = 0; faults < MAX_FAULTS_PER_ACCESS; faults++) {
      yield* vcpuEnterGuest(kvm, vcpu);
      const root = vcpu.root!;
      // A pending kick keeps the vCPU out of guest mode until the kicker is done.
      touch(kvm.objIds.kick, "r");
      touch(kvm.objIds.requests, "r");
      if (kvm.kicksPending > 0) yield blockingStep("sched", kvm.objIds.kick, "r", "vcpu_enter_guest: wait for a pending kick", () => kvm.kicksPending === 0);
      if (vcpu.requests.size !== 0) continue;
      vcpu.setInGuestMode(true);
      let r: WalkResult;
      try {
        r = yield* hwTranslate({ ...cfg, rootLevel: roleLevel(root.role) }, vcpu.tlb, root.spt, gfn, access);
      } finally {
        vcpu.setInGuestMode(false);
      }
      if (r.kind === "stale-table") {
        kvm.w.report("rcu", `vCPU ${vcpu.vcpuId} walked page table 0x${r.table.pfn.toString(16)} (L${r.level}) after it was freed`);
        return { kind: "stuck", faults };
      }
      if (r.kind === "ok") {
        const page = kvm.w.pages.pfnToPage(r.pfn);
        touch(objOf.page(page?.pfn ?? r.pfn), "r");
        if (!isZeroPfn(r.pfn) && (page === undefined || page.free))
          kvm.w.report(
            "host-uaf",
            `vCPU ${vcpu.vcpuId} ${access} of gpa 0x${gpa.toString(16)} reached host frame 0x${r.pfn.toString(16)} after the host freed it${r.viaTlb ? " (stale TLB entry)" : ""}`,
          );
        return { kind: "ok", pfn: r.pfn };
      }
      if (kvm.tracer.on) kvm.tracer.emit({ ev: "kvm_page_fault", vcpu: vcpu.vcpuId, gpa, errorCode: r.errorCode });
      // The exit is handled inside kvm->srcu's read side (kvm_vcpu_srcu_read_lock()):
      // a memslot update waits for it in synchronize_srcu_expedited().
      touch(kvm.objIds.srcu, "a");
      vcpu.srcuSeq++;
      const ret = yield* kvmMmuPageFault(kvm, vcpu, gpa, r.errorCode);
      touch(kvm.objIds.srcu, "a");
      vcpu.srcuSeq++;
      // MODEL: an emulated access completes without touching guest memory through the TDP
      // tables (MMIO exits to userspace; writes to read-only slots are dropped).
      if (ret === RET_PF_EMULATE) return { kind: "mmio" };
      if (ret < 0) kvm.w.report("warn", `kvm_mmu_page_fault returned ${ret} (${RET_PF_NAMES[ret] ?? "errno"})`);
      if (ret === RET_PF_RETRY && somethingInFlight(kvm)) {
        // MODEL: a vCPU that retries while an invalidation or a memslot update is in flight
        // spins until it is over; the spin is one blocking step, so no schedule can starve
        // the updater and no retry spent waiting counts against progress. Each re-entry
        // would service requests (a root to drop, a TLB flush), so a request ends the wait.
        yield blockingStep(
          "sched",
          kvm.objIds.invalidateSeq,
          "r",
          "retry: wait for the invalidation or memslot update",
          () => !somethingInFlight(kvm) || vcpu.requests.size !== 0,
        );
        somethingInFlight(kvm); // what the wait read, for the footprint
        touch(kvm.objIds.requests, "r");
        faults--;
      } else if (ret === RET_PF_RETRY) {
        yield spinStep(kvm.objIds.invalidateSeq, "RET_PF_RETRY: re-enter the guest");
        // Only retries while nobody else moves count against progress: a fault that waits
        // for another thread's frozen SPTE or update is not stuck.
        const others = kvm.w.stepsByOthers(kvm.w.current);
        if (others !== othersSeen) faults = 0;
        othersSeen = others;
      }
    }
    kvm.w.report("progress", `vCPU ${vcpu.vcpuId} ${access} of gpa 0x${gpa.toString(16)} still faults after ${MAX_FAULTS_PER_ACCESS} attempts`);
    return { kind: "stuck", faults: MAX_FAULTS_PER_ACCESS };
  } finally {
    vcpu.runningThread = -1;
  }
}

/**
 * kvm_destroy_vm(): VM teardown. The MMU notifier's release zaps everything (kvm_mmu_zap_all), vCPUs drop
 * their roots, then kvm_mmu_uninit_tdp_mmu() frees what is left.
 */
export function* kvmDestroyVm(kvm: Kvm): Gen<void> {
  kvm.usersCount = 0;
  yield* kvm.mmuLock.writeLock();
  yield* kvmTdpMmuZapAll(kvm);
  // MODEL (Z4's promise): after kvm_tdp_mmu_zap_all() no root maps or links anything.
  for (const root of kvm.arch.tdpMmuRoots)
    for (let i = 0; i < 512; i++)
      if (isShadowPresentPte(root.spt.spt[i]!)) {
        kvm.w.report("leaks", `kvm_tdp_mmu_zap_all() left entry ${i} of root 0x${root.spt.pfn.toString(16)} present: 0x${root.spt.spt[i]!.toString(16)}`);
        break;
      }
  yield* kvm.mmuLock.writeUnlock();
  for (const v of kvm.vcpus) yield* kvmMmuFreeRoots(kvm, v);
  yield* kvmMmuUninitTdpMmu(kvm);
  for (const v of kvm.vcpus) {
    for (const pfn of v.shadowPageCache.splice(0)) {
      const p = kvm.w.pages.pfnToPage(pfn);
      if (p !== undefined) kvm.w.pages.putPage(p, "unmovable");
    }
  }
}
