// SPDX-License-Identifier: GPL-2.0-only
// npm run bench:explore — the explorer's cost per schedule: the partial-order search over a
// bundled scenario for a fixed number of schedules, repeated in one process (the best
// repetition counts, as this machine's load varies), and the bytes it allocates per schedule.
//   SCENARIO=seed-proof-3vcpu SCHEDULES=3000 REPS=4 npm run bench:explore
import fs from "node:fs";
import path from "node:path";
import inspector from "node:inspector/promises";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const name = process.env.SCENARIO ?? "seed-proof-3vcpu";
const schedules = Number(process.env.SCHEDULES ?? "3000");
const reps = Number(process.env.REPS ?? "4");
const file = path.join(root, "scenarios", `${name}.json`);
if (!fs.existsSync(file)) {
  console.error(`bench:explore: no bundled scenario '${name}' (${file})`);
  process.exit(2);
}
if (!Number.isInteger(schedules) || schedules <= 0 || !Number.isInteger(reps) || reps <= 0) {
  console.error("bench:explore: SCHEDULES and REPS take positive integers");
  process.exit(2);
}
const { parseScenario, makeProgram } = await import(path.join(root, "dist/gen/scenarios/concurrent.js"));
const { DporSearch } = await import(path.join(root, "dist/gen/explore/dpor.js"));
const sc = parseScenario(file, fs.readFileSync(file, "utf8"));

const times = [];
let steps = 0;
for (let rep = 0; rep < reps; rep++) {
  const search = new DporSearch(makeProgram(sc), 100000);
  const t0 = performance.now();
  for (let i = 0; i < schedules && search.next() !== null; i++);
  times.push(((performance.now() - t0) / search.schedules) * 1000);
  steps = search.steps / search.schedules;
}

// Bytes allocated: a sampling heap profile that keeps what the collector freed.
const search = new DporSearch(makeProgram(sc), 100000);
const session = new inspector.Session();
session.connect();
await session.post("HeapProfiler.startSampling", {
  samplingInterval: 4096,
  includeObjectsCollectedByMinorGC: true,
  includeObjectsCollectedByMajorGC: true,
});
const sampled = Math.min(schedules, 1000);
for (let i = 0; i < sampled && search.next() !== null; i++);
const { profile } = await session.post("HeapProfiler.stopSampling");
let bytes = 0;
const sum = (n) => {
  bytes += n.selfSize;
  for (const c of n.children) sum(c);
};
sum(profile.head);

const best = Math.min(...times);
console.log(
  `bench:explore ${name}: ${schedules} schedules of the partial-order search (${steps.toFixed(0)} steps each), ` +
    `best of ${reps}: ${best.toFixed(0)} µs per schedule (all: ${times.map((t) => t.toFixed(0)).join(" ")}); ` +
    `${(bytes / search.schedules / 1e6).toFixed(2)} MB allocated per schedule`,
);
