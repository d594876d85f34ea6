// SPDX-License-Identifier: GPL-2.0-only
export * from "./run.js";
export * from "./explorer.js";
export * from "./dpor.js";
export * from "./audit.js";
export * from "./races.js";
