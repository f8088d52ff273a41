// Dirty tracking of guest RAM for live migration (KVM_GET_DIRTY_LOG's bitmap
// per memslot): which system pages a device may have written since the last
// clear, so a VMM knows which pages to send again.
//
// The log of a memslot is a block of linear memory named by its descriptor
// (SLOT.dirtyLog: a u32 page count, a zero u32, then the bits in
// little-endian 64-bit words), so the engines on every thread mark it and
// snapshots carry it. Two sources, as in QEMU's migration of a guest with
// devices:
// - DMA writes by device models (vm.dma(liobn).write): each marks the pages
//   it wrote, as mark_page_dirty does for a write KVM makes to guest memory
//   (kvm_vcpu_write_guest). Always on: the log of a memslot is allocated at
//   its first DMA write.
// - With trackDmaWritable(true), every page a TCE maps writable: a VFIO
//   device may write it at any time and leaves no trace, so it counts as
//   dirty while it stays mapped and, once unmapped, until the next clear
//   (vfio_iommu_type1 reports every mapped page as dirty while a group
//   without its own tracking is attached, pinned_page_dirty_scope false:
//   vfio_iommu_populate_bitmap_full; QEMU reads it in vfio_get_dirty_bitmap).
//   The engines do the marking (assembly/dirty.ts): every hypercall that
//   stores a guest TCE with the WRITE bit marks its page after the store,
//   on whatever thread the vCPU runs. Here: every live memslot gets its log
//   while tracking is on (addMemslot allocates one for a slot added
//   meanwhile), VM.dirtyTrack is set, and what was mapped writable before
//   is marked by a walk of the guest tables.
//
// Why no page mapped writable since the last clear can be missed. A
// hypercall marks after its stores, with an atomic OR; the clear below
// clears with atomic ANDs and then walks the guest tables. A mapping whose
// mark came after the clear's AND is in the log. One whose mark came before
// was stored before, so the walk (which follows the AND) sees it, unless a
// later hypercall changed it before the walk; that hypercall removed the
// hardware entry first, so every device write through the mapping happened
// before clearDirtyLog() returned, and the VMM's copy of the page, made
// after the clear, has it. Turning tracking on is the one place a grace
// period is needed: a hypercall reads VM.dirtyTrack with a plain load, so
// the walk waits until every vCPU inside a hypercall when the flag was set
// has left it (src/core/reclaim.ts).
//
// clearDirtyLog() follows KVM_CLEAR_DIRTY_LOG with manual protection
// (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): kvm_get_dirty_log_protect reads the
// bitmap without clearing it; kvm_clear_dirty_log_protect clears, word by
// word with atomic_long_fetch_andnot, the bits of the mask the VMM gives,
// and write-protects those pages again
// (kvm_arch_mmu_enable_log_dirty_pt_masked), so that a write after the clear
// faults and sets the bit anew. A device's mapping cannot be write-protected:
// here the clear ANDs the mask out of each word atomically (a vCPU may be
// ORing the same word) and then marks again at once every page a guest TCE
// still maps writable, which the device may write at any moment.
import type { Vm } from './vm.js';
import type { Memslot } from '../kvm/memslot.js';
import { allocDirtyLog, dirtyLogBytes, freeDirtyLog, slotDesc, MAX_DIRTY_LOG } from '../kvm/memslot.js';
import { presentMappings } from './events.js';
import { fail, TceError } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { SlotView, VmView } from '../generated/views.js';
import { DIRTY_LOG_HEADER } from '../generated/layout.js';

/** How long turning tracking on waits for vCPUs inside a hypercall (a grace period) before it walks the tables anyway. */
const TRACK_GRACE_MS = 1000;

/** @internal the dirty logs of one VM's memslots (see the file comment). */
export class DirtyLog {
  private readonly vm: Vm;
  /** The log block of each memslot by index of vm.memslots, valid for vm.generation `gen` and `epoch`: what markDma() looks up. */
  private byIndex: number[] = [];
  private gen = -1;
  private cachedEpoch = -1;
  /** Bumped whenever log blocks come or go other than through a generation change (tracking switched). */
  private epoch = 0;

  constructor(vm: Vm) {
    this.vm = vm;
  }

  /** Whether writable mappings count (trackDmaWritable): VM.dirtyTrack, so a restored host keeps it. */
  get tracking(): boolean {
    return new VmView(this.vm.host.mem, this.vm.desc).dirtyTrack !== 0;
  }

  /** @internal a DMA write of `len` bytes at offset `rel` of memslot `index` (of vm.memslots). */
  markDma(index: number, rel: number, len: number): void {
    if (this.gen !== this.vm.generation || this.cachedEpoch !== this.epoch) {
      this.byIndex = [];
      this.gen = this.vm.generation;
      this.cachedEpoch = this.epoch;
    }
    const log = this.byIndex[index] ?? (this.byIndex[index] = this.logOf(this.vm.memslots[index]!));
    const sh = this.vm.host.pageShift;
    setBits(this.vm.host.mem.u32, log, Math.floor(rel / 2 ** sh), Math.floor((rel + len - 1) / 2 ** sh));
  }

  /** vm.dirtyLog(gpa): see Vm.dirtyLog. */
  get(gpa: bigint | number): Uint8Array {
    const slot = this.slotAt(gpa, 'dirtyLog');
    const bytes = dirtyLogBytes(this.vm.host.pageShift, slot.size);
    const out = new Uint8Array(bytes);
    const log = slotDesc(this.vm, slot).dirtyLog;
    // A copy while vCPUs may OR into it: each byte is one they had set or not, as KVM's copy_to_user of the bitmap.
    if (log !== 0) out.set(this.vm.host.mem.u8.subarray(log + DIRTY_LOG_HEADER, log + DIRTY_LOG_HEADER + bytes));
    return out;
  }

  /** vm.clearDirtyLog(gpa, mask): see Vm.clearDirtyLog and the file comment. */
  clear(gpa: bigint | number, mask?: Uint8Array): void {
    const slot = this.slotAt(gpa, 'clearDirtyLog');
    const bytes = dirtyLogBytes(this.vm.host.pageShift, slot.size);
    if (mask !== undefined) {
      v.instance('mask', mask, Uint8Array, 'a Uint8Array');
      if (mask.length !== bytes) fail('EINVAL', `clearDirtyLog: mask must be the memslot's bitmap (${bytes} bytes), got ${mask.length}`);
    }
    const log = slotDesc(this.vm, slot).dirtyLog;
    if (log === 0) return;
    const u32 = this.vm.host.mem.u32;
    const w0 = (log + DIRTY_LOG_HEADER) >>> 2;
    for (let w = 0; w < bytes >>> 2; w++) {
      const m = mask === undefined ? 0xffffffff : mask[4 * w]! | (mask[4 * w + 1]! << 8) | (mask[4 * w + 2]! << 16) | (mask[4 * w + 3]! << 24);
      if (m !== 0) Atomics.and(u32, w0 + w, ~m);
    }
    if (this.tracking) this.markWritable(log, slot);
  }

  /** vm.trackDmaWritable(on): see Vm.trackDmaWritable. */
  track(on: boolean): void {
    if (typeof on !== 'boolean') throw new TypeError(`on must be a boolean, got ${typeof on}`);
    if (on === this.tracking) return;
    const vmd = new VmView(this.vm.host.mem, this.vm.desc);
    this.epoch++;
    if (!on) {
      // Marks stop first; then every log goes (kvm_destroy_dirty_bitmap when logging is switched off), each after a grace period.
      vmd.dirtyTrack = 0;
      for (const slot of this.vm.memslots) freeDirtyLog(this.vm, slotDesc(this.vm, slot));
      return;
    }
    // Every live memslot gets its log before the flag is set: a refusal (ENOMEM) changes nothing.
    const made: SlotView[] = [];
    try {
      for (const slot of this.vm.memslots) {
        const d = slotDesc(this.vm, slot);
        if (d.dirtyLog !== 0) continue;
        d.dirtyLog = allocDirtyLog(this.vm, slot.size);
        made.push(d);
      }
    } catch (e) {
      for (const d of made) freeDirtyLog(this.vm, d);
      throw e;
    }
    vmd.dirtyTrack = 1;
    this.gracePeriod();
    // What was mapped writable before, or by a hypercall that began before the flag was set.
    for (const slot of this.vm.memslots) this.markWritable(slotDesc(this.vm, slot).dirtyLog, slot);
  }

  /** @internal the memslot went (removeMemslot freed its log): forget cached blocks. */
  drop(_slot: Memslot): void {
    this.epoch++;
  }

  /**
   * Waits until every vCPU that is inside a hypercall now has left it (a
   * grace period with nothing to free). A vCPU that stays inside past
   * TRACK_GRACE_MS (a worker killed mid-call, which will store nothing
   * more) is not waited for longer.
   */
  private gracePeriod(): void {
    const reclaim = this.vm.host.reclaim;
    reclaim.defer(() => {});
    try {
      reclaim.synchronize(TRACK_GRACE_MS);
    } catch (e) {
      if (!(e instanceof TceError) || e.code !== 'EBUSY') throw e;
    }
  }

  /** Marks in log block `log` every page of `slot` a guest TCE of any table maps writable now. */
  private markWritable(log: number, slot: Memslot): void {
    const u32 = this.vm.host.mem.u32;
    const sh = BigInt(this.vm.host.pageShift);
    for (const t of this.vm.tables.values()) {
      for (const ev of presentMappings(this.vm, t)) {
        if ((ev.perm & 2) === 0 || !(ev.gpa < slot.gpa + slot.size && slot.gpa < ev.gpa + ev.size)) continue;
        const from = ev.gpa > slot.gpa ? ev.gpa - slot.gpa : 0n;
        const end = ev.gpa + ev.size < slot.gpa + slot.size ? ev.gpa + ev.size - slot.gpa : slot.size;
        setBits(u32, log, Number(from >> sh), Number((end - 1n) >> sh));
      }
    }
  }

  /** The log block of `slot`, allocated (zero) at the first DMA write. */
  private logOf(slot: Memslot): number {
    const d = slotDesc(this.vm, slot);
    if (d.dirtyLog === 0) d.dirtyLog = allocDirtyLog(this.vm, slot.size);
    return d.dirtyLog;
  }

  /** The memslot containing `gpa`, or ENOENT (kvm_get_dirty_log: no such slot). */
  private slotAt(at: bigint | number, what: string): Memslot {
    const gpa = v.u64('gpa', at);
    const slot = this.vm.memslots.find((s) => gpa >= s.gpa && gpa - s.gpa < s.size);
    if (!slot) fail('ENOENT', `${what}: no memslot contains guest physical ${hex(gpa)}`);
    if (dirtyLogBytes(this.vm.host.pageShift, slot.size) > MAX_DIRTY_LOG) fail('ENOMEM', `${what}: the memslot at ${hex(slot.gpa)} has more than ${MAX_DIRTY_LOG * 8} pages`);
    return slot;
  }
}

/**
 * Sets bits first..last (inclusive) of the log block at `log`, by atomic OR
 * of 32-bit words (vCPUs mark the same words). Word k holds bits 32k..32k+31,
 * so byte k holds bits 8k..8k+7: the bytes of KVM's little-endian 64-bit words.
 */
function setBits(u32: Uint32Array, log: number, first: number, last: number): void {
  const w0 = (log + DIRTY_LOG_HEADER) >>> 2;
  for (let p = first; p <= last; ) {
    const hi = Math.min(last, p | 31);
    const mask = (0xffffffff >>> (31 - (hi & 31))) & (0xffffffff << (p & 31));
    Atomics.or(u32, w0 + (p >>> 5), mask);
    p = hi + 1;
  }
}
