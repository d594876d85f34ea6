// SPDX-License-Identifier: GPL-2.0-only
/**
 * Footprint identities (see `touch`) for shared state that is neither a page-table entry
 * nor one of the objects numbered by `World.objId()`. Page-table entries are positive,
 * these negative and far below the lock-waiter ids.
 */
export const objOf = {
  /** The host page-table entry of one 4K page of user address. */
  hostPte: (hva: number): number => -(2 ** 33) - Math.floor(hva / 4096),
  /** A struct page (refcount, flags). */
  page: (pfn: number): number => -(2 ** 45) - pfn,
  /** An address space's memslot array and generation. */
  memslots: (asId: number): number => -(2 ** 47) - asId,
  /** One memslot's dirty bitmap. */
  dirtyBitmap: (asId: number, slot: number): number => -(2 ** 48) - asId * 65536 - slot,
  /** A page allocator's pool of frames of one kind. */
  pool: (kind: number): number => -(2 ** 49) - kind,
  /** A page-table page's header: 0 its root refcount, 1 its flags. */
  sp: (pfn: number, field: 0 | 1): number => -(2 ** 53) - pfn * 2 - field,
  /** A vCPU's TLB and paging-structure caches. */
  tlb: (vcpu: number): number => -(2 ** 50) - vcpu,
  /** A vCPU's mode (in guest mode or not), which kicks wait on. */
  vcpuMode: (vcpu: number): number => -(2 ** 51) - vcpu,
};
