// A VfioSync's memory listener over one operation's events (QEMU's
// vfio_listener_region_add / _del for windows, vfio_iommu_map_notify for
// mappings): map events become MAP_DMA (READ always, WRITE with the TCE's
// write bit; the address must be guest RAM), unmap events UNMAP_DMA. Unlike
// QEMU, which makes one call per IOMMU page, the events of one operation (a
// hypercall, an RTAS call, a reset, a replay) are coalesced: consecutive
// maps whose IOVAs, userspace addresses and permission continue each other
// are one MAP_DMA, consecutive unmaps of contiguous IOVAs one UNMAP_DMA (a
// contiguous 512-entry H_PUT_TCE_INDIRECT is one call). Nothing is deferred
// past the operation, so the host is in step before the hypercall returns,
// as in QEMU. The unmap events a window's removal delivers before its
// 'window-remove' make no call: QEMU hears none (spapr_tce_table_disable
// removes the region, vfio_listener_region_del unregisters the notifier and
// makes one UNMAP over the whole window, windows.ts).
import type { VmEvent, IommuEvent } from '../events.js';
import { hex } from '../../core/format.js';
import { VfioSyncError } from './types.js';
import { call, follows, report, type SyncState } from './state.js';
import { addWindow, removeWindow } from './windows.js';

/** A run of coalesced events, flushed as one call. */
interface Run {
  kind: 'map' | 'unmap';
  liobn: bigint;
  iova: bigint;
  size: bigint;
  vaddr: bigint;
  write: boolean;
  entries: number;
}

/** Replays the present mappings of a window as one batch (memory_region_iommu_replay; coalesced like any other). */
export function replay(s: SyncState, liobn: bigint): void {
  const found: IommuEvent[] = [];
  s.vm.replay(liobn, (e) => found.push(e));
  if (found.length > 0) apply(s, found, true);
}

/**
 * One operation's events, in order, with contiguous runs coalesced into
 * single calls. The map/unmap events of a window linked in the kvm profile
 * are the kernel's work, already done on the host window (a hypercall it
 * completed, a reset that cleared the linked tables, a removal whose
 * UNMAP over the window clears it), except in a `replay`: the entries a
 * guest made before the window existed, which only MAP_DMA puts there.
 * An unmap of a LIOBN whose 'window-remove' comes later in the batch makes
 * no call either: the removal's UNMAP over the window covers it.
 */
export function apply(s: SyncState, events: readonly VmEvent[], replaying = false): void {
  let run: Run | undefined;
  const flush = (): void => {
    if (run) flushRun(s, run);
    run = undefined;
  };
  const removedAt = lastRemovals(events);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (!follows(s, e.liobn)) continue;
    if (e.kind === 'window-add' || e.kind === 'window-remove') {
      flush();
      if (e.kind === 'window-remove') removeWindow(s, e);
      else if (!s.mirrors.has(e.liobn)) addWindow(s, e);
      continue;
    }
    const ev = e as IommuEvent;
    const m = s.mirrors.get(ev.liobn);
    if (m?.inKernel && !replaying) continue;
    if (ev.kind === 'unmap') {
      // Nothing was mapped in a window the host could not provide.
      if (!m?.host) continue;
      // A mapping dropped with its window: QEMU hears no unmap for it (spapr_tce_table_disable notifies
      // nothing, and region_del unregisters the notifier); the window's one UNMAP clears it.
      if ((removedAt.get(ev.liobn) ?? -1) > i) continue;
      if (run && run.kind === 'unmap' && run.liobn === ev.liobn && run.iova + run.size === ev.iova) {
        run.size += ev.size;
        run.entries++;
      } else {
        flush();
        run = { kind: 'unmap', liobn: ev.liobn, iova: ev.iova, size: ev.size, vaddr: 0n, write: false, entries: 1 };
      }
      continue;
    }
    if (!m?.host) {
      flush();
      report(s, new VfioSyncError('ENXIO', 'mapDma', 'no-host-window', `map of IOVA ${hex(ev.iova)} through LIOBN ${hex(ev.liobn)}: no host window mirrors this guest window`, { liobn: ev.liobn, iova: ev.iova, size: ev.size }));
      continue;
    }
    // vfio_get_xlat_addr: the whole IOMMU page must be guest RAM; its host address is the memslot's.
    const slot = s.vm.memslots.find((x) => ev.gpa >= x.gpa && ev.gpa - x.gpa < x.size && ev.size <= x.size - (ev.gpa - x.gpa));
    if (!slot) {
      flush();
      report(s, new VfioSyncError('EFAULT', 'mapDma', 'not-ram', `map of IOVA ${hex(ev.iova)} through LIOBN ${hex(ev.liobn)} to guest address ${hex(ev.gpa)}: not guest RAM, nothing mapped (the guest got H_SUCCESS)`, { liobn: ev.liobn, iova: ev.iova, size: ev.size }));
      continue;
    }
    const vaddr = slot.ua + (ev.gpa - slot.gpa);
    // READ always; WRITE only with the TCE's write bit: a write-only TCE is read-write on the host.
    const write = (ev.perm & 2) !== 0;
    if (run && run.kind === 'map' && run.liobn === ev.liobn && run.iova + run.size === ev.iova && run.vaddr + run.size === vaddr && run.write === write) {
      run.size += ev.size;
      run.entries++;
    } else {
      flush();
      run = { kind: 'map', liobn: ev.liobn, iova: ev.iova, size: ev.size, vaddr, write, entries: 1 };
    }
  }
  flush();
}

/** By LIOBN, the index of its last 'window-remove' in the batch. */
function lastRemovals(events: readonly VmEvent[]): Map<bigint, number> {
  const at = new Map<bigint, number>();
  events.forEach((e, i) => {
    if (e.kind === 'window-remove') at.set(e.liobn, i);
  });
  return at;
}

/** One MAP_DMA or UNMAP_DMA for a run. */
function flushRun(s: SyncState, r: Run): void {
  if (r.kind === 'map') {
    call(s, { op: 'mapDma', liobn: r.liobn, iova: r.iova, size: r.size, vaddr: r.vaddr, write: r.write, entries: r.entries }, () => s.fd.mapDma({ iova: r.iova, vaddr: r.vaddr, size: r.size, read: true, write: r.write }));
  } else {
    call(s, { op: 'unmapDma', liobn: r.liobn, iova: r.iova, size: r.size, entries: r.entries }, () => s.fd.unmapDma({ iova: r.iova, size: r.size }));
  }
}
