#!/usr/bin/env node
// SPDX-License-Identifier: GPL-2.0-only
// The direct build (step announcements stripped) runs everything that needs no scheduler.
import { main } from "../dist/direct/cli/main.js";
process.exitCode = main(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
});
