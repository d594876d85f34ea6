// SPDX-License-Identifier: GPL-2.0-only
// The pre-order TDP page-table iterator and the SPTE access primitives
// (arch/x86/kvm/mmu/tdp_iter.{h,c}). Closed to new behaviour: a new walk is a new loop in
// tdp_mmu.ts, not a new mode here.
import { FALSE_NOW, STEPPED, readOnceInto, writeOnce, xchgInto, type Gen, type SpteHalves, type Table } from "../kernel/index.js";
import { isLastSpteWords, isShadowPresentPteWords, join, kvmPagesPerHpage, maskWords, spteHasVolatileBitsWords, spteToPfnWords } from "../spte/index.js";
import type { Kvm } from "./kvm_host.js";
import { kvmMmuPageAsId, roleLevel, type KvmMmuPage } from "./mmu_internal.js";


// gfns reach 40 bits, past int32. Bitwise operators take the low 32 bits of any integer
// below 2^53 exactly, so they serve where only those bits matter; elsewhere these divide
// (exactly: by a power of two). Never `%`: on such numbers it is a floating-point remainder.

/** SPTE_INDEX() on a gfn. */
export const spteIndexOfGfn = (gfn: number, level: number): number =>
  gfn <= 0xffffffff && level <= 4 ? (gfn >>> (9 * level - 9)) & 511 : Math.floor(gfn / kvmPagesPerHpage(level)) & 511;

/** round_gfn_for_level() (up to level 4 the offset is within the low 32 bits: 2^27 pages). */
export const roundGfnForLevel = (gfn: number, level: number): number => {
  const pages = kvmPagesPerHpage(level);
  return level <= 4 ? gfn - (gfn & (pages - 1)) : Math.floor(gfn / pages) * pages;
};

/** kvm_tdp_mmu_read_spte(): one atomic load, into an iterator's old_spte (or the like). */
export function kvmTdpMmuReadSpte(kvm: Kvm, t: Table, idx: number, into: SpteHalves): Gen<void> {
  return readOnceInto(kvm.w, t, idx, into);
}

// The writers take the new SPTE as its halves, `lo` and `hi` (see SpteHalves).

/** kvm_tdp_mmu_write_spte_atomic(): exchange; the value replaced goes to `into`. */
export function kvmTdpMmuWriteSpteAtomic(kvm: Kvm, t: Table, idx: number, lo: number, hi: number, into: SpteHalves): Gen<void> {
  return xchgInto(kvm.w, t, idx, lo, hi, into);
}

/** __kvm_tdp_mmu_write_spte(): a plain store. */
export function __kvmTdpMmuWriteSpte(kvm: Kvm, t: Table, idx: number, lo: number, hi: number): Gen<void> {
  return writeOnce(kvm.w, t, idx, lo, hi);
}

/**
 * kvm_tdp_mmu_write_spte(): a store, or an exchange when the old value is a leaf whose
 * Accessed/Dirty/Writable bits may change under us (hardware, fast page faults). `old`
 * holds the value the caller read and, on return, the value really replaced (the kernel
 * returns it). Not a generator itself (it hands over the one of the store it chose), so a
 * stack captured at that step does not show it.
 */
export function kvmTdpMmuWriteSpte(kvm: Kvm, t: Table, idx: number, old: SpteHalves, lo: number, hi: number, level: number): Gen<void> {
  const { oldLo, oldHi } = old;
  if (isShadowPresentPteWords(oldLo) && isLastSpteWords(oldLo, level) && spteHasVolatileBitsWords(maskWords(kvm.masks), oldLo, oldHi))
    return kvmTdpMmuWriteSpteAtomic(kvm, t, idx, lo, hi, old);
  return __kvmTdpMmuWriteSpte(kvm, t, idx, lo, hi);
}

/** spte_to_child_pt(): the table a non-leaf SPTE (given as its halves) points to, or null. */
export function spteToChildPt(kvm: Kvm, lo: number, hi: number, level: number): Table | null {
  if (!isShadowPresentPteWords(lo) || isLastSpteWords(lo, level)) return null;
  return kvm.tableAt(spteToPfnWords(lo, hi)) ?? null;
}

/**
 * struct tdp_iter
 *
 * iter->old_spte is kept as its two halves, `oldLo` and `oldHi`: walks read and test it on
 * every step, and a bigint made of each would be an allocation per step. `oldSpte` is the
 * whole value, made when asked for.
 */
export class TdpIter implements SpteHalves {
  nextLastLevelGfn = 0;
  yieldedGfn = 0;
  readonly ptPath: (Table | undefined)[] = [undefined, undefined, undefined, undefined, undefined];
  /** The table holding the current SPTE and its index: together, the kernel's sptep. */
  table!: Table;
  idx = 0;
  gfn = 0;
  rootLevel = 0;
  minLevel = 0;
  level = 0;
  asId = 0;
  oldLo = 0;
  oldHi = 0;
  valid = false;
  yielded = false;
  /** MODEL: where this walk last yielded (-1: never), for the forward-progress check. */
  lastYieldGfn = -1;

  constructor(readonly kvm: Kvm) {}

  /** iter->old_spte */
  get oldSpte(): bigint {
    return join(this.oldLo, this.oldHi);
  }

  /** MODEL: iter->sptep, the address of the current SPTE (a field in the kernel). */
  get sptep(): number {
    return this.table.sptep(this.idx);
  }

  /** tdp_iter_refresh_sptep() */
  private *refresh(): Gen<void> {
    this.table = this.ptPath[this.level - 1]!;
    this.idx = spteIndexOfGfn(this.gfn, this.level);
    yield* kvmTdpMmuReadSpte(this.kvm, this.table, this.idx, this);
  }

  /** tdp_iter_restart() */
  *tdpIterRestart(): Gen<void> {
    this.yielded = false;
    this.yieldedGfn = this.nextLastLevelGfn;
    this.level = this.rootLevel;
    this.gfn = roundGfnForLevel(this.nextLastLevelGfn, this.level);
    yield* this.refresh();
    this.valid = true;
  }

  /** tdp_iter_start() */
  *tdpIterStart(root: KvmMmuPage, minLevel: number, nextLastLevelGfn: number): Gen<void> {
    const level = roleLevel(root.role);
    if (this.kvm.w.warnOn(level < 1 || level > 5, "tdp_iter_start: bad root level")) {
      this.valid = false;
      return;
    }
    this.nextLastLevelGfn = nextLastLevelGfn;
    this.rootLevel = level;
    this.minLevel = minLevel;
    this.ptPath[level - 1] = root.spt;
    this.asId = kvmMmuPageAsId(root);
    yield* this.tdpIterRestart();
  }

  /** try_step_down(): re-read the SPTE so a table linked since arrival is followed. */
  tryStepDown(): Gen<boolean> {
    // (At the lowest level it has nothing to do: no generator for that.)
    if (this.level === this.minLevel) return FALSE_NOW;
    return this.tryStepDownReread();
  }

  /** The rest of try_step_down() (named try_step_*, so traces show the caller). */
  private *tryStepDownReread(): Gen<boolean> {
    yield* kvmTdpMmuReadSpte(this.kvm, this.table, this.idx, this);
    const child = spteToChildPt(this.kvm, this.oldLo, this.oldHi, this.level);
    if (child === null) return false;
    this.level--;
    this.ptPath[this.level - 1] = child;
    this.gfn = roundGfnForLevel(this.nextLastLevelGfn, this.level);
    yield* this.refresh();
    return true;
  }

  /** try_step_side() */
  tryStepSide(): Gen<boolean> {
    if (this.idx === 511) return FALSE_NOW;
    return this.tryStepSideRead();
  }

  /** The rest of try_step_side(): to the next sibling, and read it. */
  private *tryStepSideRead(): Gen<boolean> {
    this.toNextSibling();
    yield* kvmTdpMmuReadSpte(this.kvm, this.table, this.idx, this);
    return true;
  }

  private toNextSibling(): void {
    this.gfn += kvmPagesPerHpage(this.level);
    this.nextLastLevelGfn = this.gfn;
    this.idx++;
  }

  /** try_step_up() */
  tryStepUp(): Gen<boolean> {
    if (this.level === this.rootLevel) return FALSE_NOW;
    return this.tryStepUpRefresh();
  }

  /** The rest of try_step_up(). */
  private *tryStepUpRefresh(): Gen<boolean> {
    this.level++;
    this.gfn = roundGfnForLevel(this.gfn, this.level);
    yield* this.refresh();
    return true;
  }

  /** tdp_iter_next() */
  tdpIterNext(): Gen<void> {
    // Most calls step to the next SPTE of a table at the walk's lowest level: there
    // try_step_down() has nothing to do and try_step_side() one read, which is all this
    // takes then in the stepped build (no generator of its own, see readOnceInto()). The
    // direct build, where nothing is a generator, is faster without the shortcut.
    if (STEPPED && !this.yielded && this.level === this.minLevel && this.idx !== 511) {
      this.toNextSibling();
      return readOnceInto(this.kvm.w, this.table, this.idx, this);
    }
    return tdpIterNextInFull(this);
  }
}

/** tdp_iter_next() in full, in a function of that name (traces name it). */
const tdpIterNextInFull = function* tdpIterNext(iter: TdpIter): Gen<void> {
  // Variant iter-advance-after-yield: the pre-fix iterator stepped on from its old
  // position after a yield instead of restarting from the root.
  if (iter.yielded && !iter.kvm.variant("iter-advance-after-yield")) {
    yield* iter.tdpIterRestart();
    return;
  }
  iter.yielded = false;
  if (yield* iter.tryStepDown()) return;
  do {
    if (yield* iter.tryStepSide()) return;
  } while (yield* iter.tryStepUp());
  iter.valid = false;
};
