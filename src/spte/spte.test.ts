// SPDX-License-Identifier: GPL-2.0-only
// spec/01-spte.md §7: every worked vector, built by the constructor the kernel would use, plus
// the mask tables of §2, the predicate checks, and fast-check properties of the encoding.

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACC_ALL,
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  KVM_MAX_HUGEPAGE_LEVEL,
  KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS,
  MMIO_SPTE_GEN_HIGH_MASK,
  MMIO_SPTE_GEN_HIGH_SHIFT,
  MMIO_SPTE_GEN_LOW_MASK,
  MMIO_SPTE_GEN_MASK,
  PG_LEVEL_1G,
  PG_LEVEL_2M,
  PG_LEVEL_4K,
  PG_LEVEL_NUM,
  PT64_NX_MASK,
  PT_PAGE_SIZE_MASK,
  PT_WRITABLE_MASK,
  REMOVED_SPTE,
  SPTE_BASE_ADDR_MASK,
  SPTE_ENT_PER_PAGE,
  SPTE_MMIO_ALLOWED_MASK,
  SPTE_MMU_PRESENT_MASK,
  SPTE_TDP_AD_DISABLED_MASK,
  SPTE_TDP_AD_MASK,
  SPTE_TDP_AD_WRPROT_ONLY_MASK,
  checkSpteWritableInvariants,
  getMmioSpteAccess,
  getMmioSpteGeneration,
  getMmioSpteGfn,
  isAccessTrackSpte,
  isAccessedSpte,
  isDirtySpte,
  isExecutablePte,
  isLargePte,
  isLastSpte,
  isMmioSpte,
  isMmuWritableSpte,
  isRemovedSpte,
  isShadowPresentPte,
  isWritablePte,
  kvmAdEnabled,
  kvmMmuChangedPteNotifierMakeSpte,
  kvmMmuMaxGfn,
  kvmMmuResetAllPteMasks,
  kvmMmuSetEptMasks,
  kvmMmuSetMeSpteMask,
  kvmMmuSetMmioSpteMask,
  kvmPagesPerHpage,
  makeHugePageSplitSpte,
  makeMmioSpte,
  makeNonleafSpte,
  makeSpte,
  makeSpteExecutable,
  markSpteForAccessTrack,
  masksFor,
  mmioSpteGenerationMatches,
  restoreAccTrackSpte,
  rsvdBits,
  spteAdEnabled,
  spteAdNeedWriteProtect,
  spteHasVolatileBits,
  spteIndex,
  spteToPfn,
  vmxGetMtMask,
  type MakeSpteParams,
  type SpteFormat,
  type SpteMasks,
} from "./index.js";

const NPT = masksFor("npt");
const EPT = masksFor("ept");
const EPT_NOAD = masksFor("ept-noad");
/** EPT with A/D bits but without exec-only support: R is also the present bit. */
const EPT_NO_EXECONLY = kvmMmuSetEptMasks(kvmMmuResetAllPteMasks(), true, false);
const ALL_MASKS: readonly SpteMasks[] = [NPT, EPT, EPT_NOAD, EPT_NO_EXECONLY];

/** make_spte() with the §7 defaults: 4K, ACC_ALL, pfn 0x1234, host-writable, old SPTE 0. */
function fault(m: SpteMasks, over: Partial<MakeSpteParams> = {}): bigint {
  return makeSpte(m, faultParams(m, over)).spte;
}
function faultParams(m: SpteMasks, over: Partial<MakeSpteParams> = {}): MakeSpteParams {
  return {
    level: PG_LEVEL_4K,
    pteAccess: ACC_ALL,
    gfn: 0x1234,
    pfn: 0x1234,
    oldSpte: 0n,
    prefetch: false,
    hostWritable: true,
    adDisabled: !kvmAdEnabled(m),
    adNeedWriteProtect: false,
    nxHugePageEnabled: false,
    mtMask: vmxGetMtMask({ isMmio: false }),
    isMmioPfn: false,
    ...over,
  };
}
const huge = (m: SpteMasks, nx: boolean): bigint => fault(m, { level: PG_LEVEL_2M, pfn: 0x1200, nxHugePageEnabled: nx });

// The vectors, each from its constructor.
const E1 = fault(EPT);
const E3 = fault(EPT_NOAD);
const E5 = huge(EPT, true);
const E6 = huge(EPT, false);
const E8 = makeNonleafSpte(EPT, 0x5678000n, !kvmAdEnabled(EPT));
const E10 = makeMmioSpte(EPT, 0x1234, ACC_ALL, 0n);
const E11 = makeMmioSpte(EPT, 0x1234, ACC_ALL, 0x1ffn);
const E12 = markSpteForAccessTrack(EPT_NOAD, E3);
const E13 = restoreAccTrackSpte(EPT_NOAD, E12);
const E16 = E1 & ~PT_WRITABLE_MASK; // wrprot_gfn_range(): clear W only
const N1 = fault(NPT);
const N3 = huge(NPT, true);
const N4 = huge(NPT, false);
const N6 = makeNonleafSpte(NPT, 0x5678000n, !kvmAdEnabled(NPT));
const N7 = makeMmioSpte(NPT, 0x1234, ACC_ALL, 0n);
const N13 = makeMmioSpte(NPT, 0x400, ACC_ALL, 2n);

// ---------------------------------------------------------------------------------------------
// §2 mask tables

test("§2 default/NPT masks (kvm_mmu_reset_all_pte_masks, 48 phys bits)", () => {
  assert.equal(NPT.format, "npt");
  assert.equal(NPT.shadowUserMask, 0x4n);
  assert.equal(NPT.shadowAccessedMask, 0x20n);
  assert.equal(NPT.shadowDirtyMask, 0x40n);
  assert.equal(NPT.shadowNxMask, 1n << 63n);
  assert.equal(NPT.shadowXMask, 0n);
  assert.equal(NPT.shadowPresentMask, 0x1n);
  assert.equal(NPT.shadowMemtypeMask, 0n);
  assert.equal(NPT.shadowAccTrackMask, 0n);
  assert.equal(NPT.shadowHostWritableMask, 1n << 9n);
  assert.equal(NPT.shadowMmuWritableMask, 1n << 10n);
  assert.equal(NPT.shadowMmioValue, 0x0008000000000001n);
  assert.equal(NPT.shadowMmioMask, 0x0008000000000001n);
  assert.equal(NPT.shadowMmioAccessMask, 0x6n);
  assert.equal(NPT.shadowMeValue, 0n);
  assert.equal(NPT.shadowMeMask, 0n);
  assert.equal(NPT.shadowNonpresentOrRsvdMask, 0n);
  assert.equal(NPT.shadowNonpresentOrRsvdLowerGfnMask, 0x0000fffffffff000n);
  assert.equal(NPT.shadowPhysBits, 48);
  assert.equal(NPT.enableMmioCaching, true);
});

test("§2 EPT masks (kvm_mmu_set_ept_masks with and without A/D, exec-only)", () => {
  for (const [m, ad] of [
    [EPT, true],
    [EPT_NOAD, false],
  ] as const) {
    assert.equal(m.shadowUserMask, 0x1n);
    assert.equal(m.shadowAccessedMask, ad ? 0x100n : 0n);
    assert.equal(m.shadowDirtyMask, ad ? 0x200n : 0n);
    assert.equal(m.shadowNxMask, 0n);
    assert.equal(m.shadowXMask, 0x4n);
    assert.equal(m.shadowPresentMask, 0n);
    assert.equal(m.shadowMemtypeMask, 0x78n);
    assert.equal(m.shadowAccTrackMask, 0x7n);
    assert.equal(m.shadowHostWritableMask, 1n << 57n);
    assert.equal(m.shadowMmuWritableMask, 1n << 58n);
    assert.equal(m.shadowMmioValue, 0x6n);
    assert.equal(m.shadowMmioMask, 0x7n);
    assert.equal(m.shadowMmioAccessMask, 0n);
    assert.equal(m.enableMmioCaching, true);
  }
  assert.equal(EPT.format, "ept");
  assert.equal(EPT_NOAD.format, "ept-noad");
  assert.equal(EPT_NO_EXECONLY.shadowPresentMask, 0x1n);
  assert.equal(kvmAdEnabled(EPT), true);
  assert.equal(kvmAdEnabled(EPT_NOAD), false);
  assert.equal(kvmAdEnabled(NPT), true);
});

test("§2 52 phys bits: no reserved PA bit, so NPT MMIO caching is off", () => {
  const m = kvmMmuResetAllPteMasks({ physBits: 52 });
  assert.equal(m.shadowMmioValue, 0n);
  assert.equal(m.shadowMmioMask, 0n);
  assert.equal(m.shadowMmioAccessMask, 0x6n);
  assert.equal(m.enableMmioCaching, false);
  // With caching off nothing is MMIO, not even a value that matches the (empty) pattern.
  assert.equal(isMmioSpte(m, 0n), false);
});

test("§2 mmio_caching=false at load forces value 0 in every format", () => {
  for (const f of ["npt", "ept", "ept-noad"] as const) {
    const m = masksFor(f, { mmioCaching: false });
    assert.equal(m.shadowMmioValue, 0n, f);
    assert.equal(m.enableMmioCaching, false, f);
    assert.equal(isMmioSpte(m, makeMmioSpte(m, 1, ACC_ALL, 0n)), false, f);
  }
});

test("§2 kvm_mmu_set_mmio_spte_mask rules that force value 0 (each WARNs)", () => {
  const cases: [string, SpteMasks, bigint, bigint, RegExp][] = [
    ["mask outside SPTE_MMIO_ALLOWED_MASK", NPT, 0x1n, 0x1n | (1n << 11n), /SPTE_MMIO_ALLOWED_MASK/],
    ["value & mask != value", NPT, 0x3n, 0x1n, /match itself/],
    ["value overlaps L1TF-relocated gfn bits", kvmMmuResetAllPteMasks({ l1tfCacheBits: 46 }), 1n << 47n, 1n << 47n, /L1TF/],
  ];
  for (const [why, base, value, mask, re] of cases) {
    const warnings: string[] = [];
    const m = kvmMmuSetMmioSpteMask(base, value, mask, 0x6n, (w) => warnings.push(w));
    assert.equal(m.shadowMmioValue, 0n, why);
    assert.equal(m.shadowMmioMask, mask, why);
    assert.equal(m.enableMmioCaching, false, why);
    assert.match(warnings.join("|"), re, why);
  }
  // A good pair is kept, without WARNs.
  const warnings: string[] = [];
  const ok = kvmMmuSetMmioSpteMask(NPT, 0x6n, 0x7n, 0n, (w) => warnings.push(w));
  assert.equal(ok.shadowMmioValue, 0x6n);
  assert.equal(ok.enableMmioCaching, true);
  assert.deepEqual(warnings, []);
});

test("§2 a mask that could see REMOVED_SPTE's bits is already refused as not allowed", () => {
  // Bits 5, 7, 8 and 10 of REMOVED_SPTE are all outside SPTE_MMIO_ALLOWED_MASK, so the REMOVED
  // collision rule can only be reached with a mask the allowed-bits rule rejects first.
  assert.equal(REMOVED_SPTE & SPTE_MMIO_ALLOWED_MASK, 0n);
  const warnings: string[] = [];
  const m = kvmMmuSetMmioSpteMask(NPT, 0x20n, 0x20n, 0x6n, (w) => warnings.push(w));
  assert.equal(m.shadowMmioValue, 0n);
  assert.equal(isMmioSpte(m, REMOVED_SPTE), false);
  assert.match(warnings.join("|"), /SPTE_MMIO_ALLOWED_MASK/);
});

test("§6.3 L1TF mask for x86_cache_bits 46", () => {
  const m = kvmMmuResetAllPteMasks({ physBits: 46, l1tfCacheBits: 46 });
  assert.equal(m.shadowNonpresentOrRsvdMask, 0x00003e0000000000n);
  assert.equal(m.shadowNonpresentOrRsvdLowerGfnMask, 0x000001fffffff000n);
  // Cache bits >= 47: the mitigation is refused with a WARN.
  const warnings: string[] = [];
  const off = kvmMmuResetAllPteMasks({ l1tfCacheBits: 47, warn: (w) => warnings.push(w) });
  assert.equal(off.shadowNonpresentOrRsvdMask, 0n);
  assert.equal(warnings.length, 1);
});

test("§2 VMX me mask covers KeyID bits between x86_phys_bits and shadow_phys_bits", () => {
  const m = masksFor("ept", { physBits: 46, x86PhysBits: 42 });
  assert.equal(m.shadowMeMask, rsvdBits(42, 45));
  assert.equal(m.shadowMeMask, 0x00003c0000000000n);
  assert.equal(m.shadowMeValue, 0n);
  assert.equal(masksFor("ept").shadowMeMask, 0n);
  const bad = kvmMmuSetMeSpteMask(NPT, 0x10n, 0x1n);
  assert.equal(bad.shadowMeValue, 0n);
  assert.equal(bad.shadowMeMask, 0n);
});

test("kvm_mmu_max_gfn: 48 phys bits gives tdp_mmu_max_gfn_exclusive = 1 << 36", () => {
  assert.equal(kvmMmuMaxGfn(NPT) + 1, 2 ** 36);
  assert.equal(kvmMmuMaxGfn(EPT) + 1, 2 ** 36);
  assert.equal(kvmMmuMaxGfn(kvmMmuResetAllPteMasks({ physBits: 52 })), 2 ** 40 - 1);
});

test("§1 constants", () => {
  assert.equal(SPTE_MMU_PRESENT_MASK, 0x800n);
  assert.equal(SPTE_TDP_AD_MASK, 0x0030000000000000n);
  assert.equal(SPTE_TDP_AD_DISABLED_MASK, 0x0010000000000000n);
  assert.equal(SPTE_TDP_AD_WRPROT_ONLY_MASK, 0x0020000000000000n);
  assert.equal(SPTE_BASE_ADDR_MASK, 0x000ffffffffff000n);
  assert.equal(MMIO_SPTE_GEN_LOW_MASK, 0x7f8n);
  assert.equal(MMIO_SPTE_GEN_HIGH_MASK, 0x7ff0000000000000n);
  assert.equal(MMIO_SPTE_GEN_HIGH_SHIFT, 44n);
  assert.equal(MMIO_SPTE_GEN_MASK, 0x7ffffn);
  assert.equal(SPTE_MMIO_ALLOWED_MASK, 0x800ffffffffff007n);
  assert.equal(REMOVED_SPTE, 0x5a0n);
  assert.equal(SPTE_ENT_PER_PAGE, 512);
  assert.equal(ACC_ALL, 7);
  assert.equal(ACC_WRITE_MASK, 2);
  assert.equal(ACC_USER_MASK, 4);
  assert.equal(PG_LEVEL_NUM, 5);
  assert.equal(KVM_MAX_HUGEPAGE_LEVEL, PG_LEVEL_1G);
  assert.equal(kvmPagesPerHpage(PG_LEVEL_4K), 1);
  assert.equal(kvmPagesPerHpage(PG_LEVEL_2M), 512);
  assert.equal(kvmPagesPerHpage(PG_LEVEL_1G), 262144);
  assert.equal(rsvdBits(5, 4), 0n);
  assert.equal(rsvdBits(51, 51), 1n << 51n);
});

test("SPTE_INDEX from a gfn at each level, including gfns past 32 bits", () => {
  const gfn = 0x12_3456_789a; // 37 bits: past what `>>` on a number can handle
  assert.equal(spteIndex(gfn, 1), 0x9a);
  assert.equal(spteIndex(gfn, 2), 0x13c);
  assert.equal(spteIndex(gfn, 3), 0x115);
  assert.equal(spteIndex(gfn, 4), 0x46);
  assert.equal(spteIndex(0x1234, 1), 0x34);
  assert.equal(spteIndex(0x1234, 2), 0x9);
});

// ---------------------------------------------------------------------------------------------
// §7 worked vectors

test("E1 EPT A/D, exec-only, writable 4K (make_spte)", () => assert.equal(E1, 0x0600000001234b77n));
test("E2 EPT A/D, no exec-only (make_spte)", () => assert.equal(fault(EPT_NO_EXECONLY), 0x0600000001234b77n));
test("E3 EPT A/D off (make_spte)", () => assert.equal(E3, 0x0610000001234877n));
test("E4 EPT read-only host mapping (make_spte, host_writable=false)", () =>
  assert.equal(fault(EPT, { hostWritable: false }), 0x0000000001234975n));
test("E5 EPT 2M, nx_huge_pages on (make_spte)", () => assert.equal(E5, 0x0600000001200bf3n));
test("E6 EPT 2M, nx_huge_pages off (make_spte)", () => assert.equal(E6, 0x0600000001200bf7n));
test("E7 EPT split of E5 to 4K index 0x34 (make_huge_page_split_spte) equals E1", () => {
  const e7 = makeHugePageSplitSpte(EPT, E5, PG_LEVEL_4K, ACC_ALL, 0x34, true);
  assert.equal(e7, 0x0600000001234b77n);
  assert.equal(e7, E1);
});
test("E8 EPT non-leaf, A/D on (make_nonleaf_spte)", () => assert.equal(E8, 0x0000000005678907n));
test("E9 EPT non-leaf, A/D off (make_nonleaf_spte)", () =>
  assert.equal(makeNonleafSpte(EPT_NOAD, 0x5678000n, !kvmAdEnabled(EPT_NOAD)), 0x0010000005678807n));
test("E10 EPT MMIO gfn 0x1234 gen 0 (make_mmio_spte)", () => assert.equal(E10, 0x0000000001234006n));
test("E11 EPT MMIO gfn 0x1234 gen 0x1ff (make_mmio_spte)", () => assert.equal(E11, 0x00100000012347fen));
test("E12 EPT A/D off: mark_spte_for_access_track(E3)", () => assert.equal(E12, 0x0750000001234870n));
test("E13 restore_acc_track_spte(E12)", () => assert.equal(E13, 0x0610000001234875n));
test("E14 EPT aging with A/D on (mark_spte_for_access_track clears A, as age_gfn_range does)", () => {
  assert.equal(markSpteForAccessTrack(EPT, E1), 0x0600000001234a77n);
  assert.equal(E1 & ~EPT.shadowAccessedMask, 0x0600000001234a77n);
});
test("E15 EPT clear-dirty (E1 & ~shadow_dirty_mask)", () => assert.equal(E1 & ~EPT.shadowDirtyMask, 0x0600000001234977n));
test("E16 EPT dirty-log write-protect (E1 & ~W)", () => assert.equal(E16, 0x0600000001234b75n));
test("E17 EPT write_protect_gfn (E1 & ~(W|MMU-W))", () =>
  assert.equal(E1 & ~(PT_WRITABLE_MASK | EPT.shadowMmuWritableMask), 0x0200000001234b75n));
test("E18 EPT change_pte of E1 to 0x5555 (kvm_mmu_changed_pte_notifier_make_spte)", () =>
  assert.equal(kvmMmuChangedPteNotifierMakeSpte(EPT, E1, 0x5555), 0x0000000005555a75n));
test("E19 EPT 2M writable leaf over a page table E8 (make_spte, 6.1.192 sets D)", () => {
  const e19 = fault(EPT, { level: PG_LEVEL_2M, pfn: 0x1200, oldSpte: E8 });
  assert.equal(e19, 0x0600000001200bf7n);
  assert.notEqual(e19, 0x06000000012009f7n); // the 6.1.0 value
});
test("E20 EPT 4K writable leaf over stale MMIO E10 (make_spte shortcut: no D)", () =>
  assert.equal(fault(EPT, { oldSpte: E10 }), 0x0600000001234977n));

test("N1 NPT writable 4K (make_spte)", () => assert.equal(N1, 0x0000000001234e67n));
test("N2 NPT read-only host mapping (make_spte)", () => assert.equal(fault(NPT, { hostWritable: false }), 0x0000000001234825n));
test("N3 NPT 2M nx_huge_pages on (make_spte)", () => assert.equal(N3, 0x8000000001200ee7n));
test("N4 NPT 2M nx_huge_pages off (make_spte)", () => assert.equal(N4, 0x0000000001200ee7n));
test("N5 NPT split of N3 to 4K index 0x34 (make_huge_page_split_spte) equals N1", () =>
  assert.equal(makeHugePageSplitSpte(NPT, N3, PG_LEVEL_4K, ACC_ALL, 0x34, true), 0x0000000001234e67n));
test("N6 NPT non-leaf (make_nonleaf_spte)", () => assert.equal(N6, 0x0000000005678827n));
test("N7 NPT MMIO gfn 0x1234 gen 0 (make_mmio_spte)", () => assert.equal(N7, 0x0008000001234007n));
test("N8 NPT aging N1 (mark_spte_for_access_track)", () => assert.equal(markSpteForAccessTrack(NPT, N1), 0x0000000001234e47n));
test("N9 NPT clear dirty N1 (& ~shadow_dirty_mask)", () => assert.equal(N1 & ~NPT.shadowDirtyMask, 0x0000000001234e27n));
test("N10 NPT wrprot N1 (& ~W)", () => assert.equal(N1 & ~PT_WRITABLE_MASK, 0x0000000001234e65n));
test("N11 NPT write_protect_gfn N1 (& ~(W|MMU-W))", () =>
  assert.equal(N1 & ~(PT_WRITABLE_MASK | NPT.shadowMmuWritableMask), 0x0000000001234a65n));
test("N12 NPT change_pte N1 to 0x5555 (kvm_mmu_changed_pte_notifier_make_spte)", () =>
  assert.equal(kvmMmuChangedPteNotifierMakeSpte(NPT, N1, 0x5555), 0x0000000005555845n));
test("N13 NPT MMIO gfn 0x400 gen 2 (make_mmio_spte)", () => assert.equal(N13, 0x0008000000400017n));
test("N14 NPT 2M writable leaf over page table N6 (make_spte, 6.1.192 sets D)", () => {
  const n14 = fault(NPT, { level: PG_LEVEL_2M, pfn: 0x1200, oldSpte: N6 });
  assert.equal(n14, 0x0000000001200ee7n);
  assert.notEqual(n14, 0x0000000001200ea7n); // the 6.1.0 value
});
test("N15 NPT 4K writable leaf over stale MMIO N7 (make_spte shortcut: no D)", () =>
  assert.equal(fault(NPT, { oldSpte: N7 }), 0x0000000001234e27n));

test("oracle-observed NPT low bits: 0x827, 0xe67, 0x825, 0xee7, 0xe65", () => {
  assert.equal(N6 & 0xfffn, 0x827n);
  assert.equal(N1 & 0xfffn, 0xe67n);
  assert.equal(fault(NPT, { hostWritable: false }) & 0xfffn, 0x825n);
  assert.equal(N4 & 0xfffn, 0xee7n);
  assert.equal((N1 & ~PT_WRITABLE_MASK) & 0xfffn, 0xe65n);
});

// ---------------------------------------------------------------------------------------------
// §7 predicate checks

test("predicates listed under the §7 table", () => {
  assert.equal(isShadowPresentPte(E1), true);
  assert.equal(isMmioSpte(EPT, E10), true);
  assert.equal(E10 & 7n, 6n);
  assert.equal(isShadowPresentPte(E10), false);
  for (const m of ALL_MASKS) assert.equal(isMmioSpte(m, REMOVED_SPTE), false, m.format);
  assert.equal(isAccessTrackSpte(EPT_NOAD, E12), true);
  assert.equal(isAccessedSpte(EPT_NOAD, E12), false);
  assert.equal(isAccessedSpte(EPT_NOAD, E13), true);
  assert.equal(isDirtySpte(EPT_NOAD, E3), true);
  assert.equal(isDirtySpte(EPT_NOAD, E3 & ~PT_WRITABLE_MASK), false);
  assert.equal(spteAdNeedWriteProtect(E3), true);
  assert.equal(spteAdNeedWriteProtect(E1), false);
  assert.equal(isExecutablePte(EPT, E5), false);
  assert.equal(isExecutablePte(EPT, E6), true);
  assert.equal(isExecutablePte(NPT, N3), false);
  assert.equal(isExecutablePte(NPT, N4), true);
  assert.equal(spteHasVolatileBits(EPT, E1), false);
  assert.equal(spteHasVolatileBits(EPT, E16), true);
  assert.equal(spteHasVolatileBits(EPT_NOAD, E12), true);
  assert.equal(getMmioSpteGeneration(E11), 0x1ffn);
  assert.equal(isMmioSpte(NPT, N13), true);
  assert.equal(N13 & 0x0008000000000001n, 0x0008000000000001n);
  assert.equal(getMmioSpteGeneration(N13), 2n);
  assert.equal(getMmioSpteGfn(NPT, N13), 0x400);
  assert.equal(getMmioSpteAccess(NPT, N13), 0x6);
});

test("more predicates: ad type, large/last, mmu-writable, volatile bits", () => {
  assert.equal(spteAdEnabled(E1), true);
  assert.equal(spteAdEnabled(E3), false);
  assert.equal(isLargePte(E5), true);
  assert.equal(isLargePte(E1), false);
  assert.equal(isLastSpte(E8, PG_LEVEL_2M), false);
  assert.equal(isLastSpte(E8, PG_LEVEL_4K), true); // any value is "last" at 4K
  assert.equal(isLastSpte(0n, PG_LEVEL_4K), true);
  assert.equal(isLastSpte(E6, PG_LEVEL_2M), true);
  assert.equal(isMmuWritableSpte(EPT, E16), true);
  assert.equal(isWritablePte(E16), false);
  assert.equal(isRemovedSpte(REMOVED_SPTE), true);
  assert.equal(isRemovedSpte(0n), false);
  assert.equal(spteToPfn(E1), 0x1234);
  assert.equal(spteToPfn(N3), 0x1200);
  // A/D on, accessed but writable and not dirty: the CPU may still set D.
  assert.equal(spteHasVolatileBits(NPT, N1 & ~NPT.shadowDirtyMask), true);
  // Not accessed: the CPU may set A.
  assert.equal(spteHasVolatileBits(NPT, N1 & ~NPT.shadowAccessedMask), true);
  // Read-only host mapping with A set: nothing can change it without mmu_lock.
  assert.equal(spteHasVolatileBits(NPT, fault(NPT, { hostWritable: false })), false);
  // A/D disabled, writable, not access tracked: nothing volatile.
  assert.equal(spteHasVolatileBits(EPT_NOAD, E3), false);
});

test("check_spte_writable_invariants: the two forbidden combinations", () => {
  assert.equal(checkSpteWritableInvariants(EPT, E1), null);
  assert.equal(checkSpteWritableInvariants(EPT, E16), null);
  assert.equal(checkSpteWritableInvariants(EPT, E1 & ~(PT_WRITABLE_MASK | EPT.shadowMmuWritableMask)), null);
  assert.equal(checkSpteWritableInvariants(NPT, fault(NPT, { hostWritable: false })), null);
  assert.match(checkSpteWritableInvariants(EPT, E1 & ~EPT.shadowHostWritableMask) ?? "", /MMU-writable SPTE is not Host-writable/);
  assert.match(checkSpteWritableInvariants(NPT, N1 & ~NPT.shadowMmuWritableMask) ?? "", /Writable SPTE is not MMU-writable/);
});

test("mark_spte_for_access_track WARNs on a broken writable state or used saved bits", () => {
  const warnings: string[] = [];
  const broken = E3 & ~EPT_NOAD.shadowMmuWritableMask; // W without MMU-writable
  markSpteForAccessTrack(EPT_NOAD, broken, (w) => warnings.push(w));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? "", /not MMU-writable/);
  const w2: string[] = [];
  markSpteForAccessTrack(EPT_NOAD, E3 | (1n << 54n), (w) => w2.push(w));
  assert.deepEqual(w2, ["kvm: Access Tracking saved bit locations are not zero"]);
  // Already access-tracked: unchanged.
  assert.equal(markSpteForAccessTrack(EPT_NOAD, E12), E12);
});

test("make_spte: unsync failure write-protects (wrprot, no W, no MMU-W, no D)", () => {
  let called = 0;
  const r = makeSpte(EPT, faultParams(EPT, { mmuTryToUnsyncPages: () => (called++, true) }));
  assert.equal(called, 1);
  assert.equal(r.wrprot, true);
  assert.equal(r.spte, 0x0200000001234975n); // host-W kept
  // The writable-leaf shortcut skips the unsync call altogether.
  called = 0;
  const r2 = makeSpte(EPT, faultParams(EPT, { oldSpte: E1, mmuTryToUnsyncPages: () => (called++, true) }));
  assert.equal(called, 0);
  assert.equal(r2.wrprot, false);
  assert.equal(r2.spte, E1 & ~EPT.shadowDirtyMask);
  // A non-writable request never asks.
  called = 0;
  makeSpte(EPT, faultParams(EPT, { hostWritable: false, mmuTryToUnsyncPages: () => (called++, true) }));
  assert.equal(called, 0);
});

test("make_spte: prefetch leaves the SPTE not accessed (A/D) or access-tracked (no A/D)", () => {
  const p = fault(EPT, { prefetch: true });
  assert.equal(p, E1 & ~EPT.shadowAccessedMask);
  assert.equal(isAccessedSpte(EPT, p), false);
  const q = fault(EPT_NOAD, { prefetch: true });
  assert.equal(q, E12);
  assert.equal(isAccessTrackSpte(EPT_NOAD, q), true);
  const n = fault(NPT, { prefetch: true });
  assert.equal(n, 0x0000000001234e47n);
});

test("make_spte: WRPROT_ONLY A/D type for L2 with PML; memtype and me bits", () => {
  const s = fault(EPT, { adNeedWriteProtect: true });
  assert.equal(s & SPTE_TDP_AD_MASK, SPTE_TDP_AD_WRPROT_ONLY_MASK);
  assert.equal(spteAdEnabled(s), true);
  assert.equal(spteAdNeedWriteProtect(s), true);
  assert.equal(s, E1 | SPTE_TDP_AD_WRPROT_ONLY_MASK);
  // MMIO pfn: UC, no IPAT.
  assert.equal(fault(EPT, { mtMask: vmxGetMtMask({ isMmio: true }) }) & 0x78n, 0n);
  // NPT ignores mtMask (shadow_memtype_mask is 0).
  assert.equal(fault(NPT, { mtMask: 0x70n }), N1);
  // shadow_me_value goes on RAM pfns only.
  const sme = kvmMmuSetMeSpteMask(NPT, 1n << 47n, 1n << 47n);
  assert.equal(fault(sme), N1 | (1n << 47n));
  assert.equal(fault(sme, { isMmioPfn: true }), N1);
  assert.equal(makeNonleafSpte(sme, 0x5678000n, false), N6 | (1n << 47n));
});

test("vmx_get_mt_mask cases", () => {
  assert.equal(vmxGetMtMask({ isMmio: true }), 0x00n);
  assert.equal(vmxGetMtMask({ isMmio: false }), 0x70n);
  assert.equal(vmxGetMtMask({ isMmio: false, noncoherentDma: true, cr0Cd: true }), 0x70n);
  assert.equal(vmxGetMtMask({ isMmio: false, noncoherentDma: true, cr0Cd: true, quirkCdNwCleared: false }), 0x40n);
  assert.equal(vmxGetMtMask({ isMmio: false, noncoherentDma: true, guestMtrrType: 1n }), 0x08n);
});

test("make_huge_page_split_spte returns 0 with a WARN for a non-present or non-large SPTE", () => {
  const warnings: string[] = [];
  assert.equal(makeHugePageSplitSpte(EPT, E1, PG_LEVEL_4K, ACC_ALL, 1, false, (w) => warnings.push(w)), 0n);
  assert.equal(makeHugePageSplitSpte(EPT, E10, PG_LEVEL_4K, ACC_ALL, 1, false, (w) => warnings.push(w)), 0n);
  assert.equal(warnings.length, 2);
  // 1G -> 2M keeps PS and adds index * 512 pages.
  const g = fault(NPT, { level: PG_LEVEL_1G, pfn: 0x40000 });
  const c = makeHugePageSplitSpte(NPT, g, PG_LEVEL_2M, ACC_ALL, 3, false);
  assert.equal(spteToPfn(c), 0x40000 + 3 * 512);
  assert.equal(isLargePte(c), true);
  // Without NX hugepages, or without exec in the role, X is not given back.
  assert.equal(makeHugePageSplitSpte(NPT, N3, PG_LEVEL_4K, ACC_ALL, 0x34, false) & PT64_NX_MASK, PT64_NX_MASK);
  assert.equal(makeHugePageSplitSpte(NPT, N3, PG_LEVEL_4K, ACC_ALL & ~ACC_EXEC_MASK, 0x34, true) & PT64_NX_MASK, PT64_NX_MASK);
});

test("make_spte_executable keeps an access-tracked SPTE access-tracked", () => {
  const tracked = markSpteForAccessTrack(EPT_NOAD, fault(EPT_NOAD, { level: PG_LEVEL_2M, pfn: 0x1200, nxHugePageEnabled: true }));
  assert.equal(tracked & 0x7n, 0n);
  const x = makeSpteExecutable(EPT_NOAD, tracked);
  assert.equal(isAccessTrackSpte(EPT_NOAD, x), true);
  assert.equal(x & 0x7n, 0n); // X did not leak into the RWX field
  assert.equal(restoreAccTrackSpte(EPT_NOAD, x) & 0x7n, 0x5n); // R|X come back, X now included
  assert.equal(restoreAccTrackSpte(EPT_NOAD, tracked) & 0x7n, 0x1n);
});

test("check_mmio_spte: generation compare and update-in-progress", () => {
  assert.equal(mmioSpteGenerationMatches(NPT, N13, 2n), true);
  assert.equal(mmioSpteGenerationMatches(NPT, N13, 4n), false);
  assert.equal(mmioSpteGenerationMatches(NPT, N13, 2n | KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS), false);
  // Bits above the 19 kept in the SPTE are ignored on both sides.
  assert.equal(mmioSpteGenerationMatches(NPT, N13, 2n | (1n << 19n)), true);
  assert.equal(makeMmioSpte(NPT, 0x400, ACC_ALL, 2n | (1n << 19n) | KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS), N13);
});

test("make_mmio_spte WARNs when MMIO caching is off and relocates gfn bits under L1TF", () => {
  const warnings: string[] = [];
  const off = kvmMmuResetAllPteMasks({ physBits: 52 });
  makeMmioSpte(off, 1, ACC_ALL, 0n, (w) => warnings.push(w));
  assert.equal(warnings.length, 1);
  const l1tf = kvmMmuResetAllPteMasks({ physBits: 46, l1tfCacheBits: 46 });
  const gfn = 0x2_0000_0001; // gpa bit 45 set: under the L1TF mask
  const s = makeMmioSpte(l1tf, gfn, ACC_ALL, 0n);
  assert.equal(s & l1tf.shadowNonpresentOrRsvdMask, l1tf.shadowNonpresentOrRsvdMask);
  assert.equal(s & (1n << 50n), 1n << 50n);
  assert.equal(getMmioSpteGfn(l1tf, s), gfn);
});

// ---------------------------------------------------------------------------------------------
// The machine-readable copy in §7, each key mapped to the constructor that builds it.

const SPEC_JSON = {
  ept_ad_execonly: {
    E1: "0x0600000001234B77", E4_ro: "0x0000000001234975",
    E5_2M_nx: "0x0600000001200BF3", E6_2M: "0x0600000001200BF7",
    E7_split_idx34: "0x0600000001234B77", E8_nonleaf_pa5678000: "0x0000000005678907",
    E10_mmio_gfn1234_gen0: "0x0000000001234006", E11_mmio_gfn1234_gen1ff: "0x00100000012347FE",
    E14_aged: "0x0600000001234A77", E15_clean: "0x0600000001234977",
    E16_wrprot: "0x0600000001234B75", E17_wp_gfn: "0x0200000001234B75",
    E18_change_pte_5555: "0x0000000005555A75",
  },
  ept_noad: {
    E3: "0x0610000001234877", E9_nonleaf: "0x0010000005678807",
    E12_acctrack: "0x0750000001234870", E13_restored: "0x0610000001234875",
  },
  npt: {
    N1: "0x0000000001234E67", N2_ro: "0x0000000001234825",
    N3_2M_nx: "0x8000000001200EE7", N4_2M: "0x0000000001200EE7",
    N5_split_idx34: "0x0000000001234E67", N6_nonleaf_pa5678000: "0x0000000005678827",
    N7_mmio_gfn1234_gen0: "0x0008000001234007", N8_aged: "0x0000000001234E47",
    N9_clean: "0x0000000001234E27", N10_wrprot: "0x0000000001234E65",
    N11_wp_gfn: "0x0000000001234A65", N12_change_pte_5555: "0x0000000005555845",
    N13_mmio_gfn400_gen2: "0x0008000000400017", N14_2M_over_table: "0x0000000001200EE7",
    N15_4K_over_stale_mmio: "0x0000000001234E27",
  },
  ept_ad_execonly_more: { E19_2M_over_table: "0x0600000001200BF7", E20_4K_over_stale_mmio: "0x0600000001234977" },
  REMOVED_SPTE: "0x00000000000005A0",
} as const;

const JSON_BUILDERS: Readonly<Record<string, () => bigint>> = {
  E1: () => fault(EPT),
  E4_ro: () => fault(EPT, { hostWritable: false }),
  E5_2M_nx: () => huge(EPT, true),
  E6_2M: () => huge(EPT, false),
  E7_split_idx34: () => makeHugePageSplitSpte(EPT, huge(EPT, true), PG_LEVEL_4K, ACC_ALL, 0x34, true),
  E8_nonleaf_pa5678000: () => makeNonleafSpte(EPT, 0x5678000, false),
  E10_mmio_gfn1234_gen0: () => makeMmioSpte(EPT, 0x1234, ACC_ALL, 0n),
  E11_mmio_gfn1234_gen1ff: () => makeMmioSpte(EPT, 0x1234, ACC_ALL, 0x1ffn),
  E14_aged: () => markSpteForAccessTrack(EPT, fault(EPT)),
  E15_clean: () => fault(EPT) & ~EPT.shadowDirtyMask,
  E16_wrprot: () => fault(EPT) & ~PT_WRITABLE_MASK,
  E17_wp_gfn: () => fault(EPT) & ~(PT_WRITABLE_MASK | EPT.shadowMmuWritableMask),
  E18_change_pte_5555: () => kvmMmuChangedPteNotifierMakeSpte(EPT, fault(EPT), 0x5555),
  E3: () => fault(EPT_NOAD),
  E9_nonleaf: () => makeNonleafSpte(EPT_NOAD, 0x5678000, true),
  E12_acctrack: () => markSpteForAccessTrack(EPT_NOAD, fault(EPT_NOAD)),
  E13_restored: () => restoreAccTrackSpte(EPT_NOAD, markSpteForAccessTrack(EPT_NOAD, fault(EPT_NOAD))),
  N1: () => fault(NPT),
  N2_ro: () => fault(NPT, { hostWritable: false }),
  N3_2M_nx: () => huge(NPT, true),
  N4_2M: () => huge(NPT, false),
  N5_split_idx34: () => makeHugePageSplitSpte(NPT, huge(NPT, true), PG_LEVEL_4K, ACC_ALL, 0x34, true),
  N6_nonleaf_pa5678000: () => makeNonleafSpte(NPT, 0x5678000, false),
  N7_mmio_gfn1234_gen0: () => makeMmioSpte(NPT, 0x1234, ACC_ALL, 0n),
  N8_aged: () => markSpteForAccessTrack(NPT, fault(NPT)),
  N9_clean: () => fault(NPT) & ~NPT.shadowDirtyMask,
  N10_wrprot: () => fault(NPT) & ~PT_WRITABLE_MASK,
  N11_wp_gfn: () => fault(NPT) & ~(PT_WRITABLE_MASK | NPT.shadowMmuWritableMask),
  N12_change_pte_5555: () => kvmMmuChangedPteNotifierMakeSpte(NPT, fault(NPT), 0x5555),
  N13_mmio_gfn400_gen2: () => makeMmioSpte(NPT, 0x400, ACC_ALL, 2n),
  N14_2M_over_table: () => fault(NPT, { level: PG_LEVEL_2M, pfn: 0x1200, oldSpte: makeNonleafSpte(NPT, 0x5678000, false) }),
  N15_4K_over_stale_mmio: () => fault(NPT, { oldSpte: makeMmioSpte(NPT, 0x1234, ACC_ALL, 0n) }),
  E19_2M_over_table: () => fault(EPT, { level: PG_LEVEL_2M, pfn: 0x1200, oldSpte: makeNonleafSpte(EPT, 0x5678000, false) }),
  E20_4K_over_stale_mmio: () => fault(EPT, { oldSpte: makeMmioSpte(EPT, 0x1234, ACC_ALL, 0n) }),
};

for (const [group, entries] of Object.entries(SPEC_JSON)) {
  if (typeof entries === "string") continue;
  for (const [key, want] of Object.entries(entries)) {
    test(`§7 JSON ${group}.${key}`, () => {
      const build = JSON_BUILDERS[key];
      assert.ok(build, `no builder for ${key}`);
      assert.equal("0x" + build().toString(16).padStart(16, "0"), want.toLowerCase());
    });
  }
}
test("§7 JSON REMOVED_SPTE", () => assert.equal(BigInt(SPEC_JSON.REMOVED_SPTE), REMOVED_SPTE));

// ---------------------------------------------------------------------------------------------
// Properties

const formatArb = fc.constantFrom<SpteFormat>("npt", "ept", "ept-noad");
const levelArb = fc.integer({ min: PG_LEVEL_4K, max: KVM_MAX_HUGEPAGE_LEVEL });

test("property: make_spte encodes pfn, level and permissions, and decodes back", () => {
  fc.assert(
    fc.property(
      formatArb,
      levelArb,
      fc.integer({ min: 0, max: 2 ** 36 - 1 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      (format, level, rawPfn, hostWritable, exec, nx, prefetch) => {
        const m = masksFor(format);
        const pfn = rawPfn - (rawPfn % kvmPagesPerHpage(level));
        const pteAccess = exec ? ACC_ALL : ACC_ALL & ~ACC_EXEC_MASK;
        const { spte, wrprot } = makeSpte(m, faultParams(m, { level, pfn, hostWritable, pteAccess, nxHugePageEnabled: nx, prefetch }));
        assert.equal(wrprot, false);
        assert.equal(spteToPfn(spte), pfn);
        assert.equal(isShadowPresentPte(spte), true);
        assert.equal(isMmioSpte(m, spte), false);
        assert.equal(isRemovedSpte(spte), false);
        assert.equal(isLastSpte(spte, level), true);
        assert.equal(isLargePte(spte), level > PG_LEVEL_4K);
        assert.equal(checkSpteWritableInvariants(m, spte), null);
        assert.equal(isWritablePte(spte), hostWritable && !(prefetch && !kvmAdEnabled(m)));
        assert.equal(isMmuWritableSpte(m, spte), hostWritable);
        assert.equal(isAccessedSpte(m, spte), !prefetch);
        assert.equal(spteAdEnabled(spte), kvmAdEnabled(m));
        const wantExec = exec && !(nx && level > PG_LEVEL_4K);
        const visible = prefetch && !kvmAdEnabled(m) ? restoreAccTrackSpte(m, spte) : spte;
        assert.equal(isExecutablePte(m, visible), wantExec);
      },
    ),
  );
});

test("property: restore(mark(s)) gives back R and X of an A/D-disabled SPTE, not W", () => {
  fc.assert(
    fc.property(levelArb, fc.integer({ min: 0, max: 2 ** 36 - 1 }), fc.boolean(), fc.constantFrom(ACC_ALL, ACC_ALL & ~ACC_EXEC_MASK, ACC_USER_MASK | ACC_WRITE_MASK, ACC_USER_MASK), (level, rawPfn, hostWritable, pteAccess) => {
      const m = EPT_NOAD;
      const pfn = rawPfn - (rawPfn % kvmPagesPerHpage(level));
      const s = fault(m, { level, pfn, hostWritable, pteAccess });
      const tracked = markSpteForAccessTrack(m, s);
      assert.equal(isAccessTrackSpte(m, tracked), true);
      assert.equal(isAccessedSpte(m, tracked), false);
      assert.equal(tracked & 0x7n, 0n);
      const back = restoreAccTrackSpte(m, tracked);
      assert.equal(back & 0x5n, s & 0x5n);
      assert.equal(back, s & ~PT_WRITABLE_MASK);
      assert.equal(isAccessedSpte(m, back), true);
    }),
  );
});

test("property: MMIO SPTE gfn, access and generation round-trip (gfn < 2^36, gen < 2^19)", () => {
  const l1tf = kvmMmuResetAllPteMasks({ physBits: 46, l1tfCacheBits: 46 });
  fc.assert(
    fc.property(
      fc.constantFrom(NPT, EPT, EPT_NOAD, l1tf),
      fc.integer({ min: 0, max: 2 ** 36 - 1 }),
      fc.bigInt({ min: 0n, max: (1n << 19n) - 1n }),
      fc.bigInt({ min: 0n, max: (1n << 19n) - 1n }),
      (m, rawGfn, gen, otherGen) => {
        const gfn = m === l1tf ? rawGfn % 2 ** 34 : rawGfn;
        const s = makeMmioSpte(m, gfn, ACC_ALL, gen);
        assert.equal(isMmioSpte(m, s), true);
        assert.equal(isShadowPresentPte(s), false);
        assert.equal(isRemovedSpte(s), false);
        assert.equal(getMmioSpteGfn(m, s), gfn);
        assert.equal(getMmioSpteGeneration(s), gen);
        assert.equal(getMmioSpteAccess(m, s), ACC_ALL & Number(m.shadowMmioAccessMask));
        assert.equal(mmioSpteGenerationMatches(m, s, gen), true);
        assert.equal(mmioSpteGenerationMatches(m, s, gen | KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS), false);
        assert.equal(mmioSpteGenerationMatches(m, s, otherGen), otherGen === gen);
      },
    ),
  );
});

test("property: REMOVED_SPTE is never present or MMIO under any mask setup", () => {
  fc.assert(
    fc.property(
      formatArb,
      fc.integer({ min: 32, max: 52 }),
      fc.option(fc.integer({ min: 30, max: 46 }), { nil: undefined }),
      fc.boolean(),
      (format, physBits, cacheBits, mmioCaching) => {
        const opts = cacheBits === undefined ? { physBits, mmioCaching } : { physBits, mmioCaching, l1tfCacheBits: cacheBits };
        const m = masksFor(format, opts);
        assert.equal(isShadowPresentPte(REMOVED_SPTE), false);
        assert.equal(isMmioSpte(m, REMOVED_SPTE), false);
        assert.equal(REMOVED_SPTE & 0x7n, 0n); // no EPT RWX, no x86 P
        assert.equal(spteToPfn(REMOVED_SPTE), 0);
        // A valid MMIO SPTE is never REMOVED_SPTE and never present.
        if (m.enableMmioCaching) {
          const s = makeMmioSpte(m, 0, ACC_ALL, 0n);
          assert.notEqual(s, REMOVED_SPTE);
          assert.equal(isMmioSpte(m, s), true);
          assert.equal(isShadowPresentPte(s), false);
        }
      },
    ),
  );
});

test("property: split children inherit the parent's flags and get consecutive pfns", () => {
  fc.assert(
    fc.property(
      formatArb,
      fc.constantFrom(PG_LEVEL_2M, PG_LEVEL_1G),
      fc.integer({ min: 0, max: 2 ** 36 - 1 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      (format, level, rawPfn, hostWritable, nx, exec) => {
        const m = masksFor(format);
        const pfn = rawPfn - (rawPfn % kvmPagesPerHpage(level));
        const pteAccess = exec ? ACC_ALL : ACC_ALL & ~ACC_EXEC_MASK;
        const parent = fault(m, { level, pfn, hostWritable, nxHugePageEnabled: nx, pteAccess });
        const childLevel = level - 1;
        const step = kvmPagesPerHpage(childLevel);
        const flagMask = ~SPTE_BASE_ADDR_MASK & ~PT_PAGE_SIZE_MASK & ~(m.shadowXMask | m.shadowNxMask);
        let prevPfn = pfn - step;
        for (const index of [0, 1, 2, 255, 510, 511]) {
          const child = makeHugePageSplitSpte(m, parent, childLevel, pteAccess, index, nx);
          assert.equal(child & flagMask, parent & flagMask);
          assert.equal(spteToPfn(child), pfn + index * step);
          if (index === 0 || index === 1 || index === 2) {
            assert.equal(spteToPfn(child) - prevPfn, step);
            prevPfn = spteToPfn(child);
          }
          assert.equal(isLargePte(child), childLevel > PG_LEVEL_4K);
          assert.equal(isLastSpte(child, childLevel), true);
          // 4K children get X back when NX hugepages took it; otherwise X/NX is inherited.
          const wantExec = childLevel === PG_LEVEL_4K ? exec : isExecutablePte(m, parent);
          assert.equal(isExecutablePte(m, child), wantExec);
        }
      },
    ),
  );
});

test("property: change_pte result is read-only, retargeted and aged", () => {
  fc.assert(
    fc.property(formatArb, fc.integer({ min: 0, max: 2 ** 36 - 1 }), fc.integer({ min: 0, max: 2 ** 36 - 1 }), (format, pfn, newPfn) => {
      const m = masksFor(format);
      const s = kvmMmuChangedPteNotifierMakeSpte(m, fault(m, { pfn }), newPfn);
      assert.equal(spteToPfn(isAccessTrackSpte(m, s) ? restoreAccTrackSpte(m, s) : s), newPfn);
      assert.equal(isWritablePte(s), false);
      assert.equal(isMmuWritableSpte(m, s), false);
      assert.equal(s & m.shadowHostWritableMask, 0n);
      assert.equal(isAccessedSpte(m, s), false);
      assert.equal(checkSpteWritableInvariants(m, s), null);
    }),
  );
});

test("MMIO generation layout: gen bit 8 lands in SPTE bit 52, gen bit 18 in bit 62", () => {
  assert.equal(makeMmioSpte(EPT, 0, ACC_ALL, 1n << 8n) & MMIO_SPTE_GEN_HIGH_MASK, 1n << 52n);
  assert.equal(makeMmioSpte(EPT, 0, ACC_ALL, 1n << 18n) & MMIO_SPTE_GEN_HIGH_MASK, 1n << 62n);
  assert.equal(makeMmioSpte(EPT, 0, ACC_ALL, 1n) & MMIO_SPTE_GEN_LOW_MASK, 1n << 3n);
});
