// SPDX-License-Identifier: GPL-2.0-only
// Emit dist/direct: the engine with its step announcements stripped.
//
// The engine is written as generators so that a scheduler can interleave every shared
// memory access. When nobody interleaves, that machinery is pure cost, so this script
// rewrites the compiled JavaScript of dist/gen mechanically:
//   function* f() / *method()   ->  function f() / method()
//   yield* expr                 ->  expr
//   yield step;  (a statement)  ->  ;
//   STEPPED      (read, not imported or exported)  ->  false, so branches on it fold away
//   touch(...); touchAll();  (statements)  ->  ;  footprints are for the explorer, which
//                                               never runs this build (arguments are pure)
// Any other use of `yield` is an error: the engine may only announce steps as statements.
// A module `x.direct.js` replaces its sibling `x.js` (the step driver).
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const src = path.join(root, "dist/gen");
const dst = path.join(root, "dist/direct");
// The explorer is copied too (it has no steps of its own) so the CLI loads; it is only
// ever run on the generator build.
const LAYERS = ["base", "spte", "trace", "rt", "hw", "kernel", "mmu", "scenarios", "explore", "cli"];

export function strip(code, file) {
  const sf = ts.createSourceFile(file, code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const edits = [];
  const fail = (node, why) => {
    const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    throw new Error(`${file}:${line + 1}:${character + 1}: ${why}`);
  };
  const visit = (node) => {
    if (
      (ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isMethodDeclaration(node)) &&
      node.asteriskToken
    ) {
      edits.push([node.asteriskToken.getStart(sf), node.asteriskToken.end, ""]);
    }
    if (ts.isYieldExpression(node)) {
      if (node.asteriskToken) {
        if (!node.expression) fail(node, "yield* without operand");
        edits.push([node.getStart(sf), node.expression.getStart(sf), ""]);
      } else {
        const parent = node.parent;
        if (!ts.isExpressionStatement(parent)) fail(node, "a plain `yield` must be a statement of its own");
        edits.push([parent.getStart(sf), parent.end, ";"]);
        return; // the announcement and everything inside it go away
      }
    }
    if (
      ts.isExpressionStatement(node) &&
      ts.isCallExpression(node.expression) &&
      ts.isIdentifier(node.expression.expression) &&
      (node.expression.expression.text === "touch" || node.expression.expression.text === "touchAll")
    ) {
      edits.push([node.getStart(sf), node.end, ";"]);
      return;
    }
    if (
      ts.isIdentifier(node) &&
      node.text === "STEPPED" &&
      !ts.isImportSpecifier(node.parent) &&
      !ts.isExportSpecifier(node.parent) &&
      !ts.isVariableDeclaration(node.parent)
    ) {
      edits.push([node.getStart(sf), node.end, "false"]);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  edits.sort((a, b) => b[0] - a[0]);
  let out = code;
  for (const [s, e, text] of edits) out = out.slice(0, s) + text + out.slice(e);
  return out;
}

function walk(dir) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...walk(p));
    else if (ent.name.endsWith(".js")) out.push(p);
  }
  return out;
}

function main() {
  fs.rmSync(dst, { recursive: true, force: true });
  let n = 0;
  for (const layer of LAYERS) {
    const dir = path.join(src, layer);
    if (!fs.existsSync(dir)) continue;
    for (const file of walk(dir)) {
      if (file.endsWith(".direct.js")) continue;
      const rel = path.relative(src, file);
      const replacement = file.replace(/\.js$/, ".direct.js");
      const code = fs.existsSync(replacement)
        ? fs.readFileSync(replacement, "utf8")
        : strip(fs.readFileSync(file, "utf8"), rel);
      const out = path.join(dst, rel);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, code);
      n++;
    }
  }
  fs.writeFileSync(path.join(dst, "package.json"), '{ "type": "module" }\n');
  process.stdout.write(`strip-steps: ${n} modules -> dist/direct\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) main();
