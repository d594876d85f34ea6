// SPDX-License-Identifier: GPL-2.0-only
// Whole-state checks, read straight from memory without taking steps: they run between
// operations, when nothing else is in flight.
import { touch } from "../kernel/index.js";
import { isLastSpte, isShadowPresentPte, spteToPfn } from "../spte/index.js";
import { ROLE_INVALID, leafMapping, roleLevel, type Kvm, type KvmMmuPage } from "../mmu/index.js";

/** Present leaf SPTEs per level (index level - 1) over every listed root. */
export function countPresentLeaves(kvm: Kvm): number[] {
  const counts = [0, 0, 0, 0, 0];
  const visit = (sp: KvmMmuPage): void => {
    const level = roleLevel(sp.role);
    for (let i = 0; i < 512; i++) {
      const s = sp.spt.spt[i]!;
      if (!isShadowPresentPte(s)) continue;
      if (isLastSpte(s, level)) counts[level - 1]!++;
      else {
        const child = kvm.tableAt(spteToPfn(s));
        if (child !== undefined && child.owner !== undefined) visit(child.owner as KvmMmuPage);
      }
    }
  };
  for (const root of kvm.arch.tdpMmuRoots) visit(root);
  return counts;
}

/** Problems with the page-stat counters: they must equal the present leaves per level. */
export function checkPageStats(kvm: Kvm): string[] {
  const c = countPresentLeaves(kvm);
  const out: string[] = [];
  for (let l = 1; l <= 3; l++)
    if (kvm.stat.pages[l - 1] !== c[l - 1]) out.push(`stat.pages[${l - 1}] = ${kvm.stat.pages[l - 1]} but ${c[l - 1]} present leaves at level ${l}`);
  return out;
}

/** After VM teardown nothing may remain: no table, no root, no pending free, no stat. */
export function checkNoLeaks(kvm: Kvm): string[] {
  const out: string[] = [];
  if (kvm.w.phys.liveTables !== 0) out.push(`${kvm.w.phys.liveTables} page tables never freed`);
  if (kvm.pendingFree !== 0) out.push(`${kvm.pendingFree} page tables still waiting for RCU`);
  if (kvm.arch.tdpMmuRoots.length !== 0) out.push(`${kvm.arch.tdpMmuRoots.length} roots still listed`);
  if (kvm.arch.tdpMmuPages.size !== 0) out.push(`${kvm.arch.tdpMmuPages.size} SPs still on tdp_mmu_pages`);
  if (kvm.arch.lpageDisallowedMmuPages.length !== 0) out.push(`${kvm.arch.lpageDisallowedMmuPages.length} SPs still on the NX list`);
  if (kvm.stat.pages.some((n) => n !== 0)) out.push(`page stats not zero: ${kvm.stat.pages.join(",")}`);
  if (kvm.stat.nxLpageSplits !== 0) out.push(`nx_lpage_splits = ${kvm.stat.nxLpageSplits}`);
  return out;
}

/**
 * I1, TLB coherence at hand-off: every translation a vCPU has cached is backed by its
 * root's current SPTE with at least the cached rights. Returns the first problem.
 */
export function checkTlbCoherence(kvm: Kvm): string | null {
  touch(kvm.objIds.requests, "r");
  touch(kvm.objIds.roots, "r");
  for (const v of kvm.vcpus) {
    touch(v.tlb.obj, "r");
    const root = v.root;
    // A vCPU that must process a request, or is loading a root, flushes before it next
    // enters the guest: its cached translations cannot be used.
    if (root === null || root.spt.freed || v.requests.size !== 0 || v.loadingRoot || (root.role & ROLE_INVALID) !== 0) continue;
    for (const [key, e] of v.tlb.leaves) {
      const gfn = Math.floor(key / 8) * 2 ** (9 * (e.level - 1));
      const leaf = leafMapping(kvm, root, gfn);
      const found = leaf === null ? null : leaf.spte;
      const level = leaf === null ? 1 : leaf.level;
      const what = `vCPU ${v.vcpuId} still caches gfn 0x${gfn.toString(16)} -> pfn 0x${e.pfn.toString(16)}${e.writable ? " (writable)" : ""}`;
      if (found === null) return `${what} but no SPTE maps it any more`;
      const base = spteToPfn(found) - (spteToPfn(found) % 2 ** (9 * (level - 1)));
      if (base !== e.pfn - (e.pfn % 2 ** (9 * (level - 1))) && spteToPfn(found) !== e.pfn) return `${what} but the SPTE maps pfn 0x${spteToPfn(found).toString(16)}`;
      // Dirty logging clears W but keeps MMU-writable, and flushes only after dropping the
      // lock (before its ioctl returns): that stale writable entry is allowed. Clearing
      // MMU-writable requires the flush before the lock is released.
      if (e.writable && (found & 2n) === 0n && (found & kvm.masks.shadowMmuWritableMask) === 0n)
        return `${what} but the SPTE 0x${found.toString(16)} is write-protected and not MMU-writable`;
    }
  }
  return null;
}
