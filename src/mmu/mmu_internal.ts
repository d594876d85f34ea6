// SPDX-License-Identifier: GPL-2.0-only
// struct kvm_mmu_page, union kvm_mmu_page_role, struct kvm_page_fault and the RET_PF_*
// codes (arch/x86/kvm/mmu/mmu_internal.h, arch/x86/include/asm/kvm_host.h).
import type { Table } from "../kernel/index.js";

export const RET_PF_CONTINUE = 0;
export const RET_PF_RETRY = 1;
export const RET_PF_EMULATE = 2;
export const RET_PF_INVALID = 3;
export const RET_PF_FIXED = 4;
export const RET_PF_SPURIOUS = 5;
export const RET_PF_NAMES = ["RET_PF_CONTINUE", "RET_PF_RETRY", "RET_PF_EMULATE", "RET_PF_INVALID", "RET_PF_FIXED", "RET_PF_SPURIOUS"];

export const PFERR_PRESENT_MASK = 1;
export const PFERR_WRITE_MASK = 2;
export const PFERR_USER_MASK = 4;
export const PFERR_RSVD_MASK = 8;
export const PFERR_FETCH_MASK = 16;

/** union kvm_mmu_page_role, bit positions as GCC lays out the bitfields. */
export const ROLE_LEVEL_MASK = 0xf;
export const ROLE_DIRECT = 1 << 7;
export const ROLE_ACCESS_SHIFT = 8;
export const ROLE_INVALID = 1 << 11;
export const ROLE_EFER_NX = 1 << 12;
export const ROLE_CR0_WP = 1 << 13;
export const ROLE_AD_DISABLED = 1 << 16;
export const ROLE_GUEST_MODE = 1 << 17;
export const ROLE_SMM_SHIFT = 24;

/** MODEL: role.level, a bit field in the kernel. */
export const roleLevel = (role: number): number => role & ROLE_LEVEL_MASK;
/** MODEL: the role with another level (the kernel assigns role.level in a copy). */
export const roleWithLevel = (role: number, level: number): number => (role & ~ROLE_LEVEL_MASK) | level;
/** MODEL: role.invalid, a bit field in the kernel. */
export const roleInvalid = (role: number): boolean => (role & ROLE_INVALID) !== 0;
/** MODEL: role.ad_disabled, a bit field in the kernel. */
export const roleAdDisabled = (role: number): boolean => (role & ROLE_AD_DISABLED) !== 0;
/** MODEL: role.access, a bit field in the kernel. */
export const roleAccess = (role: number): number => (role >>> ROLE_ACCESS_SHIFT) & 7;

/** __ffs(): the lowest set bit of a non-zero mask. */
export function __ffs(mask: bigint): number {
  let i = 0;
  while (((mask >> BigInt(i)) & 1n) === 0n) i++;
  return i;
}

/** __fls(): the highest set bit of a non-zero 64-bit mask. */
export function __fls(mask: bigint): number {
  let i = 63;
  while (((mask >> BigInt(i)) & 1n) === 0n) i--;
  return i;
}
/** kvm_mmu_role_as_id() */
export const kvmMmuRoleAsId = (role: number): number => ((role >>> ROLE_SMM_SHIFT) & 0xff) !== 0 ? 1 : 0;

/** struct kvm_mmu_page, the fields the TDP MMU uses. */
export class KvmMmuPage {
  /** On tdp_mmu_roots / tdp_mmu_pages ("link" in the kernel). */
  linked = false;
  readonly tdpMmuPage = true;
  lpageDisallowed = false;
  gfn = 0;
  /** The parent SPTE slot, or null for a root: parent table and index. */
  ptep: { readonly table: Table; readonly idx: number } | null = null;
  tdpMmuRootCount = 0;
  tdpMmuScheduledRootToZap = false;
  /** Set once the page went to call_rcu(); a second free is a finding. */
  freeQueued = false;
  constructor(
    public role: number,
    readonly spt: Table,
  ) {}
}

/** kvm_mmu_page_as_id() */
export const kvmMmuPageAsId = (sp: KvmMmuPage): number => kvmMmuRoleAsId(sp.role);

/** struct kvm_page_fault */
export interface KvmPageFault {
  readonly addr: number;
  readonly errorCode: number;
  readonly prefetch: boolean;
  readonly exec: boolean;
  readonly write: boolean;
  readonly present: boolean;
  readonly rsvd: boolean;
  readonly user: boolean;
  readonly isTdp: boolean;
  readonly nxHugePageWorkaroundEnabled: boolean;
  hugePageDisallowed: boolean;
  maxLevel: number;
  reqLevel: number;
  goalLevel: number;
  gfn: number;
  slot: import("./kvm_host.js").KvmMemorySlot | null;
  mmuSeq: number;
  pfn: number;
  hva: number;
  mapWritable: boolean;
  /** MODEL: the host page reference taken by kvm_faultin_pfn(), released at the end. */
  page: import("../kernel/index.js").Page | null;
}
