// SPDX-License-Identifier: GPL-2.0-only
// The CPU side of two-dimensional paging: a per-vCPU TLB with paging-structure caches, and
// the hardware walker that reads the TDP tables, sets Accessed/Dirty bits and raises a
// nested page fault (NPF / EPT violation / EPT misconfiguration) when it cannot translate.
//
// MODEL: one translation per access, no guest paging (guest address == gpa, as in the
// oracle's harness). Caches hold what a walk used until a flush drops them, which is
// exactly what makes a missing or late flush visible: a stale entry keeps the guest on a
// frame, or on a page table, that the kernel already let go of.
import { step, touch, type Gen } from "../rt/index.js";
import type { SpteMasks } from "../spte/index.js";
import type { Table } from "./phys.js";

export type Access = "read" | "write" | "exec";

const PFERR_PRESENT_MASK = 1;
const PFERR_WRITE_MASK = 2;
const PFERR_USER_MASK = 4;
const PFERR_RSVD_MASK = 8;
const PFERR_FETCH_MASK = 16;
const PFERR_GUEST_FINAL_MASK = 2 ** 32;

export interface TlbEntry {
  /** Frame of the first 4K page of the mapping. */
  readonly pfn: number;
  readonly level: number;
  readonly writable: boolean;
  readonly exec: boolean;
  /** Dirty was set in the SPTE when the entry was filled (a write needs no walk). */
  readonly dirty: boolean;
}

const PAGES_AT = [0, 1, 512, 262144, 134217728, 68719476736];
const pagesAt = (level: number): number => PAGES_AT[level]!;
const key = (gfn: number, level: number): number => Math.floor(gfn / pagesAt(level)) * 8 + level;

/** One logical processor's TLB and paging-structure caches for the TDP tables. */
export class Tlb {
  /** `obj`: the footprint id of this TLB (see `touch`), 0 for none. */
  constructor(readonly obj = 0) {}
  readonly leaves = new Map<number, TlbEntry>();
  /** key(gfn, level) -> the table whose entries are at `level` on the way to gfn. */
  readonly tables = new Map<number, Table>();
  flushes = 0;

  lookup(gfn: number): TlbEntry | undefined {
    touch(this.obj, "r");
    for (let level = 1; level <= 3; level++) {
      const e = this.leaves.get(key(gfn, level));
      if (e !== undefined) return e;
    }
    return undefined;
  }

  /** Drop every translation (INVEPT single-context / INVLPGA all / TLB_CONTROL flush). */
  flushAll(): void {
    touch(this.obj, "w");
    this.leaves.clear();
    this.tables.clear();
    this.flushes++;
  }

  /** Drop what covers [gfn, gfn + pages): leaves in the range and every cached table. */
  flushRange(gfn: number, pages: number): void {
    touch(this.obj, "w");
    for (const [k, e] of this.leaves) {
      const base = Math.floor(k / 8) * pagesAt(e.level);
      if (base < gfn + pages && gfn < base + pagesAt(e.level)) this.leaves.delete(k);
    }
    // Paging-structure caches are dropped whole by a ranged flush, as on real hardware.
    this.tables.clear();
    this.flushes++;
  }

  drop(gfn: number): void {
    touch(this.obj, "w");
    for (let level = 1; level <= 3; level++) this.leaves.delete(key(gfn, level));
  }
}

export type WalkResult =
  | { readonly kind: "ok"; readonly pfn: number; readonly level: number; readonly viaTlb: boolean }
  | { readonly kind: "fault"; readonly errorCode: number }
  | { readonly kind: "stale-table"; readonly table: Table; readonly level: number };

/** What the walker needs from the CPU's configuration. */
export interface WalkerConfig {
  readonly masks: SpteMasks;
  /** EPTP A/D enable, or always on for NPT. */
  readonly adEnabled: boolean;
  readonly rootLevel: number;
  /** Bits that are reserved in a present entry at every level (physical address bits). */
  readonly rsvdMask: bigint;
  /** The page table in a frame (a freed one included, so stale walks are caught). */
  readonly tableAt: (pfn: number) => Table | undefined;
}

const ACCESSED_NPT = 0x20n;
const DIRTY_NPT = 0x40n;

/**
 * The hardware walk of the TDP tables for one access. Every read of an entry is a step;
 * setting Accessed/Dirty is an atomic step that restarts the walk if the entry changed.
 */
export function* hwTranslate(cfg: WalkerConfig, tlb: Tlb, root: Table, gfn: number, access: Access): Gen<WalkResult> {
  // The access itself is a step, so that one served by the TLB can still be scheduled
  // between another thread's zap and its flush.
  yield step("read", tlb.obj, "r", "TLB lookup");
  const cached = tlb.lookup(gfn);
  if (cached !== undefined) {
    const ok = access === "write" ? cached.writable && cached.dirty : access === "exec" ? cached.exec : true;
    if (ok) return { kind: "ok", pfn: cached.pfn + (gfn % pagesAt(cached.level)), level: cached.level, viaTlb: true };
    // A permission failure or a missing Dirty bit sends the CPU back to the tables, and a
    // fault on this address drops whatever was cached for it.
    tlb.drop(gfn);
  }
  const ept = cfg.masks.format !== "npt";
  const accMask = ept ? 0x100n : ACCESSED_NPT;
  const dirtyMask = ept ? 0x200n : DIRTY_NPT;
  restart: for (;;) {
    let table = root;
    let level = cfg.rootLevel;
    // Start as deep as the paging-structure caches allow.
    for (let l = 1; l < cfg.rootLevel; l++) {
      touch(tlb.obj, "r");
      const t = tlb.tables.get(tableKey(gfn, l));
      if (t !== undefined) {
        table = t;
        level = l;
        break;
      }
    }
    let w = true;
    let x = true;
    let u = true;
    let r = true;
    const used: [number, Table][] = [];
    for (;;) {
      if (table.freed) return { kind: "stale-table", table, level };
      const idx = Math.floor(gfn / pagesAt(level)) & 511;
      yield step("read", table.sptep(idx), "r", `hw walk L${level}`);
      if (table.freed) return { kind: "stale-table", table, level };
      const s = table.spt[idx]!;
      const present = ept ? (s & 7n) !== 0n : (s & 1n) !== 0n;
      if (!present) return { kind: "fault", errorCode: errorCode(access, false, false) };
      const large = level > 1 && (s & 0x80n) !== 0n;
      const rsvd = ept ? (s & 7n) === 2n || (s & 7n) === 6n : (s & cfg.rsvdMask) !== 0n || (large && level > 3);
      if (rsvd) return { kind: "fault", errorCode: errorCode(access, true, true) };
      if (ept) {
        r &&= (s & 1n) !== 0n;
        w &&= (s & 2n) !== 0n;
        x &&= (s & 4n) !== 0n;
      } else {
        w &&= (s & 2n) !== 0n;
        u &&= (s & 4n) !== 0n;
        x &&= (s & (1n << 63n)) === 0n;
      }
      const leaf = level === 1 || large;
      if (leaf) {
        const allowed = (access === "write" ? w : access === "exec" ? x : r) && u;
        if (!allowed) return { kind: "fault", errorCode: errorCode(access, true, false) };
        let want = cfg.adEnabled ? accMask : 0n;
        if (cfg.adEnabled && access === "write") want |= dirtyMask;
        if ((s & want) !== want) {
          yield step("rmw", table.sptep(idx), "w", `hw set A/D L${level}`);
          if (table.freed) return { kind: "stale-table", table, level };
          if (table.spt[idx] !== s) continue restart;
          table.spt[idx] = s | want;
        }
        const pfn = Number((s & 0x000ffffffffff000n) >> 12n);
        const dirty = !cfg.adEnabled || ((s | want) & dirtyMask) !== 0n;
        touch(tlb.obj, "w");
        tlb.leaves.set(key(gfn, level), { pfn, level, writable: w && u, exec: x && u, dirty });
        for (const [l, t] of used) tlb.tables.set(tableKey(gfn, l), t);
        return { kind: "ok", pfn: pfn + (gfn % pagesAt(level)), level, viaTlb: false };
      }
      if (cfg.adEnabled && (s & accMask) === 0n) {
        yield step("rmw", table.sptep(idx), "w", `hw set A L${level}`);
        if (table.freed) return { kind: "stale-table", table, level };
        if (table.spt[idx] !== s) continue restart;
        table.spt[idx] = s | accMask;
      }
      const child = (s & 0x000ffffffffff000n) >> 12n;
      const next = cfg.tableAt(Number(child));
      if (next === undefined) return { kind: "fault", errorCode: errorCode(access, true, true) };
      level--;
      table = next;
      used.push([level, table]);
    }
  }
}

function tableKey(gfn: number, level: number): number {
  return Math.floor(gfn / pagesAt(level + 1)) * 8 + level;
}

function errorCode(access: Access, present: boolean, rsvd: boolean): number {
  let e = PFERR_USER_MASK + PFERR_GUEST_FINAL_MASK;
  if (access === "write") e += PFERR_WRITE_MASK;
  if (access === "exec") e += PFERR_FETCH_MASK;
  if (present) e += PFERR_PRESENT_MASK;
  if (rsvd) e += PFERR_RSVD_MASK;
  return e;
}
