// Dirty tracking of guest RAM for live migration (KVM_GET_DIRTY_LOG's bitmap
// per memslot): which system pages a device may have written since the last
// clear, so a VMM knows which pages to send again.
//
// Two sources, as in QEMU's migration of a guest with devices:
// - DMA writes by device models (vm.dma(liobn).write): each marks the pages
//   it wrote, as mark_page_dirty does for a write KVM makes to guest memory
//   (kvm_vcpu_write_guest). Always on: the bitmap of a memslot is allocated
//   at its first DMA write, or when it is asked for.
// - With trackDmaWritable(true), every page a TCE maps writable: a VFIO
//   device may write it at any time and leaves no trace, so it counts as
//   dirty while it stays mapped and, once unmapped, until the next clear
//   (vfio_iommu_type1 reports every mapped page as dirty while a group
//   without its own tracking is attached, pinned_page_dirty_scope false:
//   vfio_iommu_populate_bitmap_full; QEMU reads it in vfio_get_dirty_bitmap).
//
// The second needs every page that was mapped writable at any time since the
// clear. It is the union of three sets, kept without touching the engines
// (so the hypercall path pays nothing while tracking is off, and one boolean
// per call otherwise, the events' check):
//   1. the pages mapped writable now: a walk of the guest tables at
//      dirtyLog() time (O(allocated table pages + mapped entries), as
//      replay());
//   2. the pages mapped writable when the log was last cleared (or tracking
//      began): the same walk then, kept in `sticky`;
//   3. the pages mapped writable after that by a hypercall: the 'map'
//      events of the VM (vm.subscribe's decoding), marked into `sticky` as
//      they happen.
// A page mapped writable since the clear and unmapped since is in 2 (mapped
// at the clear) or in 3 (mapped after it), so it stays dirty; a page never
// mapped writable since is in none. The events cover every hypercall of
// this thread, real or virtual mode (they are decoded after the call from
// what it wrote); a vCPU run by a worker thread reports none, so a writable
// mapping that a worker both makes and removes between two dirtyLog() /
// clearDirtyLog() calls is missed (one still present is found by the walk).
// README "Dirty tracking" lists this.
//
// clearDirtyLog() follows KVM_CLEAR_DIRTY_LOG with manual protection
// (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: kvm_get_dirty_log_protect reads the
// bitmap without clearing it, kvm_clear_dirty_log_protect clears the bits
// given): dirtyLog() never clears, clearDirtyLog(gpa, mask?) clears the bits
// set in `mask` (default: all), so a write between the two is not lost when
// the VMM passes back the bitmap it read. Pages still mapped writable are
// dirty again at once: they stay writable by the device.
import type { Vm } from './vm.js';
import type { Memslot } from '../kvm/memslot.js';
import type { VmEvent } from './events.js';
import { presentMappings } from './events.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';

/** Largest bitmap allocated: 2^27 bytes = 2^30 pages (4 TiB of 4 KiB pages); a larger memslot's log is ENOMEM, as kvm_alloc_dirty_bitmap's vzalloc would fail. */
const MAX_BITMAP = 1 << 27;

/** @internal the dirty logs of one VM's memslots (see the file comment). */
export class DirtyLog {
  private readonly vm: Vm;
  /** Pages written by DMA, per memslot. */
  private readonly written = new Map<Memslot, Uint8Array>();
  /** While tracking writable mappings: pages mapped writable since the last clear (sets 2 and 3). */
  private readonly sticky = new Map<Memslot, Uint8Array>();
  /** The unsubscribe function of the map events while tracking writable mappings. */
  private untrack: (() => void) | undefined;
  /** `written` by index of vm.memslots, valid for vm.generation `gen`: what markDma() looks up. */
  private byIndex: (Uint8Array | undefined)[] = [];
  private gen = -1;

  constructor(vm: Vm) {
    this.vm = vm;
  }

  /** Whether writable mappings count (trackDmaWritable). */
  get tracking(): boolean {
    return this.untrack !== undefined;
  }

  /** @internal a DMA write of `len` bytes at offset `rel` of memslot `index` (of vm.memslots). */
  markDma(index: number, rel: number, len: number): void {
    if (this.gen !== this.vm.generation) {
      this.byIndex = [];
      this.gen = this.vm.generation;
    }
    const bm = this.byIndex[index] ?? (this.byIndex[index] = this.bitmapOf(this.written, this.vm.memslots[index]!));
    const size = 2 ** this.vm.host.pageShift;
    setBits(bm, Math.floor(rel / size), Math.floor((rel + len - 1) / size));
  }

  /** vm.dirtyLog(gpa): see Vm.dirtyLog. */
  get(gpa: bigint | number): Uint8Array {
    const slot = this.slotAt(gpa, 'dirtyLog');
    const out = new Uint8Array(bitmapBytes(this.vm, slot));
    const w = this.written.get(slot);
    if (w) out.set(w);
    if (this.tracking) {
      const s = this.sticky.get(slot);
      if (s) orInto(out, s);
      this.markWritable(out, slot);
    }
    return out;
  }

  /** vm.clearDirtyLog(gpa, mask): see Vm.clearDirtyLog. */
  clear(gpa: bigint | number, mask?: Uint8Array): void {
    const slot = this.slotAt(gpa, 'clearDirtyLog');
    const bytes = bitmapBytes(this.vm, slot);
    if (mask !== undefined) {
      v.instance('mask', mask, Uint8Array, 'a Uint8Array');
      if (mask.length !== bytes) fail('EINVAL', `clearDirtyLog: mask must be the memslot's bitmap (${bytes} bytes), got ${mask.length}`);
    }
    for (const m of [this.written, this.sticky]) {
      const bm = m.get(slot);
      if (!bm) continue;
      if (mask === undefined) bm.fill(0);
      else for (let i = 0; i < bytes; i++) bm[i]! &= ~mask[i]!;
    }
    // What is mapped writable now stays dirty: set 2 of the file comment.
    if (this.tracking) this.markWritable(this.bitmapOf(this.sticky, slot), slot);
  }

  /** vm.trackDmaWritable(on): see Vm.trackDmaWritable. */
  track(on: boolean): void {
    if (typeof on !== 'boolean') throw new TypeError(`on must be a boolean, got ${typeof on}`);
    if (on === this.tracking) return;
    if (!on) {
      this.untrack!();
      this.untrack = undefined;
      this.sticky.clear();
      return;
    }
    this.untrack = this.vm.events.subscribeBatch((events) => this.onEvents(events));
    // Set 2 at the start: what is mapped writable now.
    for (const slot of this.vm.memslots) {
      if (bitmapBytes(this.vm, slot) <= MAX_BITMAP) this.markWritable(this.bitmapOf(this.sticky, slot), slot);
    }
  }

  /** @internal the memslot went (removeMemslot): its logs go with it. */
  drop(slot: Memslot): void {
    this.written.delete(slot);
    this.sticky.delete(slot);
  }

  /** Set 3: each TCE a hypercall wrote with the WRITE bit, its page marked in `sticky`. */
  private onEvents(events: readonly VmEvent[]): void {
    for (const ev of events) {
      if (ev.kind !== 'map' || (ev.perm & 2) === 0) continue;
      for (const slot of this.vm.memslots) {
        if (overlaps(slot, ev.gpa, ev.size) && bitmapBytes(this.vm, slot) <= MAX_BITMAP) markRange(this.vm, this.bitmapOf(this.sticky, slot), slot, ev.gpa, ev.size);
      }
    }
  }

  /** Set 1: marks in `bm` every page of `slot` a TCE of any guest table maps writable now. */
  private markWritable(bm: Uint8Array, slot: Memslot): void {
    for (const t of this.vm.tables.values()) {
      for (const ev of presentMappings(this.vm, t)) {
        if ((ev.perm & 2) !== 0 && overlaps(slot, ev.gpa, ev.size)) markRange(this.vm, bm, slot, ev.gpa, ev.size);
      }
    }
  }

  /** The bitmap of `slot` in `m`, allocated (zero) on first use. */
  private bitmapOf(m: Map<Memslot, Uint8Array>, slot: Memslot): Uint8Array {
    let bm = m.get(slot);
    if (!bm) {
      const bytes = bitmapBytes(this.vm, slot);
      if (bytes > MAX_BITMAP) fail('ENOMEM', `dirty log: the memslot at ${hex(slot.gpa)} has more than ${MAX_BITMAP * 8} pages`);
      bm = new Uint8Array(bytes);
      m.set(slot, bm);
    }
    return bm;
  }

  /** The memslot containing `gpa`, or ENOENT (kvm_get_dirty_log: no such slot). */
  private slotAt(at: bigint | number, what: string): Memslot {
    const gpa = v.u64('gpa', at);
    const slot = this.vm.memslots.find((s) => gpa >= s.gpa && gpa - s.gpa < s.size);
    if (!slot) fail('ENOENT', `${what}: no memslot contains guest physical ${hex(gpa)}`);
    if (bitmapBytes(this.vm, slot) > MAX_BITMAP) fail('ENOMEM', `${what}: the memslot at ${hex(slot.gpa)} has more than ${MAX_BITMAP * 8} pages`);
    return slot;
  }
}

/** kvm_dirty_bitmap_bytes: one bit per page, rounded up to whole 64-bit words. */
function bitmapBytes(vm: Vm, slot: Memslot): number {
  const pages = slot.size >> BigInt(vm.host.pageShift);
  const words = (pages + 63n) / 64n;
  return words * 8n > BigInt(MAX_BITMAP) ? MAX_BITMAP + 1 : Number(words * 8n);
}

/** Sets bits first..last (inclusive). Byte k of the bitmap is bits 8k..8k+7: the same bytes as little-endian 64-bit words. */
function setBits(bm: Uint8Array, first: number, last: number): void {
  for (let p = first; p <= last; p++) bm[p >>> 3]! |= 1 << (p & 7);
}

function orInto(out: Uint8Array, from: Uint8Array): void {
  for (let i = 0; i < out.length; i++) out[i]! |= from[i]!;
}

function overlaps(slot: Memslot, gpa: bigint, size: bigint): boolean {
  return gpa < slot.gpa + slot.size && slot.gpa < gpa + size;
}

/** Marks in `bm` the pages of `slot` that guest physical [gpa, gpa + size) covers. */
function markRange(vm: Vm, bm: Uint8Array, slot: Memslot, gpa: bigint, size: bigint): void {
  const sh = BigInt(vm.host.pageShift);
  const from = gpa > slot.gpa ? gpa - slot.gpa : 0n;
  const end = gpa + size < slot.gpa + slot.size ? gpa + size - slot.gpa : slot.size;
  setBits(bm, Number(from >> sh), Number((end - 1n) >> sh));
}
