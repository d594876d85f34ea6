// SPDX-License-Identifier: GPL-2.0-only
export * from "./brands.js";
export * from "./errno.js";
export * from "./prng.js";
export * from "./hash.js";
export * from "./clone.js";
