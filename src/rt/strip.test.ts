// SPDX-License-Identifier: GPL-2.0-only
// The direct build's constant folding (scripts/strip-steps.mjs), on small modules: what it
// replaces, what it must leave alone, and that the folded modules compute the same.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

type Edit = [number, number, string];
interface Strip {
  foldConstants(files: string[]): Map<string, Edit[]>;
  applyEdits(code: string, edits: Edit[]): string;
}

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const strip = (await import(pathToFileURL(path.join(root, "scripts/strip-steps.mjs")).href)) as Strip;

const A_JS = `export const BIT = 1 << 11;
export const NEG = -3;
export const MINUS_ZERO = -0;
const BOTH = BIT | 1;
export const NOT_A_NUMBER = "x";
export const NO = false;
const NOT_NUMERIC = NO + 1;
export let mutable = 7;
export function f(x) { return [(x & BIT) !== 0, BOTH, BIT.toString(16), mutable, NO || x, NOT_NUMERIC]; }
`;
const B_JS = `import { BIT, NEG, MINUS_ZERO, NOT_A_NUMBER as S, mutable } from "./a.js";
import { MODE } from "./c.js";
export function g(o) {
  let BIT = 5;
  BIT += 1;
  return [o.BIT, BIT, NEG - NEG, { NEG }, S, mutable];
}
export const h = (x) => [x & BIT, x - NEG, 1 / MINUS_ZERO];
export const mode = () => MODE;
`;
// A module with a direct-build replacement: constants are read from the replacement.
const C_JS = "export const MODE = 1;\n";
const C_DIRECT_JS = "export const MODE = 2;\n";

test("constant folding: uses of numeric constants become numbers, across imports (as the direct build has them); locals, properties and non-constants stay", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tdpmmu-fold-"));
  try {
    await foldAndCheck(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function foldAndCheck(dir: string): Promise<void> {
  const src = path.join(dir, "src");
  const out = path.join(dir, "out");
  fs.mkdirSync(src);
  fs.mkdirSync(out);
  for (const [name, code] of [["a.js", A_JS], ["b.js", B_JS], ["c.js", C_JS], ["c.direct.js", C_DIRECT_JS]] as const) fs.writeFileSync(path.join(src, name), code);
  fs.writeFileSync(path.join(out, "c.js"), C_DIRECT_JS);
  fs.writeFileSync(path.join(src, "package.json"), '{ "type": "module" }\n');
  fs.writeFileSync(path.join(out, "package.json"), '{ "type": "module" }\n');
  const files = ["a.js", "b.js"].map((f) => path.join(src, f));
  const edits = strip.foldConstants(files);
  const folded = new Map<string, string>();
  for (const f of files) {
    const code = strip.applyEdits(fs.readFileSync(f, "utf8"), edits.get(f) ?? []);
    folded.set(path.basename(f), code);
    fs.writeFileSync(path.join(out, path.basename(f)), code);
  }
  const a = folded.get("a.js")!;
  const b = folded.get("b.js")!;
  // Replaced: a use in an expression (also of a constant made of constants, and imported),
  // a negative value in parentheses, a property access on a constant.
  assert.match(a, /return \[\(x & 2048\) !== 0, 2049, \(2048\)\.toString\(16\), mutable, false \|\| x, NOT_NUMERIC\]/);
  assert.match(b, /\(-3\) - \(-3\)/);
  assert.match(b, /\[x & 2048, x - \(-3\), 1 \/ \(-0\)\]/);
  // c.js has a direct-build replacement: its constant is the replacement's.
  assert.match(b, /export const mode = \(\) => 2;/);
  // Left alone: declarations, imports, a local `let` of the same name, a property name, a
  // shorthand property, a string constant, a `let`, arithmetic on a boolean.
  assert.match(a, /export const BIT = 1 << 11;/);
  assert.match(b, /import \{ BIT, NEG, MINUS_ZERO, NOT_A_NUMBER as S, mutable \} from/);
  assert.match(b, /let BIT = 5;\n  BIT \+= 1;\n  return \[o\.BIT, BIT, /);
  assert.match(b, /\{ NEG \}, S, mutable\]/);
  // And the folded modules compute what the originals do.
  const before = { a: (await import(pathToFileURL(path.join(src, "a.js")).href)) as Record<string, (x: unknown) => unknown>, b: (await import(pathToFileURL(path.join(src, "b.js")).href)) as Record<string, (x: unknown) => unknown> };
  const after = { a: (await import(pathToFileURL(path.join(out, "a.js")).href)) as Record<string, (x: unknown) => unknown>, b: (await import(pathToFileURL(path.join(out, "b.js")).href)) as Record<string, (x: unknown) => unknown> };
  for (const x of [0, 2048, 0xffff]) {
    assert.deepEqual(after.a["f"]!(x), before.a["f"]!(x));
    assert.deepEqual(after.b["h"]!(x), before.b["h"]!(x));
  }
  assert.deepEqual(after.b["g"]!({ BIT: 9 }), before.b["g"]!({ BIT: 9 }));
}
