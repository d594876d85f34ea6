// SPDX-License-Identifier: GPL-2.0-only
export * from "./kvmtdp.js";
export * from "./invariants.js";
export * from "./concurrent.js";
export * from "./bystanders.js";
