// SPDX-License-Identifier: GPL-2.0-only
// The hot SPTE helpers work on an SPTE's two 32-bit halves (spte.ts, "Halves"). Here each is
// checked against its plain 64-bit bigint definition, on random values and on mask records of
// every format, including made-up records whose masks sit in the high half.

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  join,
  ACC_EXEC_MASK,
  ACC_WRITE_MASK,
  PG_LEVEL_4K,
  PT_PAGE_SIZE_MASK,
  PT_WRITABLE_MASK,
  SPTE_BASE_ADDR_MASK,
  SPTE_MMU_PRESENT_MASK,
  SPTE_TDP_AD_DISABLED_MASK,
  SPTE_TDP_AD_ENABLED_MASK,
  SPTE_TDP_AD_MASK,
  SPTE_TDP_AD_WRPROT_ONLY_MASK,
  checkSpteWritableInvariants,
  isAccessTrackSpte,
  isAccessedSpte,
  isDirtySpte,
  isExecutablePte,
  isLargePte,
  isLastSpte,
  isMmioSpte,
  isMmuWritableSpte,
  isShadowPresentPte,
  isWritablePte,
  kvmMmuSetMeSpteMask,
  makeHugePageSplitSpte,
  makeNonleafSpte,
  makeSpte,
  makeSpteExecutable,
  markSpteForAccessTrack,
  masksFor,
  spteAdEnabled,
  spteAdNeedWriteProtect,
  spteHasVolatileBits,
  hi32,
  lo32,
  spteToPfn,
  REMOVED_SPTE,
  PT_WRITABLE_WORDS,
  isLargePteWords,
  isRemovedSpteWords,
  maskWords,
  spteAdEnabledWords,
  spteAdNeedWriteProtectWords,
  spteHasAnyOfWords,
  type MakeSpteParams,
  type SpteMasks,
} from "./index.js";

const U64 = (1n << 64n) - 1n;

// ---------------------------------------------------------------------------------------------
// The definitions, on the whole 64-bit value (spec/01-spte.md §3 and §5)

const ref = {
  present: (s: bigint) => (s & SPTE_MMU_PRESENT_MASK) !== 0n,
  adEnabled: (s: bigint) => (s & SPTE_TDP_AD_MASK) !== SPTE_TDP_AD_DISABLED_MASK,
  adNeedWp: (s: bigint) => (s & SPTE_TDP_AD_MASK) !== SPTE_TDP_AD_ENABLED_MASK,
  accessTrack: (m: SpteMasks, s: bigint) => !ref.adEnabled(s) && (s & m.shadowAccTrackMask) === 0n,
  large: (s: bigint) => (s & PT_PAGE_SIZE_MASK) !== 0n,
  executable: (m: SpteMasks, s: bigint) => (s & (m.shadowXMask | m.shadowNxMask)) === m.shadowXMask,
  pfn: (s: bigint) => Number((s & SPTE_BASE_ADDR_MASK) >> 12n),
  accessed(m: SpteMasks, s: bigint): boolean {
    const a = ref.adEnabled(s) ? m.shadowAccessedMask : 0n;
    return a !== 0n ? (s & a) !== 0n : !ref.accessTrack(m, s);
  },
  dirty(m: SpteMasks, s: bigint): boolean {
    const d = ref.adEnabled(s) ? m.shadowDirtyMask : 0n;
    return d !== 0n ? (s & d) !== 0n : (s & PT_WRITABLE_MASK) !== 0n;
  },
  writable: (s: bigint) => (s & PT_WRITABLE_MASK) !== 0n,
  mmuWritable: (m: SpteMasks, s: bigint) => (s & m.shadowMmuWritableMask) !== 0n,
  mmio: (m: SpteMasks, s: bigint) => (s & m.shadowMmioMask) === m.shadowMmioValue && m.enableMmioCaching,
  writableInvariantBroken(m: SpteMasks, s: bigint): boolean {
    if (s & m.shadowMmuWritableMask) return (s & m.shadowHostWritableMask) === 0n;
    return ref.writable(s);
  },
  volatileBits(m: SpteMasks, s: bigint): boolean {
    if (!ref.writable(s) && ref.mmuWritable(m, s)) return true;
    if (ref.accessTrack(m, s)) return true;
    if (ref.adEnabled(s)) return !(s & m.shadowAccessedMask) || (ref.writable(s) && !(s & m.shadowDirtyMask));
    return false;
  },
  nonleaf(m: SpteMasks, pa: bigint, adDisabled: boolean): bigint {
    let spte = SPTE_MMU_PRESENT_MASK | pa | m.shadowPresentMask | PT_WRITABLE_MASK | m.shadowUserMask | m.shadowXMask | m.shadowMeValue;
    spte |= adDisabled ? SPTE_TDP_AD_DISABLED_MASK : m.shadowAccessedMask;
    return spte;
  },
  split(m: SpteMasks, huge: bigint, childLevel: number, childAccess: number, index: number, nx: boolean): bigint {
    let child = huge | (BigInt(index * 512 ** (childLevel - 1)) << 12n);
    if (childLevel === PG_LEVEL_4K) {
      child &= ~PT_PAGE_SIZE_MASK;
      if (childAccess & ACC_EXEC_MASK && nx) child = makeSpteExecutable(m, child);
    }
    return child & U64;
  },
  /** make_spte(), steps 1–15, as spte.c writes it. */
  makeSpte(m: SpteMasks, p: MakeSpteParams): { spte: bigint; wrprot: boolean } {
    let pteAccess = p.pteAccess;
    let spte = SPTE_MMU_PRESENT_MASK;
    let wrprot = false;
    if (p.adDisabled) spte |= SPTE_TDP_AD_DISABLED_MASK;
    else if (p.adNeedWriteProtect) spte |= SPTE_TDP_AD_WRPROT_ONLY_MASK;
    spte |= m.shadowPresentMask;
    if (!p.prefetch && ref.adEnabled(spte)) spte |= m.shadowAccessedMask;
    if (p.level > PG_LEVEL_4K && pteAccess & ACC_EXEC_MASK && p.nxHugePageEnabled) pteAccess &= ~ACC_EXEC_MASK;
    spte |= pteAccess & ACC_EXEC_MASK ? m.shadowXMask : m.shadowNxMask;
    if (pteAccess & 4) spte |= m.shadowUserMask;
    if (p.level > PG_LEVEL_4K) spte |= PT_PAGE_SIZE_MASK;
    if (m.shadowMemtypeMask !== 0n) spte |= p.mtMask;
    if (p.hostWritable) spte |= m.shadowHostWritableMask;
    else pteAccess &= ~ACC_WRITE_MASK;
    if (m.shadowMeValue !== 0n && !p.isMmioPfn) spte |= m.shadowMeValue;
    spte |= BigInt(p.pfn) << 12n;
    let out = false;
    if (pteAccess & ACC_WRITE_MASK) {
      spte |= PT_WRITABLE_MASK | m.shadowMmuWritableMask;
      if ((p.level === PG_LEVEL_4K || ref.large(p.oldSpte)) && ref.writable(p.oldSpte)) out = true;
      else if (p.mmuTryToUnsyncPages?.() ?? false) {
        wrprot = true;
        pteAccess &= ~ACC_WRITE_MASK;
        spte &= ~(PT_WRITABLE_MASK | m.shadowMmuWritableMask);
      }
    }
    if (!out && pteAccess & ACC_WRITE_MASK && ref.adEnabled(spte)) spte |= m.shadowDirtyMask;
    if (p.prefetch) spte = markSpteForAccessTrack(m, spte);
    return { spte: spte & U64, wrprot };
  },
};

// ---------------------------------------------------------------------------------------------
// Mask records: the kernel's formats, plus made-up ones that put every mask in the high half

const HIGH_BITS = [40n, 41n, 42n, 43n, 44n, 45n, 46n, 47n, 48n, 49n, 50n, 55n, 59n, 60n, 61n, 62n, 63n];
const highBit = (i: number) => 1n << HIGH_BITS[i % HIGH_BITS.length]!;
const made = (base: SpteMasks): SpteMasks => ({
  ...base,
  shadowUserMask: highBit(0),
  shadowAccessedMask: highBit(1),
  shadowDirtyMask: highBit(2),
  shadowNxMask: highBit(3),
  shadowXMask: highBit(4) | 4n,
  shadowPresentMask: highBit(5) | 1n,
  shadowAccTrackMask: highBit(6) | 7n,
  shadowHostWritableMask: highBit(7),
  shadowMmuWritableMask: highBit(8) | 0x400n,
  shadowMmioValue: highBit(9) | 6n,
  shadowMmioMask: highBit(9) | highBit(10) | 7n,
  shadowMeValue: highBit(11),
  shadowMemtypeMask: 0x78n,
});
const MASKS: readonly SpteMasks[] = [
  masksFor("npt"),
  masksFor("ept"),
  masksFor("ept-noad"),
  masksFor("npt", { physBits: 52 }),
  kvmMmuSetMeSpteMask(masksFor("ept", { physBits: 52, x86PhysBits: 46 }), 1n << 50n, (1n << 52n) - (1n << 46n)),
  made(masksFor("npt")),
  made(masksFor("ept")),
];

const maskArb = fc.integer({ min: 0, max: MASKS.length - 1 }).map((i) => MASKS[i]!);
/** Random 64-bit values, half of them built from the bits SPTEs use so that predicates go both ways. */
const spteArb = fc.oneof(
  fc.bigInt({ min: 0n, max: U64 }),
  fc
    .tuple(
      fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }),
      fc.subarray([0n, 1n, 2n, 5n, 6n, 7n, 11n, 52n, 53n, 54n, 56n, 57n, 58n, 60n, 63n]),
      fc.integer({ min: 0, max: 15 }),
    )
    .map(([pfn, bits, low]) => bits.reduce((s, b) => s | (1n << b), (pfn << 12n) | BigInt(low))),
);
const RUNS = { numRuns: 3000 };

test("halves: every predicate equals its bigint definition", () => {
  fc.assert(
    fc.property(maskArb, spteArb, fc.integer({ min: 1, max: 5 }), (m, s, level) => {
      assert.equal(isShadowPresentPte(s), ref.present(s));
      assert.equal(spteAdEnabled(s), ref.adEnabled(s));
      assert.equal(spteAdNeedWriteProtect(s), ref.adNeedWp(s));
      assert.equal(isAccessTrackSpte(m, s), ref.accessTrack(m, s));
      assert.equal(isLargePte(s), ref.large(s));
      assert.equal(isLastSpte(s, level), level === PG_LEVEL_4K || ref.large(s));
      assert.equal(isExecutablePte(m, s), ref.executable(m, s));
      assert.equal(spteToPfn(s), ref.pfn(s));
      assert.equal(isAccessedSpte(m, s), ref.accessed(m, s));
      assert.equal(isDirtySpte(m, s), ref.dirty(m, s));
      assert.equal(isWritablePte(s), ref.writable(s));
      assert.equal(isMmuWritableSpte(m, s), ref.mmuWritable(m, s));
      assert.equal(isMmioSpte(m, s), ref.mmio(m, s));
      assert.equal(checkSpteWritableInvariants(m, s) !== null, ref.writableInvariantBroken(m, s));
      assert.equal(spteHasVolatileBits(m, s), ref.volatileBits(m, s));
    }),
    RUNS,
  );
});

test("halves: mark_spte_for_access_track with A/D clears exactly the Accessed mask", () => {
  fc.assert(
    fc.property(maskArb, spteArb, (m, s) => {
      fc.pre(ref.adEnabled(s));
      assert.equal(markSpteForAccessTrack(m, s), s & ~m.shadowAccessedMask);
    }),
    RUNS,
  );
});

test("halves: make_spte equals its bigint definition", () => {
  const params = fc.record({
    level: fc.integer({ min: 1, max: 3 }),
    pteAccess: fc.integer({ min: 0, max: 7 }),
    gfn: fc.constant(0),
    pfn: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 - 1 }), fc.integer({ min: 0, max: 2 ** 20 })),
    oldSpte: spteArb,
    prefetch: fc.boolean(),
    hostWritable: fc.boolean(),
    adDisabled: fc.boolean(),
    adNeedWriteProtect: fc.boolean(),
    nxHugePageEnabled: fc.boolean(),
    mtMask: fc.constantFrom(0n, 0x30n, 0x70n, 0x78n),
    isMmioPfn: fc.boolean(),
    unsync: fc.boolean(),
  });
  fc.assert(
    fc.property(maskArb, params, (m, { unsync, ...rest }) => {
      const p: MakeSpteParams = { ...rest, mmuTryToUnsyncPages: () => unsync };
      assert.deepEqual(makeSpte(m, p), ref.makeSpte(m, p));
    }),
    RUNS,
  );
});

test("halves: make_nonleaf_spte and make_huge_page_split_spte equal their bigint definitions", () => {
  fc.assert(
    fc.property(
      maskArb,
      fc.integer({ min: 0, max: 2 ** 40 - 1 }),
      fc.boolean(),
      fc.boolean(),
      (m, pfn, adDisabled, asBigint) => {
        const pa = BigInt(pfn) << 12n;
        assert.equal(makeNonleafSpte(m, asBigint ? pa : pfn * 4096, adDisabled), ref.nonleaf(m, pa, adDisabled));
      },
    ),
    RUNS,
  );
  fc.assert(
    fc.property(
      maskArb,
      fc.integer({ min: 0, max: 2 ** 30 - 1 }),
      fc.integer({ min: 1, max: 2 }),
      fc.integer({ min: 0, max: 511 }),
      fc.integer({ min: 0, max: 7 }),
      fc.boolean(),
      spteArb,
      (m, hugeIndex, childLevel, index, childAccess, nx, bits) => {
        // A present huge SPTE whose pfn is aligned to its level, other bits random.
        const alignedPfn = BigInt(hugeIndex) * 512n ** BigInt(childLevel);
        const huge = ((bits & ~SPTE_BASE_ADDR_MASK) | (alignedPfn << 12n) | SPTE_MMU_PRESENT_MASK | PT_PAGE_SIZE_MASK) & U64;
        assert.equal(makeHugePageSplitSpte(m, huge, childLevel, childAccess, index, nx), ref.split(m, huge, childLevel, childAccess, index, nx));
      },
    ),
    RUNS,
  );
});

test("halves: lo32 and hi32 are the two 32-bit halves", () => {
  fc.assert(
    fc.property(spteArb, (s) => {
      assert.equal((BigInt(hi32(s) >>> 0) << 32n) | BigInt(lo32(s) >>> 0), s);
    }),
    RUNS,
  );
});

test("halves: the forms on halves that walks use equal their bigint definitions", () => {
  // A walk keeps the SPTE it read as two halves (TdpIter.oldLo/oldHi) and asks these.
  const nearRemoved = fc.oneof(spteArb, fc.constantFrom(REMOVED_SPTE, REMOVED_SPTE | (1n << 32n), REMOVED_SPTE | 1n, 0n));
  fc.assert(
    fc.property(maskArb, nearRemoved, spteArb, (m, s, mask) => {
      const lo = lo32(s);
      const hi = hi32(s);
      const mw = maskWords(m);
      assert.equal(isRemovedSpteWords(lo, hi), s === REMOVED_SPTE);
      assert.equal(isLargePteWords(lo), ref.large(s));
      assert.equal(spteAdEnabledWords(hi), ref.adEnabled(s));
      assert.equal(spteAdNeedWriteProtectWords(hi), ref.adNeedWp(s));
      const words = { lo: lo32(mask), hi: hi32(mask) };
      assert.equal(spteHasAnyOfWords(lo, hi, words), (s & mask) !== 0n);
      // `s & ~mask` as the walks compute it, half by half.
      const without = (w: { lo: number; hi: number }): bigint => join(lo & ~w.lo, hi & ~w.hi);
      assert.equal(without(words), s & ~mask & U64);
      assert.equal(spteHasAnyOfWords(lo, hi, mw.dirty), (s & m.shadowDirtyMask) !== 0n);
      assert.equal(without(mw.accessed), s & ~m.shadowAccessedMask & U64);
      assert.equal(without(mw.dirty), s & ~m.shadowDirtyMask & U64);
      assert.equal(without(PT_WRITABLE_WORDS), s & ~PT_WRITABLE_MASK & U64);
    }),
    RUNS,
  );
});
