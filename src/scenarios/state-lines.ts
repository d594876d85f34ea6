// SPDX-License-Identifier: GPL-2.0-only
// The modelled host's whole state as "path=value" lines: two executions are in the same
// state iff their lines are equal. Used to check that steps the explorer treats as
// commuting really commute.

import { ShapeCache, fieldAccess, fnv1a } from "../base/index.js";

/**
 * Fields that record how a state was reached, not what it is (histories and lookup caches),
 * that are a second view of memory seen through another field (a table's spt32), or that
 * are scratch space kept between uses (a vCPU's tdpIter).
 */
const HISTORY = new Set(["current", "stepsTotal", "stepsBy", "findings", "onFinding", "tracer", "nextObjId", "lastRunKey", "lastRun", "spt32", "tdpIter"]);

export function stateLines(root: object): string[] {
  const seen = new Map<object, string>();
  const out: string[] = [];
  const visit = (v: unknown, path: string): void => {
    if (typeof v === "function" || v === undefined) return;
    if (typeof v !== "object" || v === null) {
      out.push(`${path}=${typeof v === "bigint" ? "0x" + v.toString(16) : String(v)}`);
      return;
    }
    const first = seen.get(v);
    if (first !== undefined) {
      out.push(`${path}=@${first}`);
      return;
    }
    seen.set(v, path);
    if (ArrayBuffer.isView(v)) {
      const a = v as unknown as ArrayLike<number | bigint>;
      const parts: string[] = [];
      for (let i = 0; i < a.length; i++) if (a[i] !== 0 && a[i] !== 0n) parts.push(`${i}:${a[i]!.toString(16)}`);
      out.push(`${path}=[${parts.join(",")}]`);
      return;
    }
    if (v instanceof Map) {
      // Maps keyed by numbers or strings are looked up, not iterated in order: sort them.
      const entries = [...v.entries()];
      if (entries.every(([k]) => typeof k === "number")) entries.sort((a, b) => (a[0] as number) - (b[0] as number));
      let i = 0;
      for (const [k, x] of entries) visit(x, `${path}{${typeof k === "object" ? i : String(k)}}`), i++;
      out.push(`${path}.size=${v.size}`);
      return;
    }
    if (v instanceof Set) {
      let i = 0;
      for (const x of v) visit(x, `${path}{${i++}}`);
      out.push(`${path}.size=${v.size}`);
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((x, i) => visit(x, `${path}[${i}]`));
      out.push(`${path}.length=${v.length}`);
      return;
    }
    for (const k of Object.keys(v)) if (!HISTORY.has(k)) visit((v as Record<string, unknown>)[k], `${path}.${k}`);
  };
  visit(root, "");
  return out;
}

type FieldReader = (v: object, field: (keyHash: number, x: unknown) => void) => void;

/**
 * How stateDigest() reads the fields of objects of one shape: a function made for it, which
 * loads each field by its name (so each load sees one kind of object, not every kind), with
 * the hash of the name.
 */
const readers = new ShapeCache<FieldReader>(
  (keys) =>
    new Function(
      "v",
      "field",
      keys
        .filter((k) => !HISTORY.has(k))
        .map((k) => `field(${fnv1a(k)}, ${fieldAccess("v", k)});`)
        .join("\n"),
    ) as FieldReader,
  (keys) => (v, field) => {
    for (const k of keys) if (!HISTORY.has(k)) field(fnv1a(k), (v as Record<string, unknown>)[k]);
  },
);

/**
 * A digest of the same state: equal for states with equal stateLines(), and (but for a
 * 64-bit hash collision) different otherwise. The same walk, fed to two running FNV-1a
 * hashes instead of building lines: objects met again are named by the order in which
 * they were first met, not by path; runs of equal words in typed arrays are hashed as one.
 */
export function stateDigest(root: object): string {
  const seen = new Map<object, number>();
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  let len = 0;
  // Two independent 32-bit multiply-xorshift hashes, a word at a time.
  const word = (x: number): void => {
    h1 = Math.imul(h1 ^ x, 0x01000193);
    h1 ^= h1 >>> 15;
    h2 = Math.imul(h2 ^ x, 0x5bd1e995);
    h2 ^= h2 >>> 13;
    len++;
  };
  const text = (s: string): void => {
    word(s.length);
    for (let i = 0; i < s.length; i++) word(s.charCodeAt(i));
  };
  // Tags keep the structure unambiguous.
  const enum T { Int = 1, Text, Ref, Typed, Bytes, Map, Set, Arr, Obj, End, Bool, Big, Int53 }
  // A number: small integers as one word, other integers below 2^53 as two, the rest as text.
  const num = (x: number): void => {
    if ((x | 0) === x) (word(T.Int), word(x));
    else if (Number.isSafeInteger(x) && x > 0) (word(T.Int53), word(x % 0x100000000), word(Math.floor(x / 0x100000000)));
    else (word(T.Text), text("number" + String(x)));
  };
  const visit = (v: unknown): void => {
    if (typeof v === "function" || v === undefined) return;
    if (typeof v !== "object" || v === null) {
      if (typeof v === "number") num(v);
      else if (typeof v === "boolean") (word(T.Bool), word(v ? 1 : 0));
      else if (typeof v === "bigint" && v >= 0n) {
        // 32 bits at a time, low first, then the number of words.
        word(T.Big);
        let n = 0;
        for (let x = v; x !== 0n; x >>= 32n, n++) word(Number(x & 0xffffffffn));
        word(n);
      } else (word(T.Text), text(typeof v === "bigint" ? "0x" + v.toString(16) : typeof v + String(v)));
      return;
    }
    const first = seen.get(v);
    if (first !== undefined) {
      word(T.Ref);
      word(first);
      return;
    }
    seen.set(v, seen.size);
    if (ArrayBuffer.isView(v)) {
      // Runs of equal nonzero words (bytes if the view is not a whole number of words): where
      // each starts, the word, its length. A poisoned table is one run.
      const whole = (v.byteOffset & 3) === 0 && (v.byteLength & 3) === 0;
      const h = whole ? new Uint32Array(v.buffer, v.byteOffset, v.byteLength >>> 2) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      word(whole ? T.Typed : T.Bytes);
      for (let i = 0; i < h.length; ) {
        const x = h[i]!;
        if (x === 0) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < h.length && h[j] === x) j++;
        word(i);
        word(x);
        word(j - i);
        i = j;
      }
      word(T.End);
      return;
    }
    if (v instanceof Map) {
      word(T.Map);
      // Sorted by number like stateLines(); most maps are in order already.
      let sorted = true;
      let last = -Infinity;
      for (const k of v.keys()) {
        if (typeof k !== "number") {
          sorted = true;
          break;
        }
        if (k < last) sorted = false;
        last = k;
      }
      if (sorted) v.forEach(entry);
      else {
        const keys = new Float64Array(v.size);
        let i = 0;
        for (const k of v.keys()) keys[i++] = k as number;
        keys.sort();
        for (const k of keys) entry(v.get(k), k);
      }
      word(T.End);
      return;
    }
    if (v instanceof Set) {
      word(T.Set);
      for (const x of v) visit(x);
      word(T.End);
      return;
    }
    if (Array.isArray(v)) {
      word(T.Arr);
      word(v.length);
      for (const x of v) visit(x);
      word(T.End);
      return;
    }
    word(T.Obj);
    // Each field in the order of Object.keys(), as stateLines() walks them.
    const keys = Object.keys(v);
    readers.get(v, keys)(v, field);
    word(T.End);
  };
  const entry = (x: unknown, k: unknown): void => {
    if (typeof k === "number") num(k);
    else if (typeof k !== "object") (word(T.Text), text(String(k)));
    visit(x);
  };
  const field = (keyHash: number, x: unknown): void => {
    if (typeof x === "function" || x === undefined) return;
    word(keyHash);
    visit(x);
  };
  visit(root);
  return `${(h1 >>> 0).toString(36)}.${(h2 >>> 0).toString(36)}.${len}`;
}
