// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACC_ALL,
  ACC_EXEC_MASK,
  KVM_MAX_HUGEPAGE_LEVEL,
  PG_LEVEL_2M,
  PG_LEVEL_4K,
  REMOVED_SPTE,
  describeSpte,
  kvmAdEnabled,
  kvmPagesPerHpage,
  makeMmioSpte,
  makeNonleafSpte,
  makeSpte,
  markSpteForAccessTrack,
  masksFor,
  renderSpteDescription,
  vmxGetMtMask,
  type SpteDescription,
  type SpteFormat,
  type SpteMasks,
} from "./index.js";

const NPT = masksFor("npt");
const EPT = masksFor("ept");
const EPT_NOAD = masksFor("ept-noad");

const fieldNamed = (d: SpteDescription, re: RegExp) => d.fields.find((f) => re.test(f.name));

/** Union of the bit numbers a description's fields claim. */
function claimedBits(d: SpteDescription): bigint {
  let mask = 0n;
  for (const f of d.fields) {
    if (f.bits === "-") continue;
    for (const run of f.bits.split(",")) {
      const [hi, lo] = run.split(":").map(Number);
      if (hi === undefined) continue;
      for (let b = lo ?? hi; b <= hi; b++) mask |= 1n << BigInt(b);
    }
  }
  return mask;
}

function leaf(m: SpteMasks, level: number, pfn: number, hostWritable = true, pteAccess = ACC_ALL): bigint {
  return makeSpte(m, {
    level,
    pteAccess,
    gfn: 0,
    pfn,
    oldSpte: 0n,
    prefetch: false,
    hostWritable,
    adDisabled: !kvmAdEnabled(m),
    adNeedWriteProtect: false,
    nxHugePageEnabled: false,
    mtMask: vmxGetMtMask({ isMmio: false }),
    isMmioPfn: false,
  }).spte;
}

test("describe REMOVED_SPTE in every format", () => {
  for (const m of [NPT, EPT, EPT_NOAD]) {
    const d = describeSpte(m, REMOVED_SPTE);
    assert.equal(d.kind, "removed");
    assert.ok(fieldNamed(d, /REMOVED_SPTE/));
    assert.equal(claimedBits(d) & REMOVED_SPTE, REMOVED_SPTE);
  }
});

test("describe zero", () => {
  assert.equal(describeSpte(NPT, 0n).kind, "zero");
  assert.equal(describeSpte(EPT, 0n, 1).kind, "zero");
});

test("describe the oracle's NPT MMIO SPTE 0x8000000400017 (gfn 0x400, gen 2, access 0x6)", () => {
  const d = describeSpte(NPT, 0x8000000400017n);
  assert.equal(d.kind, "mmio");
  assert.equal(fieldNamed(d, /MMIO gfn/)?.value, "0x400");
  assert.equal(fieldNamed(d, /MMIO generation/)?.value, "0x2");
  assert.equal(fieldNamed(d, /MMIO access/)?.value, "0x6");
  assert.equal(fieldNamed(d, /MMIO generation/)?.bits, "62:52,10:3");
});

test("describe EPT MMIO E11: generation 0x1ff, marker W|X", () => {
  const d = describeSpte(EPT, 0x00100000012347fen);
  assert.equal(d.kind, "mmio");
  assert.equal(fieldNamed(d, /MMIO generation/)?.value, "0x1ff");
  assert.equal(fieldNamed(d, /MMIO gfn/)?.value, "0x1234");
  assert.equal(fieldNamed(d, /MMIO marker/)?.value, "0x6");
});

test("describe E1 as an EPT leaf: R/W/X, WB+IPAT, A/D, host/MMU-writable, pfn", () => {
  const d = describeSpte(EPT, 0x0600000001234b77n, 1);
  assert.equal(d.kind, "leaf");
  for (const re of [/^R /, /^W /, /^X /, /IPAT/, /^A /, /^D /, /Host-writable/, /MMU-writable/, /MMU-present/]) {
    assert.ok(fieldNamed(d, re), String(re));
  }
  assert.equal(fieldNamed(d, /memory type/)?.value, "6 (WB)");
  assert.equal(fieldNamed(d, /^pfn$/)?.value, "0x1234");
  assert.equal(fieldNamed(d, /A\/D type/)?.value, "0 (enabled)");
  assert.equal(fieldNamed(d, /unused/), undefined);
});

test("describe E12 (EPT A/D off, access-tracked): saved R/X bits and A/D type disabled", () => {
  const d = describeSpte(EPT_NOAD, 0x0750000001234870n);
  assert.equal(d.kind, "present");
  assert.ok(fieldNamed(d, /saved R/));
  assert.ok(fieldNamed(d, /saved X/));
  assert.equal(fieldNamed(d, /A\/D type/)?.value, "1 (disabled)");
  assert.ok(fieldNamed(d, /access-tracked/) ?? d.fields.find((f) => /access-tracked/.test(f.value)));
  assert.match(fieldNamed(d, /class/)?.value ?? "", /leaf if level 1 or PS set/);
});

test("describe NPT bits: P/W/U/A/D/PS/NX and levels", () => {
  const n3 = 0x8000000001200ee7n;
  const d = describeSpte(NPT, n3, 2);
  assert.equal(d.kind, "leaf");
  for (const re of [/^P /, /^W /, /^U /, /^A /, /^D /, /^PS /, /^NX /, /Host-writable/, /MMU-writable/]) assert.ok(fieldNamed(d, re), String(re));
  assert.equal(describeSpte(NPT, n3).kind, "leaf"); // PS set: leaf at any level
  const n6 = makeNonleafSpte(NPT, 0x5678000n, false);
  assert.equal(describeSpte(NPT, n6, 2).kind, "non-leaf");
  assert.equal(describeSpte(NPT, n6, 1).kind, "leaf"); // is_last_spte() at 4K
  assert.equal(describeSpte(NPT, n6).kind, "present");
  // PWT/PCD/G are named though KVM never sets them.
  const odd = describeSpte(NPT, 0x818n | 0x100n);
  for (const re of [/^PWT/, /^PCD/, /^G /]) assert.ok(fieldNamed(odd, re), String(re));
});

test("describe flags a leaf that breaks the writable invariant", () => {
  const bad = 0x0000000001234a67n; // NPT: W and host-W, but no MMU-W
  const d = describeSpte(NPT, bad, 1);
  assert.match(fieldNamed(d, /WARN/)?.value ?? "", /not MMU-writable/);
  // A non-leaf is W without MMU-writable by design: no WARN.
  assert.equal(fieldNamed(describeSpte(NPT, 0x5678827n, 2), /WARN/), undefined);
});

test("describe names stray bits as unused", () => {
  const d = describeSpte(NPT, 0x0000000001234e67n | (1n << 60n), 1);
  assert.equal(d.fields.find((f) => f.bits === "60")?.name, "unused by KVM / reserved");
});

test("render: aligned lines with the full 16-digit value", () => {
  const text = renderSpteDescription(describeSpte(EPT, 0x0600000001234b77n, 1));
  const lines = text.trimEnd().split("\n");
  assert.equal(lines[0], "0x0600000001234b77  ept level 1: leaf");
  const nameCol = lines.slice(1).map((l) => l.indexOf(l.trim().split(/\s{2,}/)[1] ?? "\u0000"));
  assert.ok(nameCol.every((c) => c === nameCol[0]), "name column aligned");
  assert.ok(lines.some((l) => /51:12\s+pfn\s+0x1234$/.test(l)));
});

const formatArb = fc.constantFrom<SpteFormat>("npt", "ept", "ept-noad");

test("property: every bit of a KVM-built SPTE is named, pfn and kind decode back", () => {
  fc.assert(
    fc.property(
      formatArb,
      fc.integer({ min: PG_LEVEL_4K, max: KVM_MAX_HUGEPAGE_LEVEL }),
      fc.integer({ min: 0, max: 2 ** 36 - 1 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      (format, level, rawPfn, hostWritable, exec, aged) => {
        const m = masksFor(format);
        const pfn = rawPfn - (rawPfn % kvmPagesPerHpage(level));
        let s = leaf(m, level, pfn, hostWritable, exec ? ACC_ALL : ACC_ALL & ~ACC_EXEC_MASK);
        if (aged) s = markSpteForAccessTrack(m, s);
        const d = describeSpte(m, s, level);
        assert.equal(d.kind, "leaf");
        assert.equal(claimedBits(d) & s, s);
        assert.equal(fieldNamed(d, /unused/), undefined);
        assert.equal(fieldNamed(d, /WARN/), undefined);
        if (pfn !== 0) assert.equal(fieldNamed(d, /^pfn$/)?.value, "0x" + pfn.toString(16));
        assert.equal(fieldNamed(d, /^PS /) !== undefined, level > PG_LEVEL_4K);
      },
    ),
  );
});

test("property: MMIO SPTEs decode to their gfn and generation", () => {
  fc.assert(
    fc.property(formatArb, fc.integer({ min: 0, max: 2 ** 36 - 1 }), fc.bigInt({ min: 0n, max: (1n << 19n) - 1n }), (format, gfn, gen) => {
      const m = masksFor(format);
      const s = makeMmioSpte(m, gfn, ACC_ALL, gen);
      const d = describeSpte(m, s, PG_LEVEL_4K);
      assert.equal(d.kind, "mmio");
      assert.equal(fieldNamed(d, /MMIO gfn/)?.value, "0x" + gfn.toString(16));
      assert.equal(fieldNamed(d, /MMIO generation/)?.value, "0x" + gen.toString(16));
      assert.equal(claimedBits(d) & s, s);
      assert.equal(fieldNamed(d, /unused/), undefined);
    }),
  );
});

test("non-leaf EPT pointer decodes as non-leaf with child pfn", () => {
  const d = describeSpte(EPT, makeNonleafSpte(EPT, 0x5678000n, false), PG_LEVEL_2M);
  assert.equal(d.kind, "non-leaf");
  assert.equal(fieldNamed(d, /child table/)?.value, "0x5678");
  assert.equal(fieldNamed(d, /memory type/), undefined);
});
