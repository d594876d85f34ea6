// SPDX-License-Identifier: GPL-2.0-only
// Project rules that the type checker cannot see:
// - below cli there is no ambient nondeterminism (Math.random, Date.now, timers) and no Node;
// - a folder is imported only through its index.ts (except by its own files);
// - the layers import only what sits below them.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const src = path.join(root, "src");
const ORDER = ["base", "spte", "trace", "rt", "hw", "kernel", "mmu", "scenarios", "cli"];
const ALLOWED = {
  base: [],
  spte: ["base"],
  trace: ["base"],
  rt: ["base"],
  hw: ["base", "spte", "rt"],
  kernel: ["base", "spte", "trace", "rt", "hw"],
  mmu: ["base", "spte", "trace", "kernel"],
  scenarios: ["base", "spte", "trace", "kernel", "mmu"],
  cli: [...ORDER, "explore"],
  explore: ["base", "rt", "trace"],
  web: ["base", "trace", "spte"],
};
const problems = [];
function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.name.endsWith(".ts") ? [p] : [];
  });
}
for (const file of walk(src)) {
  const rel = path.relative(src, file);
  const layer = rel.split(path.sep)[0];
  const isTest = rel.endsWith(".test.ts");
  const text = fs.readFileSync(file, "utf8");
  if (!text.startsWith("// SPDX-License-Identifier: GPL-2.0-only")) problems.push(`${rel}: missing SPDX line`);
  if (layer !== "cli" && !isTest) {
    for (const bad of ["Math.random", "Date.now", "setTimeout", "setInterval", "performance.now", "process."])
      if (text.includes(bad)) problems.push(`${rel}: '${bad}' below the cli layer`);
    if (/from "node:/.test(text)) problems.push(`${rel}: Node import below the cli layer`);
  }
  const code = text
    .split("\n")
    .filter((l) => !/^\s*(\/\/|\*|\/\*)/.test(l))
    .join("\n");
  if (!isTest && /:\s*any\b|as any\b|<any>/.test(code)) problems.push(`${rel}: 'any'`);
  for (const m of text.matchAll(/from "(\.\.?\/[^"]+)"/g)) {
    const target = path.relative(src, path.resolve(path.dirname(file), m[1]));
    const tLayer = target.split(path.sep)[0];
    if (tLayer === layer) continue;
    if (!isTest && !(ALLOWED[layer] ?? []).includes(tLayer)) problems.push(`${rel}: layer '${layer}' may not import '${tLayer}'`);
    if (!isTest && path.basename(target) !== "index.js") problems.push(`${rel}: import ${m[1]} bypasses ${tLayer}/index.ts`);
  }
}
if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`lint: ${walk(src).length} files ok`);
