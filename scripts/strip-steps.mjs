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
//
// Before that, it folds numeric constants, as C's preprocessor would: a use of a `const`
// whose initializer is a number computed from literals and other such constants (a mask,
// a bit position, a level), or `true` or `false`, becomes that value. V8 loads a module's constant from its
// context on every use (with a check that it is initialized), imported ones too; in the
// walks that is some 5-15 ns per page. Names are resolved by the TypeScript checker, so
// a local of the same name or a property is never touched.
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
  return applyEdits(code, edits);
}

/**
 * The numeric (and boolean) constants of `files` (compiled JavaScript), folded: for each
 * file, the edits that replace each use of such a constant with its value.
 */
export function foldConstants(files) {
  const options = {
    allowJs: true,
    noEmit: true,
    noLib: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
  };
  // The modules as the direct build has them: `x.js` is `x.direct.js` where that exists.
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (name, ...rest) => {
    const direct = name.replace(/\.js$/, ".direct.js");
    return getSourceFile.call(host, !name.endsWith(".direct.js") && fs.existsSync(direct) ? direct : name, ...rest);
  };
  const program = ts.createProgram(files, options, host);
  const checker = program.getTypeChecker();
  const values = new Map(); // declaration -> number | boolean | null (not foldable)
  const valueOfDecl = (decl) => {
    if (values.has(decl)) return values.get(decl);
    values.set(decl, null); // a cycle is not foldable
    const ok =
      ts.isVariableDeclaration(decl) &&
      ts.isIdentifier(decl.name) &&
      decl.initializer !== undefined &&
      (ts.getCombinedNodeFlags(decl) & ts.NodeFlags.Const) !== 0;
    const v = ok ? evaluate(decl.initializer) : null;
    values.set(decl, v);
    return v;
  };
  const constantOf = (id) => {
    let sym = checker.getSymbolAtLocation(id);
    if (sym === undefined) return null;
    if (sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    const decl = sym.valueDeclaration;
    return decl === undefined ? null : valueOfDecl(decl);
  };
  const BINARY = {
    [ts.SyntaxKind.LessThanLessThanToken]: (a, b) => a << b,
    [ts.SyntaxKind.GreaterThanGreaterThanToken]: (a, b) => a >> b,
    [ts.SyntaxKind.GreaterThanGreaterThanGreaterThanToken]: (a, b) => a >>> b,
    [ts.SyntaxKind.BarToken]: (a, b) => a | b,
    [ts.SyntaxKind.AmpersandToken]: (a, b) => a & b,
    [ts.SyntaxKind.CaretToken]: (a, b) => a ^ b,
    [ts.SyntaxKind.PlusToken]: (a, b) => a + b,
    [ts.SyntaxKind.MinusToken]: (a, b) => a - b,
    [ts.SyntaxKind.AsteriskToken]: (a, b) => a * b,
  };
  function evaluate(e) {
    if (ts.isNumericLiteral(e)) return Number(e.text);
    if (e.kind === ts.SyntaxKind.TrueKeyword || e.kind === ts.SyntaxKind.FalseKeyword) return e.kind === ts.SyntaxKind.TrueKeyword;
    if (ts.isParenthesizedExpression(e)) return evaluate(e.expression);
    if (ts.isPrefixUnaryExpression(e)) {
      const v = evaluate(e.operand);
      if (typeof v !== "number") return null;
      if (e.operator === ts.SyntaxKind.MinusToken) return -v;
      if (e.operator === ts.SyntaxKind.TildeToken) return ~v;
      if (e.operator === ts.SyntaxKind.PlusToken) return v;
      return null;
    }
    if (ts.isBinaryExpression(e) && BINARY[e.operatorToken.kind] !== undefined) {
      const a = evaluate(e.left);
      const b = typeof a !== "number" ? null : evaluate(e.right);
      return typeof b !== "number" ? null : BINARY[e.operatorToken.kind](a, b);
    }
    if (ts.isIdentifier(e)) return constantOf(e);
    return null;
  }
  // Is `id` a use of a value (not a declaration, a property name or an import/export)?
  const isValueUse = (id) => {
    const p = id.parent;
    if ((ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isFunctionDeclaration(p) || ts.isClassDeclaration(p)) && p.name === id) return false;
    if ((ts.isPropertyAccessExpression(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p) || ts.isMethodDeclaration(p)) && p.name === id) return false;
    if (ts.isShorthandPropertyAssignment(p) || ts.isImportSpecifier(p) || ts.isExportSpecifier(p) || ts.isImportClause(p)) return false;
    if (ts.isBindingElement(p) || ts.isLabeledStatement(p) || ts.isBreakOrContinueStatement(p)) return false;
    // An assignment target is not a constant's use (and would be an error anyway).
    if (ts.isBinaryExpression(p) && p.left === id && p.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && p.operatorToken.kind <= ts.SyntaxKind.LastAssignment) return false;
    return true;
  };
  const edits = new Map();
  for (const file of files) {
    const sf = program.getSourceFile(file);
    const list = [];
    const visit = (node) => {
      if (ts.isIdentifier(node) && isValueUse(node)) {
        const v = constantOf(node);
        if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) {
          // String(-0) is "0": the sign is written out.
          const lit = Object.is(v, -0) ? "-0" : String(v);
          const text = lit.startsWith("-") || ts.isPropertyAccessExpression(node.parent) ? `(${lit})` : lit;
          list.push([node.getStart(sf), node.end, text]);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
    edits.set(file, list);
  }
  return edits;
}

/** `code` with each [start, end, text] edit made (edits do not overlap). */
export function applyEdits(code, edits) {
  const sorted = [...edits].sort((a, b) => b[0] - a[0]);
  let out = code;
  for (const [s, e, text] of sorted) out = out.slice(0, s) + text + out.slice(e);
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
  const files = LAYERS.flatMap((layer) => (fs.existsSync(path.join(src, layer)) ? walk(path.join(src, layer)) : [])).filter((f) => !f.endsWith(".direct.js"));
  const folds = foldConstants(files);
  let folded = 0;
  for (const layer of LAYERS) {
    const dir = path.join(src, layer);
    if (!fs.existsSync(dir)) continue;
    for (const file of walk(dir)) {
      if (file.endsWith(".direct.js")) continue;
      const rel = path.relative(src, file);
      const replacement = file.replace(/\.js$/, ".direct.js");
      const edits = folds.get(file) ?? [];
      folded += edits.length;
      const code = fs.existsSync(replacement)
        ? applyEdits(fs.readFileSync(replacement, "utf8"), edits)
        : strip(applyEdits(fs.readFileSync(file, "utf8"), edits), rel);
      const out = path.join(dst, rel);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, code);
      n++;
    }
  }
  fs.writeFileSync(path.join(dst, "package.json"), '{ "type": "module" }\n');
  process.stdout.write(`strip-steps: ${n} modules -> dist/direct (${folded} uses of constants folded)\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) main();
