// SPDX-License-Identifier: GPL-2.0-only
// Name every bit of an SPTE copied from a kernel trace (kvm_mmu_set_spte, kvm_tdp_mmu_spte_changed
// ...), under one format's masks. Structured first, text second: the CLI prints the text, the
// viewer can lay out the fields itself.

import {
  MMIO_SPTE_GEN_HIGH_MASK,
  MMIO_SPTE_GEN_LOW_MASK,
  PG_LEVEL_4K,
  PT64_NX_MASK,
  PT_ACCESSED_MASK,
  PT_DIRTY_MASK,
  PT_GLOBAL_MASK,
  PT_PAGE_SIZE_MASK,
  PT_PCD_MASK,
  PT_PRESENT_MASK,
  PT_PWT_MASK,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
  REMOVED_SPTE,
  SHADOW_ACC_TRACK_SAVED_BITS_SHIFT,
  SHADOW_NONPRESENT_OR_RSVD_MASK_LEN,
  SPTE_BASE_ADDR_MASK,
  SPTE_MMU_PRESENT_MASK,
  SPTE_TDP_AD_DISABLED_MASK,
  SPTE_TDP_AD_ENABLED_MASK,
  SPTE_TDP_AD_MASK,
  SPTE_TDP_AD_SHIFT,
  SPTE_TDP_AD_WRPROT_ONLY_MASK,
  VMX_EPT_ACCESS_BIT,
  VMX_EPT_DIRTY_BIT,
  VMX_EPT_EXECUTABLE_MASK,
  VMX_EPT_IPAT_BIT,
  VMX_EPT_MT_EPTE_SHIFT,
  VMX_EPT_MT_MASK,
  VMX_EPT_READABLE_MASK,
  VMX_EPT_SUPPRESS_VE_BIT,
  VMX_EPT_WRITABLE_MASK,
  checkSpteWritableInvariants,
  getMmioSpteAccess,
  getMmioSpteGeneration,
  getMmioSpteGfn,
  isAccessTrackSpte,
  isLastSpte,
  isLargePte,
  isMmioSpte,
  isRemovedSpte,
  spteToPfn,
  type SpteMasks,
} from "./spte.js";

/** What a value is, in the order the TDP MMU would ask. */
export type SpteKind =
  | "removed" //     REMOVED_SPTE
  | "zero" //        the ordinary non-present value
  | "mmio" //        a cached MMIO SPTE under these masks
  | "non-present" // neither of the above and no bit 11
  | "leaf" //        present and is_last_spte() at the given level, or PS set
  | "non-leaf" //    present, points to a child table at the given level
  | "present"; //    present, level unknown and PS clear: leaf only at level 1

export interface SpteField {
  /** "5", "51:12", ... */
  readonly bits: string;
  readonly name: string;
  readonly value: string;
}

export interface SpteDescription {
  readonly value: bigint;
  readonly format: SpteMasks["format"];
  readonly level: number | undefined;
  readonly kind: SpteKind;
  readonly fields: readonly SpteField[];
}

const hex = (n: bigint | number): string => "0x" + n.toString(16);

/** The set bits of a non-zero mask as contiguous runs, high first: "62:52,10:3", "51,0", "7". */
function bitRange(mask: bigint): string {
  const runs: string[] = [];
  for (let b = 63; b >= 0; b--) {
    if (!((mask >> BigInt(b)) & 1n)) continue;
    let lo = b;
    while (lo > 0 && (mask >> BigInt(lo - 1)) & 1n) lo--;
    runs.push(lo === b ? String(b) : `${b}:${lo}`);
    b = lo;
  }
  return runs.join(",");
}

/** The field's bits moved down to bit 0 when the mask is one run, else the raw masked bits. */
function fieldValue(s: bigint, mask: bigint): string {
  const range = bitRange(mask);
  if (range.includes(",")) return hex(s & mask);
  const lo = BigInt(range.split(":").pop() ?? "0");
  return hex((s & mask) >> lo);
}

const MEMTYPE_NAMES: Readonly<Record<number, string>> = { 0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB" };

/**
 * Decode `s` under masks `m`. `level` is the level of the table holding the SPTE, if known.
 * Every set bit lands in some field; bits no format meaning covers are listed as unused.
 */
export function describeSpte(m: SpteMasks, s: bigint, level?: number): SpteDescription {
  const fields: SpteField[] = [];
  let covered = 0n;
  const ept = m.format !== "npt";

  /** Add a field for `mask`; `value` defaults to the raw masked bits. */
  const field = (mask: bigint, name: string, value?: string): void => {
    covered |= mask;
    fields.push({ bits: bitRange(mask), name, value: value ?? fieldValue(s, mask) });
  };
  /** Add a single-bit field only when the bit is set. */
  const flag = (mask: bigint, name: string): void => {
    if (s & mask) field(mask, name, "1");
  };
  const note = (name: string, value: string): void => {
    fields.push({ bits: "-", name, value });
  };
  const finish = (kind: SpteKind): SpteDescription => {
    const rest = s & ~covered;
    for (let b = 0; b < 64; b++) {
      if ((rest >> BigInt(b)) & 1n) fields.push({ bits: String(b), name: "unused by KVM / reserved", value: "1" });
    }
    fields.sort((a, b) => bitKey(b.bits) - bitKey(a.bits));
    return { value: s, format: m.format, level, kind, fields };
  };

  if (isRemovedSpte(s)) {
    field(REMOVED_SPTE, "REMOVED_SPTE (frozen by a reader-side multi-step update)", hex(s));
    return finish("removed");
  }
  if (s === 0n) {
    note("class", "non-present (zero)");
    return finish("zero");
  }

  if (!(s & SPTE_MMU_PRESENT_MASK) && isMmioSpte(m, s)) {
    field(m.shadowMmioMask, "MMIO marker (value under shadow_mmio_mask)", hex(s & m.shadowMmioMask));
    if (m.shadowMmioAccessMask & s) field(m.shadowMmioAccessMask & s, "MMIO access (ACC_WRITE|ACC_USER bits)", hex(getMmioSpteAccess(m, s)));
    const genBits = s & (MMIO_SPTE_GEN_LOW_MASK | MMIO_SPTE_GEN_HIGH_MASK);
    covered |= genBits;
    fields.push({ bits: bitRange(MMIO_SPTE_GEN_HIGH_MASK | MMIO_SPTE_GEN_LOW_MASK), name: "MMIO generation", value: hex(getMmioSpteGeneration(s)) });
    const gfnMask = m.shadowNonpresentOrRsvdLowerGfnMask | (m.shadowNonpresentOrRsvdMask << SHADOW_NONPRESENT_OR_RSVD_MASK_LEN);
    covered |= s & gfnMask;
    fields.push({ bits: bitRange(m.shadowNonpresentOrRsvdLowerGfnMask), name: "MMIO gfn", value: hex(getMmioSpteGfn(m, s)) });
    if (m.shadowNonpresentOrRsvdMask) field(m.shadowNonpresentOrRsvdMask, "L1TF non-present/reserved mask");
    note("class", "MMIO SPTE (not MMU-present)");
    return finish("mmio");
  }

  const present = (s & SPTE_MMU_PRESENT_MASK) !== 0n;
  flag(SPTE_MMU_PRESENT_MASK, "MMU-present (SPTE_MMU_PRESENT_MASK)");

  let kind: SpteKind;
  if (!present) kind = "non-present";
  else if (level !== undefined) kind = isLastSpte(s, level) ? "leaf" : "non-leaf";
  else kind = isLargePte(s) ? "leaf" : "present";
  const leafish = kind === "leaf" || kind === "present";

  if (ept) {
    flag(VMX_EPT_READABLE_MASK, "R (readable; shadow_user_mask)");
    flag(VMX_EPT_WRITABLE_MASK, "W (writable)");
    flag(VMX_EPT_EXECUTABLE_MASK, "X (executable; shadow_x_mask)");
    if (kind !== "non-leaf" && (s & (VMX_EPT_MT_MASK | VMX_EPT_IPAT_BIT) || kind === "leaf")) {
      const mt = Number((s & VMX_EPT_MT_MASK) >> VMX_EPT_MT_EPTE_SHIFT);
      field(VMX_EPT_MT_MASK, "EPT memory type", `${mt} (${MEMTYPE_NAMES[mt] ?? "reserved"})`);
      flag(VMX_EPT_IPAT_BIT, "IPAT (ignore guest PAT)");
    }
    flag(PT_PAGE_SIZE_MASK, level === PG_LEVEL_4K ? "bit 7 (ignored at 4K)" : "PS (large page)");
    flag(VMX_EPT_ACCESS_BIT, "A (accessed)");
    flag(VMX_EPT_DIRTY_BIT, "D (dirty)");
    flag(1n << 10n, "XU (user-mode execute; unused by KVM)");
    flag(m.shadowHostWritableMask, "Host-writable");
    flag(m.shadowMmuWritableMask, "MMU-writable");
    flag(VMX_EPT_READABLE_MASK << SHADOW_ACC_TRACK_SAVED_BITS_SHIFT, "access-track saved R");
    flag(VMX_EPT_EXECUTABLE_MASK << SHADOW_ACC_TRACK_SAVED_BITS_SHIFT, "access-track saved X");
    flag(VMX_EPT_SUPPRESS_VE_BIT, "suppress #VE (unused by KVM)");
  } else {
    flag(PT_PRESENT_MASK, "P (present; shadow_present_mask)");
    flag(PT_WRITABLE_MASK, "W (writable)");
    flag(PT_USER_MASK, "U (user; shadow_user_mask)");
    flag(PT_PWT_MASK, "PWT");
    flag(PT_PCD_MASK, "PCD");
    flag(PT_ACCESSED_MASK, "A (accessed)");
    flag(PT_DIRTY_MASK, "D (dirty)");
    flag(PT_PAGE_SIZE_MASK, level === PG_LEVEL_4K ? "PAT (4K)" : "PS (large page)");
    flag(PT_GLOBAL_MASK, "G (global)");
    flag(m.shadowHostWritableMask, "Host-writable");
    flag(m.shadowMmuWritableMask, "MMU-writable");
    flag(PT64_NX_MASK, "NX (no execute; shadow_nx_mask)");
  }

  if (s & SPTE_BASE_ADDR_MASK) {
    field(SPTE_BASE_ADDR_MASK, kind === "non-leaf" ? "pfn of child table" : "pfn", hex(spteToPfn(s)));
  }
  if (m.shadowMeMask & s) field(m.shadowMeMask & s, "memory-encryption bits (shadow_me_mask)");

  if (present) {
    const ad = s & SPTE_TDP_AD_MASK;
    const adName =
      ad === SPTE_TDP_AD_ENABLED_MASK
        ? "enabled"
        : ad === SPTE_TDP_AD_DISABLED_MASK
          ? "disabled"
          : ad === SPTE_TDP_AD_WRPROT_ONLY_MASK
            ? "write-protect only"
            : "invalid (3)";
    field(SPTE_TDP_AD_MASK, "A/D type (SPTE_TDP_AD_*)", `${(ad >> SPTE_TDP_AD_SHIFT).toString()} (${adName})`);
  }

  if (kind === "non-present") note("class", "non-present, not MMIO under these masks");
  else if (kind === "present") note("class", "present; leaf if level 1 or PS set, else non-leaf");
  else note("class", `present ${kind}`);

  // A non-leaf in an A/D-disabled format keeps RWX, so an empty RWX field means a leaf.
  if (present && leafish && isAccessTrackSpte(m, s)) note("state", "access-tracked (RWX cleared, R/X parked in 54/56)");
  // Non-leaf SPTEs are W without MMU-writable by design; only a known leaf is checked.
  if (kind === "leaf") {
    const bad = checkSpteWritableInvariants(m, s);
    if (bad !== null) note("WARN", bad);
  }
  return finish(kind);
}

/** Sort key: the highest bit number a field names; notes ("-") go last. */
function bitKey(bits: string): number {
  const n = Number.parseInt(bits, 10);
  return Number.isNaN(n) ? -1 : n;
}

/** Aligned text lines for a description, as the CLI prints it. */
export function renderSpteDescription(d: SpteDescription): string {
  const head = `${"0x" + d.value.toString(16).padStart(16, "0")}  ${d.format}${d.level !== undefined ? ` level ${d.level}` : ""}: ${d.kind}`;
  const wBits = Math.max(4, ...d.fields.map((f) => f.bits.length));
  const wName = Math.max(4, ...d.fields.map((f) => f.name.length));
  const lines = d.fields.map((f) => `  ${f.bits.padStart(wBits)}  ${f.name.padEnd(wName)}  ${f.value}`);
  return [head, ...lines].join("\n") + "\n";
}
