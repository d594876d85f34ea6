#!/usr/bin/env node
// SPDX-License-Identifier: GPL-2.0-only
// Commands that interleave threads need the generator build; everything else runs the
// direct build, where the step announcements are stripped.
import v8 from "node:v8";

const cmd = process.argv[2];
// A reader that stops early (`tdpmmu replay ... | head`) is not an error.
for (const stream of [process.stdout, process.stderr])
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
// The engine is deep chains of small functions (a walk is some thirty calls per page). V8's
// default budget for inlining into one optimized function stops well short of that; a larger
// one makes the bench operations 18-36 % faster (measured with `tdpmmu bench`, see README).
// It must be set before any code is optimized, so here, before the engine is loaded.
v8.setFlagsFromString("--max-inlined-bytecode-size-cumulative=4000");
const stepped = cmd === "explore" || cmd === "replay" || cmd === "seed-demo" || cmd === "audit";
const { main } = await import(stepped ? "../dist/gen/cli/main.js" : "../dist/direct/cli/main.js");
process.exitCode = main(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
});
