// SPDX-License-Identifier: GPL-2.0-only
/**
 * Footprint identities (see `touch`) for shared state that is neither a page-table entry
 * nor one of the objects numbered by `World.objId()`. Page-table entries and objIds are
 * positive, the lock-state ids of rt/step.ts lie between -2^20 and -2^23, and these below.
 * All stay within V8's small integers (-2^30 .. 2^30). Where a number could exceed its
 * range it wraps: two objects then share an id, which only makes the partial-order
 * reduction treat more steps as dependent (never fewer).
 */
const wrap = (x: number, bits: number): number => x % 2 ** bits;

export const objOf = {
  /** An address space's memslot array and generation. */
  memslots: (asId: number): number => -(2 ** 23) - wrap(asId, 4),
  /** A page allocator's pool of frames of one kind. */
  pool: (kind: number): number => -(2 ** 23) - 16 - wrap(kind, 4),
  /** A vCPU's TLB and paging-structure caches. */
  tlb: (vcpu: number): number => -(2 ** 23) - 2 ** 10 - wrap(vcpu, 10),
  /** A vCPU's mode (in guest mode or not), which kicks wait on. */
  vcpuMode: (vcpu: number): number => -(2 ** 23) - 2 ** 11 - wrap(vcpu, 10),
  /** One memslot's dirty bitmap. */
  dirtyBitmap: (asId: number, slot: number): number => -(2 ** 24) - wrap(asId * 65536 + slot, 17),
  /** A page-table page's header: 0 its root refcount, 1 its flags. */
  sp: (pfn: number, field: 0 | 1): number => -(2 ** 25) - wrap(pfn * 2 + field, 24),
  /** The host page-table entry of one 4K page of user address. */
  hostPte: (hva: number): number => -(2 ** 26) - wrap(Math.floor(hva / 4096), 26),
  /** A struct page (refcount, flags). */
  page: (pfn: number): number => -(2 ** 28) - wrap(pfn, 29),
};
