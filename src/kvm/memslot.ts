// Memslots (KVM_SET_USER_MEMORY_REGION): guest physical ranges backed by
// the creator's memory, in linear memory so real mode can translate the
// guest addresses of H_PUT_TCE_INDIRECT lists and of TCEs.
//
// vCPUs on worker threads walk the VM's list of descriptors without a lock
// (assembly/guest.ts findSlot and its C++ twin match SLOT.gpa and size;
// gpaToUa and gpaToHost then load ua, hostOff and gpa again). KVM never
// changes a memslot a reader may hold: it builds a new array and frees the
// old one only after an SRCU grace period (kvm_swap_active_memslots →
// synchronize_srcu_expedited). Here a removed memslot's descriptor stays in
// the list with size 0 (it matches no address) and is neither freed nor
// rewritten until a grace period has passed since its removal
// (src/core/reclaim.ts): a vCPU that matched it just before the removal may
// still be loading its ua and gpa, and a descriptor reused at once would
// give it the new memslot's ua and gpa for an address of the old one, a
// translation of neither. Once that grace period has ended, the next
// addMemslot reuses the descriptor. The list never holds more than
// MAX_MEMSLOTS descriptors, live or removed: an add that would need another
// while the rest wait for their grace period is EBUSY (where KVM would sleep
// in synchronize_srcu_expedited until the readers leave).
import type { KvmVm } from './vm.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { SlotView, VmView } from '../generated/views.js';
import { DIRTY_LOG_HEADER } from '../generated/layout.js';

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

/** KVM_USER_MEM_SLOTS on powerpc: the most memslots a VM has, and the most descriptors its list holds. */
export const MAX_MEMSLOTS = 512;

const MEMSLOT = v.keys<MemslotArgs>('vm.addMemslot', { gpa: true, size: true, ua: true });

/**
 * KVM_SET_USER_MEMORY_REGION: guest physical [gpa, gpa + size) is the
 * creator's memory at ua. Page aligned (EINVAL), no overlap (EEXIST is
 * reported as EINVAL here), inside one mapping (EFAULT), at most
 * MAX_MEMSLOTS of them (EINVAL, as a slot id past KVM_USER_MEM_SLOTS is);
 * EBUSY when every descriptor the list may hold is live or still in the
 * grace period of its removal (see the top of this file).
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
  if (vm.memslots.length >= MAX_MEMSLOTS) fail('EINVAL', `addMemslot: the VM has ${MAX_MEMSLOTS} memslots (KVM_USER_MEM_SLOTS)`);
  const { reusable, listed } = deadSlot(vm);
  if (!reusable && listed >= MAX_MEMSLOTS) {
    fail('EBUSY', `addMemslot: ${vm.slotsInGrace.size} removed memslot descriptor(s) wait for a vCPU to leave the hypercall it was in at their removal (host.synchronize() waits for it)`);
  }
  const vmd = new VmView(vm.host.mem, vm.desc);
  // While dirty tracking is on every live memslot has its log (the engine marks only where one exists):
  // allocated before anything changes, so ENOMEM refuses the call with nothing done.
  const log = vmd.dirtyTrack !== 0 ? allocDirtyLog(vm, size) : 0;
  let d = reusable;
  if (!d) {
    let at: number;
    try {
      at = vm.host.alloc(SlotView.BYTES, 'memslot');
    } catch (e) {
      if (log) vm.host.free(log, DIRTY_LOG_HEADER + dirtyLogBytes(vm.host.pageShift, size));
      throw e;
    }
    d = new SlotView(vm.host.mem, at);
    d.next = vmd.slots;
    vmd.slots = d.at;
  }
  d.gpa = gpa;
  d.ua = ua;
  d.hostOff = m.hostOff ? m.hostOff + Number(ua - m.ua) : 0;
  d.dirtyLog = log;
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
      // kvm_free_memslot → kvm_destroy_dirty_bitmap; after a grace period, as a vCPU may be marking it.
      freeDirtyLog(vm, d);
      // Not rewritten before a grace period: a vCPU that loaded the old size may still read gpa and ua.
      const at = d.at;
      vm.slotsInGrace.add(at);
      vm.host.deferFree(() => vm.slotsInGrace.delete(at));
      break;
    }
    at = d.next;
  }
  vm.memslots.splice(i, 1);
  return slot;
}

/**
 * A descriptor of a removed memslot whose grace period has ended, to reuse
 * (if the list has one), and how many descriptors the list holds.
 */
function deadSlot(vm: KvmVm): { reusable: SlotView | undefined; listed: number } {
  // Grace periods that have ended since the removals end here (their callbacks leave slotsInGrace).
  if (vm.slotsInGrace.size > 0) vm.host.reclaim.poll();
  const mem = vm.host.mem;
  let reusable: SlotView | undefined;
  let listed = 0;
  for (let at = new VmView(mem, vm.desc).slots; at !== 0; listed++) {
    const d = new SlotView(mem, at);
    if (!reusable && d.size === 0n && !vm.slotsInGrace.has(at)) reusable = d;
    at = d.next;
  }
  return { reusable, listed };
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
    const host = memslotHostOffset(vm, s);
    return host < 0 ? -1 : host + Number(off);
  }
  return -1;
}

/**
 * Linear-memory offset of memslot `s`'s first byte, or -1 when the memory
 * behind it has no bytes: what guestRamOffset and vm.dma's cache of the
 * memslots add an offset in the slot to.
 */
export function memslotHostOffset(vm: KvmVm, s: Memslot): number {
  const m = vm.mm.findMapping(s.ua);
  return m?.bytes ? m.hostOff + Number(s.ua - m.ua) : -1;
}

/** Largest dirty log: 2^27 bytes of bits = 2^30 pages (4 TiB of 4 KiB pages); a larger memslot's log is ENOMEM, as kvm_alloc_dirty_bitmap's vzalloc would fail. */
export const MAX_DIRTY_LOG = 1 << 27;

/** kvm_dirty_bitmap_bytes: one bit per system page of a memslot of `size` bytes, in whole 64-bit words (MAX_DIRTY_LOG + 1 when too large). */
export function dirtyLogBytes(pageShift: number, size: bigint): number {
  const words = ((size >> BigInt(pageShift)) + 63n) / 64n;
  return words * 8n > BigInt(MAX_DIRTY_LOG) ? MAX_DIRTY_LOG + 1 : Number(words * 8n);
}

/**
 * A zeroed dirty log block for a memslot of `size` bytes (kvm_alloc_dirty_bitmap):
 * DIRTY_LOG_HEADER bytes holding its page count, then the bits. ENOMEM when too large or the memory is full.
 */
export function allocDirtyLog(vm: KvmVm, size: bigint): number {
  const bytes = dirtyLogBytes(vm.host.pageShift, size);
  if (bytes > MAX_DIRTY_LOG) fail('ENOMEM', `dirty log: a memslot of ${hex(size)} bytes has more than ${MAX_DIRTY_LOG * 8} pages`);
  const p = vm.host.alloc(DIRTY_LOG_HEADER + bytes, 'dirty log');
  vm.host.mem.setU32(p, Number(size >> BigInt(vm.host.pageShift)));
  return p;
}

/** Unhooks the dirty log of memslot descriptor `d` and frees it after a grace period (a vCPU may be marking it). */
export function freeDirtyLog(vm: KvmVm, d: SlotView): void {
  const p = d.dirtyLog;
  if (p === 0) return;
  const pages = vm.host.mem.getU32(p);
  d.dirtyLog = 0;
  // The size the block was allocated with, from its own page count (a size of `pages` at shift 0).
  vm.host.free(p, DIRTY_LOG_HEADER + dirtyLogBytes(0, BigInt(pages)));
}

/** The descriptor of live memslot `slot` of `vm` (found as removeMemslot finds it). */
export function slotDesc(vm: KvmVm, slot: Memslot): SlotView {
  const mem = vm.host.mem;
  for (let at = new VmView(mem, vm.desc).slots; at !== 0; ) {
    const d = new SlotView(mem, at);
    if (d.gpa === slot.gpa && d.size === slot.size) return d;
    at = d.next;
  }
  throw new Error(`spapr-tce: memslot ${hex(slot.gpa)} has no descriptor`);
}
