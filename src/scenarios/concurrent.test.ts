// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { explore, runOnce, type Execution } from "../explore/index.js";
import { ScenarioJsonError, instantiate, makeProgram, parseScenario } from "./index.js";
import { stateLines } from "./state-lines.js";
import { leafMapping } from "../mmu/index.js";
import { isWritablePte, spteToPfn } from "../spte/index.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const seedFile = path.join(root, "scenarios/seed-notifier-vs-fault.json");
const seedText = fs.readFileSync(seedFile, "utf8");
const opts = { strategy: "dpor" as const, preemptions: 2, por: false, seed: 1, maxSchedules: 2000, maxSteps: 20000, budgetMs: 1e12, pctDepth: 3, now: () => 0 };

test("seed: with zap-under-read-lock a fault reinstalls an SPTE the notifier just zapped", () => {
  const sc = parseScenario("seed.json", seedText, ["zap-under-read-lock"]);
  const r = explore(makeProgram(sc) as unknown as () => Execution, opts);
  assert.equal(r.violation?.check, "zap-post");
  assert.match(r.violation!.message, /installed for gfn 0x11 \(L1\) inside \[0x10, 0x12\)/);
  assert.equal(r.preemptions, 1);
  // Replay of the found schedule gives the same violation, step for step.
  const again = runOnce(makeProgram(sc) as unknown as () => Execution, { maxSteps: 20000, choose: (_e, _p, d) => r.schedule[d]! });
  assert.deepEqual(again.violation, r.violation);
  assert.deepEqual(again.schedule, r.schedule);
});

test("seed: faithful 6.1.192 is clean for every interleaving up to two preemptions", () => {
  const sc = parseScenario("seed.json", seedText);
  const r = explore(makeProgram(sc) as unknown as () => Execution, opts);
  assert.equal(r.violation, null);
  assert.equal(r.complete, true);
});

test("seed: the host-uaf consequence shows without the zap-post check", () => {
  const j = JSON.parse(seedText) as Record<string, unknown>;
  j["checks"] = ["host-uaf", "rcu", "lockdep", "bug"];
  // The guest must touch the page after the host freed it: one more access by the vCPU,
  // after the host's madvise finished (a second preemption).
  const threads = j["threads"] as { ops: unknown[] }[];
  threads[0]!.ops.push({ op: "access", vcpu: 0, gpa: "0x11000", write: false });
  const sc2 = parseScenario("seed.json", JSON.stringify(j), ["zap-under-read-lock"]);
  const r = explore(makeProgram(sc2) as unknown as () => Execution, opts);
  assert.equal(r.preemptions, 2);
  assert.equal(r.violation?.check, "host-uaf");
  assert.match(r.violation!.message, /after the host freed it/);
});

function jsonError(text: string): string {
  try {
    parseScenario("s.json", text);
  } catch (e) {
    assert.ok(e instanceof ScenarioJsonError);
    return e.message;
  }
  assert.fail("expected a ScenarioJsonError");
}

test("bad scenarios are rejected naming the JSON path", () => {
  const ok = JSON.parse(seedText) as { threads: { name?: string; ops: Record<string, unknown>[] }[]; vm: Record<string, unknown> };
  const edit = (f: (j: typeof ok) => void): string => {
    const j = structuredClone(ok);
    f(j);
    return JSON.stringify(j);
  };
  assert.equal(jsonError("{"), "s.json: $: not JSON (Expected property name or '}' in JSON at position 1)");
  assert.equal(jsonError(edit((j) => (j.threads[1]!.ops[0]!["op"] = "frob"))), "s.json: $.threads[1].ops[0].op: expected one of access, madvise, host_write, zap_gfn_range, zap_all_fast, memslot, dirty_log, nx_recover, age_gfn_range, test_age_gfn, split_huge_pages, zap_collapsible, flush_tlb, got 'frob'");
  assert.equal(jsonError(edit((j) => (j.threads[1]!.ops[0]!["offset"] = "0x10001"))), "s.json: $.threads[1].ops[0].offset: not page aligned");
  assert.equal(jsonError(edit((j) => (j.threads[0]!.ops[0]!["colour"] = 1))), "s.json: $.threads[0].ops[0].colour: unknown field (allowed: op, vcpu, gpa, write, exec)");
  assert.equal(jsonError(edit((j) => delete j.threads[0]!.ops[0]!["gpa"])), "s.json: $.threads[0].ops[0].gpa: missing field");
  assert.equal(
    jsonError(edit((j) => j.threads.push({ name: "again", ops: [{ op: "access", vcpu: 0, gpa: "0x12000" }] }))),
    "s.json: $.threads[2].ops[0].vcpu: vCPU 0 already runs in thread vcpu0 (a vCPU runs in one thread: KVM_RUN holds vcpu->mutex)",
  );
  assert.equal(jsonError(edit((j) => (j.vm["levels"] = 3))), "s.json: $.vm.levels: expected 4 or 5");
  assert.equal(
    jsonError(edit((j) => ((j.vm["memslots"] as Record<string, unknown>[])[0]!["backing"] = "1g"))),
    "s.json: $.vm.memslots[0].size: a 1g (hugetlbfs) backing is one whole 1 GiB page: size must be 0x40000000",
  );
  assert.equal(
    jsonError(edit((j) => ((j.vm["memslots"] as Record<string, unknown>[])[0]!["size"] = "0x80000000"))),
    "s.json: $.vm.memslots[0].size: at most 1 GiB (0x40000000) per memslot",
  );
  assert.equal(
    jsonError(
      edit((j) => {
        Object.assign((j.vm["memslots"] as Record<string, unknown>[])[0]!, { backing: "1g", size: "0x40000000" });
      }),
    ),
    "s.json: $.threads[1].ops[0].offset: must be 1 GiB aligned in a 1g (hugetlbfs) memslot",
  );
  assert.equal(jsonError(edit((j) => (j.threads[0]!.ops[0]!["gpa"] = "zz"))), 's.json: $.threads[0].ops[0].gpa: expected a non-negative integer or a hex string, got "zz"');
});

// 1G hugetlbfs backing: a private MAP_HUGETLB mapping of one 1 GiB page.
const hugetlbScenario = (setup: unknown[], threads: unknown[] = [{ name: "idle", ops: [{ op: "flush_tlb" }] }]): string =>
  JSON.stringify({
    name: "hugetlb",
    vm: { format: "npt", levels: 4, memslots: [{ slot: 0, gpa: "0x40000000", size: "0x40000000", backing: "1g" }], vcpus: 1 },
    setup,
    threads,
    checks: ["all"],
  });

test("1g backing: a read maps a read-only 1G leaf of a fresh huge page, a write then makes it writable in place", () => {
  const leafAfter = (setup: unknown[]): { level: number; pfn: number; writable: boolean; mapped: number } => {
    const ex = makeProgram(parseScenario("h.json", hugetlbScenario(setup)))();
    const { kvm } = ex.instance;
    const vcpu = kvm.vcpus[0]!;
    const leaf = leafMapping(kvm, vcpu.root!, 0x40012)!;
    return { level: leaf.level, pfn: spteToPfn(leaf.spte), writable: isWritablePte(leaf.spte), mapped: kvm.mm.mappingLevel(0x7f0000012000) };
  };
  const read = leafAfter([{ op: "access", vcpu: 0, gpa: "0x40012000" }]);
  assert.equal(read.level, 3);
  assert.equal(read.writable, false);
  assert.equal(read.mapped, 3);
  assert.equal(read.pfn % 0x40000, 0, "a 1G leaf maps the head frame of a 1G page");
  const written = leafAfter([
    { op: "access", vcpu: 0, gpa: "0x40012000" },
    { op: "access", vcpu: 0, gpa: "0x40345000", write: true },
  ]);
  assert.equal(written.level, 3);
  assert.equal(written.writable, true);
  assert.equal(written.pfn, read.pfn, "hugetlb_wp() reuses the page: no copy");
});

test("1g backing: madvise() of the page zaps the 1G leaf and frees it; the seed race shows on 1G pages too", () => {
  // The setup reads, so the vCPU's write faults (the 1G page is mapped read-only first).
  const text = hugetlbScenario(
    [{ op: "access", vcpu: 0, gpa: "0x40010000" }],
    [
      { name: "vcpu0", ops: [{ op: "access", vcpu: 0, gpa: "0x40011000", write: true }] },
      { name: "host", ops: [{ op: "madvise", slot: 0, offset: "0x0", size: "0x1000" }] },
    ],
  );
  const clean = explore(makeProgram(parseScenario("h.json", text)) as unknown as () => Execution, opts);
  assert.equal(clean.violation, null, clean.violation?.message);
  assert.equal(clean.complete, true);
  const racy = explore(makeProgram(parseScenario("h.json", text, ["zap-under-read-lock"])) as unknown as () => Execution, opts);
  assert.equal(racy.violation?.check, "zap-post");
  assert.match(racy.violation!.message, /\(L3\)/);
  // Sequentially: after the madvise the 1G page is free and nothing maps it.
  const ex = makeProgram(parseScenario("h.json", hugetlbScenario([{ op: "access", vcpu: 0, gpa: "0x40010000", write: true }, { op: "madvise", slot: 0, offset: "0x0", size: "0x1000" }])))();
  const { kvm } = ex.instance;
  assert.equal(leafMapping(kvm, kvm.vcpus[0]!.root!, 0x40010), null);
  assert.equal(kvm.mm.mappingLevel(0x7f0000010000), 0);
});

test("the leak verdict is worked out once per final state and given again for the same state", () => {
  const file = path.join(root, "scenarios/zap-all-skips-straddling-nonleaf.json");
  const text = fs.readFileSync(file, "utf8");
  for (const [variants, want] of [[["zap-all-skips-straddling-nonleaf"], "leaks"], [[], null]] as const) {
    const make = makeProgram(parseScenario(file, text, variants));
    const made: ReturnType<typeof make>[] = [];
    const program = (): Execution => {
      const ex = make();
      made.push(ex);
      return ex as unknown as Execution;
    };
    const runs = [0, 1].map(() => runOnce(program, { maxSteps: 50_000, choose: (e, prev) => (e.includes(prev) ? prev : e[0]!) }));
    assert.equal(runs[0]!.violation?.check ?? null, want);
    assert.deepEqual(runs[1]!.violation, runs[0]!.violation);
    // The first run tore its VM down (no roots left); the second, ending in the same state,
    // was given the verdict without a teardown.
    assert.equal(made[0]!.instance.kvm.arch.tdpMmuRoots.length, 0);
    assert.ok(made[1]!.instance.kvm.arch.tdpMmuRoots.length > 0);
  }
});

test("each execution starts from a copy of one set-up host: equal to a fresh one, sharing nothing", () => {
  const file = path.join(root, "scenarios/seed-proof-3vcpu.json");
  const sc = parseScenario(file, fs.readFileSync(file, "utf8"));
  const make = makeProgram(sc);
  const a = make();
  const b = make();
  const fresh = instantiate(sc);
  const lines = (i: typeof fresh) => stateLines(i);
  assert.deepEqual(lines(a.instance), lines(fresh));
  assert.deepEqual(lines(b.instance), lines(fresh));
  // Page tables of their own, in shared memory.
  const rootA = a.instance.kvm.vcpus[0]!.root!.spt;
  const rootB = b.instance.kvm.vcpus[0]!.root!.spt;
  assert.notEqual(rootA, rootB);
  assert.ok(rootA.spt.buffer instanceof SharedArrayBuffer);
  const old = rootB.spt[0]!;
  rootA.spt[0] = old ^ 1n;
  assert.equal(rootB.spt[0], old);
  assert.equal(a.instance.w.phys.table(rootA.pfn), rootA, "the copy's tables are its own host's");
  // A run changes its copy only: the next execution starts from the same state.
  runOnce(() => make() as unknown as Execution, { maxSteps: 50_000, choose: (e) => e[0]! });
  assert.deepEqual(lines(make().instance), lines(fresh));
});
