// SPDX-License-Identifier: GPL-2.0-only
// The kernel services the MMU code may use. The MMU never reaches into the runtime or the
// hardware model directly: what it needs of them is re-exported here.
export * from "./world.js";
export * from "./footprint.js";
export * from "./locking.js";
export * from "./rcu.js";
export * from "./atomic.js";
export * from "./page_alloc.js";
export * from "./mm.js";
export { step, blockingStep, spinStep, drive, FALSE_NOW, STEPPED, touch, touchAll, lockQueueOf, lockReadersOf, lockWriterOf, type Gen, type Step } from "../rt/index.js";
export { Table, PhysMem, SPTES_PER_TABLE, Tlb, hwTranslate, type WalkResult, type WalkerConfig, type Access } from "../hw/index.js";
export { Tracer, type TraceEvent } from "../trace/index.js";
