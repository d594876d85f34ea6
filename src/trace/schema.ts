// SPDX-License-Identifier: GPL-2.0-only
// The trace schema, defined once: the engine records these events, the CLI writes them,
// and a viewer reads them. Event names and fields are the kernel's tracepoints
// (arch/x86/kvm/mmu/mmutrace.h, arch/x86/kvm/trace.h) wherever one exists.

export const TRACE_SCHEMA_VERSION = 1;

export type TraceEvent =
  | { readonly ev: "kvm_tdp_mmu_spte_changed"; readonly asId: number; readonly gfn: number; readonly level: number; readonly oldSpte: bigint; readonly newSpte: bigint }
  | { readonly ev: "kvm_mmu_spte_requested"; readonly gfn: number; readonly pfn: number; readonly level: number }
  | { readonly ev: "kvm_mmu_get_page"; readonly gfn: number; readonly role: number; readonly created: boolean }
  | { readonly ev: "kvm_mmu_prepare_zap_page"; readonly gfn: number; readonly role: number }
  | { readonly ev: "kvm_mmu_set_spte"; readonly gfn: number; readonly level: number; readonly spte: bigint }
  | { readonly ev: "mark_mmio_spte"; readonly gfn: number; readonly spte: bigint; readonly gen: number }
  | { readonly ev: "handle_mmio_page_fault"; readonly gfn: number; readonly access: number }
  | { readonly ev: "check_mmio_spte"; readonly spte: bigint; readonly kvmGen: number; readonly spteGen: number }
  | { readonly ev: "fast_page_fault"; readonly gpa: number; readonly errorCode: number; readonly oldSpte: bigint; readonly newSpte: bigint; readonly ret: number }
  | { readonly ev: "kvm_mmu_split_huge_page"; readonly gfn: number; readonly spte: bigint; readonly level: number; readonly errno: number }
  | { readonly ev: "kvm_page_fault"; readonly vcpu: number; readonly gpa: number; readonly errorCode: number }
  | { readonly ev: "kvm_mmu_zap_all_fast" }
  | { readonly ev: "kvm_tdp_mmu_page_stats"; readonly pages4k: number; readonly pages2m: number; readonly pages1g: number }
  | { readonly ev: "tracing_mark_write"; readonly text: string };

export type TraceEventName = TraceEvent["ev"];

export interface TraceRecord {
  readonly thread: number;
  readonly event: TraceEvent;
}

/** Where the engine sends events. `on` is read before building an event, so off is free. */
export class Tracer {
  on = true;
  readonly records: TraceRecord[] = [];
  /** Whose events these are: the world whose `current` thread is recorded (see World). */
  cpu: { readonly current: number } = { current: 0 };
  /** Called for each record as it is made (streaming consumers). */
  sink: ((r: TraceRecord) => void) | null = null;

  emit(event: TraceEvent): void {
    const r = { thread: this.cpu.current, event };
    this.records.push(r);
    this.sink?.(r);
  }
}
