// SPDX-License-Identifier: GPL-2.0-only
// Public surface of the spte layer: bit layout, masks, predicates, constructors, decoder.
export * from "./spte.js";
export { describeSpte, renderSpteDescription, type SpteDescription, type SpteField, type SpteKind } from "./describe.js";
