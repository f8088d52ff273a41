// Memslots (KVM_SET_USER_MEMORY_REGION): guest physical ranges backed by
// the creator's memory, in linear memory so real mode can translate the
// guest addresses of H_PUT_TCE_INDIRECT lists and of TCEs.
//
// A removed memslot's descriptor stays in the VM's list with size 0 (it
// matches no address) and is reused by the next addMemslot: vCPUs on worker
// threads walk the list without a lock, and KVM frees an old memslot array
// only after an SRCU grace period (kvm_swap_active_memslots →
// synchronize_srcu_expedited), which this model has no equivalent of. So
// nothing a walker can be reading is ever freed, and the list is never
// longer than the most memslots the VM had at one time.
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

/** What vm.addMemslot() takes (struct kvm_userspace_memory_region): addresses and size as bigint or safe-integer number. */
export interface MemslotArgs {
  gpa: bigint | number;
  size: bigint | number;
  ua: bigint | number;
}

const MEMSLOT = v.keys<MemslotArgs>('vm.addMemslot', { gpa: true, size: true, ua: true });

/**
 * KVM_SET_USER_MEMORY_REGION: guest physical [gpa, gpa + size) is the
 * creator's memory at ua. Page aligned (EINVAL), no overlap (EEXIST is
 * reported as EINVAL here), inside one mapping (EFAULT).
 */
export function addMemslot(vm: KvmVm, slot: MemslotArgs): Memslot {
  const o = v.options('slot', slot, MEMSLOT);
  const gpa = v.u64('gpa', o.gpa);
  const size = v.u64('size', o.size);
  const ua = v.u64('ua', o.ua);
  const mask = (1n << BigInt(vm.host.pageShift)) - 1n;
  if (gpa & mask || size & mask || ua & mask || size === 0n) fail('EINVAL', `addMemslot: gpa ${hex(gpa)}, size ${hex(size)} and ua ${hex(ua)} must be non-empty and page aligned`);
  if (gpa + size > 1n << 64n) fail('EINVAL', 'addMemslot: the range wraps around');
  for (const s of vm.memslots) if (gpa < s.gpa + s.size && s.gpa < gpa + size) fail('EINVAL', `addMemslot: overlaps the memslot at ${hex(s.gpa)}`);
  const m = vm.mm.findMapping(ua);
  if (!m || ua + size > m.ua + m.size) fail('EFAULT', `addMemslot: [${hex(ua)}, +${hex(size)}) is not one mapping of the VM's process`);
  const vmd = new VmView(vm.host.mem, vm.desc);
  let d = deadSlot(vm);
  if (!d) {
    d = new SlotView(vm.host.mem, vm.host.alloc(SlotView.BYTES, 'memslot'));
    d.next = vmd.slots;
    vmd.slots = d.at;
  }
  d.gpa = gpa;
  d.ua = ua;
  d.hostOff = m.hostOff ? m.hostOff + Number(ua - m.ua) : 0;
  // Size last: a walker sees the slot only once it is complete.
  d.casSize(0n, size);
  const added = { gpa, size, ua };
  vm.memslots.push(added);
  return added;
}

/**
 * KVM_SET_USER_MEMORY_REGION with memory_size 0: deletes the memslot that
 * starts at `gpa` (EINVAL if none does, as kvm_set_memory_region answers a
 * delete of an empty slot). Only the guest physical mapping goes:
 * kvm_arch_flush_shadow_memslot (kvmppc_core_flush_memslot on book3s) drops
 * the guest's page-table view of the slot and nothing else, so guest TCEs
 * that point into it stay as they are (their next use as a map cannot
 * translate: H_TOO_HARD), hardware TCEs made from them keep pointing at the
 * memory, which stays pinned by its pre-registered region while they exist,
 * and clearing such an entry still works (it finds the region by the
 * userspace address the view recorded). The VMM's mapping is not touched.
 */
export function removeMemslot(vm: KvmVm, gpa: bigint | number): Memslot {
  gpa = v.u64('gpa', gpa);
  const i = vm.memslots.findIndex((s) => s.gpa === gpa);
  if (i < 0) fail('EINVAL', `removeMemslot: no memslot starts at ${hex(gpa)}`);
  const slot = vm.memslots[i]!;
  const mem = vm.host.mem;
  for (let at = new VmView(mem, vm.desc).slots; at !== 0; ) {
    const d = new SlotView(mem, at);
    if (d.gpa === gpa && d.size === slot.size) {
      // Size to 0 first, atomically: from here no walker matches the slot.
      d.casSize(slot.size, 0n);
      break;
    }
    at = d.next;
  }
  vm.memslots.splice(i, 1);
  return slot;
}

/** A descriptor of a removed memslot to reuse, if the list has one. */
function deadSlot(vm: KvmVm): SlotView | undefined {
  const mem = vm.host.mem;
  for (let at = new VmView(mem, vm.desc).slots; at !== 0; ) {
    const d = new SlotView(mem, at);
    if (d.size === 0n) return d;
    at = d.next;
  }
  return undefined;
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
