// SPDX-License-Identifier: GPL-2.0-only
// The modelled host's whole state as "path=value" lines: two executions are in the same
// state iff their lines are equal. Used to check that steps the explorer treats as
// commuting really commute.

/** Fields that record how a state was reached, not what it is. */
const HISTORY = new Set(["current", "stepsTotal", "stepsBy", "findings", "onFinding", "tracer", "nextObjId"]);

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
