// Map/unmap events of guest TCE writes: what QEMU's IOMMU notifiers hand to
// the VFIO listener (put_tce_emu → memory_region_notify_iommu, one event per
// entry written; vfio_iommu_map_notify consumes them), and the replay a
// listener runs when it attaches (memory_region_iommu_replay). The hot path
// stays free of this: vcpu.hcall() checks one boolean, and only when someone
// subscribed does it copy the argument registers and decode here, after the
// engine has run the call, which entries it wrote.
import type { KvmVm, HcallObserver } from '../kvm/vm.js';
import type { GuestTable } from '../kvm/guest-table.js';
import { guestRamOffset } from '../kvm/memslot.js';
import * as v from '../core/validate.js';
import { SttView } from '../generated/views.js';
import { H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_SUCCESS, H_PARAMETER, INDIRECT_MAX } from '../generated/layout.js';

/** One guest TCE written (or, from replay, one present mapping): absolute IOVA, IOMMU page size, target and permission bits. */
export interface IommuEvent {
  liobn: bigint;
  /** 'map' when the entry has a permission bit (perm ≠ 0), else 'unmap' (h_put_tce → memory_region_notify_iommu; docs/semantics.md §8.2). */
  kind: 'map' | 'unmap';
  /** Absolute bus address of the IOMMU page (bus offset included). */
  iova: bigint;
  /** The IOMMU page size in bytes. */
  size: bigint;
  /** The TCE's address bits (tce & ~(size − 1)): QEMU's translated_addr. */
  gpa: bigint;
  /** TCE bits 0..1: 1 the device may read memory, 2 write, 3 both. */
  perm: number;
}

/** A subscriber of map/unmap events. */
export type IommuListener = (event: IommuEvent) => void;

interface Entry {
  readonly liobn: bigint | '*';
  readonly fn: IommuListener;
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

  constructor(vm: KvmVm) {
    this.vm = vm;
  }

  /** Adds a subscriber; returns its unsubscribe function (idempotent). */
  subscribe(liobn: bigint | '*', fn: IommuListener): () => void {
    if (liobn !== '*') v.u64('liobn', liobn);
    v.fn('fn', fn);
    const entry: Entry = { liobn, fn };
    this.entries = [...this.entries, entry];
    this.active = true;
    return () => {
      this.entries = this.entries.filter((e) => e !== entry);
      this.active = this.entries.length > 0;
    };
  }

  /**
   * Called by Vcpu after a hypercall when active: decodes the entries the call
   * wrote from its arguments and status, then delivers one event per entry, in
   * entry order, to every matching subscriber in subscription order. A
   * subscriber that throws does not stop the others; the first error is
   * rethrown after all deliveries (the call itself is complete, r3 holds its status).
   */
  afterHcall(nr: bigint, liobn: bigint, ioba: bigint, arg: bigint, npages: bigint, rc: number): void {
    const events = this.decode(nr, liobn, ioba, arg, npages, rc);
    if (events.length > 0) this.deliver(events);
  }

  /** Delivers `events` to the matching subscribers. */
  deliver(events: readonly IommuEvent[]): void {
    const entries = this.entries;
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

/**
 * The present mappings (perm ≠ 0) of a LIOBN's window as 'map' events in
 * ascending IOVA, what a listener attaching late needs (QEMU's
 * memory_region_iommu_replay → spapr_tce_replay). Only allocated guest-table
 * pages are scanned, reading just the byte with the permission bits of each
 * entry, and events are built only for mapped entries; the remaining cost is
 * one u32 per page pointer (one per 2^(host page shift − 3) entries: 2048
 * for a 2^24-entry window on 64 KiB pages). An unknown or disabled LIOBN has
 * no mappings.
 */
export function replayMappings(vm: KvmVm, liobn: bigint, fn: IommuListener): void {
  v.u64('liobn', liobn);
  v.fn('fn', fn);
  const t = vm.tables.get(liobn);
  if (!t || t.size === 0n) return;
  const mem = vm.host.mem;
  const per = (1 << vm.host.pageShift) / 8;
  const stt = new SttView(mem, t.desc);
  const pages = stt.pages;
  const npages = stt.npages;
  const size = Number(t.size);
  // Collect first, then call: a subscriber that changes the table cannot disturb the walk.
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
  for (const ev of found) fn(ev);
}
