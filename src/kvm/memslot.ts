// Memslots (KVM_SET_USER_MEMORY_REGION): guest physical ranges backed by
// the creator's memory, in linear memory so real mode can translate the
// guest addresses of H_PUT_TCE_INDIRECT lists.
import type { KvmVm } from './vm.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { SlotView, VmView } from '../generated/views.js';

/** A guest memory slot. */
export interface Memslot {
  gpa: bigint;
  size: bigint;
  ua: bigint;
}

/**
 * KVM_SET_USER_MEMORY_REGION: guest physical [gpa, gpa + size) is the
 * creator's memory at ua. Page aligned (EINVAL), no overlap (EEXIST is
 * reported as EINVAL here), inside one mapping (EFAULT).
 */
export function addMemslot(vm: KvmVm, slot: Memslot): void {
  const o = v.options<Memslot>('slot', slot);
  const gpa = v.u64('gpa', o.gpa);
  const size = v.u64('size', o.size);
  const ua = v.u64('ua', o.ua);
  const mask = (1n << BigInt(vm.host.pageShift)) - 1n;
  if (gpa & mask || size & mask || ua & mask || size === 0n) fail('EINVAL', `addMemslot: gpa ${hex(gpa)}, size ${hex(size)} and ua ${hex(ua)} must be non-empty and page aligned`);
  if (gpa + size > 1n << 64n) fail('EINVAL', 'addMemslot: the range wraps around');
  for (const s of vm.memslots) if (gpa < s.gpa + s.size && s.gpa < gpa + size) fail('EINVAL', `addMemslot: overlaps the memslot at ${hex(s.gpa)}`);
  const m = vm.mm.findMapping(ua);
  if (!m || ua + size > m.ua + m.size) fail('EFAULT', `addMemslot: [${hex(ua)}, +${hex(size)}) is not one mapping of the VM's process`);
  const d = new SlotView(vm.host.mem, vm.host.alloc(SlotView.BYTES, 'memslot'));
  const vmd = new VmView(vm.host.mem, vm.desc);
  d.gpa = gpa;
  d.size = size;
  d.ua = ua;
  d.hostOff = m.hostOff ? m.hostOff + Number(ua - m.ua) : 0;
  d.next = vmd.slots;
  vmd.slots = d.at;
  vm.memslots.push({ gpa, size, ua });
}

/**
 * Linear-memory offset of guest physical [gpa, gpa + len) when it lies in one
 * memslot backed by bytes, else -1 (the rule of the engine's gpaToHost, used
 * for the H_PUT_TCE_INDIRECT list).
 */
export function guestRamOffset(vm: KvmVm, gpa: bigint, len: number): number {
  for (const s of vm.memslots) {
    if (gpa < s.gpa || gpa - s.gpa >= s.size) continue;
    const off = gpa - s.gpa;
    if (BigInt(len) > s.size - off) return -1;
    const m = vm.mm.findMapping(s.ua);
    if (!m?.bytes) return -1;
    return m.hostOff + Number(s.ua - m.ua + off);
  }
  return -1;
}
