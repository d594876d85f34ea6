// SPDX-License-Identifier: GPL-2.0-only
// The `tdpmmu` executable as a shell uses it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");

test("a reader that stops early (| head) ends tdpmmu quietly, with the command's own exit code", async () => {
  // About 1.2 MB of trace rows: far more than a pipe holds.
  const dir = path.join(root, "fixtures/oracle");
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".txt")).map((f) => path.join(dir, f));
  const child = spawn(process.execPath, [path.join(root, "bin/tdpmmu.js"), "kvmtdp", ...files], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout.once("data", () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  assert.equal(stderr, "");
  assert.equal(code, 0);
});
