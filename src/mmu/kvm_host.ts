// SPDX-License-Identifier: GPL-2.0-only
// struct kvm, struct kvm_vcpu and struct kvm_memory_slot, reduced to what the TDP MMU and
// its callers use (include/linux/kvm_host.h, arch/x86/include/asm/kvm_host.h).
import {
  Lockdep,
  Mm,
  Mutex,
  Rcu,
  RwLock,
  SpinLock,
  Tlb,
  Tracer,
  objOf,
  touch,
  type Table,
  type World,
} from "../kernel/index.js";
import { masksFor, type SpteFormat, type SpteMasks } from "../spte/index.js";
import type { KvmMmuPage } from "./mmu_internal.js";
import type { TdpIter } from "./tdp_iter.js";

export const KVM_ADDRESS_SPACE_NUM = 2;
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEMSLOT_INVALID = 1 << 16;
export const KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS = 1n << 63n;

export const KVM_REQ_TLB_FLUSH = "KVM_REQ_TLB_FLUSH";
export const KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = "KVM_REQ_MMU_FREE_OBSOLETE_ROOTS";

/** Module parameters (kvm.*) and per-VM settings that the TDP MMU reads. */
export interface KvmParams {
  readonly format: SpteFormat;
  /** 4 or 5: the TDP root level. */
  readonly tdpRootLevel: number;
  readonly eagerPageSplit: boolean;
  readonly nxHugePages: boolean;
  /** Host physical address bits (shadow_phys_bits). */
  readonly physBits: number;
  /** kvm_x86_ops.cpu_dirty_log_size != 0 (VMX with PML). */
  readonly pml: boolean;
  readonly mmioCaching: boolean;
}

export const defaultParams: KvmParams = {
  format: "npt",
  tdpRootLevel: 4,
  eagerPageSplit: true,
  nxHugePages: false,
  physBits: 48,
  pml: false,
  mmioCaching: true,
};

/**
 * Named switches that put a historical bug back or take a rule away, each read at the
 * exact line the real fix changed. All off is Linux 6.1.192.
 */
export type Variants = ReadonlySet<string>;

export class KvmMemorySlot {
  dirtyBitmap: BigUint64Array;
  /** arch.lpage_info[level - 2][i].disallow_lpage for levels 2M and 1G. */
  readonly lpageInfo: Int32Array[];
  constructor(
    readonly id: number,
    readonly asId: number,
    readonly baseGfn: number,
    readonly npages: number,
    readonly userspaceAddr: number,
    public flags: number,
  ) {
    this.dirtyBitmap = new BigUint64Array(Math.ceil(npages / 64));
    this.lpageInfo = [];
    // kvm_alloc_memslot_metadata(): which huge-page indexes may never be huge.
    for (let level = 2; level <= 3; level++) {
      const shift = 9 * (level - 1);
      const first = Math.floor(baseGfn / 2 ** shift);
      const last = Math.floor((baseGfn + npages - 1) / 2 ** shift);
      const info = new Int32Array(last - first + 1);
      const mask = 2 ** shift - 1;
      if (baseGfn % 2 ** shift !== 0) info[0]! += 1;
      if ((baseGfn + npages) % 2 ** shift !== 0) info[info.length - 1]! += 1;
      // GFN and HVA misaligned relative to each other: nothing at this level may be huge.
      if ((baseGfn ^ Math.floor(userspaceAddr / 4096)) & mask) for (let i = 0; i < info.length; i++) info[i]! += 1;
      this.lpageInfo.push(info);
    }
  }

  /** MODEL: base_gfn + npages, the first gfn past the slot. */
  get endGfn(): number {
    return this.baseGfn + this.npages;
  }

  /** __gfn_to_hva_memslot() */
  gfnToHva(gfn: number): number {
    return this.userspaceAddr + (gfn - this.baseGfn) * 4096;
  }

  /** lpage_info_slot(): is a huge page of `level` covering `gfn` disallowed? */
  disallowLpage(gfn: number, level: number): number {
    const shift = 9 * (level - 1);
    const idx = Math.floor(gfn / 2 ** shift) - Math.floor(this.baseGfn / 2 ** shift);
    return this.lpageInfo[level - 2]![idx] ?? 1;
  }
}

export class KvmMemslots {
  readonly slots = new Map<number, KvmMemorySlot>();
  constructor(public generation: bigint) {}

  /** MODEL: the slots sorted by base gfn, the order of the kernel's gfn tree. */
  sorted(): KvmMemorySlot[] {
    return [...this.slots.values()].sort((a, b) => a.baseGfn - b.baseGfn);
  }
}

export class KvmVcpu {
  readonly tlb: Tlb;
  /** vcpu->arch.mmu->root: the loaded root page, or null for INVALID_PAGE. */
  root: KvmMmuPage | null = null;
  readonly requests = new Set<string>();
  /** mmu_shadow_page_cache: pre-allocated zeroed page-table frames. */
  readonly shadowPageCache: number[] = [];
  /** vcpu_cache_mmio_info() */
  mmioGfn = 0;
  mmioAccess = 0;
  mmioGen = 0n;
  smm = false;
  /** The thread currently running this vCPU (kvm_get_running_vcpu()). */
  /**
   * In guest mode, i.e. the CPU is between entry and the end of a translation. Requests
   * and remote TLB flushes kick the vCPU out and wait for it (KVM_REQUEST_WAIT), so they
   * never overlap a hardware walk.
   */
  inGuestMode = false;
  /** Inside kvm_mmu_load(): the new root is set, the local flush not yet done. */
  loadingRoot = false;
  /** The thread running this vCPU (KVM_RUN), or -1. */
  runningThread = -1;
  /**
   * Entries to and exits from kvm->srcu's read side: odd while the vCPU handles a fault
   * (kvm_vcpu_srcu_read_lock() between a VM exit and the next entry).
   * MODEL: the fault path is the vCPU's only memslot reader; exits handled without a fault
   * (a request, a kick) are not counted.
   */
  srcuSeq = 0;
  readonly stat = { pfTaken: 0, pfFixed: 0, pfEmulate: 0, pfSpurious: 0, pfFast: 0, pfMmioSpteCreated: 0, pfRetry: 0 };
  /**
   * MODEL: the struct tdp_iter of kvm_tdp_mmu_map(), which the kernel has on this vCPU
   * thread's stack: kept here between faults rather than made anew for each (populate is
   * some 10 % faster, see README: Benchmarks). One is enough: a vCPU handles one fault at a
   * time (KVM_RUN holds vcpu->mutex, and concurrent scenarios are checked to run each vCPU
   * in one thread), and a run abandoned midway is never resumed (every schedule starts from
   * a copy of the world). Scratch space, not state: left out of state lines and digests.
   * Between faults it still names the tables of the last walk; nothing reads them before
   * tdpIterStart() sets them anew (a copy of the world may hold undefined there for a table
   * whose frame was reused since).
   */
  tdpIter: TdpIter | null = null;
  constructor(readonly vcpuId: number) {
    this.tlb = new Tlb(objOf.tlb(vcpuId));
  }

  /** MODEL: vcpu->mode set to or from IN_GUEST_MODE (kicks wait for the vCPU to leave it). */
  setInGuestMode(on: boolean): void {
    touch(objOf.vcpuMode(this.vcpuId), "w");
    this.inGuestMode = on;
  }
}

export class Kvm {
  readonly masks: SpteMasks;
  readonly lockdep = new Lockdep();
  readonly mmuLock: RwLock;
  readonly slotsLock: Mutex;
  readonly mnInvalidateLock: SpinLock;
  readonly tdpMmuPagesLock: SpinLock;
  readonly rcu: Rcu;
  readonly mm: Mm;
  readonly tracer = new Tracer();

  mmuInvalidateSeq = 0;
  mmuInvalidateInProgress = 0;
  mmuInvalidateRangeStart = 0;
  mmuInvalidateRangeEnd = 0;
  mnActiveInvalidateCount = 0;
  readonly memslots: KvmMemslots[] = [new KvmMemslots(0n), new KvmMemslots(1n)];
  usersCount = 1;
  dirtyRingSize = 0;
  /** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled, and with KVM_DIRTY_LOG_INITIALLY_SET. */
  manualDirtyLogProtect = false;
  manualDirtyLogInitSet = false;
  readonly vcpus: KvmVcpu[] = [];
  readonly stat = {
    pages: [0, 0, 0],
    nxLpageSplits: 0,
    remoteTlbFlush: 0,
    remoteTlbFlushRequests: 0,
  };
  /** Step footprints: the shared objects that are not SPTEs or locks. */
  readonly statIds: { pages: number[]; nx: number };
  readonly objIds: { roots: number; invalidateSeq: number; kick: number; requests: number; obligations: number; srcu: number };
  readonly arch = {
    tdpMmuEnabled: true,
    /** Newest first, as list_add_rcu() at the head leaves them. */
    tdpMmuRoots: [] as KvmMmuPage[],
    tdpMmuPages: new Set<KvmMmuPage>(),
    lpageDisallowedMmuPages: [] as KvmMmuPage[],
    mmuValidGen: 0,
  };
  /** Kicks (requests with KVM_REQUEST_WAIT, remote flushes) waiting for vCPUs to exit. */
  kicksPending = 0;
  /** Page-table frames handed to the RCU callback but not yet freed. */
  pendingFree = 0;
  /**
   * MODEL: ranges a correctness zap has cleared and whose invalidation has not ended yet
   * (the zap-post check: no present SPTE may appear in them). Empty unless a checker
   * turns it on with `checkZapPost`.
   */
  checkZapPost = false;
  /** MODEL: check that a deleted or moved memslot leaves no SPTE behind (I3). */
  checkMemslot = false;
  readonly zapObligations: { asId: number; start: number; end: number; thread: number }[] = [];

  constructor(
    readonly w: World,
    readonly params: KvmParams = defaultParams,
    readonly variants: Variants = new Set(),
  ) {
    this.masks = masksFor(params.format, { physBits: params.physBits, mmioCaching: params.mmioCaching });
    this.mmuLock = new RwLock(w, this.lockdep, "mmu_lock");
    this.slotsLock = new Mutex(w, this.lockdep, "slots_lock");
    this.mnInvalidateLock = new SpinLock(w, this.lockdep, "mn_invalidate_lock");
    this.tdpMmuPagesLock = new SpinLock(w, this.lockdep, "tdp_mmu_pages_lock");
    this.rcu = new Rcu(w);
    this.mm = new Mm(w);
    this.tracer.cpu = w;
    this.statIds = { pages: [w.objId(), w.objId(), w.objId()], nx: w.objId() };
    this.objIds = { roots: w.objId(), invalidateSeq: w.objId(), kick: w.objId(), requests: w.objId(), obligations: w.objId(), srcu: w.objId() };
  }

  /** MODEL: is variant `name` (a historical bug put back, see VARIANTS) switched on? */
  variant(name: string): boolean {
    // Asked on hot paths (every SPTE write), and nearly always of a VM with none.
    return this.variants.size !== 0 && this.variants.has(name);
  }

  /** MODEL: the table in a frame, live or already freed (a freed one is poisoned). */
  tableAt(pfn: number): Table | undefined {
    return this.w.phys.table(pfn) ?? this.w.phys.poisoned.get(pfn);
  }
}
