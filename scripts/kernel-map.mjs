// SPDX-License-Identifier: GPL-2.0-only
// Collect the kernel functions the model mirrors into docs/kernel-map.md.
//
// STYLE.md asks every mirrored function's doc comment to open with the kernel function it
// models ("/** tdp_mmu_zap_leafs(): ..."). This script reads those openings straight from
// the sources, so the table cannot drift from the code: `--check` fails when the committed
// docs/kernel-map.md is not what the sources give today.
//
//   node scripts/kernel-map.mjs            write docs/kernel-map.md
//   node scripts/kernel-map.mjs --check    exit 1 if docs/kernel-map.md is stale
//   node scripts/kernel-map.mjs --stdout   print the map instead of writing it
//
// Plain Node, no dependencies, no clock: the same sources always give the same bytes.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const srcDir = path.join(root, "src");
const outFile = path.join(root, "docs", "kernel-map.md");

// ---------------------------------------------------------------------------------------
// What counts as a kernel name

/** snake_case with at least one underscore, any leading underscores, or an upper-case macro. */
const KERNEL_IDENT = /^(?:_*[a-z][a-z0-9]*(?:_[a-z0-9]+)+|_+[a-z][a-z0-9]*|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)$/;
/** Short single-word kernel primitives that have no underscore to give them away. */
const KERNEL_WORDS = new Set(["xchg", "cmpxchg", "madvise", "mmap", "munmap"]);

const isKernelIdent = (s) => KERNEL_IDENT.test(s) || KERNEL_WORDS.has(s);

// A call-shaped name at the start of a comment: `name()` or `name(args without parens)`.
const CALL = /^([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)/;
// What may join two kernel names in one opening: "a() and b()", "a() / b()", "a(), b()",
// "a() -> b()", "a() → b()".
const JOIN = /^(?:\s+and\s+|\s*\/\s*|,\s*|\s*(?:->|→)\s*)/;
// Where the kernel keeps its sources; a comment that names such a file says where the
// function lives.
const KFILE = /\b((?:arch|virt|include|mm|kernel|lib|drivers|Documentation)\/[A-Za-z0-9_./{},-]*[A-Za-z0-9_}])/;

/**
 * The kernel names a doc comment opens with, or [] if it does not open with one.
 * `first` is the comment's text with the comment markers removed.
 */
function kernelNamesAtStart(first) {
  const names = [];
  let rest = first;
  for (;;) {
    const m = CALL.exec(rest);
    if (m === null || !isKernelIdent(m[1])) break;
    names.push(m[1]);
    rest = rest.slice(m[0].length);
    const j = JOIN.exec(rest);
    if (j === null) break;
    const after = rest.slice(j[0].length);
    const n = CALL.exec(after);
    if (n === null || !isKernelIdent(n[1])) break;
    rest = after;
  }
  return names;
}

/** The first kernel source file a comment names, e.g. "arch/x86/kvm/mmu/spte.h". */
function kernelFileIn(text) {
  const m = KFILE.exec(text);
  if (m === null) return "";
  return m[1].replace(/[.,]+$/, "");
}

// ---------------------------------------------------------------------------------------
// Reading the sources

function walk(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return walk(p);
      return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".d.ts") ? [p] : [];
    });
}

const FUNC_DECL = /^(\s*)(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*(\*?)\s*([A-Za-z_$][\w$]*)/;
const ARROW_DECL = /^(\s*)(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*(?:async\s+)?(?:function\b|(?:<[^>]*>)?\([^)]*\)\s*(?::[^=]+?)?\s*=>|[A-Za-z_$][\w$]*\s*=>)/;
const METHOD_DECL =
  /^(\s+)(?:(?:public|private|protected|static|override|readonly|async|abstract)\s+)*(?:(get|set)\s+)?(\*?)\s*([A-Za-z_$#][\w$]*)\s*(?:<[^>]*>)?\(/;
const CLASS_DECL = /^(\s*)(?:export\s+)?(?:default\s+)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)/;
const NOT_METHODS = new Set(["if", "for", "while", "switch", "return", "catch", "function", "yield", "await", "new", "throw", "else", "do", "super", "this"]);

/**
 * Every named function, method and top-level arrow function in a file, each with the doc
 * comment directly above it (or null).
 */
function declarations(file) {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const out = [];
  const classes = []; // { name, indent }
  let doc = null; // { text, endLine } of the last doc comment seen
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    // Leaving a class: its closing brace at the class's own indentation.
    const close = /^(\s*)\}/.exec(line);
    if (close !== null && classes.length > 0 && close[1].length === classes[classes.length - 1].indent) classes.pop();

    if (/^\s*\/\*\*/.test(line)) {
      const start = i;
      while (i < lines.length && !lines[i].includes("*/")) i++;
      const body = lines
        .slice(start, i + 1)
        .join("\n")
        .replace(/^\s*\/\*\*/, "")
        .replace(/\*\/\s*$/, "")
        .split("\n")
        .map((l) => l.replace(/^\s*\* ?/, "").trim())
        .filter((l, k, a) => l.length > 0 || (k > 0 && k < a.length - 1));
      doc = { text: body.join("\n").trim(), endLine: i };
      continue;
    }
    const docAbove = doc !== null && doc.endLine === i - 1 ? doc.text : null;

    const c = CLASS_DECL.exec(line);
    if (c !== null) {
      if (!/\}\s*$/.test(line)) classes.push({ name: c[2], indent: c[1].length });
      continue;
    }
    const f = FUNC_DECL.exec(line);
    if (f !== null) {
      out.push({ file, line: i + 1, name: f[3], topLevel: f[1].length === 0, doc: docAbove });
      continue;
    }
    const a = ARROW_DECL.exec(line);
    if (a !== null) {
      out.push({ file, line: i + 1, name: a[2], topLevel: a[1].length === 0, doc: docAbove });
      continue;
    }
    const cls = classes[classes.length - 1];
    const m = METHOD_DECL.exec(line);
    if (cls !== undefined && m !== null && m[1].length > cls.indent && !NOT_METHODS.has(m[4])) {
      // A method has a body; an overload or an interface-style signature ends in ';'.
      const isDecl = /\)\s*(?::\s*[^={;]+)?\s*\{\s*(?:\}\s*)?$/.test(line) || /\($|,$/.test(line.trimEnd());
      if (isDecl) {
        const prefix = m[2] !== undefined ? `${m[2]} ` : "";
        out.push({ file, line: i + 1, name: `${cls.name}.${prefix}${m[4]}`, topLevel: true, doc: docAbove });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The map

function collect() {
  const rows = [];
  const gaps = [];
  const modelOnly = [];
  for (const file of walk(srcDir)) {
    const rel = path.relative(root, file).split(path.sep).join("/");
    for (const d of declarations(file)) {
      const first = d.doc === null ? "" : d.doc.split("\n")[0];
      const names = d.doc === null ? [] : kernelNamesAtStart(d.doc.replace(/\s*\n\s*/g, " "));
      if (names.length > 0) {
        const kfile = kernelFileIn(d.doc);
        for (const k of names) rows.push({ kernel: k, kfile, ts: d.name, rel, line: d.line });
        continue;
      }
      // Gaps are listed for the MMU layer only: that is where every function should
      // either mirror the kernel or say that it exists only in the model.
      if (!rel.startsWith("src/mmu/") || !d.topLevel || /\.constructor$/.test(d.name)) continue;
      const entry = { ts: d.name, rel, line: d.line, doc: first };
      if (/^MODEL:/.test(first)) modelOnly.push(entry);
      else gaps.push(entry);
    }
  }
  const key = (k) => k.replace(/^_+/, "").toLowerCase();
  const cmp = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
  rows.sort((a, b) => cmp(key(a.kernel), key(b.kernel)) || cmp(a.kernel, b.kernel) || cmp(a.rel, b.rel) || a.line - b.line);
  const byPlace = (a, b) => cmp(a.rel, b.rel) || a.line - b.line;
  gaps.sort(byPlace);
  modelOnly.sort(byPlace);
  return { rows, gaps, modelOnly };
}

const cell = (s) => s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|");
const where = (rel, line) => `[${rel.replace(/^src\//, "")}:${line}](../${rel}#L${line})`;
const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

function render({ rows, gaps, modelOnly }) {
  const kernelNames = new Set(rows.map((r) => r.kernel));
  const out = [];
  out.push("# Kernel map");
  out.push("");
  out.push("<!-- Generated by `npm run kernel-map` (scripts/kernel-map.mjs). Do not edit by hand. -->");
  out.push("");
  out.push(
    "Which TypeScript function models which kernel function. The table is read from the doc comments in `src/`: a " +
      "comment that opens with a kernel name followed by parentheses (`/** tdp_mmu_zap_leafs(): ... */`) maps that " +
      "name to the function declared right below it. The kernel file is given where the comment names one; for the " +
      "rest, the header of the TypeScript file says which kernel file it follows (`tdp_mmu.ts` follows " +
      "`arch/x86/kvm/mmu/tdp_mmu.c`, `mmu.ts` follows `arch/x86/kvm/mmu/mmu.c`, `kvm_main.ts` follows " +
      "`virt/kvm/kvm_main.c`, and so on). Line numbers are those of the sources this file was generated from; " +
      "`npm run kernel-map -- --check` tells whether it is current.",
  );
  out.push("");
  out.push(`${kernelNames.size} kernel names, ${rows.length} mappings.`);
  out.push("");
  out.push("| kernel | kernel file | TypeScript | where |");
  out.push("|---|---|---|---|");
  for (const r of rows) out.push(`| \`${cell(r.kernel)}\` | ${r.kfile ? `\`${cell(r.kfile)}\`` : ""} | \`${cell(r.ts)}\` | ${where(r.rel, r.line)} |`);
  out.push("");
  out.push("## Gaps in `src/mmu`");
  out.push("");
  out.push(
    "Functions and methods (constructors aside) of the MMU layer whose doc comment does not open with a kernel " +
      "name, or that have no doc comment. Each should either name the kernel function it models or say, with `MODEL:`, that it exists only " +
      "in the model.",
  );
  out.push("");
  if (gaps.length === 0) out.push("None.");
  else {
    out.push("| TypeScript | where | doc comment opens with |");
    out.push("|---|---|---|");
    for (const g of gaps) out.push(`| \`${cell(g.ts)}\` | ${where(g.rel, g.line)} | ${g.doc ? cell(clip(g.doc, 90)) : "(no doc comment)"} |`);
  }
  out.push("");
  out.push("## Model-only functions in `src/mmu`");
  out.push("");
  out.push("Functions whose doc comment opens with `MODEL:`: checks and machinery that have no kernel counterpart.");
  out.push("");
  if (modelOnly.length === 0) out.push("None.");
  else {
    out.push("| TypeScript | where | doc comment opens with |");
    out.push("|---|---|---|");
    for (const g of modelOnly) out.push(`| \`${cell(g.ts)}\` | ${where(g.rel, g.line)} | ${cell(clip(g.doc, 90))} |`);
  }
  out.push("");
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------

const args = process.argv.slice(2);
for (const a of args)
  if (a !== "--check" && a !== "--stdout") {
    process.stderr.write(`kernel-map: unknown option '${a}' (use --check or --stdout)\n`);
    process.exit(2);
  }
const text = render(collect());
if (args.includes("--stdout")) process.stdout.write(text);
else if (args.includes("--check")) {
  let current = null;
  try {
    current = fs.readFileSync(outFile, "utf8");
  } catch {
    // missing counts as stale
  }
  if (current !== text) {
    process.stderr.write(`kernel-map: ${path.relative(root, outFile)} is stale; run 'npm run kernel-map'\n`);
    process.exit(1);
  }
} else {
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, text);
  process.stdout.write(`kernel-map: wrote ${path.relative(root, outFile)}\n`);
}
