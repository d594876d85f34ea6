// SPDX-License-Identifier: GPL-2.0-only
import { test } from "node:test";
import assert from "node:assert/strict";
import { COPY, Copier, stateless } from "./clone.js";

class Node {
  next: Node | null = null;
  tags = new Set<string>();
  constructor(readonly name: string) {}
  label(): string {
    return `node ${this.name}`;
  }
}

test("copy: classes, sharing and cycles kept, nothing shared with the original", () => {
  const a = new Node("a");
  const b = new Node("b");
  a.next = b;
  b.next = a;
  a.tags.add("x");
  const graph = { both: [a, b], first: a, byName: new Map([["a", a]]), words: new Uint32Array([1, 2, 3]) };
  const c = new Copier().copy(graph);
  assert.ok(c.first instanceof Node);
  assert.equal(c.first.label(), "node a");
  assert.equal(c.both[0], c.first, "a shared object stays shared");
  assert.equal(c.first.next!.next, c.first, "a cycle stays a cycle");
  assert.equal(c.byName.get("a"), c.first);
  assert.notEqual(c.first, a);
  c.first.tags.add("y");
  c.words[0] = 9;
  assert.deepEqual([...a.tags], ["x"]);
  assert.equal(graph.words[0], 1);
  assert.deepEqual(Object.keys(c.first), Object.keys(a));
});

test("copy: a closure is refused unless marked stateless; [COPY] lets an object copy itself", () => {
  assert.throws(() => new Copier().copy({ f: () => 1 }), /cannot copy a closure/);
  const f = stateless(() => 1);
  assert.equal(new Copier().copy({ f }).f, f);
  class Private {
    #secret = 1;
    bump(): number {
      return ++this.#secret;
    }
    [COPY](c: Copier): Private {
      const p = c.made(this, new Private());
      p.#secret = this.#secret;
      return p;
    }
  }
  const p = new Private();
  p.bump();
  const q = new Copier().copy({ p, again: p });
  assert.equal(q.p, q.again);
  assert.equal(q.p.bump(), 3);
  assert.equal(p.bump(), 3);
});
