// SPDX-License-Identifier: GPL-2.0-only
// npm run bench:compare — the bare TypeScript walk against the C baseline (bench/cbase),
// measured in the same run on the same machine, reported as TS/C ratios.
//   GIB=1 REPS=3 npm run bench:compare
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const cbase = path.join(root, "bench/cbase");
const gib = process.env.GIB ?? "1";
const reps = process.env.REPS ?? "3";

if (!fs.existsSync(path.join(cbase, "tdpbench.c"))) {
  console.error("bench:compare: bench/cbase/tdpbench.c is absent; there is no C baseline to compare with");
  process.exit(2);
}
const mk = spawnSync("make", ["-s", "-C", cbase, "tdpbench"], { encoding: "utf8" });
if (mk.status !== 0) {
  console.error(`bench:compare: building the C baseline failed (needs gcc and make):\n${mk.stderr}`);
  process.exit(2);
}

function c(op) {
  const r = spawnSync(path.join(cbase, "tdpbench"), [op, "-g", gib, "-t", "1", "-r", reps], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tdpbench ${op}: ${r.stderr}`);
  return Number(r.stdout.trim().split(/\s+/)[3]);
}
function ts(op, bare) {
  const args = [path.join(root, "bin/tdpmmu.js"), "bench", "--op", op, "--gib", gib, "--reps", reps, "--json"];
  if (bare) args.push("--bare");
  const r = spawnSync(process.execPath, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tdpmmu bench ${op}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const kernel = { populate: 100, zap: 71.5, "clear-dirty": 42.7, age: null, split: 61.5 };
console.log(`# ${gib} GiB, one thread, best of ${reps}; ns per 4K page`);
console.log("(clear-dirty and age: C plain-RMW variants -na)");
console.log("op            C(cbase)   TS bare   TS/C   | TS full  kernel(published)  bytes/page");
for (const op of ["populate", "zap", "clear-dirty", "age", "split"]) {
  const full = ts(op, false);
  const k = kernel[op] === null ? "     -" : String(kernel[op]).padStart(6);
  if (op === "split") {
    console.log(`${op.padEnd(12)} ${"-".padStart(9)} ${"-".padStart(9)} ${"-".padStart(6)}   | ${full.nsPerPage.toFixed(1).padStart(7)}  ${k}             ${full.bytesPerPage.toFixed(3)}`);
    continue;
  }
  // The bare TS loops clear bits with plain stores, so they are held against the C
  // baseline's non-atomic variants of the same loops.
  const cns = c(op === "clear-dirty" ? "clear-dirty-na" : op === "age" ? "age-na" : op);
  const bare = ts(op, true);
  console.log(
    `${op.padEnd(12)} ${cns.toFixed(2).padStart(9)} ${bare.nsPerPage.toFixed(2).padStart(9)} ${(bare.nsPerPage / cns).toFixed(2).padStart(6)}   | ${full.nsPerPage.toFixed(1).padStart(7)}  ${k}             ${full.bytesPerPage.toFixed(3)}`,
  );
}
