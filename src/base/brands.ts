// SPDX-License-Identifier: GPL-2.0-only
// Branded integers: a gfn is not a pfn, even though both are plain numbers.
// Frame numbers fit a JS number exactly (52-bit physical addresses, 40-bit frame numbers).

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Guest frame number. */
export type Gfn = Brand<number, "Gfn">;
/** Host physical frame number. */
export type Pfn = Brand<number, "Pfn">;
/** Identity of a page-table page (its host pfn). */
export type PageId = Brand<number, "PageId">;
/** A scheduler thread. */
export type ThreadId = Brand<number, "ThreadId">;

export const gfn = (n: number): Gfn => n as Gfn;
export const pfn = (n: number): Pfn => n as Pfn;
export const pageId = (n: number): PageId => n as PageId;
export const threadId = (n: number): ThreadId => n as ThreadId;

export const hex = (n: number | bigint): string => "0x" + n.toString(16);
