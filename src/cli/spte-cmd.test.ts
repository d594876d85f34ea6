// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import { spteCommand } from "./spte-cmd.js";

const run = (line: string) => spteCommand(line.split(/\s+/).filter((x) => x !== ""));

test("make: the three required outputs for pfn 0x1234, level 1, writable", () => {
  const want = { ept: "0x600000001234b77\n", "ept-noad": "0x610000001234877\n", npt: "0x1234e67\n" };
  for (const [format, out] of Object.entries(want)) {
    const r = run(`make --format ${format} --pfn 0x1234 --level 1 --writable`);
    assert.deepEqual(r, { stdout: out, stderr: "", exitCode: 0 }, format);
  }
});

test("make: read-only host mapping, huge pages, nx-huge, no-exec", () => {
  assert.equal(run("make --format npt --pfn 1234 --level 1").stdout, "0x1234825\n"); // N2
  assert.equal(run("make --format ept --pfn 1234 --level 1").stdout, "0x1234975\n"); // E4
  assert.equal(run("make --format npt --pfn 0x1200 --level 2 --writable --nx-huge").stdout, "0x8000000001200ee7\n"); // N3
  assert.equal(run("make --format ept --pfn 0x1200 --level 2 --writable --nx-huge").stdout, "0x600000001200bf3\n"); // E5
  assert.equal(run("make --format ept --pfn 0x1200 --level 2 --writable").stdout, "0x600000001200bf7\n"); // E6
  assert.equal(run("make --format npt --pfn 0x1234 --level 1 --writable --no-exec").stdout, "0x8000000001234e67\n");
  assert.equal(run("make --format=ept --pfn=1234 --level=1 --writable").stdout, "0x600000001234b77\n");
});

test("make: a huge-level pfn is aligned down, with a note on stderr", () => {
  const r = run("make --format npt --pfn 0x1234 --level 2 --writable");
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, "0x1200ee7\n");
  assert.match(r.stderr, /aligned down to 0x1200/);
});

test("make --json carries the value, kind and fields", () => {
  const r = run("make --format ept --pfn 1234 --level 1 --writable --json");
  assert.equal(r.exitCode, 0);
  const j = JSON.parse(r.stdout) as { spte: string; kind: string; wrprot: boolean; fields: { name: string; value: string }[] };
  assert.equal(j.spte, "0x600000001234b77");
  assert.equal(j.kind, "leaf");
  assert.equal(j.wrprot, false);
  assert.ok(j.fields.some((f) => f.name === "pfn" && f.value === "0x1234"));
});

test("decode 0x5a0: REMOVED_SPTE", () => {
  const r = run("decode 0x5a0");
  assert.equal(r.exitCode, 0);
  assert.equal(r.stderr, "");
  assert.match(r.stdout, /^0x00000000000005a0  npt: removed\n/);
  assert.match(r.stdout, /REMOVED_SPTE/);
});

test("decode 0x8000000400017 (npt): MMIO gfn 0x400 generation 2", () => {
  const r = run("decode 0x8000000400017");
  assert.equal(r.exitCode, 0);
  assert.match(r.stdout, /npt: mmio/);
  assert.match(r.stdout, /MMIO gfn\s+0x400\n/);
  assert.match(r.stdout, /MMIO generation\s+0x2\n/);
  const j = JSON.parse(run("decode 0x8000000400017 --json").stdout) as { kind: string; fields: { name: string; value: string }[] };
  assert.equal(j.kind, "mmio");
  assert.equal(j.fields.find((f) => f.name === "MMIO gfn")?.value, "0x400");
  assert.equal(j.fields.find((f) => f.name === "MMIO generation")?.value, "0x2");
});

test("decode with --format and --level", () => {
  assert.match(run("decode 0600000001234B77 --format ept --level 1").stdout, /ept level 1: leaf/);
  assert.match(run("decode 0x5678827 --level 2").stdout, /npt level 2: non-leaf/);
  assert.match(run("decode 0x5678827").stdout, /npt: present/);
  assert.match(run("decode 0x1234006 --format ept").stdout, /ept: mmio/);
  // The same value is not MMIO under NPT masks.
  assert.match(run("decode 0x1234006").stdout, /npt: non-present/);
  assert.match(run("decode 0").stdout, /npt: zero/);
});

test("bad input: exit code 2 and one stderr line naming the argument", () => {
  const cases: [string, RegExp][] = [
    ["", /missing subcommand/],
    ["frob", /unknown subcommand 'frob'/],
    ["decode", /missing HEX/],
    ["decode 0xzz", /bad hex value for SPTE: '0xzz'/],
    ["decode 0x12345678123456781", /does not fit in 64 bits/],
    ["decode 0x1 0x2", /unexpected argument '0x2'/],
    ["decode 0x1 --bogus", /unknown option '--bogus'/],
    ["decode 0x1 --format x86", /bad --format 'x86'/],
    ["decode 0x1 --level 6", /--level 6 out of range/],
    ["decode 0x1 --level", /missing value for --level/],
    ["make --format npt --pfn 1234 --level 4", /--level 4 out of range \(1\.\.3\)/],
    ["make --format npt --pfn 1234 --level 0", /--level 0 out of range/],
    ["make --format npt --pfn 1234 --level two", /bad --level 'two'/],
    ["make --format npt --pfn g --level 1", /bad hex value for --pfn: 'g'/],
    ["make --format npt --pfn 10000000000 --level 1", /--pfn '10000000000' does not fit in 40 bits/],
    ["make --format npt --level 1", /missing --pfn/],
    ["make --pfn 1 --level 1", /missing --format/],
    ["make --format npt --pfn 1", /missing --level/],
    ["make --format npt --pfn 1 --level 1 --pfn 2", /--pfn given twice/],
    ["make --format npt --pfn 1 --level 1 --writable=yes", /unknown option '--writable=yes'/],
    ["make --format npt --pfn", /missing value for --pfn/],
    ["make --format npt --pfn 1 --level 1 extra", /unexpected argument 'extra'/],
  ];
  for (const [line, re] of cases) {
    const r = run(line);
    assert.equal(r.exitCode, 2, line);
    assert.equal(r.stdout, "", line);
    assert.match(r.stderr, /^tdpmmu spte: [^\n]+\n$/, line);
    assert.match(r.stderr, re, line);
  }
});

test("help prints usage and exits 0", () => {
  const r = run("--help");
  assert.equal(r.exitCode, 0);
  assert.match(r.stdout, /usage: tdpmmu spte decode/);
});
