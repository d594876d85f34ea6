// SPDX-License-Identifier: GPL-2.0-only
// Unrelated work around a scenario: a bug must still be found when other threads run too,
// and the faithful kernel must stay clean.

/**
 * The scenario text with bystanders added: a fresh 2M memslot above every other slot, one
 * more vCPU that faults in its first page during setup and another page as a thread, a
 * thread aging both pages, and a thread harvesting the slot's dirty log (logging is enabled
 * in setup, after the first page was mapped).
 */
export function withBystanders(text: string): string {
  const j = JSON.parse(text) as {
    name: string;
    vm: { memslots: { slot: number; gpa: string | number; size: string | number }[]; vcpus?: number };
    setup?: unknown[];
    threads: unknown[];
  };
  const num = (v: string | number): number => (typeof v === "number" ? v : Number(v));
  const hex = (n: number): string => "0x" + n.toString(16);
  let end = 0;
  let slot = 0;
  for (const m of j.vm.memslots) {
    end = Math.max(end, num(m.gpa) + num(m.size));
    slot = Math.max(slot, m.slot + 1);
  }
  const gpa = Math.ceil(end / 0x200000) * 0x200000;
  const vcpu = j.vm.vcpus ?? 1;
  j.vm.memslots.push({ slot, gpa: hex(gpa), size: "0x200000" });
  j.vm.vcpus = vcpu + 1;
  j.setup = [...(j.setup ?? []), { op: "access", vcpu, gpa: hex(gpa), write: true }, { op: "dirty_log", action: "enable", slot }];
  j.threads.push({ name: "bystander-vcpu", ops: [{ op: "access", vcpu, gpa: hex(gpa + 0x1000), write: true }] });
  j.threads.push({ name: "ager", ops: [{ op: "age_gfn_range", start: hex(gpa / 4096), end: hex(gpa / 4096 + 2) }] });
  j.threads.push({ name: "harvest", ops: [{ op: "dirty_log", action: "get", slot }] });
  j.name += "-with-bystanders";
  return JSON.stringify(j, null, 2);
}
