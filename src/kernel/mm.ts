// SPDX-License-Identifier: GPL-2.0-only
// The host process's memory as KVM sees it through get_user_pages() and MMU notifiers:
// anonymous private mappings, the shared zero page, copy-on-write, transparent huge pages,
// private hugetlbfs mappings of 1G pages, and madvise(MADV_DONTNEED).
//
// MODEL: only what decides the frames and mapping sizes KVM observes. No swap, no KSM, no
// page cache, no khugepaged. A THP that is split by a partial unmap keeps all its frames
// until its last mapping is gone (the deferred split queue is not modelled).
import { touch, type Gen } from "../rt/index.js";
import { objOf } from "./footprint.js";
import { HUGE_ZERO_PFN, ZERO_PFN, type Page } from "./page_alloc.js";
import type { World } from "./world.js";

export const PAGE_SIZE = 0x1000;
export const HPAGE_PMD_SIZE = 0x200000;
const HPAGE_PMD_NR = 512;
export const HPAGE_PUD_SIZE = 0x40000000;

/**
 * One 4K host PTE (a PMD mapping is recorded as 512 entries with `pmd` set). A 1G hugetlb
 * mapping is one entry with `pud` set; `pte()` hands out a copy for each 4K of it.
 */
export interface HostPte {
  readonly page: Page;
  /** The 4K frame this entry maps. */
  readonly pfn: number;
  writable: boolean;
  pmd: boolean;
  readonly pud: boolean;
  young: boolean;
}

export interface Vma {
  readonly start: number;
  readonly end: number;
  /** MADV_HUGEPAGE (true) or MADV_NOHUGEPAGE (false). */
  readonly thp: boolean;
  /** MAP_HUGETLB with 1G pages (MAP_HUGE_1GB), private. */
  readonly hugetlb: boolean;
}

export interface NotifierRange {
  readonly start: number;
  readonly end: number;
  readonly blockable: boolean;
}

/** struct mmu_notifier_ops, the callbacks KVM registers (virt/kvm/kvm_main.c). */
export interface MmuNotifierOps {
  invalidateRangeStart(range: NotifierRange): Gen<void>;
  invalidateRangeEnd(range: NotifierRange): Gen<void>;
  changePte(address: number, pte: HostPte): Gen<void>;
}

export class Mm {
  readonly vmas: Vma[] = [];
  private readonly ptes = new Map<number, HostPte>();
  /** 1G hugetlb mappings by their 1G-aligned hva; `pfn` is the head frame. */
  private readonly puds = new Map<number, HostPte>();
  private hugetlbVmas = 0;
  notifiers: MmuNotifierOps[] = [];

  constructor(private readonly w: World) {}

  /**
   * mmap(MAP_PRIVATE | MAP_ANONYMOUS) plus the madvise that sets THP eligibility; with
   * `hugetlb`, MAP_HUGETLB | MAP_HUGE_1GB instead (start and size 1G aligned).
   */
  mmapAnon(start: number, size: number, thp: boolean, hugetlb = false): void {
    this.vmas.push({ start, end: start + size, thp: thp && !hugetlb, hugetlb });
    if (hugetlb) this.hugetlbVmas++;
  }

  findVma(hva: number): Vma | undefined {
    return this.vmas.find((v) => v.start <= hva && hva < v.end);
  }

  pte(hva: number): HostPte | undefined {
    const base = this.pudBase(hva);
    if (base >= 0) {
      // The PUD entry is the object: every 4K of it reads and writes the same entry.
      touch(objOf.hostPte(base), "r");
      const u = this.puds.get(base);
      if (u === undefined) return undefined;
      return { page: u.page, pfn: u.pfn + Math.floor((hva - base) / PAGE_SIZE), writable: u.writable, pmd: false, pud: true, young: u.young };
    }
    touch(objOf.hostPte(hva), "r");
    return this.ptes.get(Math.floor(hva / PAGE_SIZE));
  }

  /** The size of the host mapping of `hva`: 3 (PUD), 2 (PMD) or 1 (PTE); 0 if unmapped. */
  mappingLevel(hva: number): number {
    const p = this.pte(hva);
    return p === undefined ? 0 : p.pud ? 3 : p.pmd ? 2 : 1;
  }

  /** MODEL: the 1G-aligned start of `hva`'s PUD if it lies in a hugetlb mapping, else -1. */
  private pudBase(hva: number): number {
    if (this.hugetlbVmas === 0) return -1;
    const v = this.findVma(hva);
    return v !== undefined && v.hugetlb ? hva - (hva % HPAGE_PUD_SIZE) : -1;
  }

  /** get_user_page_fast_only(): a reference if the page is mapped with enough rights. */
  gupFastOnly(hva: number, write: boolean): HostPte | null {
    const p = this.pte(hva);
    if (p === undefined || (write && !p.writable)) return null;
    this.w.pages.getPage(p.page);
    return p;
  }

  /** get_user_pages(): fault the page in as needed, then take a reference. */
  *gup(hva: number, write: boolean): Gen<HostPte | null> {
    for (let tries = 0; tries < 3; tries++) {
      const p = this.gupFastOnly(hva, write);
      if (p !== null) return p;
      if (!(yield* this.handleMmFault(hva, write))) return null;
    }
    return null;
  }

  /** A store by the host process itself (the harness writing guest memory). */
  *userWrite(hva: number): Gen<boolean> {
    const p = yield* this.gup(hva, true);
    if (p === null) return false;
    const base = this.pudBase(hva);
    touch(objOf.hostPte(base >= 0 ? base : hva), "w");
    // A PUD mapping hands out copies: mark the entry itself.
    (base >= 0 ? this.puds.get(base)! : p).young = true;
    this.w.pages.putPage(p.page);
    return true;
  }

  /** handle_mm_fault(): map something at `hva` that allows the access. */
  *handleMmFault(hva: number, write: boolean): Gen<boolean> {
    const vma = this.findVma(hva);
    if (vma === undefined) return false;
    if (vma.hugetlb) return this.hugetlbFault(hva, write);
    const cur = this.pte(hva);
    if (cur === undefined) {
      const haddr = hva - (hva % HPAGE_PMD_SIZE);
      if (vma.thp && haddr >= vma.start && haddr + HPAGE_PMD_SIZE <= vma.end && this.rangeEmpty(haddr, HPAGE_PMD_NR)) {
        // do_huge_pmd_anonymous_page(): a read maps the huge zero page, a write a new THP.
        const page = write ? this.w.pages.allocHuge(9) : this.w.pages.hugeZeroPage;
        for (let i = 0; i < HPAGE_PMD_NR; i++)
          this.setPte(haddr + i * PAGE_SIZE, { page, pfn: page.pfn + i, writable: write, pmd: true, pud: false, young: true });
        return true;
      }
      // do_anonymous_page(): a read maps the shared zero page read-only.
      const page = write ? this.w.pages.allocPage("movable") : this.w.pages.zeroPage;
      this.setPte(hva, { page, pfn: page.pfn, writable: write, pmd: false, pud: false, young: true });
      return true;
    }
    if (!write || cur.writable) return true;
    if (cur.pmd) {
      // do_huge_pmd_wp_page() on the huge zero page falls back to splitting the PMD into
      // 4K zero-page entries, and the write then copies one 4K page.
      yield* this.splitHugePmd(hva);
    }
    yield* this.wpPageCopy(hva);
    return true;
  }

  /**
   * hugetlb_fault() on a private 1G mapping: a missing page is allocated (hugetlb has no
   * zero page) and mapped read-only unless the fault writes; a write to a read-only one
   * is hugetlb_wp() reusing the page, which only this mapping holds. Neither needs an
   * MMU-notifier invalidation: nothing was mapped before, or only the rights grow.
   */
  private hugetlbFault(hva: number, write: boolean): boolean {
    const base = hva - (hva % HPAGE_PUD_SIZE);
    touch(objOf.hostPte(base), "w");
    const cur = this.puds.get(base);
    if (cur === undefined) {
      const page = this.w.pages.allocHuge(18);
      this.puds.set(base, { page, pfn: page.pfn, writable: write, pmd: false, pud: true, young: true });
    } else if (write) cur.writable = true;
    return true;
  }

  /** wp_page_copy(): copy-on-write of a read-only (zero page) mapping. */
  private *wpPageCopy(hva: number): Gen<void> {
    const addr = hva - (hva % PAGE_SIZE);
    const old = this.pte(addr);
    if (old === undefined) return;
    const page = this.w.pages.allocPage("movable");
    const range = { start: addr, end: addr + PAGE_SIZE, blockable: true };
    for (const n of this.notifiers) yield* n.invalidateRangeStart(range);
    const pte: HostPte = { page, pfn: page.pfn, writable: true, pmd: false, pud: false, young: true };
    this.setPte(addr, pte);
    // set_pte_at_notify()
    for (const n of this.notifiers) yield* n.changePte(addr, pte);
    for (const n of this.notifiers) yield* n.invalidateRangeEnd(range);
    this.w.pages.putPage(old.page);
  }

  /** __split_huge_pmd(): turn a PMD mapping into 512 PTEs, under its own notifier range. */
  private *splitHugePmd(hva: number): Gen<void> {
    const haddr = hva - (hva % HPAGE_PMD_SIZE);
    const head = this.pte(haddr);
    if (head === undefined || !head.pmd) return;
    const range = { start: haddr, end: haddr + HPAGE_PMD_SIZE, blockable: true };
    for (const n of this.notifiers) yield* n.invalidateRangeStart(range);
    const zero = head.page === this.w.pages.hugeZeroPage;
    for (let i = 0; i < HPAGE_PMD_NR; i++) {
      const a = haddr + i * PAGE_SIZE;
      const p = this.pte(a);
      if (p === undefined) continue;
      if (zero) {
        this.setPte(a, { page: this.w.pages.zeroPage, pfn: ZERO_PFN, writable: false, pmd: false, pud: false, young: p.young });
      } else {
        touch(objOf.hostPte(a), "w");
        p.pmd = false;
        // Each PTE now holds its own reference on the compound page.
        if (i > 0) this.w.pages.getPage(p.page);
      }
    }
    for (const n of this.notifiers) yield* n.invalidateRangeEnd(range);
  }

  /** madvise(MADV_DONTNEED) → zap_page_range(): unmap, then free after the notifier ends. */
  *madviseDontneed(start: number, len: number): Gen<void> {
    if (this.pudBase(start) >= 0) return yield* this.hugetlbDontneed(start, len);
    const end = start + len;
    const range = { start, end, blockable: true };
    for (const n of this.notifiers) yield* n.invalidateRangeStart(range);
    const toFree: Page[] = [];
    for (let a = start; a < end; a += PAGE_SIZE) {
      const p = this.pte(a);
      if (p === undefined) continue;
      if (p.pmd) {
        const haddr = a - (a % HPAGE_PMD_SIZE);
        if (haddr >= start && haddr + HPAGE_PMD_SIZE <= end) {
          // The whole PMD goes at once.
          for (let i = 0; i < HPAGE_PMD_NR; i++) this.dropPte(haddr + i * PAGE_SIZE);
          toFree.push(p.page);
          a = haddr + HPAGE_PMD_SIZE - PAGE_SIZE;
          continue;
        }
        yield* this.splitHugePmd(a);
      }
      const q = this.pte(a);
      if (q === undefined) continue;
      this.dropPte(a);
      toFree.push(q.page);
    }
    for (const n of this.notifiers) yield* n.invalidateRangeEnd(range);
    // tlb_finish_mmu(): the gathered pages are released last.
    for (const p of toFree) this.w.pages.putPage(p);
  }

  /**
   * madvise(MADV_DONTNEED) on a hugetlb mapping: the start must be 1G aligned (the caller
   * checks) and the length is rounded up to whole 1G pages; each is unmapped, then freed
   * after the notifier ends.
   */
  private *hugetlbDontneed(start: number, len: number): Gen<void> {
    const end = start + Math.ceil(len / HPAGE_PUD_SIZE) * HPAGE_PUD_SIZE;
    const range = { start, end, blockable: true };
    for (const n of this.notifiers) yield* n.invalidateRangeStart(range);
    const toFree: Page[] = [];
    for (let a = start; a < end; a += HPAGE_PUD_SIZE) {
      touch(objOf.hostPte(a), "w");
      const u = this.puds.get(a);
      if (u === undefined) continue;
      this.puds.delete(a);
      toFree.push(u.page);
    }
    for (const n of this.notifiers) yield* n.invalidateRangeEnd(range);
    for (const p of toFree) this.w.pages.putPage(p);
  }

  private rangeEmpty(hva: number, n: number): boolean {
    for (let i = 0; i < n; i++) if (this.pte(hva + i * PAGE_SIZE) !== undefined) return false;
    return true;
  }

  private dropPte(hva: number): void {
    touch(objOf.hostPte(hva), "w");
    this.ptes.delete(Math.floor(hva / PAGE_SIZE));
  }

  private setPte(hva: number, pte: HostPte): void {
    touch(objOf.hostPte(hva), "w");
    this.ptes.set(Math.floor(hva / PAGE_SIZE), pte);
  }
}

export const isZeroPfn = (pfn: number): boolean =>
  pfn === ZERO_PFN || (pfn >= HUGE_ZERO_PFN && pfn < HUGE_ZERO_PFN + HPAGE_PMD_NR);
