// SPDX-License-Identifier: GPL-2.0-only
// The host's page allocator and struct page, reduced to what decides which frame a guest
// page or a page table ends up in.
//
// MODEL: what the oracle traces show of the host allocator. Freed 4K anonymous frames come
// back first-in first-out. A freed huge page is the next one handed out (last in, first
// out). Freed page-table frames are never seen again: the host kernel's own unmovable
// allocations take them first, so a new table always gets a fresh frame. Page tables
// (unmovable) and anonymous memory (movable) never share frames, as on the per-CPU lists
// of the real allocator, and huge pages are never assembled from freed 4K frames. Each
// thread takes fresh page-table frames from a range of its own (as from a per-CPU list), so
// allocations by different threads commute.
import { touch } from "../rt/index.js";
import { objOf } from "./footprint.js";
/** Frames per entry of PageAllocator.runs (a power of two: a frame's place in its run is
 * `pfn & (RUN - 1)`, where `%` on a double would be a floating-point remainder). */
const RUN = 512;
/**
 * The key of `pfn`'s run. Every frame the allocator hands out is below 2^31, where a shift
 * gives the key as a small integer, which a Map looks up twice as fast as the same value
 * computed as a floating-point number; others (a pfn read from a corrupt SPTE) divide.
 */
const runOf = (pfn: number): number => (pfn >= 0 && pfn < 0x80000000 ? pfn >>> 9 : Math.floor(pfn / RUN));
/** Fresh page-table frames per thread. */
const UNMOVABLE_STRIDE = 0x4000;
const UNMOVABLE_THREADS = 32;

export type MigrateType = "unmovable" | "movable";

/** struct page: the head page stands for the whole compound page. */
export class Page {
  refcount = 0;
  dirty = false;
  accessed = false;
  /** Bumped at every allocation of this frame, so a stale user can be told apart. */
  epoch = 0;
  free = true;
  constructor(
    readonly pfn: number,
    readonly order: number,
  ) {}

  get nrPages(): number {
    return 1 << this.order;
  }
}

const UNMOVABLE_BASE = 0x10000;
const MOVABLE_BASE = 0x100000;
const HUGE_2M_BASE = 0x400000;
const HUGE_1G_BASE = 0x4000000;
export const ZERO_PFN = 0x2a00;
export const HUGE_ZERO_PFN = 0x3e00;

export class PageAllocator {
  /**
   * The struct pages made so far, by frame, in runs of 512 frames (one 2M extent): a lookup
   * is a get in a small map plus an index, where one map of every frame would cost a few
   * cache misses at each of the hundreds of thousands of pages a large VM maps.
   */
  private readonly runs = new Map<number, (Page | undefined)[]>();
  private readonly freeLists: Record<MigrateType, number[]> = { unmovable: [], movable: [] };
  private readonly freeHuge: number[][] = [[], [], []];
  private nextMovable = MOVABLE_BASE;
  /** Per thread: the next fresh page-table frame. */
  private readonly nextUnmovable: number[] = [];
  private nextHuge = [0, HUGE_2M_BASE, HUGE_1G_BASE];
  /** Frames currently allocated (4K frames, huge pages counted in frames). */
  allocated = 0;

  readonly zeroPage: Page;
  readonly hugeZeroPage: Page;

  /** `cpu.current`: the running thread, whose own range page tables come from. */
  constructor(private readonly cpu: { readonly current: number } = { current: 0 }) {
    this.zeroPage = this.reserve(ZERO_PFN, 0);
    this.hugeZeroPage = this.reserve(HUGE_ZERO_PFN, 9);
  }

  private reserve(pfn: number, order: number): Page {
    const p = new Page(pfn, order);
    p.free = false;
    p.refcount = 1;
    this.setPage(pfn, p);
    return p;
  }

  /**
   * The run last found, and its key: a cache, as lookups come in streaks of nearby frames (a
   * zap frees a table's 512 pages in order). Runs are never removed, so it never goes stale.
   * Not state: scenarios/state-lines.ts leaves these two fields out.
   */
  private lastRunKey = NaN;
  private lastRun: (Page | undefined)[] | undefined = undefined;

  private page(pfn: number): Page | undefined {
    const key = runOf(pfn);
    if (key === this.lastRunKey) return this.lastRun![pfn & (RUN - 1)];
    const run = this.runs.get(key);
    if (run === undefined) return undefined;
    this.lastRunKey = key;
    this.lastRun = run;
    return run[pfn & (RUN - 1)];
  }

  private setPage(pfn: number, p: Page): void {
    const key = runOf(pfn);
    let run = this.runs.get(key);
    if (run === undefined) {
      run = new Array<Page | undefined>(RUN).fill(undefined);
      this.runs.set(key, run);
    }
    run[pfn & (RUN - 1)] = p;
  }

  /** alloc_page(): one 4K frame with refcount 1. */
  allocPage(mt: MigrateType): Page {
    if (mt === "unmovable") {
      const t = this.cpu.current % UNMOVABLE_THREADS;
      const pfn = this.nextUnmovable[t] ?? UNMOVABLE_BASE + t * UNMOVABLE_STRIDE;
      this.nextUnmovable[t] = pfn + 1;
      return this.hand(pfn, 0);
    }
    touch(objOf.pool(0), "w");
    let pfn = this.freeLists[mt].shift();
    if (pfn === undefined) pfn = this.nextMovable++;
    return this.hand(pfn, 0);
  }

  /** A compound page of 2^order frames (order 9 = 2M, 18 = 1G), naturally aligned. */
  allocHuge(order: 9 | 18): Page {
    const idx = order === 9 ? 1 : 2;
    touch(objOf.pool(idx), "w");
    let pfn = this.freeHuge[idx]!.pop();
    if (pfn === undefined) {
      pfn = this.nextHuge[idx]!;
      this.nextHuge[idx] = pfn + (1 << order);
    }
    return this.hand(pfn, order);
  }

  private hand(pfn: number, order: number): Page {
    let p = this.page(pfn);
    if (p === undefined || p.order !== order) {
      p = new Page(pfn, order);
      this.setPage(pfn, p);
    }
    touch(objOf.page(pfn), "w");
    p.free = false;
    p.refcount = 1;
    p.dirty = false;
    p.accessed = false;
    p.epoch++;
    this.allocated += 1 << order;
    return p;
  }

  /** The struct page of a frame: for a frame inside a compound page, its head. */
  pfnToPage(pfn: number): Page | undefined {
    const p = this.page(pfn);
    if (p !== undefined) return p;
    for (let order = 9; order <= 18; order += 9) {
      const head = this.page(pfn - (pfn % (1 << order)));
      if (head !== undefined && head.order === order) return head;
    }
    return undefined;
  }

  getPage(p: Page): void {
    if (p.free) throw new Error(`get_page on free frame 0x${p.pfn.toString(16)}`);
    touch(objOf.page(p.pfn), "a");
    p.refcount++;
  }

  /** put_page(): the last reference frees the frame. Returns true if it was freed. */
  putPage(p: Page, mt: MigrateType = "movable"): boolean {
    if (p === this.zeroPage || p === this.hugeZeroPage) return false;
    if (p.free || p.refcount <= 0) throw new Error(`put_page on free frame 0x${p.pfn.toString(16)}`);
    if (--p.refcount > 0) {
      touch(objOf.page(p.pfn), "a");
      return false;
    }
    touch(objOf.page(p.pfn), "w");
    touch(objOf.pool(p.order === 0 ? 0 : p.order === 9 ? 1 : 2), "w");
    p.free = true;
    this.allocated -= p.nrPages;
    if (p.order === 0) {
      if (mt === "movable") this.freeLists[mt].push(p.pfn);
    }
    else this.freeHuge[p.order === 9 ? 1 : 2]!.push(p.pfn);
    return true;
  }
}
