// SPDX-License-Identifier: GPL-2.0-only
// The partial-order reduction trusts the footprints the model declares. Check them by
// experiment on every bundled scenario, with and without its variant: steps treated as
// commuting, swapped, must leave the whole host state (page tables, host mm, allocator,
// TLBs, locks, lists) and both threads' next steps the same.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { auditCommutation, dpor, explore, type Execution } from "../explore/index.js";
import { makeProgram, parseScenario, VARIANTS } from "./index.js";
import { stateDigest } from "./state-lines.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const full = process.env.ZOO_FULL === "1";

for (const f of fs.readdirSync(path.join(root, "scenarios")).filter((x) => x.endsWith(".json")).sort()) {
  const file = path.join(root, "scenarios", f);
  const name = path.basename(f, ".json");
  const variant = name.startsWith("seed-") ? "zap-under-read-lock" : VARIANTS[name] !== undefined ? name : null;
  for (const variants of variant === null ? [[]] : [[], [variant]]) {
    test(`footprints: steps treated as commuting commute on ${name}${variants.length > 0 ? ` with ${variants[0]}` : ""}`, () => {
      const sc = parseScenario(file, fs.readFileSync(file, "utf8"), variants);
      const findings = auditCommutation(makeProgram(sc) as unknown as () => Execution, {
        seed: 3,
        runs: full ? 60 : 4,
        pairsPerRun: full ? 10 : 4,
        maxSteps: 50_000,
      });
      assert.deepEqual(
        findings.map((x) => `${x.first} || ${x.second}: ${x.why}`),
        [],
      );
    });
  }
}

// The reduction on the real model: every final state (the whole host state when all
// threads are done) that the unreduced search reaches with up to two preemptions is also
// reached by the partial-order reduction, which runs far fewer schedules.
for (const name of ["seed-notifier-vs-fault", "iter-advance-after-yield", "yield-no-forward-progress", "nonatomic-write-drops-ad", "yield-drops-pending-flush"]) {
  test(`reduction: ${name} reaches every final state that all interleavings with up to 2 preemptions reach`, () => {
    const file = path.join(root, "scenarios", `${name}.json`);
    const sc = parseScenario(file, fs.readFileSync(file, "utf8"));
    const finals = (into: Set<string>) => () => {
      const ex = makeProgram(sc);
      const e = ex();
      return { ...e, atEnd: () => (into.add(e.stateLines().join("\n")), e.atEnd()) } as unknown as Execution;
    };
    const bounded = new Set<string>();
    const all = explore(finals(bounded), {
      strategy: "dpor", preemptions: 2, por: false, seed: 1, maxSchedules: 20_000, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0,
    });
    assert.equal(all.complete, true);
    const reduced = new Set<string>();
    const d = dpor(finals(reduced), { maxSteps: 50_000, overBudget: () => false });
    assert.equal(d.complete, true);
    assert.ok(d.schedules < all.schedules, `${d.schedules} < ${all.schedules}`);
    const missing = [...bounded].filter((x) => !reduced.has(x));
    assert.equal(missing.length, 0, `${missing.length} of ${bounded.size} final states not reached by the reduction`);
  });
}

// The leak check's memo keys final states by stateDigest(): it must tell apart exactly the
// states that stateLines() tells apart.
test("stateDigest() is equal exactly when stateLines() is, over the final states of a bounded search", () => {
  const file = path.join(root, "scenarios", "seed-notifier-vs-fault-2vcpu.json");
  const sc = parseScenario(file, fs.readFileSync(file, "utf8"));
  const byLines = new Map<string, string>();
  const byDigest = new Map<string, string>();
  const program = () => {
    const e = makeProgram(sc)();
    return {
      ...e,
      atEnd: () => {
        const lines = e.stateLines().join("\n");
        const digest = stateDigest(e.instance);
        assert.equal(byLines.get(lines) ?? digest, digest, "equal states, different digests");
        assert.equal(byDigest.get(digest) ?? lines, lines, "different states, equal digests");
        byLines.set(lines, digest);
        byDigest.set(digest, lines);
        return e.atEnd();
      },
    } as unknown as Execution;
  };
  explore(program, { strategy: "dpor", preemptions: 1, por: false, seed: 1, maxSchedules: 2000, maxSteps: 50_000, budgetMs: 1e12, pctDepth: 3, now: () => 0 });
  assert.ok(byLines.size >= 5, `${byLines.size} distinct final states`);
  // One SPTE changed, and changed back.
  const inst = makeProgram(sc)().instance;
  const spt = inst.kvm.vcpus[0]!.root!.spt.spt;
  const before = stateDigest(inst);
  const old = spt[0]!;
  spt[0] = old ^ (1n << 62n);
  assert.notEqual(stateDigest(inst), before);
  spt[0] = old;
  assert.equal(stateDigest(inst), before);
});
