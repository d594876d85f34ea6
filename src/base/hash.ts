// SPDX-License-Identifier: GPL-2.0-only
// FNV-1a over strings: stable fingerprints for traces and determinism checks.
export function fnv1a(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
