// SPDX-License-Identifier: GPL-2.0-only
export * from "./phys.js";
export * from "./mmu-hw.js";
