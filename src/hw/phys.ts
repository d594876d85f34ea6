// SPDX-License-Identifier: GPL-2.0-only
// Host physical memory, as far as the model needs it: frame identities and their life
// cycle, and the contents of the frames that hold TDP page tables.
//
// Page-table contents live in SharedArrayBuffers so that a later runtime on worker
// threads can share them. Guest data pages have no contents here: the TDP MMU never looks
// inside them, only at which frame a gfn maps to and whether that frame is still owned.
//
// MODEL: a frame is 4 KiB; huge pages are runs of 512 (2M) or 262144 (1G) aligned frames.

import { COPY, type Copier } from "../base/index.js";

export const SPTES_PER_TABLE = 512;
// Table storage is cut from chunks of shared memory. The first chunk of a host is small (the
// explorer builds a fresh host for every schedule); each further one is twice as large, up to
// 2 MiB, so that a large VM does not pay for hundreds of small SharedArrayBuffers.
const FIRST_CHUNK_TABLES = 8;
const MAX_CHUNK_TABLES = 512;
/** Entries of PhysMem's cache of tables looked up lately (a power of two). */
const RECENT = 64;

/**
 * Chunks of hosts that were released (see PhysMem.release()), for the next host to cut
 * tables from: allocating a SharedArrayBuffer costs tens of microseconds and puts pressure
 * on the collector, which for the explorer, building a host per schedule, adds up.
 */
const spareChunks: BigUint64Array[] = [];
const MAX_SPARE_CHUNKS = 64;

/** Poison written into a freed page table, so a stale walk reads garbage, not zeros. */
export const POISON_SPTE = 0xdead4ead_dead4eadn;

export type FrameUse = "free" | "pt" | "anon" | "zero" | "kernel";

/** A page-table page: 512 SPTEs in shared memory. `owner` is whatever the kernel hangs on it. */
export class Table<Owner = unknown> {
  freed = false;
  owner: Owner | undefined = undefined;
  /**
   * The same 512 SPTEs as 1024 32-bit halves (SPTE i at 2i + LO_HALF and 2i + HI_HALF, from spte), for
   * walks that test an SPTE without making a bigint of it. A second view, not more state.
   */
  readonly spt32: Uint32Array;
  /** The host memory it belongs to (for copies: see PhysMem[COPY]). */
  readonly #mem: PhysMem;
  constructor(
    readonly pfn: number,
    readonly spt: BigUint64Array,
    mem: PhysMem,
  ) {
    this.spt32 = new Uint32Array(spt.buffer, spt.byteOffset, 2 * SPTES_PER_TABLE);
    this.#mem = mem;
  }

  /** A table is copied with its host memory, which copies all its tables. */
  [COPY](c: Copier): Table<Owner> {
    c.copy(this.#mem);
    return c.copies.get(this) as Table<Owner>;
  }

  /** The address of entry `idx`, as the kernel's sptep: one number per SPTE slot. */
  sptep(idx: number): number {
    return this.pfn * SPTES_PER_TABLE + idx;
  }
}

export class PhysMem {
  private readonly tables = new Map<number, Table>();
  // Where table storage comes from: not part of the modelled state (every word of it is
  // reachable through `tables` or `poisoned`), so kept in private fields that state walks
  // (scenarios/state-lines.ts) do not see.
  #chunk: BigUint64Array | null = null;
  /** Tables cut from #chunk so far, and how many it holds. */
  #chunkUsed = 0;
  #chunkTables = 0;
  /** The size of the next chunk this host makes, in tables. */
  #nextChunkTables = FIRST_CHUNK_TABLES;
  /** Recycled table storage (from freed tables), reused before a new chunk is cut. */
  readonly #spareStorage: BigUint64Array[] = [];
  /** Every chunk this host cut tables from. */
  readonly #chunks: BigUint64Array[] = [];
  #released = false;
  /**
   * Tables looked up lately, by the low bits of their pfn: a cache in front of `tables`, as
   * every walk looks up the same few tables on its way down. Not state (a private field).
   */
  readonly #recent: (Table | undefined)[] = new Array<Table | undefined>(RECENT).fill(undefined);

  /** Back frame `pfn` with page-table storage (zero-filled). */
  makeTable(pfn: number): Table {
    const t = new Table(pfn, this.storage(), this);
    // Not entered into #recent: its first lookup takes the miss path, so that path runs in
    // every walk that links a table, and the JIT compiles it with the rest instead of
    // throwing the walk's optimized code away when a rare slot collision first takes it.
    this.tables.set(pfn, t);
    return t;
  }

  /** Zero-filled storage for one table. */
  private storage(): BigUint64Array {
    if (this.#released) throw new Error("PhysMem: a table made after release()");
    let spt = this.#spareStorage.pop();
    if (spt === undefined) {
      if (this.#chunk === null || this.#chunkUsed === this.#chunkTables) {
        let chunk = spareChunks.pop();
        if (chunk !== undefined) chunk.fill(0n);
        else {
          chunk = new BigUint64Array(new SharedArrayBuffer(this.#nextChunkTables * SPTES_PER_TABLE * 8));
          this.#nextChunkTables = Math.min(2 * this.#nextChunkTables, MAX_CHUNK_TABLES);
        }
        this.#chunk = chunk;
        this.#chunks.push(chunk);
        this.#chunkUsed = 0;
        this.#chunkTables = chunk.length / SPTES_PER_TABLE;
      }
      spt = this.#chunk.subarray(this.#chunkUsed * SPTES_PER_TABLE, (this.#chunkUsed + 1) * SPTES_PER_TABLE);
      this.#chunkUsed++;
    } else {
      spt.fill(0n);
    }
    return spt;
  }

  /** A copy with storage of its own for every table, live or poisoned (see Copier). */
  [COPY](c: Copier): PhysMem {
    const p = c.made(this, new PhysMem());
    const copyOf = (t: Table): Table => {
      const u = c.made(t, new Table(t.pfn, p.storage(), p));
      u.spt.set(t.spt);
      u.freed = t.freed;
      u.owner = c.copy(t.owner);
      return u;
    };
    for (const [pfn, t] of this.tables) p.tables.set(pfn, copyOf(t));
    for (const [pfn, t] of this.poisoned) p.poisoned.set(pfn, copyOf(t));
    return p;
  }

  /** The table in frame `pfn`, freed or not; undefined if the frame never held one. */
  table(pfn: number): Table | undefined {
    const slot = pfn & (RECENT - 1);
    const t = this.#recent[slot];
    // A live table of this host in frame `pfn` is the one `tables` holds for it.
    if (t !== undefined && t.pfn === pfn && !t.freed) return t;
    const u = this.tables.get(pfn);
    if (u !== undefined) this.#recent[slot] = u;
    return u;
  }

  /** The frame stops being a page table: poison it and keep the object so stale users are caught. */
  freeTable(t: Table): void {
    t.freed = true;
    t.spt.fill(POISON_SPTE);
    this.tables.delete(t.pfn);
    this.poisoned.set(t.pfn, t);
  }

  /** Tables freed earlier whose frames have not been reused, for use-after-free reports. */
  readonly poisoned = new Map<number, Table>();

  /** A freed table's frame is reused: its storage can be recycled. */
  forgetPoisoned(pfn: number): void {
    const t = this.poisoned.get(pfn);
    if (t !== undefined) {
      this.poisoned.delete(pfn);
      this.#spareStorage.push(t.spt);
    }
  }

  get liveTables(): number {
    return this.tables.size;
  }

  /**
   * This host is done with: its table storage goes to the next host made. Its tables must
   * not be read or written after this (their words will belong to another host).
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const c of this.#chunks) if (spareChunks.length < MAX_SPARE_CHUNKS) spareChunks.push(c);
    this.#chunks.length = 0;
    this.#spareStorage.length = 0;
    this.#chunk = null;
  }
}
