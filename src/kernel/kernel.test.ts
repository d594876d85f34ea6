// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import { Lockdep, Mm, Rcu, RwLock, World, cmpxchgInto, drive, readOnceInto, type MmuNotifierOps, type NotifierRange } from "./index.js";

test("rwlock: readers share, a writer excludes, lockdep knows who holds what", () => {
  const w = new World();
  const l = new RwLock(w, new Lockdep(), "mmu_lock");
  w.current = 1;
  drive(l.readLock());
  w.current = 2;
  assert.equal(l.canRead(), true);
  assert.equal(l.canWrite(), false);
  drive(l.readLock());
  l.assertHeldRead();
  l.assertHeldWrite();
  assert.deepEqual(w.findings.map((f) => f.check), ["lockdep"]);
  assert.match(w.findings[0]!.message, /must be held for write \(held: mmu_lock\(R\)\)/);
  drive(l.readUnlock());
  w.current = 1;
  drive(l.readUnlock());
  assert.equal(l.canWrite(), true);
  drive(l.writeUnlock());
  assert.match(w.findings[1]!.message, /write_unlock\(mmu_lock\) by a thread that does not hold it/);
});

test("rwlock is a queued rwlock: waiters queue in order, a reader does not pass a queued writer", () => {
  const w = new World();
  const l = new RwLock(w, new Lockdep(), "mmu_lock");
  // Start an acquisition by thread t: run its fast-path step; the slow-path step if queued.
  const arrive = (t: number, write: boolean) => {
    w.current = t;
    const g = write ? l.writeLock() : l.readLock();
    g.next(); // announce the acquisition
    const r = g.next(); // the fast path: taken (done), or queued (the slow path announced)
    return { g, queued: r.done !== true, slow: r.done === true ? null : r.value };
  };
  const finish = (t: number, a: ReturnType<typeof arrive>) => {
    w.current = t;
    assert.equal(a.slow?.enabled?.(), true, `thread ${t} may take the lock now`);
    assert.equal(a.g.next().done, true);
  };
  const r1 = arrive(1, false);
  assert.equal(r1.queued, false, "a free lock is taken on the fast path");
  const w2 = arrive(2, true);
  assert.equal(w2.queued, true, "a writer queues behind a reader");
  assert.match(w2.slow!.label, /queued_write_lock_slowpath\(mmu_lock\)/);
  assert.equal(w2.slow!.enabled!(), false);
  w.current = 1;
  assert.equal(l.needbreak(), true, "the reader holding the lock sees the queued writer");
  const r3 = arrive(3, false);
  assert.equal(r3.queued, true, "a reader does not pass a queued writer");
  w.current = 1;
  drive(l.readUnlock());
  assert.equal(r3.slow!.enabled!(), false, "the writer goes first");
  finish(2, w2);
  const r4 = arrive(4, false);
  assert.equal(r4.queued, true, "a reader arriving while a writer holds queues behind the earlier reader");
  w.current = 2;
  assert.equal(l.needbreak(), true);
  drive(l.writeUnlock());
  assert.equal(r4.slow!.enabled!(), false, "queued readers take the lock in order");
  w.current = 2;
  assert.equal(l.needbreak(), false, "a queued reader whose turn has come does not count as contention");
  finish(3, r3);
  finish(4, r4);
  assert.equal(l.readers, 2);
  assert.deepEqual(l.queue, []);
  assert.deepEqual(w.findings, []);
});

test("rcu: a callback waits for every reader that was inside when it was queued", () => {
  const w = new World();
  const rcu = new Rcu(w);
  const ran: string[] = [];
  w.current = 1;
  drive(rcu.rcuReadLock());
  w.current = 2;
  drive(rcu.rcuReadLock());
  drive(rcu.callRcu("free", () => ran.push("free")));
  drive(rcu.rcuReadUnlock());
  assert.deepEqual(ran, [], "thread 1 is still inside");
  w.current = 3;
  drive(rcu.rcuReadLock()); // a reader that started later does not delay it
  w.current = 1;
  drive(rcu.rcuReadUnlock());
  assert.deepEqual(ran, ["free"]);
  w.current = 9;
  drive(rcu.rcuReadUnlock());
  assert.equal(w.findings[0]?.check, "rcu");
});

class Recorder implements MmuNotifierOps {
  readonly log: string[] = [];
  *invalidateRangeStart(r: NotifierRange) {
    this.log.push(`start ${r.start.toString(16)}-${r.end.toString(16)}`);
  }
  *invalidateRangeEnd(r: NotifierRange) {
    this.log.push(`end ${r.start.toString(16)}-${r.end.toString(16)}`);
  }
  *changePte(a: number, pte: { writable: boolean }) {
    this.log.push(`change_pte ${a.toString(16)} ${pte.writable ? "rw" : "ro"}`);
  }
}

test("host mm: zero page on read, copy-on-write with notifiers, THP, partial madvise splits the PMD", () => {
  const w = new World();
  const mm = new Mm(w);
  const n = new Recorder();
  mm.notifiers.push(n);
  mm.mmapAnon(0x400000, 0x400000, true);
  mm.mmapAnon(0x1000000, 0x10000, false);
  // 4K VMA: a read maps the shared zero page, a write copies it under an invalidation.
  drive(mm.gup(0x1000000, false));
  assert.equal(mm.pte(0x1000000)?.page, w.pages.zeroPage);
  drive(mm.gup(0x1000000, true));
  assert.notEqual(mm.pte(0x1000000)?.page, w.pages.zeroPage);
  assert.deepEqual(n.log, ["start 1000000-1001000", "change_pte 1000000 rw", "end 1000000-1001000"]);
  // THP VMA: a write maps a 2M page at PMD level.
  n.log.length = 0;
  drive(mm.gup(0x400000, true));
  assert.equal(mm.mappingLevel(0x5ff000), 2);
  assert.deepEqual(n.log, [], "a fresh fault needs no invalidation");
  // madvise of one 4K page inside it: outer range, then the PMD split's own 2M range.
  drive(mm.madviseDontneed(0x401000, 0x1000));
  assert.deepEqual(n.log, ["start 401000-402000", "start 400000-600000", "end 400000-600000", "end 401000-402000"]);
  assert.equal(mm.pte(0x401000), undefined);
  assert.equal(mm.mappingLevel(0x402000), 1);
  const head = mm.pte(0x400000)!.page;
  assert.equal(head.free, false, "the rest of the THP stays mapped");
});

test("page allocator: FIFO reuse of freed 4K anonymous frames, LIFO for huge pages, fresh page-table frames", () => {
  const w = new World();
  const a = w.pages.allocPage("movable");
  const b = w.pages.allocPage("movable");
  w.pages.putPage(a);
  w.pages.putPage(b);
  assert.equal(w.pages.allocPage("movable").pfn, a.pfn);
  assert.equal(w.pages.allocPage("movable").pfn, b.pfn);
  const h1 = w.pages.allocHuge(9);
  const h2 = w.pages.allocHuge(9);
  assert.equal(h1.pfn % 512, 0);
  w.pages.putPage(h1);
  w.pages.putPage(h2);
  assert.equal(w.pages.allocHuge(9).pfn, h2.pfn);
  const t = w.pages.allocPage("unmovable");
  w.pages.putPage(t, "unmovable");
  assert.notEqual(w.pages.allocPage("unmovable").pfn, t.pfn);
});

test("atomics on halves: READ_ONCE into halves and try_cmpxchg64 against them see all 64 bits", () => {
  const w = new World();
  const t = w.phys.makeTable(0x1234);
  const v = 0x8000_0001_2345_6e67n;
  t.spt[5] = v;
  const into = { oldLo: 0, oldHi: 0 };
  drive(readOnceInto(w, t, 5, into));
  assert.deepEqual(into, { oldLo: 0x2345_6e67, oldHi: 0x8000_0001 | 0 });
  // Expected value differing only in the high half: no store, and the value found comes back.
  const stale = { oldLo: into.oldLo, oldHi: 1 };
  assert.equal(drive(cmpxchgInto(w, t, 5, stale, 0, 0)), false);
  assert.deepEqual(stale, into);
  assert.equal(t.spt[5], v);
  // The new value's halves land in their own halves of the word.
  assert.equal(drive(cmpxchgInto(w, t, 5, into, 0x5a0, 0x8000_0002 | 0)), true);
  assert.equal(t.spt[5], 0x8000_0002_0000_05a0n);
  assert.deepEqual(into, { oldLo: 0x2345_6e67, oldHi: 0x8000_0001 | 0 }, "on success the expected value is left as it was");
  assert.deepEqual(w.findings, []);
});
