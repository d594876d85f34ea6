// SPDX-License-Identifier: GPL-2.0-only
// Run every compiled test with node's test runner. Tests named *.golden.test.js run twice:
// on the generator build and on the direct build (step announcements stripped), because
// both builds must produce the kernel's traces.
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.name.endsWith(".test.js") ? [p] : [];
  });
}
const gen = walk(path.join(root, "dist/gen"));
const direct = walk(path.join(root, "dist/direct")).filter((f) => f.endsWith(".golden.test.js"));
const files = [...gen, ...direct].map((f) => path.relative(root, f)).sort();
const r = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...files], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
