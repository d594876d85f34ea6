// SPDX-License-Identifier: GPL-2.0-only
// rwlock_t, spinlock_t and struct mutex, with lockdep's held-lock tracking.
//
// Every acquire and release is a step. A spinlock or mutex acquire is announced as a
// blocking step: the scheduler runs it only when the lock can be taken (any waiter may
// take a released lock). An rwlock acquire is a step that queues if it must wait (below). A modelled lockdep assertion that
// fails is a finding, even though the oracle kernel compiles lockdep out: the rules are
// what the model checks.
//
// rwlock_t is x86's queued rwlock (qrwlock): a thread that cannot take the lock at once
// queues in arrival order, a reader does not overtake a writer queued before it, and the
// lock is contended (rwlock_needbreak()) exactly while somebody queues. Taking the lock is
// one step when the fast path succeeds; otherwise that step only queues, and a second
// step, enabled when the thread's turn has come, takes it.
// MODEL: the queue is joined and left atomically: the kernel's short windows between a
// failed fast path and wait_lock, and between wait_lock and the reader count, in which a
// holder that yields can take the lock straight back, are not modelled. rwlock_needbreak()
// reports contention as with CONFIG_PREEMPTION=y (Debian's 6.1 has it, PREEMPT_DYNAMIC).
import { blockingStep, lockQueueOf, lockReadersOf, lockWriterOf, step, touch, touched, type Gen } from "../rt/index.js";
import type { World } from "./world.js";

export type LockMode = "read" | "write";

interface Held {
  readonly lock: RwLock | SpinLock | Mutex;
  readonly mode: LockMode;
}

/** Per-thread held locks, for lockdep assertions and for the trace's "locks held" column. */
export class Lockdep {
  /** By thread number (small integers): an array, as assertions on every SPTE write ask it. */
  private readonly held: (Held[] | undefined)[] = [];

  acquired(thread: number, lock: Held["lock"], mode: LockMode): void {
    let h = this.held[thread];
    if (h === undefined) this.held[thread] = h = [];
    h.push({ lock, mode });
  }

  released(thread: number, lock: Held["lock"]): boolean {
    const h = this.held[thread];
    const i = h === undefined ? -1 : h.findLastIndex((x) => x.lock === lock);
    if (i < 0) return false;
    h!.splice(i, 1);
    return true;
  }

  mode(thread: number, lock: Held["lock"]): LockMode | null {
    const h = this.held[thread];
    if (h === undefined) return null;
    for (let i = h.length - 1; i >= 0; i--) if (h[i]!.lock === lock) return h[i]!.mode;
    return null;
  }

  /** "mmu_lock(W) rcu" style summary of what `thread` holds. */
  describe(thread: number): string[] {
    return (this.held[thread] ?? []).map((x) => `${x.lock.name}(${x.mode === "write" ? "W" : "R"})`);
  }
}

export class RwLock {
  readonly id: number;
  writer = -1;
  readers = 0;
  /** Threads in the slow path, oldest first: `thread * 2 + (write ? 1 : 0)`. */
  readonly queue: number[] = [];
  constructor(
    private readonly w: World,
    readonly lockdep: Lockdep,
    readonly name: string,
  ) {
    this.id = w.objId();
  }

  canRead(): boolean {
    return this.writer < 0;
  }
  canWrite(): boolean {
    return this.writer < 0 && this.readers === 0;
  }

  /**
   * May `thread` take the lock now? A queued thread takes it in turn (wait_lock hands over
   * in order): at the head of the queue, a reader once no writer holds it, a writer once
   * nobody does. A thread not in the queue (the fast path): a reader if no writer holds or
   * queues, a writer if nobody holds it and nobody queues.
   */
  mayTake(thread: number, write: boolean): boolean {
    let at = -1;
    for (let i = 0; i < this.queue.length; i++) if (this.queue[i]! >> 1 === thread) at = i;
    if (write) return (at === 0 || (at < 0 && this.queue.length === 0)) && this.canWrite();
    if (!this.canRead()) return false;
    if (at >= 0) return at === 0;
    for (const e of this.queue) if ((e & 1) === 1) return false;
    return true;
  }

  /**
   * queued_rwlock_is_contended(): is a thread other than `thread` waiting in the slow path?
   * MODEL: queued readers with no writer holding the lock or queued ahead of them count as in
   * already: in qrwlock each adds its count to the lock word before it waits, so they hold
   * the lock, one after the other, as soon as the writer lets go.
   */
  contended(thread: number): boolean {
    touch(lockQueueOf(this.id), "r");
    touch(lockWriterOf(this.id), "r");
    touch(lockReadersOf(this.id), "r");
    let writerAhead = !this.canRead();
    for (const e of this.queue) {
      const write = (e & 1) === 1;
      const waits = write ? !this.mayTake(e >> 1, true) : writerAhead;
      if (e >> 1 !== thread && waits) return true;
      if (write) writerAhead = true;
    }
    return false;
  }

  /**
   * The fast path: take the lock if nothing stands in the way, else join the queue.
   * Returns true if the caller now waits in the queue.
   */
  private arrive(write: boolean): boolean {
    const t = this.w.current;
    touch(lockWriterOf(this.id), "r");
    if (write) touch(lockReadersOf(this.id), "r");
    if (this.mayTake(t, write)) {
      touch(lockQueueOf(this.id), "r");
      return false;
    }
    this.queue.push(t * 2 + (write ? 1 : 0));
    touch(lockQueueOf(this.id), "w");
    if (touched.on) touched.lockQueued = true;
    return true;
  }

  /** The calling thread's turn has come: it leaves the queue. */
  private depart(): void {
    const t = this.w.current;
    const i = this.queue.findIndex((e) => e >> 1 === t);
    if (i >= 0) this.queue.splice(i, 1);
    touch(lockQueueOf(this.id), "w");
  }

  /** read_lock() */
  *readLock(): Gen<void> {
    const t = this.w.current;
    yield step("lock", this.id, "r", `read_lock(${this.name})`);
    if (this.arrive(false)) {
      yield blockingStep("lock", this.id, "r", `queued_read_lock_slowpath(${this.name})`, () => this.mayTake(t, false));
      this.depart();
    }
    this.takeRead();
  }

  takeRead(): void {
    const t = this.w.current;
    if (this.lockdep.mode(t, this) !== null) this.w.report("lockdep", `recursive read_lock(${this.name})`);
    if (!this.canRead()) this.w.bugOn(true, `read_lock(${this.name}) while write-held by thread ${this.writer}`);
    touch(lockReadersOf(this.id), "a");
    this.readers++;
    this.lockdep.acquired(t, this, "read");
  }

  /** read_unlock() */
  *readUnlock(): Gen<void> {
    yield step("unlock", this.id, "r", `read_unlock(${this.name})`);
    if (!this.lockdep.released(this.w.current, this) || this.readers <= 0) {
      this.w.report("lockdep", `read_unlock(${this.name}) without holding it`);
      return;
    }
    touch(lockReadersOf(this.id), "a");
    this.readers--;
  }

  /** write_lock() */
  *writeLock(): Gen<void> {
    const t = this.w.current;
    yield step("lock", this.id, "w", `write_lock(${this.name})`);
    if (this.arrive(true)) {
      yield blockingStep("lock", this.id, "w", `queued_write_lock_slowpath(${this.name})`, () => this.mayTake(t, true));
      this.depart();
    }
    this.takeWrite();
  }

  takeWrite(): void {
    const t = this.w.current;
    if (this.lockdep.mode(t, this) !== null) this.w.report("lockdep", `recursive write_lock(${this.name})`);
    if (!this.canWrite()) this.w.bugOn(true, `write_lock(${this.name}) while held`);
    touch(lockWriterOf(this.id), "w");
    this.writer = t;
    this.lockdep.acquired(t, this, "write");
  }

  /** write_unlock() */
  *writeUnlock(): Gen<void> {
    yield step("unlock", this.id, "w", `write_unlock(${this.name})`);
    if (this.writer !== this.w.current || !this.lockdep.released(this.w.current, this)) {
      this.w.report("lockdep", `write_unlock(${this.name}) by a thread that does not hold it`);
      return;
    }
    touch(lockWriterOf(this.id), "w");
    this.writer = -1;
    this.onWriteRelease?.();
  }

  /** MODEL: a checker run whenever the write lock is released (TLB coherence at hand-off). */
  onWriteRelease: (() => void) | null = null;

  /** rwlock_needbreak(): is another thread waiting for this lock? */
  needbreak(): boolean {
    return this.contended(this.w.current);
  }

  /** lockdep_assert_held_write() */
  assertHeldWrite(): void {
    if (this.lockdep.mode(this.w.current, this) !== "write")
      this.w.report("lockdep", `${this.name} must be held for write (held: ${this.heldDesc()})`);
  }

  /** lockdep_assert_held_read() */
  assertHeldRead(): void {
    if (this.lockdep.mode(this.w.current, this) !== "read")
      this.w.report("lockdep", `${this.name} must be held for read (held: ${this.heldDesc()})`);
  }

  /** lockdep_assert_held(): either mode. */
  assertHeld(): void {
    if (this.lockdep.mode(this.w.current, this) === null)
      this.w.report("lockdep", `${this.name} must be held (held: ${this.heldDesc()})`);
  }

  /** lockdep_assert_held_read/write chosen by the `shared` flag of TDP MMU helpers. */
  assertHeldShared(shared: boolean): void {
    if (shared) this.assertHeldRead();
    else this.assertHeldWrite();
  }

  private heldDesc(): string {
    const d = this.lockdep.describe(this.w.current);
    return d.length === 0 ? "nothing" : d.join(", ");
  }
}

/** spinlock_t and struct mutex: exclusive locks. */
export class SpinLock {
  readonly id: number;
  owner = -1;
  constructor(
    private readonly w: World,
    readonly lockdep: Lockdep,
    readonly name: string,
  ) {
    this.id = w.objId();
  }

  *lock(): Gen<void> {
    yield blockingStep("lock", this.id, "w", `spin_lock(${this.name})`, () => this.owner < 0);
    if (this.owner === this.w.current) this.w.report("deadlock", `${this.name} taken recursively`);
    this.owner = this.w.current;
    this.lockdep.acquired(this.w.current, this, "write");
  }

  *unlock(): Gen<void> {
    yield step("unlock", this.id, "w", `spin_unlock(${this.name})`);
    if (this.owner !== this.w.current || !this.lockdep.released(this.w.current, this)) {
      this.w.report("lockdep", `unlock of ${this.name} by a thread that does not hold it`);
      return;
    }
    this.owner = -1;
  }

  assertHeld(): void {
    if (this.owner !== this.w.current) this.w.report("lockdep", `${this.name} must be held`);
  }
}

export class Mutex extends SpinLock {}
