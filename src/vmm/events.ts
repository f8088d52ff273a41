// Events of a VM's IOMMU: what QEMU's IOMMU notifiers and memory listeners
// hand to the VFIO code. Map/unmap events of guest TCE writes (put_tce_emu →
// memory_region_notify_iommu, one event per entry written; vfio_iommu_map_notify
// consumes them), window events when a window appears or goes (a table enabled
// or disabled: the IOMMU region added to or removed from the DMA address
// space, vfio_listener_region_add / _del), the unmap of every mapping a
// removal or reset drops, and the replay a listener runs when it attaches
// (memory_region_iommu_replay). The hot path stays free of this: vcpu.hcall()
// checks one boolean, and only when someone subscribed does it copy the
// argument registers and decode here, after the engine has run the call,
// which entries it wrote.
import type { KvmVm, HcallObserver } from '../kvm/vm.js';
import type { GuestTable } from '../kvm/guest-table.js';
import type { Memslot } from '../kvm/memslot.js';
import { guestRamOffset } from '../kvm/memslot.js';
import * as v from '../core/validate.js';
import { SttView } from '../generated/views.js';
import { H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_SUCCESS, H_PARAMETER, INDIRECT_MAX } from '../generated/layout.js';

/** One guest TCE written (or, from replay, one present mapping; or a mapping a removal or reset dropped): absolute IOVA, IOMMU page size, target and permission bits. */
export interface IommuEvent {
  liobn: bigint;
  /** 'map' when the entry has a permission bit (perm ≠ 0), else 'unmap' (h_put_tce → memory_region_notify_iommu; docs/semantics.md §8.2). */
  kind: 'map' | 'unmap';
  /** Absolute bus address of the IOMMU page (bus offset included). */
  iova: bigint;
  /** The IOMMU page size in bytes. */
  size: bigint;
  /** The TCE's address bits (tce & ~(size − 1)): QEMU's translated_addr; for a dropped mapping, the address it pointed at. */
  gpa: bigint;
  /** TCE bits 0..1: 1 the device may read memory, 2 write, 3 both; 0 for an unmap. */
  perm: number;
}

/** A DMA window that appeared (a table enabled: KVM_CREATE_SPAPR_TCE_64, a PHB's default window, a DDW) or went away (disabled). */
export interface WindowEvent {
  liobn: bigint;
  kind: 'window-add' | 'window-remove';
  /** Bus address of the window's first byte. */
  busOffset: bigint;
  /** The IOMMU page size in bytes. */
  pageSize: bigint;
  /** The window's size in bytes (entries × page size). */
  windowSize: bigint;
}

/** What vm.subscribe() delivers. */
export type VmEvent = IommuEvent | WindowEvent;

/** A subscriber of vm.subscribe(): map/unmap and window events. */
export type VmListener = (event: VmEvent) => void;

/** A receiver of map events (vm.replay()). */
export type IommuListener = (event: IommuEvent) => void;

/** @internal a subscriber of whole batches (the events of one hypercall, RTAS call or reset), as VfioSync coalesces them. */
export type BatchListener = (events: readonly VmEvent[]) => void;

/** @internal a listener of memslot changes (QEMU's memory listener on system memory, as the prereg listener is). */
export type MemoryListener = (kind: 'add' | 'remove', slot: Memslot) => void;

interface Entry {
  readonly liobn: bigint | '*';
  readonly fn: VmListener;
}

const NR_PUT = BigInt(H_PUT_TCE);
const NR_INDIRECT = BigInt(H_PUT_TCE_INDIRECT);
const NR_STUFF = BigInt(H_STUFF_TCE);
const U64 = 64;

/** @internal The subscribers of one VM and the decoding of its hypercalls into events. */
export class EventHub implements HcallObserver {
  /** True while anyone is subscribed: the only thing vcpu.hcall() looks at when nobody is. */
  active = false;
  private readonly vm: KvmVm;
  /** Copied on every change, so a delivery runs over a stable list even if a subscriber (un)subscribes. */
  private entries: readonly Entry[] = [];
  private batches: readonly BatchListener[] = [];
  private memory: readonly MemoryListener[] = [];
  /** The events of the operation running under batch(), delivered when it ends. */
  private pending: VmEvent[] | undefined;

  constructor(vm: KvmVm) {
    this.vm = vm;
  }

  /** Adds a subscriber; returns its unsubscribe function (idempotent). */
  subscribe(liobn: bigint | number | '*', fn: VmListener): () => void {
    if (liobn !== '*') liobn = v.liobn('liobn', liobn);
    v.fn('fn', fn);
    const entry: Entry = { liobn, fn };
    this.entries = [...this.entries, entry];
    this.update();
    return () => {
      this.entries = this.entries.filter((e) => e !== entry);
      this.update();
    };
  }

  /** @internal adds a batch subscriber (it sees every LIOBN); returns its unsubscribe function. */
  subscribeBatch(fn: BatchListener): () => void {
    this.batches = [...this.batches, fn];
    this.update();
    return () => {
      this.batches = this.batches.filter((b) => b !== fn);
      this.update();
    };
  }

  /** @internal adds a memslot listener; it does not make the hypercall path notify. */
  listenMemory(fn: MemoryListener): () => void {
    this.memory = [...this.memory, fn];
    return () => {
      this.memory = this.memory.filter((m) => m !== fn);
    };
  }

  private update(): void {
    this.active = this.entries.length > 0 || this.batches.length > 0;
  }

  /**
   * Called by Vcpu after a hypercall when active: decodes the entries the call
   * wrote from its arguments and status, then delivers one event per entry
   * (deliver()). The call itself is complete, r3 holds its status.
   */
  afterHcall(nr: bigint, liobn: bigint, ioba: bigint, arg: bigint, npages: bigint, rc: number): void {
    const events = this.decode(nr, liobn, ioba, arg, npages, rc);
    if (events.length > 0) this.deliver(events);
  }

  /**
   * @internal runs `fn`, one operation that may emit several events (an RTAS
   * call, a reset), and delivers them together when it ends, also when it
   * throws (what it changed stays changed): subscribers see a complete
   * operation, and one that throws cannot leave it half done.
   */
  batch<T>(fn: () => T): T {
    if (this.pending) return fn();
    this.pending = [];
    let out: T | undefined;
    let error: unknown;
    let threw = false;
    try {
      out = fn();
    } catch (e) {
      error = e;
      threw = true;
    }
    const events = this.pending;
    this.pending = undefined;
    try {
      if (events.length > 0) this.deliver(events);
    } catch (e) {
      // The operation's own error, if any, is the one to report.
      if (!threw) throw e;
    }
    if (threw) throw error;
    return out as T;
  }

  /** @internal an event of the running operation (delivered at once outside batch()); nothing when nobody listens. */
  emit(ev: VmEvent): void {
    if (!this.active) return;
    if (this.pending) this.pending.push(ev);
    else this.deliver([ev]);
  }

  /** @internal a memslot was added or removed (KVM_SET_USER_MEMORY_REGION): the memory listeners hear it, in order. */
  memslotChanged(kind: 'add' | 'remove', slot: Memslot): void {
    let first: unknown;
    let failed = false;
    for (const m of this.memory) {
      try {
        m(kind, slot);
      } catch (err) {
        if (!failed) first = err;
        failed = true;
      }
    }
    if (failed) throw first;
  }

  /**
   * Delivers `events` to the per-event subscribers of their LIOBN, event by
   * event in order and each to every matching subscriber in subscription
   * order (as QEMU notifies every notifier of each entry), then the whole
   * batch to each batch subscriber. A subscriber that throws does not stop
   * the others; the first error is rethrown after all deliveries.
   */
  deliver(events: readonly VmEvent[]): void {
    const entries = this.entries;
    const batches = this.batches;
    let first: unknown;
    let failed = false;
    for (const ev of events) {
      for (const e of entries) {
        if (e.liobn !== '*' && e.liobn !== ev.liobn) continue;
        try {
          e.fn(ev);
        } catch (err) {
          if (!failed) first = err;
          failed = true;
        }
      }
    }
    for (const b of batches) {
      try {
        b(events);
      } catch (err) {
        if (!failed) first = err;
        failed = true;
      }
    }
    if (failed) throw first;
  }

  /**
   * The entries a TCE hypercall wrote. Both profiles write nothing unless the
   * status is H_SUCCESS, except QEMU's INDIRECT and STUFF loops
   * (h_put_tce_indirect, h_stuff_tce), which stop at the first index outside
   * the window and keep what they wrote before it: H_PARAMETER with a prefix written.
   */
  private decode(nr: bigint, liobn: bigint, ioba: bigint, arg: bigint, npages: bigint, rc: number): IommuEvent[] {
    const qemu = this.vm.profile === 'qemu';
    if (rc !== H_SUCCESS && !(qemu && rc === H_PARAMETER)) return [];
    if (nr !== NR_PUT && nr !== NR_INDIRECT && nr !== NR_STUFF) return [];
    // QEMU's lookup: a LIOBN with bits 32..63 set matches nothing (spapr_tce_find_by_liobn takes a u32).
    if (qemu && liobn >> 32n !== 0n) return [];
    const t = this.vm.tables.get(liobn);
    if (!t || t.size === 0n) return [];
    const shift = BigInt(t.pageShift);
    const mask = (1n << shift) - 1n;
    // put_tce_emu: the index of the rounded-down ioba, computed unsigned (a below-window ioba wraps high).
    const first = BigInt.asUintN(U64, (ioba & ~mask) - (t.offset << shift)) >> shift;
    const n = nr === NR_PUT ? 1n : npages;
    let written: bigint;
    if (rc === H_SUCCESS) written = n;
    else {
      // H_PARAMETER in the qemu profile: which checks before the loop failed, else how far the loop got.
      if (nr === NR_PUT) return [];
      if (nr === NR_INDIRECT && (npages > BigInt(INDIRECT_MAX) || (arg & 0xfffn) !== 0n)) return [];
      if (nr === NR_STUFF && npages > t.size) return [];
      written = first < t.size ? (n < t.size - first ? n : t.size - first) : 0n;
    }
    if (written === 0n) return [];
    let tces: bigint[];
    if (nr === NR_INDIRECT) {
      // The list the engine read: big-endian u64s at guest physical `arg`, all in one backed memslot.
      const off = guestRamOffset(this.vm, arg, Number(npages) * 8);
      if (off < 0) return [];
      const dv = this.vm.host.mem.dataView(off, Number(written) * 8);
      tces = Array.from({ length: Number(written) }, (_, i) => dv.getBigUint64(i * 8, false));
    } else {
      // PUT's and STUFF's value is the third argument.
      tces = new Array<bigint>(Number(written)).fill(arg);
    }
    return tces.map((tce, i) => eventOf(t, first + BigInt(i), tce));
  }
}

/** The event for relative entry `idx` of `t` holding `tce`. */
function eventOf(t: GuestTable, idx: bigint, tce: bigint): IommuEvent {
  const shift = BigInt(t.pageShift);
  const perm = Number(tce & 3n);
  return { liobn: t.liobn, kind: perm !== 0 ? 'map' : 'unmap', iova: (t.offset + idx) << shift, size: 1n << shift, gpa: tce & ~((1n << shift) - 1n), perm };
}

/** The window event of table `t` (its geometry as it is, or as it was before a disable). */
export function windowEvent(t: GuestTable, kind: WindowEvent['kind']): WindowEvent {
  const shift = BigInt(t.pageShift);
  return { liobn: t.liobn, kind, busOffset: t.offset << shift, pageSize: 1n << shift, windowSize: t.size << shift };
}

/**
 * The present mappings (perm ≠ 0) of table `t` as 'map' events in ascending
 * IOVA. Only allocated guest-table pages are scanned, reading just the byte
 * with the permission bits of each entry, and events are built only for
 * mapped entries; the remaining cost is one u32 per page pointer (one per
 * 2^(host page shift − 3) entries: 2048 for a 2^24-entry window on 64 KiB
 * pages). A disabled table has none.
 */
export function presentMappings(vm: KvmVm, t: GuestTable): IommuEvent[] {
  if (t.size === 0n) return [];
  const mem = vm.host.mem;
  const per = (1 << vm.host.pageShift) / 8;
  const stt = new SttView(mem, t.desc);
  const pages = stt.pages;
  const npages = stt.npages;
  const size = Number(t.size);
  const found: IommuEvent[] = [];
  for (let pg = 0; pg < npages; pg++) {
    const page = mem.getU32At(pages, pg);
    if (page === 0) continue;
    const n = Math.min(per, size - pg * per);
    for (let i = 0; i < n; i++) {
      // The low word holds the permission bits: only mapped entries cost a BigInt.
      if ((mem.lowWordAt(page, i) & 3) === 0) continue;
      found.push(eventOf(t, BigInt(pg * per + i), mem.getU64At(page, i)));
    }
  }
  return found;
}

/** The unmap events of mappings a removal or reset drops: each one's IOVA and page, the address it pointed at, perm 0. */
export function droppedMappings(vm: KvmVm, t: GuestTable): IommuEvent[] {
  return presentMappings(vm, t).map((e) => ({ ...e, kind: 'unmap', perm: 0 }));
}

/**
 * The present mappings of a LIOBN's window as 'map' events in ascending IOVA,
 * what a listener attaching late needs (QEMU's memory_region_iommu_replay →
 * spapr_tce_replay). An unknown or disabled LIOBN has no mappings.
 */
export function replayMappings(vm: KvmVm, liobn: bigint | number, fn: IommuListener): void {
  liobn = v.liobn('liobn', liobn);
  v.fn('fn', fn);
  const t = vm.tables.get(liobn);
  if (!t) return;
  // Collect first, then call: a subscriber that changes the table cannot disturb the walk.
  for (const ev of presentMappings(vm, t)) fn(ev);
}
