// SPDX-License-Identifier: GPL-2.0-only
export * from "./kvm_host.js";
export * from "./mmu_internal.js";
export { TdpIter, roundGfnForLevel, spteIndexOfGfn } from "./tdp_iter.js";
export * from "./tdp_mmu.js";
export * from "./mmu.js";
export * from "./kvm_main.js";
export * from "./x86.js";
