// SPDX-License-Identifier: GPL-2.0-only
// A deep copy of an object graph that keeps its shape: shared objects stay shared, cycles
// stay cycles, class instances keep their class. The explorer builds a scenario's host and
// runs its setup once, then starts every schedule from a copy.
//
// What it cannot copy it refuses: a function (a closure may hold objects of the graph),
// unless marked stateless(); an object with private state copies itself through [COPY].

/** The method by which an object with private state makes its copy (see Copier.copy). */
export const COPY: unique symbol = Symbol("copy");

export interface SelfCopying {
  [COPY](c: Copier): object;
}

const statelessFns = new WeakSet<object>();

/** Mark a function that holds no state of its own: copies of a graph may share it. */
export function stateless<F extends (...args: never[]) => unknown>(f: F): F {
  statelessFns.add(f);
  return f;
}

/**
 * Things made once per shape of object, a shape being its class and its list of own keys
 * (as Object.keys() gives them): functions generated for that shape, whose property
 * accesses by name each see one kind of object. A class whose instances come in more than
 * `limit` shapes (objects used as dictionaries) gets `fallback` for the others.
 */
export class ShapeCache<T> {
  private readonly byClass = new Map<unknown, { keys: readonly string[]; value: T }[]>();
  constructor(
    private readonly make: (keys: string[]) => T,
    private readonly fallback: (keys: string[]) => T,
    private readonly limit = 16,
  ) {}

  get(v: object, keys: string[]): T {
    let list = this.byClass.get(v.constructor);
    if (list === undefined) this.byClass.set(v.constructor, (list = []));
    for (const e of list) if (sameKeys(e.keys, keys)) return e.value;
    if (list.length >= this.limit) return this.fallback(keys);
    const value = this.make(keys);
    list.push({ keys, value });
    return value;
  }
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `o.name` or `o["name"]`: an access by name in generated code. */
export const fieldAccess = (o: string, k: string): string => (/^[A-Za-z_$][\w$]*$/.test(k) ? `${o}.${k}` : `${o}[${JSON.stringify(k)}]`);

type FieldCopier = (o: object, v: object, c: Copier) => void;

/**
 * Per shape: a function that stores into `o` copies of `v`'s fields, each by its name, in
 * order. Stores under names keep V8's fast object layout however many fields a class has;
 * stores under computed keys turn objects with more than a dozen fields into hash tables,
 * which makes every later access to them slow.
 */
const copiers = new ShapeCache<FieldCopier>(
  (keys) => new Function("o", "v", "c", keys.map((k) => `${fieldAccess("o", k)} = c.copy(${fieldAccess("v", k)});`).join("\n")) as FieldCopier,
  (keys) => (o, v, c) => {
    for (const k of keys) (o as Record<string, unknown>)[k] = c.copy((v as Record<string, unknown>)[k]);
  },
);

export class Copier {
  /** Original to copy, for everything copied so far. */
  readonly copies = new Map<object, object>();

  /** Register `copy` as the copy of `original` (before copying what it holds: cycles). */
  made<T extends object>(original: T, copy: T): T {
    this.copies.set(original, copy);
    return copy;
  }

  copy<T>(v: T): T {
    if (typeof v === "function") {
      if (statelessFns.has(v)) return v;
      throw new Error(`cannot copy a closure (${(v as { name?: string }).name || "anonymous"}): mark it stateless() or keep it out of the graph`);
    }
    if (typeof v !== "object" || v === null) return v;
    const done = this.copies.get(v);
    if (done !== undefined) return done as T;
    if (COPY in v) return (v as unknown as SelfCopying)[COPY](this) as T;
    if (ArrayBuffer.isView(v)) {
      if (v instanceof DataView) throw new Error("cannot copy a DataView");
      return this.made(v, (v as unknown as { slice(): object }).slice()) as T;
    }
    if (v instanceof Map) {
      const m = this.made(v, new Map<unknown, unknown>());
      for (const [k, x] of v) m.set(this.copy(k), this.copy(x));
      return m as T;
    }
    if (v instanceof Set) {
      const s = this.made(v, new Set<unknown>());
      for (const x of v) s.add(this.copy(x));
      return s as T;
    }
    if (Array.isArray(v)) {
      const a = this.made(v, new Array<unknown>(v.length));
      for (let i = 0; i < v.length; i++) if (i in v) a[i] = this.copy(v[i] as unknown);
      return a as T;
    }
    const proto = Object.getPrototypeOf(v) as object | null;
    if (proto !== Object.prototype && proto !== null && !Object.prototype.hasOwnProperty.call(proto, "constructor"))
      throw new Error("cannot copy an object whose prototype is not a class's");
    // Own enumerable fields, as the state walks (scenarios/state-lines.ts) see them.
    const keys = Object.keys(v);
    const o = Object.create(proto) as object;
    this.copies.set(v, o);
    copiers.get(v, keys)(o, v, this);
    if (Object.isFrozen(v)) Object.freeze(o);
    return o as T;
  }
}
