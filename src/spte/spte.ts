// SPDX-License-Identifier: GPL-2.0-only
// The SPTE bit layout of Linux 6.1.192 x86 KVM: constants, the per-format mask variables,
// pure predicates and constructors (arch/x86/kvm/mmu/spte.{h,c}, arch/x86/kvm/mmu.h and the
// EPT bits of arch/x86/include/asm/vmx.h). See spec/01-spte.md.
//
// An SPTE is the real 64-bit encoding held in a bigint. The kernel keeps the masks in
// module-wide variables written once at vendor-module load; here they are an immutable
// `SpteMasks` record that every mask-dependent helper takes as its first argument, so two
// formats can live side by side in one process (tests, the CLI, the viewer).
//
// MODEL: the kernel WARNs from inside some of these helpers. This layer sits below `kernel`,
// so those helpers take an optional `warn` sink; the caller plugs in its WARN machinery.

/** Receives the text of a kernel WARN raised inside a pure SPTE helper. */
export type SpteWarn = (message: string) => void;

const bit = (n: number): bigint => 1n << BigInt(n);

/** GENMASK_ULL(h, l) in include/linux/bits.h: bits h..l inclusive (0 if h < l). */
const genmaskUll = (h: number, l: number): bigint => (h < l ? 0n : ((2n << BigInt(h - l)) - 1n) << BigInt(l));

const U64_MASK = (1n << 64n) - 1n;

// ---------------------------------------------------------------------------------------------
// Paging levels (arch/x86/include/asm/pgtable_types.h, arch/x86/include/asm/kvm_host.h)

export const PG_LEVEL_NONE = 0;
export const PG_LEVEL_4K = 1;
export const PG_LEVEL_2M = 2;
export const PG_LEVEL_1G = 3;
export const PG_LEVEL_512G = 4;
export const PG_LEVEL_NUM = 5;
export const KVM_MAX_HUGEPAGE_LEVEL = PG_LEVEL_1G;
export const KVM_NR_PAGE_SIZES = KVM_MAX_HUGEPAGE_LEVEL - PG_LEVEL_4K + 1;
export const PAGE_SHIFT = 12n;
export const PAGE_SIZE = 4096;

/** KVM_HPAGE_GFN_SHIFT() in arch/x86/include/asm/kvm_host.h: gfn bits below one entry at `level`. */
export function kvmHpageGfnShift(level: number): number {
  return (level - 1) * 9;
}

/** KVM_PAGES_PER_HPAGE() in arch/x86/include/asm/kvm_host.h: 4K pages mapped by one entry at `level`. */
export function kvmPagesPerHpage(level: number): number {
  // This sits on every step of every walk: up to level 4 a shift (a small integer), above a
  // table lookup.
  if (level >= 1 && level <= 4) return 1 << (9 * level - 9);
  return PAGES_PER_HPAGE[level] ?? 2 ** kvmHpageGfnShift(level);
}
// Levels 0 and 5 (the others are shifted above, and listed for the record).
const PAGES_PER_HPAGE = [0, 1, 512, 262144, 134217728, 68719476736];

// ---------------------------------------------------------------------------------------------
// x86 page-table bits (arch/x86/kvm/mmu.h)

export const PT_PRESENT_MASK = bit(0);
export const PT_WRITABLE_SHIFT = 1n;
export const PT_WRITABLE_MASK = bit(1);
export const PT_USER_SHIFT = 2n;
export const PT_USER_MASK = bit(2);
export const PT_PWT_MASK = bit(3);
export const PT_PCD_MASK = bit(4);
export const PT_ACCESSED_SHIFT = 5n;
export const PT_ACCESSED_MASK = bit(5);
export const PT_DIRTY_SHIFT = 6n;
export const PT_DIRTY_MASK = bit(6);
export const PT_PAGE_SIZE_SHIFT = 7n;
export const PT_PAGE_SIZE_MASK = bit(7);
/** PAT bit of a 4K entry; the same bit position as PS in upper levels. */
export const PT_PAT_MASK = bit(7);
export const PT_GLOBAL_MASK = bit(8);
export const PT64_NX_SHIFT = 63n;
export const PT64_NX_MASK = bit(63);
export const PT_DIR_PAT_SHIFT = 12n;
export const PT_DIR_PAT_MASK = bit(12);

/** rsvd_bits() in arch/x86/kvm/mmu.h: bits s..e inclusive, 0 when e < s (e is taken mod 64). */
export function rsvdBits(s: number, e: number): bigint {
  const end = e & 63;
  return end < s ? 0n : genmaskUll(end, s);
}

// ---------------------------------------------------------------------------------------------
// Access bits of a pte_access value (arch/x86/kvm/mmu/spte.h). Plain numbers, as the kernel's
// `unsigned int pte_access`.

export const ACC_EXEC_MASK = 1;
export const ACC_WRITE_MASK = Number(PT_WRITABLE_MASK);
export const ACC_USER_MASK = Number(PT_USER_MASK);
export const ACC_ALL = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK;

// ---------------------------------------------------------------------------------------------
// EPT bits (arch/x86/include/asm/vmx.h) and memory types (arch/x86/include/uapi/asm/mtrr.h)

export const VMX_EPT_READABLE_MASK = 0x1n;
export const VMX_EPT_WRITABLE_MASK = 0x2n;
export const VMX_EPT_EXECUTABLE_MASK = 0x4n;
export const VMX_EPT_RWX_MASK = VMX_EPT_READABLE_MASK | VMX_EPT_WRITABLE_MASK | VMX_EPT_EXECUTABLE_MASK;
export const VMX_EPT_MT_EPTE_SHIFT = 3n;
export const VMX_EPT_MT_MASK = 7n << VMX_EPT_MT_EPTE_SHIFT;
export const VMX_EPT_IPAT_BIT = bit(6);
export const VMX_EPT_ACCESS_BIT = bit(8);
export const VMX_EPT_DIRTY_BIT = bit(9);
/** Bits 2:0 = 110b (W|X without R) make the CPU raise an EPT misconfiguration. */
export const VMX_EPT_MISCONFIG_WX_VALUE = VMX_EPT_WRITABLE_MASK | VMX_EPT_EXECUTABLE_MASK;
/** EPT bit 63: "suppress #VE"; KVM never sets it. */
export const VMX_EPT_SUPPRESS_VE_BIT = bit(63);

export const MTRR_TYPE_UNCACHABLE = 0n;
export const MTRR_TYPE_WRCOMB = 1n;
export const MTRR_TYPE_WRTHROUGH = 4n;
export const MTRR_TYPE_WRPROT = 5n;
export const MTRR_TYPE_WRBACK = 6n;

// ---------------------------------------------------------------------------------------------
// Format-independent SPTE layout (arch/x86/kvm/mmu/spte.h), spec §1

export const SPTE_MMU_PRESENT_MASK = bit(11);

export const SPTE_TDP_AD_SHIFT = 52n;
export const SPTE_TDP_AD_MASK = 3n << SPTE_TDP_AD_SHIFT;
export const SPTE_TDP_AD_ENABLED_MASK = 0n << SPTE_TDP_AD_SHIFT;
export const SPTE_TDP_AD_DISABLED_MASK = 1n << SPTE_TDP_AD_SHIFT;
export const SPTE_TDP_AD_WRPROT_ONLY_MASK = 2n << SPTE_TDP_AD_SHIFT;

/**
 * Bits 51:12.
 * MODEL: the kernel derives this from `physical_mask` when CONFIG_DYNAMIC_PHYSICAL_MASK is set;
 * the model assumes no memory encryption removed a bit from it, so it is the constant.
 */
export const SPTE_BASE_ADDR_MASK = genmaskUll(51, 12);

export const SPTE_EPT_READABLE_MASK = 0x1n;
export const SPTE_EPT_EXECUTABLE_MASK = 0x4n;

/** Entry-count constants are plain numbers: they count slots, they never meet an SPTE. */
export const SPTE_LEVEL_BITS = 9;
export const SPTE_ENT_PER_PAGE = 1 << SPTE_LEVEL_BITS;

export const SHADOW_ACC_TRACK_SAVED_BITS_MASK = SPTE_EPT_READABLE_MASK | SPTE_EPT_EXECUTABLE_MASK;
export const SHADOW_ACC_TRACK_SAVED_BITS_SHIFT = 54n;
/** Where an access-tracked SPTE keeps its R and X bits (54 and 56). Not a kernel name. */
const ACC_TRACK_SAVED_MASK = SHADOW_ACC_TRACK_SAVED_BITS_MASK << SHADOW_ACC_TRACK_SAVED_BITS_SHIFT;

export const DEFAULT_SPTE_HOST_WRITABLE = bit(9);
export const DEFAULT_SPTE_MMU_WRITABLE = bit(10);
export const EPT_SPTE_HOST_WRITABLE = bit(57);
export const EPT_SPTE_MMU_WRITABLE = bit(58);

export const MMIO_SPTE_GEN_LOW_START = 3n;
export const MMIO_SPTE_GEN_LOW_END = 10n;
export const MMIO_SPTE_GEN_HIGH_START = 52n;
export const MMIO_SPTE_GEN_HIGH_END = 62n;
export const MMIO_SPTE_GEN_LOW_MASK = genmaskUll(10, 3);
export const MMIO_SPTE_GEN_HIGH_MASK = genmaskUll(62, 52);
export const MMIO_SPTE_GEN_LOW_BITS = MMIO_SPTE_GEN_LOW_END - MMIO_SPTE_GEN_LOW_START + 1n;
export const MMIO_SPTE_GEN_HIGH_BITS = MMIO_SPTE_GEN_HIGH_END - MMIO_SPTE_GEN_HIGH_START + 1n;
export const MMIO_SPTE_GEN_LOW_SHIFT = MMIO_SPTE_GEN_LOW_START - 0n;
export const MMIO_SPTE_GEN_HIGH_SHIFT = MMIO_SPTE_GEN_HIGH_START - MMIO_SPTE_GEN_LOW_BITS;
export const MMIO_SPTE_GEN_MASK = genmaskUll(Number(MMIO_SPTE_GEN_LOW_BITS + MMIO_SPTE_GEN_HIGH_BITS) - 1, 0);

export const SPTE_MMIO_ALLOWED_MASK = bit(63) | genmaskUll(51, 12) | genmaskUll(2, 0);

/** Memslots generation bit 63: an update is in flight (include/linux/kvm_host.h). */
export const KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS = bit(63);

/** The frozen marker a reader-side multi-step update parks in a slot (bits 5, 7, 8, 10). */
export const REMOVED_SPTE = 0x5a0n;

export const SHADOW_NONPRESENT_OR_RSVD_MASK_LEN = 5n;

/** SPTE_LEVEL_SHIFT() in arch/x86/kvm/mmu/spte.h: address bit where the index at `level` starts. */
export function spteLevelShift(level: number): number {
  return Number(PAGE_SHIFT) + (level - 1) * SPTE_LEVEL_BITS;
}

/**
 * SPTE_INDEX() in arch/x86/kvm/mmu/spte.h, taking a gfn rather than an address: the slot
 * (0..511) that maps `gfn` inside a table at `level`.
 * Number arithmetic: gfns reach 40 bits, past what `>>` handles.
 */
export function spteIndex(gfn: number, level: number): number {
  return Math.floor(gfn / kvmPagesPerHpage(level)) & (SPTE_ENT_PER_PAGE - 1);
}

// ---------------------------------------------------------------------------------------------
// The mask variables (arch/x86/kvm/mmu/spte.c), spec §2

export type SpteFormat = "npt" | "ept" | "ept-noad";

/** The `shadow_*` variables of arch/x86/kvm/mmu/spte.c, as one immutable record. */
export interface SpteMasks {
  /** Which builder sequence produced this record. */
  readonly format: SpteFormat;
  readonly shadowUserMask: bigint;
  readonly shadowAccessedMask: bigint;
  readonly shadowDirtyMask: bigint;
  readonly shadowNxMask: bigint;
  readonly shadowXMask: bigint;
  readonly shadowPresentMask: bigint;
  readonly shadowMemtypeMask: bigint;
  readonly shadowAccTrackMask: bigint;
  readonly shadowHostWritableMask: bigint;
  readonly shadowMmuWritableMask: bigint;
  readonly shadowMmioValue: bigint;
  readonly shadowMmioMask: bigint;
  readonly shadowMmioAccessMask: bigint;
  readonly shadowMeValue: bigint;
  readonly shadowMeMask: bigint;
  readonly shadowNonpresentOrRsvdMask: bigint;
  readonly shadowNonpresentOrRsvdLowerGfnMask: bigint;
  readonly shadowPhysBits: number;
  /** The `enable_mmio_caching` module parameter as KVM left it after setting the MMIO mask. */
  readonly enableMmioCaching: boolean;
  /** `allow_mmio_caching`: the parameter as userspace set it at load, before KVM's vetoes. */
  readonly allowMmioCaching: boolean;
}

export interface PteMaskOptions {
  /** shadow_phys_bits (CPUID 0x80000008 EAX[7:0]); default 48. */
  readonly physBits?: number;
  /** boot_cpu_data.x86_phys_bits; default `physBits` (they differ only with MKTME/SME). */
  readonly x86PhysBits?: number;
  /** The CPU has X86_BUG_L1TF with this x86_cache_bits; absent means not affected. */
  readonly l1tfCacheBits?: number;
  /** The `mmio_caching` module parameter at load; default true. */
  readonly mmioCaching?: boolean;
  readonly warn?: SpteWarn;
}

/**
 * kvm_mmu_set_mmio_spte_mask() in arch/x86/kvm/mmu/spte.c.
 * Installs the MMIO value/mask/access mask, forcing the value to 0 (and MMIO caching off) when
 * userspace disabled caching, when the mask strays outside SPTE_MMIO_ALLOWED_MASK, when the value
 * overlaps the L1TF-relocated gfn bits, when the value does not match itself under the mask, or
 * when REMOVED_SPTE would read as MMIO.
 * Context: module init; pure.
 */
export function kvmMmuSetMmioSpteMask(
  base: SpteMasks,
  mmioValue: bigint,
  mmioMask: bigint,
  accessMask: bigint,
  warn?: SpteWarn,
): SpteMasks {
  const w: SpteWarn = warn ?? (() => {});
  if ((accessMask & 0xffff_ffffn) !== accessMask) w("kvm_mmu_set_mmio_spte_mask: access mask wider than 32 bits");
  if (mmioValue & base.shadowNonpresentOrRsvdLowerGfnMask) w("kvm_mmu_set_mmio_spte_mask: value overlaps gfn bits");

  let value = mmioValue;
  let enable = base.allowMmioCaching;
  if (!enable) value = 0n;
  if (mmioMask & ~SPTE_MMIO_ALLOWED_MASK & U64_MASK) {
    w("kvm_mmu_set_mmio_spte_mask: mask outside SPTE_MMIO_ALLOWED_MASK");
    value = 0n;
  }
  if (value & (base.shadowNonpresentOrRsvdMask << SHADOW_NONPRESENT_OR_RSVD_MASK_LEN)) {
    w("kvm_mmu_set_mmio_spte_mask: value overlaps the L1TF-relocated gfn bits");
    value = 0n;
  }
  if ((value & mmioMask) !== value) {
    w("kvm_mmu_set_mmio_spte_mask: value does not match itself under the mask");
    value = 0n;
  } else if (value !== 0n && (REMOVED_SPTE & mmioMask) === value) {
    w("kvm_mmu_set_mmio_spte_mask: REMOVED_SPTE would read as MMIO");
    value = 0n;
  }
  if (value === 0n) enable = false;

  return {
    ...base,
    shadowMmioValue: value,
    shadowMmioMask: mmioMask,
    shadowMmioAccessMask: accessMask,
    enableMmioCaching: enable,
  };
}

/**
 * kvm_mmu_reset_all_pte_masks() in arch/x86/kvm/mmu/spte.c (with kvm_mmu_spte_module_init()
 * snapshotting the mmio_caching parameter): the default x86 format, which AMD NPT keeps.
 * With phys bits < 52 an MMIO SPTE is marked by reserved PA bit 51 plus P, so a guest access
 * faults with PFEC.RSVD; with 52 there is no reserved PA bit and MMIO caching turns off.
 * MODEL: SVM's svm_adjust_mmio_mask() (only with SME/SEV enabled) is not applied.
 * Context: module init; pure.
 */
export function kvmMmuResetAllPteMasks(opts: PteMaskOptions = {}): SpteMasks {
  const physBits = opts.physBits ?? 48;
  const x86PhysBits = opts.x86PhysBits ?? physBits;
  const warn = opts.warn;

  let nonpresentOrRsvdMask = 0n;
  let lowPhysBits = x86PhysBits;
  if (opts.l1tfCacheBits !== undefined) {
    const cacheBits = opts.l1tfCacheBits;
    if (cacheBits >= 52 - Number(SHADOW_NONPRESENT_OR_RSVD_MASK_LEN)) {
      warn?.("kvm_mmu_reset_all_pte_masks: L1TF cache bits too wide for the mitigation");
    } else {
      lowPhysBits = cacheBits - Number(SHADOW_NONPRESENT_OR_RSVD_MASK_LEN);
      nonpresentOrRsvdMask = rsvdBits(lowPhysBits, cacheBits - 1);
    }
  }

  const base: SpteMasks = {
    format: "npt",
    shadowUserMask: PT_USER_MASK,
    shadowAccessedMask: PT_ACCESSED_MASK,
    shadowDirtyMask: PT_DIRTY_MASK,
    shadowNxMask: PT64_NX_MASK,
    shadowXMask: 0n,
    shadowPresentMask: PT_PRESENT_MASK,
    shadowMemtypeMask: 0n,
    shadowAccTrackMask: 0n,
    shadowHostWritableMask: DEFAULT_SPTE_HOST_WRITABLE,
    shadowMmuWritableMask: DEFAULT_SPTE_MMU_WRITABLE,
    shadowMmioValue: 0n,
    shadowMmioMask: 0n,
    shadowMmioAccessMask: 0n,
    shadowMeValue: 0n,
    shadowMeMask: 0n,
    shadowNonpresentOrRsvdMask: nonpresentOrRsvdMask,
    shadowNonpresentOrRsvdLowerGfnMask: genmaskUll(lowPhysBits - 1, Number(PAGE_SHIFT)),
    shadowPhysBits: physBits,
    enableMmioCaching: opts.mmioCaching ?? true,
    allowMmioCaching: opts.mmioCaching ?? true,
  };

  const mask = physBits < 52 ? bit(51) | PT_PRESENT_MASK : 0n;
  return kvmMmuSetMmioSpteMask(base, mask, mask, BigInt(ACC_WRITE_MASK | ACC_USER_MASK), warn);
}

/**
 * kvm_mmu_set_ept_masks() in arch/x86/kvm/mmu/spte.c: VMX's overrides when EPT is on.
 * R doubles as the "user" bit; without exec-only support R also serves as the present bit.
 * MMIO SPTEs are W|X without R, which the CPU reports as an EPT misconfiguration.
 * Context: module init; pure.
 */
export function kvmMmuSetEptMasks(base: SpteMasks, hasAdBits: boolean, hasExecOnly: boolean, warn?: SpteWarn): SpteMasks {
  const m: SpteMasks = {
    ...base,
    format: hasAdBits ? "ept" : "ept-noad",
    shadowUserMask: VMX_EPT_READABLE_MASK,
    shadowAccessedMask: hasAdBits ? VMX_EPT_ACCESS_BIT : 0n,
    shadowDirtyMask: hasAdBits ? VMX_EPT_DIRTY_BIT : 0n,
    shadowNxMask: 0n,
    shadowXMask: VMX_EPT_EXECUTABLE_MASK,
    shadowPresentMask: hasExecOnly ? 0n : VMX_EPT_READABLE_MASK,
    shadowMemtypeMask: VMX_EPT_MT_MASK | VMX_EPT_IPAT_BIT,
    shadowAccTrackMask: VMX_EPT_RWX_MASK,
    shadowHostWritableMask: EPT_SPTE_HOST_WRITABLE,
    shadowMmuWritableMask: EPT_SPTE_MMU_WRITABLE,
  };
  return kvmMmuSetMmioSpteMask(m, VMX_EPT_MISCONFIG_WX_VALUE, VMX_EPT_RWX_MASK, 0n, warn);
}

/**
 * kvm_mmu_set_me_spte_mask() in arch/x86/kvm/mmu/spte.c: memory-encryption bits; a value that
 * is not inside the mask clears both.
 * Context: module init; pure.
 */
export function kvmMmuSetMeSpteMask(base: SpteMasks, meValue: bigint, meMask: bigint, warn?: SpteWarn): SpteMasks {
  if (meValue & ~meMask) {
    warn?.("kvm_mmu_set_me_spte_mask: value outside mask");
    return { ...base, shadowMeValue: 0n, shadowMeMask: 0n };
  }
  return { ...base, shadowMeValue: meValue, shadowMeMask: meMask };
}

/**
 * The mask record for one of the three formats the model runs, built by the same call sequence
 * as module load: reset, then for EPT kvm_mmu_set_ept_masks() (exec-only supported; A/D per
 * format) and vmx_setup_me_spte_mask() (KeyID bits between x86PhysBits and physBits).
 */
export function masksFor(format: SpteFormat, opts: PteMaskOptions = {}): SpteMasks {
  const base = kvmMmuResetAllPteMasks(opts);
  if (format === "npt") return base;
  const ept = kvmMmuSetEptMasks(base, format === "ept", true, opts.warn);
  const physBits = opts.physBits ?? 48;
  const x86PhysBits = opts.x86PhysBits ?? physBits;
  const meMask = x86PhysBits !== physBits ? rsvdBits(x86PhysBits, physBits - 1) : 0n;
  return kvmMmuSetMeSpteMask(ept, 0n, meMask, opts.warn);
}

/**
 * kvm_mmu_max_gfn() in arch/x86/kvm/mmu.h: the highest gfn a TDP SPTE can map (host MAXPHYADDR).
 * MODEL: tdp_enabled is assumed, so shadow_phys_bits bounds it.
 */
export function kvmMmuMaxGfn(m: SpteMasks): number {
  return 2 ** (m.shadowPhysBits - Number(PAGE_SHIFT)) - 1;
}

// The two answers of nearly every call, made once (each bigint operation allocates).
const MT_UC = MTRR_TYPE_UNCACHABLE << VMX_EPT_MT_EPTE_SHIFT;
const MT_WB_IPAT = (MTRR_TYPE_WRBACK << VMX_EPT_MT_EPTE_SHIFT) | VMX_EPT_IPAT_BIT;

/**
 * vmx_get_mt_mask() in arch/x86/kvm/vmx/vmx.c: the EPT memory-type bits make_spte() ORs in.
 * MMIO pfns get UC without IPAT; without non-coherent DMA everything is WB with IPAT.
 * MODEL: the guest MTRR lookup is an input (`guestMtrrType`), default WB.
 */
export function vmxGetMtMask(opts: {
  readonly isMmio: boolean;
  readonly noncoherentDma?: boolean;
  readonly cr0Cd?: boolean;
  readonly quirkCdNwCleared?: boolean;
  readonly guestMtrrType?: bigint;
}): bigint {
  if (opts.isMmio) return MT_UC;
  if (!(opts.noncoherentDma ?? false)) return MT_WB_IPAT;
  if (opts.cr0Cd ?? false) {
    const cache = (opts.quirkCdNwCleared ?? true) ? MTRR_TYPE_WRBACK : MTRR_TYPE_UNCACHABLE;
    return (cache << VMX_EPT_MT_EPTE_SHIFT) | VMX_EPT_IPAT_BIT;
  }
  return (opts.guestMtrrType ?? MTRR_TYPE_WRBACK) << VMX_EPT_MT_EPTE_SHIFT;
}

// ---------------------------------------------------------------------------------------------
// Halves. Every bigint operation allocates a new bigint, and the predicates and constructors
// below run on every step of every walk. So they test and build an SPTE as its two 32-bit
// halves: a bigint stored into a one-word BigUint64Array reads back as two Uint32 words, and
// two words written there read back as one bigint, with no allocation in between. The value
// and meaning are the bigint's; `halves.test.ts` checks each helper against its plain bigint
// definition on random values.

const WORD = new BigUint64Array(1);
const HALF = new Uint32Array(WORD.buffer);
/**
 * Where in a 64-bit word its low and high 32-bit halves sit: typed arrays use the host's
 * byte order, and hosts are little-endian (x86-64, arm64). Literals, not a test of the byte
 * order, so that the direct build folds them (see scripts/strip-steps.mjs); a big-endian
 * host is refused here rather than misread.
 */
export const LO_HALF = 0;
export const HI_HALF = 1;
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error("tdpmmu needs a little-endian host: SPTEs are read as 32-bit halves");
const LO = LO_HALF;
const HI = HI_HALF;

/** Bits 31:0 of `s`, as an int32 (so it compares equal to other `&`/`|` results). */
export function lo32(s: bigint): number {
  WORD[0] = s;
  return HALF[LO]! | 0;
}

/** Bits 63:32 of `s`, as an int32. */
export function hi32(s: bigint): number {
  WORD[0] = s;
  return HALF[HI]! | 0;
}

/** The SPTE whose halves are `lo` and `hi` (each taken mod 2^32). */
export function join(lo: number, hi: number): bigint {
  HALF[LO] = lo;
  HALF[HI] = hi;
  return WORD[0]!;
}

/** A mask's halves, each an int32. */
export interface Words {
  readonly lo: number;
  readonly hi: number;
}

/** Made without WORD, so that looking up a mask never clobbers an SPTE a caller has split there. */
function words(mask: bigint): Words {
  return { lo: Number(BigInt.asIntN(32, mask)), hi: Number(BigInt.asIntN(32, mask >> 32n)) };
}

/** PT_WRITABLE_MASK's halves. */
export const PT_WRITABLE_WORDS: Words = words(PT_WRITABLE_MASK);

/** The halves of the masks the hot helpers use, made once per `SpteMasks` record. */
export interface MaskWords {
  readonly user: Words;
  readonly accessed: Words;
  readonly dirty: Words;
  readonly nx: Words;
  readonly x: Words;
  readonly present: Words;
  readonly memtype: Words;
  readonly accTrack: Words;
  readonly hostWritable: Words;
  readonly mmuWritable: Words;
  readonly mmioValue: Words;
  readonly mmioMask: Words;
  readonly me: Words;
}

const maskWordsOf = new WeakMap<SpteMasks, MaskWords>();
let lastMasks: SpteMasks | null = null;
let lastWords: MaskWords | null = null;

export function maskWords(m: SpteMasks): MaskWords {
  if (m === lastMasks) return lastWords!;
  let mw = maskWordsOf.get(m);
  if (mw === undefined) {
    mw = {
      user: words(m.shadowUserMask),
      accessed: words(m.shadowAccessedMask),
      dirty: words(m.shadowDirtyMask),
      nx: words(m.shadowNxMask),
      x: words(m.shadowXMask),
      present: words(m.shadowPresentMask),
      memtype: words(m.shadowMemtypeMask),
      accTrack: words(m.shadowAccTrackMask),
      hostWritable: words(m.shadowHostWritableMask),
      mmuWritable: words(m.shadowMmuWritableMask),
      mmioValue: words(m.shadowMmioValue),
      mmioMask: words(m.shadowMmioMask),
      me: words(m.shadowMeValue),
    };
    maskWordsOf.set(m, mw);
  }
  lastMasks = m;
  lastWords = mw;
  return mw;
}

// Single bits and fields the hot helpers test, by half (see the bigint constants above).
const LO_PRESENT = 1 << 11; // SPTE_MMU_PRESENT_MASK
const LO_LARGE = 1 << 7; // PT_PAGE_SIZE_MASK
const LO_WRITABLE = 1 << 1; // PT_WRITABLE_MASK
const HI_AD_MASK = 3 << 20; // SPTE_TDP_AD_MASK (bits 53:52)
const HI_AD_DISABLED = 1 << 20; // SPTE_TDP_AD_DISABLED_MASK
const HI_AD_WRPROT_ONLY = 2 << 20; // SPTE_TDP_AD_WRPROT_ONLY_MASK
const HI_PFN = 0xfffff; // bits 51:32 of SPTE_BASE_ADDR_MASK
/** REMOVED_SPTE's low half (its high half is 0). */
export const LO_REMOVED = 0x5a0;

/** spte_ad_enabled() on the high half. */
export function spteAdEnabledWords(hi: number): boolean {
  return (hi & HI_AD_MASK) !== HI_AD_DISABLED;
}

/** is_access_track_spte() on the halves. */
function accessTrackWords(mw: MaskWords, lo: number, hi: number): boolean {
  return !spteAdEnabledWords(hi) && (lo & mw.accTrack.lo) === 0 && (hi & mw.accTrack.hi) === 0;
}

/** `(s & mask) !== 0n` on the halves of s and of the mask. */
export function spteHasAnyOfWords(lo: number, hi: number, mask: Words): boolean {
  return ((lo & mask.lo) | (hi & mask.hi)) !== 0;
}

// ---------------------------------------------------------------------------------------------
// The predicates on halves: `lo` and `hi` are lo32(s) and hi32(s) of an SPTE s, `mw` is
// maskWords(m). Code that keeps SPTEs as halves (walks, handle_changed_spte(), the setters)
// asks these; the predicates below on a bigint are each one split and one of these.

/** is_shadow_present_pte() on the low half. */
export function isShadowPresentPteWords(lo: number): boolean {
  return (lo & LO_PRESENT) !== 0;
}

/** is_last_spte() on the low half. */
export function isLastSpteWords(lo: number, level: number): boolean {
  return level === PG_LEVEL_4K || (lo & LO_LARGE) !== 0;
}

/** is_writable_pte() on the low half. */
export function isWritablePteWords(lo: number): boolean {
  return (lo & LO_WRITABLE) !== 0;
}

/** is_large_pte() on the low half. */
export function isLargePteWords(lo: number): boolean {
  return (lo & LO_LARGE) !== 0;
}

/** is_removed_spte() on the halves. */
export function isRemovedSpteWords(lo: number, hi: number): boolean {
  return lo === LO_REMOVED && hi === 0;
}

/** spte_ad_need_write_protect() on the high half. */
export function spteAdNeedWriteProtectWords(hi: number): boolean {
  return (hi & HI_AD_MASK) !== 0;
}

/** spte_to_pfn() on the halves. */
export function spteToPfnWords(lo: number, hi: number): number {
  return (hi & HI_PFN) * 0x100000 + (lo >>> 12);
}

/** is_mmio_spte() on the halves. */
export function isMmioSpteWords(m: SpteMasks, mw: MaskWords, lo: number, hi: number): boolean {
  return (lo & mw.mmioMask.lo) === mw.mmioValue.lo && (hi & mw.mmioMask.hi) === mw.mmioValue.hi && m.enableMmioCaching;
}

/** is_accessed_spte() on the halves. */
export function isAccessedSpteWords(mw: MaskWords, lo: number, hi: number): boolean {
  if (spteAdEnabledWords(hi) && (mw.accessed.lo | mw.accessed.hi) !== 0) return ((lo & mw.accessed.lo) | (hi & mw.accessed.hi)) !== 0;
  return !accessTrackWords(mw, lo, hi);
}

/** is_dirty_spte() on the halves. */
export function isDirtySpteWords(mw: MaskWords, lo: number, hi: number): boolean {
  if (spteAdEnabledWords(hi) && (mw.dirty.lo | mw.dirty.hi) !== 0) return ((lo & mw.dirty.lo) | (hi & mw.dirty.hi)) !== 0;
  return (lo & LO_WRITABLE) !== 0;
}

/** is_mmu_writable_spte() on the halves. */
export function isMmuWritableSpteWords(mw: MaskWords, lo: number, hi: number): boolean {
  return ((lo & mw.mmuWritable.lo) | (hi & mw.mmuWritable.hi)) !== 0;
}

/** Whether check_spte_writable_invariants() would WARN, on the halves. */
export function spteWritableInvariantsBrokenWords(mw: MaskWords, lo: number, hi: number): boolean {
  if (isMmuWritableSpteWords(mw, lo, hi)) return ((lo & mw.hostWritable.lo) | (hi & mw.hostWritable.hi)) === 0;
  return (lo & LO_WRITABLE) !== 0;
}

/** spte_has_volatile_bits() on the halves. */
export function spteHasVolatileBitsWords(mw: MaskWords, lo: number, hi: number): boolean {
  const writable = (lo & LO_WRITABLE) !== 0;
  if (!writable && isMmuWritableSpteWords(mw, lo, hi)) return true;
  if (accessTrackWords(mw, lo, hi)) return true;
  if (spteAdEnabledWords(hi)) {
    const accessed = ((lo & mw.accessed.lo) | (hi & mw.accessed.hi)) !== 0;
    const dirty = ((lo & mw.dirty.lo) | (hi & mw.dirty.hi)) !== 0;
    if (!accessed || (writable && !dirty)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Predicates (arch/x86/kvm/mmu/spte.h), spec §3. All pure; Context: any, never yields.

/** is_removed_spte() in arch/x86/kvm/mmu/spte.h. */
export function isRemovedSpte(s: bigint): boolean {
  return s === REMOVED_SPTE;
}

/** is_mmio_spte() in arch/x86/kvm/mmu/spte.h: the MMIO pattern matches and caching is on. */
export function isMmioSpte(m: SpteMasks, s: bigint): boolean {
  const mw = maskWords(m);
  WORD[0] = s;
  return isMmioSpteWords(m, mw, HALF[LO]! | 0, HALF[HI]! | 0);
}

/** is_shadow_present_pte() in arch/x86/kvm/mmu/spte.h: the software bit 11, not hardware presence. */
export function isShadowPresentPte(s: bigint): boolean {
  return isShadowPresentPteWords(lo32(s));
}

/** kvm_ad_enabled() in arch/x86/kvm/mmu/spte.h. */
export function kvmAdEnabled(m: SpteMasks): boolean {
  return m.shadowAccessedMask !== 0n;
}

/** spte_ad_enabled() in arch/x86/kvm/mmu/spte.h. Meaningful only for present SPTEs. */
export function spteAdEnabled(s: bigint): boolean {
  return spteAdEnabledWords(hi32(s));
}

/** spte_ad_need_write_protect() in arch/x86/kvm/mmu/spte.h: A/D disabled or write-protect-only. */
export function spteAdNeedWriteProtect(s: bigint): boolean {
  return spteAdNeedWriteProtectWords(hi32(s));
}

/** spte_shadow_accessed_mask() in arch/x86/kvm/mmu/spte.h. */
export function spteShadowAccessedMask(m: SpteMasks, s: bigint): bigint {
  return spteAdEnabled(s) ? m.shadowAccessedMask : 0n;
}

/** spte_shadow_dirty_mask() in arch/x86/kvm/mmu/spte.h. */
export function spteShadowDirtyMask(m: SpteMasks, s: bigint): bigint {
  return spteAdEnabled(s) ? m.shadowDirtyMask : 0n;
}

/** is_access_track_spte() in arch/x86/kvm/mmu/spte.h: A/D off and every RWX bit stripped. */
export function isAccessTrackSpte(m: SpteMasks, s: bigint): boolean {
  WORD[0] = s;
  return accessTrackWords(maskWords(m), HALF[LO]! | 0, HALF[HI]! | 0);
}

/** is_large_pte() in arch/x86/kvm/mmu/spte.h. */
export function isLargePte(s: bigint): boolean {
  return isLargePteWords(lo32(s));
}

/** is_last_spte() in arch/x86/kvm/mmu/spte.h. True for any value at 4K, present or not. */
export function isLastSpte(s: bigint, level: number): boolean {
  return isLastSpteWords(lo32(s), level);
}

/** is_executable_pte() in arch/x86/kvm/mmu/spte.h. */
export function isExecutablePte(m: SpteMasks, s: bigint): boolean {
  const mw = maskWords(m);
  WORD[0] = s;
  return (HALF[LO]! & (mw.x.lo | mw.nx.lo)) === mw.x.lo && (HALF[HI]! & (mw.x.hi | mw.nx.hi)) === mw.x.hi;
}

/** spte_to_pfn() in arch/x86/kvm/mmu/spte.h. */
export function spteToPfn(s: bigint): number {
  WORD[0] = s;
  return spteToPfnWords(HALF[LO]!, HALF[HI]!);
}

/** is_accessed_spte() in arch/x86/kvm/mmu/spte.h. Without A/D bits, "not access-tracked" stands in. */
export function isAccessedSpte(m: SpteMasks, s: bigint): boolean {
  const mw = maskWords(m);
  WORD[0] = s;
  return isAccessedSpteWords(mw, HALF[LO]! | 0, HALF[HI]! | 0);
}

/** is_dirty_spte() in arch/x86/kvm/mmu/spte.h. Without A/D bits, W stands in for D. */
export function isDirtySpte(m: SpteMasks, s: bigint): boolean {
  const mw = maskWords(m);
  WORD[0] = s;
  return isDirtySpteWords(mw, HALF[LO]! | 0, HALF[HI]! | 0);
}

/** is_writable_pte() in arch/x86/kvm/mmu/spte.h: hardware W (bit 1 in both formats). */
export function isWritablePte(s: bigint): boolean {
  return isWritablePteWords(lo32(s));
}

/** is_mmu_writable_spte() in arch/x86/kvm/mmu/spte.h. */
export function isMmuWritableSpte(m: SpteMasks, s: bigint): boolean {
  const mw = maskWords(m);
  WORD[0] = s;
  return isMmuWritableSpteWords(mw, HALF[LO]! | 0, HALF[HI]! | 0);
}

/**
 * check_spte_writable_invariants() in arch/x86/kvm/mmu/spte.h, for a present leaf.
 * Returns the WARN text for a forbidden Host-W / MMU-W / W combination, or null; the caller
 * raises the WARN.
 */
export function checkSpteWritableInvariants(m: SpteMasks, s: bigint): string | null {
  if (!spteWritableInvariantsBrokenWords(maskWords(m), lo32(s), hi32(s))) return null;
  return isMmuWritableSpte(m, s)
    ? `kvm: MMU-writable SPTE is not Host-writable: 0x${s.toString(16)}`
    : `kvm: Writable SPTE is not MMU-writable: 0x${s.toString(16)}`;
}

/**
 * spte_has_volatile_bits() in arch/x86/kvm/mmu/spte.c, for a present leaf: can this SPTE change
 * under us without mmu_lock? The fast page fault may set W on an MMU-writable SPTE or restore an
 * access-tracked one, and the CPU may set A or D.
 */
export function spteHasVolatileBits(m: SpteMasks, s: bigint): boolean {
  const mw = maskWords(m);
  WORD[0] = s;
  return spteHasVolatileBitsWords(mw, HALF[LO]! | 0, HALF[HI]! | 0);
}

// ---------------------------------------------------------------------------------------------
// MMIO SPTEs (arch/x86/kvm/mmu/spte.{h,c}, arch/x86/kvm/mmu/mmu.c), spec §5.6

/**
 * get_mmio_spte_generation() in arch/x86/kvm/mmu/spte.h: reassemble the 19-bit generation from
 * bits 10:3 (gen 7:0) and 62:52 (gen 18:8).
 */
export function getMmioSpteGeneration(s: bigint): bigint {
  return ((s & MMIO_SPTE_GEN_LOW_MASK) >> MMIO_SPTE_GEN_LOW_SHIFT) | ((s & MMIO_SPTE_GEN_HIGH_MASK) >> MMIO_SPTE_GEN_HIGH_SHIFT);
}

/** generation_mmio_spte_mask() in arch/x86/kvm/mmu/spte.c: scatter a generation into SPTE bits. */
export function generationMmioSpteMask(gen: bigint, warn?: SpteWarn): bigint {
  if (gen & ~MMIO_SPTE_GEN_MASK) warn?.("generation_mmio_spte_mask: generation wider than MMIO_SPTE_GEN_MASK");
  return ((gen << MMIO_SPTE_GEN_LOW_SHIFT) & MMIO_SPTE_GEN_LOW_MASK) | ((gen << MMIO_SPTE_GEN_HIGH_SHIFT) & MMIO_SPTE_GEN_HIGH_MASK);
}

/**
 * make_mmio_spte() in arch/x86/kvm/mmu/spte.c. `generation` is the memslots generation of the
 * vCPU's address space; only its low 19 bits are kept (bit 63, "update in progress", is checked
 * at lookup time instead). With the L1TF mitigation, gpa bits under the mask are copied 5 bits
 * higher and the mask bits themselves are set.
 * Context: any; pure. The TDP MMU calls it at PG_LEVEL_4K with access ACC_ALL.
 */
export function makeMmioSpte(m: SpteMasks, gfn: number, access: number, generation: bigint, warn?: SpteWarn): bigint {
  const gen = generation & MMIO_SPTE_GEN_MASK;
  let spte = generationMmioSpteMask(gen, warn);
  const gpa = BigInt(gfn) << PAGE_SHIFT;
  if (m.shadowMmioValue === 0n) warn?.("make_mmio_spte: shadow_mmio_value is 0");
  spte |= m.shadowMmioValue | (BigInt(access) & m.shadowMmioAccessMask);
  spte |= gpa | m.shadowNonpresentOrRsvdMask;
  spte |= (gpa & m.shadowNonpresentOrRsvdMask) << SHADOW_NONPRESENT_OR_RSVD_MASK_LEN;
  return spte & U64_MASK;
}

/** get_mmio_spte_gfn() in arch/x86/kvm/mmu/mmu.c: undo the L1TF split of the gpa. */
export function getMmioSpteGfn(m: SpteMasks, s: bigint): number {
  let gpa = s & m.shadowNonpresentOrRsvdLowerGfnMask;
  gpa |= (s >> SHADOW_NONPRESENT_OR_RSVD_MASK_LEN) & m.shadowNonpresentOrRsvdMask;
  return Number(gpa >> PAGE_SHIFT);
}

/** get_mmio_spte_access() in arch/x86/kvm/mmu/mmu.c. */
export function getMmioSpteAccess(m: SpteMasks, s: bigint): number {
  return Number(s & m.shadowMmioAccessMask);
}

/**
 * Models check_mmio_spte() in arch/x86/kvm/mmu/mmu.c, with the memslots generation passed in
 * instead of read from the vCPU: a cached MMIO SPTE is trusted only if no memslot update is in
 * flight and its 19-bit generation equals the current one. `m` is unused (the generation layout
 * is format-independent); it is kept for a uniform call shape.
 */
export function mmioSpteGenerationMatches(m: SpteMasks, s: bigint, memslotsGeneration: bigint): boolean {
  void m;
  if (memslotsGeneration & KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS) return false;
  return (memslotsGeneration & MMIO_SPTE_GEN_MASK) === getMmioSpteGeneration(s);
}

// ---------------------------------------------------------------------------------------------
// Access tracking (arch/x86/kvm/mmu/spte.{h,c}), spec §5.4

/**
 * mark_spte_for_access_track() in arch/x86/kvm/mmu/spte.c. With A/D bits this is just clearing
 * Accessed. Without them the SPTE is made inaccessible: R and X are parked in bits 54/56 and RWX
 * cleared, so the next access faults and the fast path restores it. W is not parked; only a
 * write fault (which needs MMU-writable) brings it back.
 * Context: any; pure (WARNs go to `warn`).
 */
export function markSpteForAccessTrack(m: SpteMasks, s: bigint, warn?: SpteWarn): bigint {
  const mw = maskWords(m);
  WORD[0] = s;
  if (spteAdEnabledWords(HALF[HI]! | 0)) {
    return join(HALF[LO]! & ~mw.accessed.lo, HALF[HI]! & ~mw.accessed.hi);
  }
  if (isAccessTrackSpte(m, s)) return s;
  const bad = checkSpteWritableInvariants(m, s);
  if (bad !== null) warn?.(bad);
  if (s & ACC_TRACK_SAVED_MASK) warn?.("kvm: Access Tracking saved bit locations are not zero");
  let spte = s | ((s & SHADOW_ACC_TRACK_SAVED_BITS_MASK) << SHADOW_ACC_TRACK_SAVED_BITS_SHIFT);
  spte &= ~m.shadowAccTrackMask;
  return spte;
}

/**
 * restore_acc_track_spte() in arch/x86/kvm/mmu/spte.h: put the parked R/X back (W stays clear).
 * Context: any; pure. The fast page fault uses it without mmu_lock.
 */
export function restoreAccTrackSpte(m: SpteMasks, s: bigint): bigint {
  const savedBits = (s >> SHADOW_ACC_TRACK_SAVED_BITS_SHIFT) & SHADOW_ACC_TRACK_SAVED_BITS_MASK;
  let spte = s & ~m.shadowAccTrackMask;
  spte &= ~ACC_TRACK_SAVED_MASK;
  return spte | savedBits;
}

// ---------------------------------------------------------------------------------------------
// Constructors (arch/x86/kvm/mmu/spte.c), spec §5

/** The inputs of make_spte() that the model cannot read from a vCPU, sp or memslot. */
export interface MakeSpteParams {
  /** sp->role.level: the level of the table that will hold the SPTE. */
  readonly level: number;
  readonly pteAccess: number;
  readonly gfn: number;
  readonly pfn: number;
  readonly oldSpte: bigint;
  readonly prefetch: boolean;
  /** fault->map_writable. */
  readonly hostWritable: boolean;
  /** sp->role.ad_disabled (the TDP MMU: !kvm_ad_enabled()). */
  readonly adDisabled: boolean;
  /** kvm_mmu_page_ad_need_write_protect(sp): PML on and the sp maps an L2 guest. */
  readonly adNeedWriteProtect: boolean;
  /** is_nx_huge_page_enabled(kvm). */
  readonly nxHugePageEnabled: boolean;
  /** vmx_get_mt_mask(vcpu, gfn, kvm_is_mmio_pfn(pfn)); used only when shadowMemtypeMask != 0. */
  readonly mtMask: bigint;
  /** kvm_is_mmio_pfn(pfn); decides whether shadow_me_value applies. */
  readonly isMmioPfn: boolean;
  /**
   * mmu_try_to_unsync_pages(kvm, slot, gfn, can_unsync=true, prefetch): true means non-zero,
   * i.e. the gfn must stay write-protected. Absent: a pure TDP VM, which always gets 0.
   */
  readonly mmuTryToUnsyncPages?: () => boolean;
  readonly warn?: SpteWarn;
}

/**
 * make_spte() in arch/x86/kvm/mmu/spte.c (6.1.192 form), spec §5.1 steps 1–16.
 * `wrprot` is true when mmu_try_to_unsync_pages() forced the new SPTE read-only.
 * A writable request whose old value is a writable leaf at this level keeps W but skips both
 * the unsync check and the Dirty bit (the old SPTE carries the dirtiness). At 4K any value is a
 * "leaf", so a stale MMIO SPTE (which has bit 1) takes that shortcut too.
 * Step 17 is the caller's job: when the result is writable and the memslot logs dirty pages,
 * mark_page_dirty_in_slot() must follow (and a huge writable SPTE there is a WARN).
 * MODEL: step 16, the reserved-bit WARN against the vCPU's shadow_zero_check, is left out; the
 * model has no guest MMU role to derive reserved bits from, so it cannot flag a malformed SPTE.
 * Context: any; pure. The fault path calls its form on halves, makeSpteWords(), under
 * mmu_lock for read.
 */
export function makeSpte(m: SpteMasks, p: MakeSpteParams): { spte: bigint; wrprot: boolean } {
  const { oldSpte, ...rest } = p;
  const out: MadeSpte = { lo: 0, hi: 0, wrprot: false };
  makeSpteWords(m, { ...rest, oldLo: lo32(oldSpte), oldHi: hi32(oldSpte) }, out);
  return { spte: join(out.lo, out.hi), wrprot: out.wrprot };
}

/** make_spte()'s parameters with the old SPTE as its halves. */
export type MakeSpteWordsParams = Omit<MakeSpteParams, "oldSpte"> & { readonly oldLo: number; readonly oldHi: number };

/** What make_spte() made: the new SPTE's halves, and `wrprot` as makeSpte() returns it. */
export interface MadeSpte {
  lo: number;
  hi: number;
  wrprot: boolean;
}

/**
 * makeSpte() on halves, the form the fault path calls: the old SPTE comes as its halves and
 * the new one goes to `out`, so no 64-bit value is made (the fault path compares and stores
 * halves).
 */
export function makeSpteWords(m: SpteMasks, p: MakeSpteWordsParams, out: MadeSpte): void {
  // Built as two 32-bit halves (see "Halves" above); each line is the kernel's step on the
  // 64-bit value.
  const mw = maskWords(m);
  const level = p.level;
  let pteAccess = p.pteAccess;
  let lo = LO_PRESENT; // SPTE_MMU_PRESENT_MASK
  let hi = 0;
  let wrprot = false;

  if (pteAccess === 0 && (mw.present.lo | mw.present.hi) === 0) p.warn?.("make_spte: no access and no present mask");

  if (p.adDisabled) hi |= HI_AD_DISABLED;
  else if (p.adNeedWriteProtect) hi |= HI_AD_WRPROT_ONLY;

  // With exec-only EPT the present mask is 0 and R comes from ACC_USER_MASK below.
  lo |= mw.present.lo;
  hi |= mw.present.hi;
  if (!p.prefetch && spteAdEnabledWords(hi)) {
    lo |= mw.accessed.lo;
    hi |= mw.accessed.hi;
  }

  if (level > PG_LEVEL_4K && pteAccess & ACC_EXEC_MASK && p.nxHugePageEnabled) pteAccess &= ~ACC_EXEC_MASK;

  const execOrNx = pteAccess & ACC_EXEC_MASK ? mw.x : mw.nx;
  lo |= execOrNx.lo;
  hi |= execOrNx.hi;
  if (pteAccess & ACC_USER_MASK) {
    lo |= mw.user.lo;
    hi |= mw.user.hi;
  }
  if (level > PG_LEVEL_4K) lo |= LO_LARGE;
  if ((mw.memtype.lo | mw.memtype.hi) !== 0) {
    WORD[0] = p.mtMask;
    lo |= HALF[LO]!;
    hi |= HALF[HI]!;
  }

  if (p.hostWritable) {
    lo |= mw.hostWritable.lo;
    hi |= mw.hostWritable.hi;
  } else pteAccess &= ~ACC_WRITE_MASK;

  if ((mw.me.lo | mw.me.hi) !== 0 && !p.isMmioPfn) {
    lo |= mw.me.lo;
    hi |= mw.me.hi;
  }

  // pfn << PAGE_SHIFT: pfn bits 19:0 land in the low half, the rest in the high half. (`&`
  // takes the low 32 bits of any integer below 2^53 exactly; `%` on a double would be a
  // floating-point remainder, a call.)
  lo |= (p.pfn & 0xfffff) << 12;
  hi |= Math.floor(p.pfn / 0x100000);

  let skipToOut = false;
  if (pteAccess & ACC_WRITE_MASK) {
    lo |= LO_WRITABLE | mw.mmuWritable.lo;
    hi |= mw.mmuWritable.hi;
    if (isLastSpteWords(p.oldLo, level) && isWritablePteWords(p.oldLo)) {
      // kernel: goto out
      skipToOut = true;
    } else if (p.mmuTryToUnsyncPages?.() ?? false) {
      wrprot = true;
      pteAccess &= ~ACC_WRITE_MASK;
      lo &= ~(LO_WRITABLE | mw.mmuWritable.lo);
      hi &= ~mw.mmuWritable.hi;
    }
  }

  if (!skipToOut && pteAccess & ACC_WRITE_MASK && spteAdEnabledWords(hi)) {
    lo |= mw.dirty.lo;
    hi |= mw.dirty.hi;
  }

  // out:
  if (p.prefetch) {
    const spte = markSpteForAccessTrack(m, join(lo, hi), p.warn);
    lo = lo32(spte);
    hi = hi32(spte);
  }
  out.lo = lo;
  out.hi = hi;
  out.wrprot = wrprot;
}

/**
 * make_spte_executable() in arch/x86/kvm/mmu/spte.c: swap NX for X, keeping an access-tracked
 * SPTE access-tracked (otherwise the X bit would land in the cleared RWX field and wake it up).
 * Context: any; pure.
 */
export function makeSpteExecutable(m: SpteMasks, s: bigint, warn?: SpteWarn): bigint {
  const isAccessTrack = isAccessTrackSpte(m, s);
  let spte = isAccessTrack ? restoreAccTrackSpte(m, s) : s;
  spte &= ~m.shadowNxMask;
  spte |= m.shadowXMask;
  if (isAccessTrack) spte = markSpteForAccessTrack(m, spte, warn);
  return spte;
}

/**
 * make_huge_page_split_spte() in arch/x86/kvm/mmu/spte.c: the `index`-th child SPTE of a table
 * that replaces `hugeSpte`, at `childLevel` (= huge level − 1) with role access `childAccess`.
 * Everything but the pfn offset is inherited; at 4K PS is cleared and, if NX hugepages had
 * stripped X, X is given back.
 * Returns 0n (after `warn`) when `hugeSpte` is not present or not large, as the kernel does.
 * Context: any; pure.
 */
export function makeHugePageSplitSpte(
  m: SpteMasks,
  hugeSpte: bigint,
  childLevel: number,
  childAccess: number,
  index: number,
  nxHugePageEnabled: boolean,
  warn?: SpteWarn,
): bigint {
  if (!isShadowPresentPte(hugeSpte)) {
    warn?.("make_huge_page_split_spte: huge SPTE is not present");
    return 0n;
  }
  if (!isLargePte(hugeSpte)) {
    warn?.("make_huge_page_split_spte: huge SPTE is not large");
    return 0n;
  }
  // The huge SPTE already carries the base pfn; OR in this child's offset (pfn bits 19:0 in
  // the low half, the rest in the high half). At 4K, PS goes.
  const offset = index * kvmPagesPerHpage(childLevel);
  WORD[0] = hugeSpte;
  let lo = HALF[LO]! | ((offset & 0xfffff) << 12);
  const hi = HALF[HI]! | Math.floor(offset / 0x100000);
  if (childLevel === PG_LEVEL_4K) lo &= ~LO_LARGE;
  let childSpte = join(lo, hi);
  if (childLevel === PG_LEVEL_4K && childAccess & ACC_EXEC_MASK && nxHugePageEnabled) childSpte = makeSpteExecutable(m, childSpte, warn);
  return childSpte;
}

/**
 * make_nonleaf_spte() in arch/x86/kvm/mmu/spte.c: a pointer to a child table at physical
 * address `childPa`. It grants everything (RWX, U); the leaves decide. Accessed is preset so the
 * CPU never has to write it.
 * Context: any; pure.
 */
export function makeNonleafSpte(m: SpteMasks, childPa: bigint | number, adDisabled: boolean): bigint {
  const mw = maskWords(m);
  let paLo: number;
  let paHi: number;
  if (typeof childPa === "bigint") {
    WORD[0] = childPa;
    paLo = HALF[LO]!;
    paHi = HALF[HI]!;
  } else {
    paLo = childPa | 0;
    paHi = Math.floor(childPa / 0x100000000);
  }
  let lo = LO_PRESENT | paLo | mw.present.lo | LO_WRITABLE | mw.user.lo | mw.x.lo | mw.me.lo;
  let hi = paHi | mw.present.hi | mw.user.hi | mw.x.hi | mw.me.hi;
  if (adDisabled) hi |= HI_AD_DISABLED;
  else {
    lo |= mw.accessed.lo;
    hi |= mw.accessed.hi;
  }
  return join(lo, hi);
}

/**
 * kvm_mmu_changed_pte_notifier_make_spte() in arch/x86/kvm/mmu/spte.c: retarget a leaf at
 * `newPfn` for change_pte. The result is read-only (all three writable bits cleared, so a write
 * goes through the slow path) and marked for access tracking.
 * Context: any; pure.
 */
export function kvmMmuChangedPteNotifierMakeSpte(m: SpteMasks, oldSpte: bigint, newPfn: number, warn?: SpteWarn): bigint {
  let spte = oldSpte & ~SPTE_BASE_ADDR_MASK;
  spte |= BigInt(newPfn) << PAGE_SHIFT;
  spte &= ~(PT_WRITABLE_MASK | m.shadowHostWritableMask | m.shadowMmuWritableMask);
  return markSpteForAccessTrack(m, spte, warn);
}
