// The host windows of a VfioSync (QEMU's vfio_spapr_create_window /
// vfio_spapr_remove_window, called from vfio_listener_region_add / _del):
// each guest window gets a host window of the same size at the same bus
// address, with the largest host IOMMU page that is at most the guest's
// page and the RAM backing page; levels by QEMU's heuristic, retried
// upward; a start address other than the guest's bus offset is removed
// again and reported. A v1 container has one host window, the 32-bit one,
// which every guest window must lie in (vfio_find_hostwin).
import { windowEvent, type WindowEvent } from '../events.js';
import { TceError } from '../../core/errors.js';
import { hex } from '../../core/format.js';
import { VfioSyncError } from './types.js';
import { call, follows, note, report, type Mirror, type SyncState } from './state.js';
import { linkWindow, unlinkWindow } from './links.js';

/**
 * vfio_spapr_container_setup for v2, after the regions: the kernel's default
 * window removed; windows a restored container already has adopted when
 * they mirror a followed guest window, removed otherwise; the rest created.
 */
export function setupV2(s: SyncState): void {
  const c = s.fd.container;
  // "There is a default window in just created container": removed so that host windows mirror the guest's.
  if (c.defWindowPending) call(s, { op: 'removeWindow', iova: s.info.dma32WindowStart }, () => s.fd.removeWindow(s.info.dma32WindowStart));
  for (const w of [...c.windows]) {
    if (!w) continue;
    const t = [...s.vm.tables.values()].find((g) => g.size !== 0n && follows(s, g.liobn) && g.offset << BigInt(g.pageShift) === w.startAddr);
    const want = t ? hostPageShift(s, t.pageShift) : 0;
    if (t && want === w.pageShift && t.size << BigInt(t.pageShift) === w.windowSize && !s.mirrors.has(t.liobn)) {
      const m = mirrorOf(s, t.liobn, t.offset << BigInt(t.pageShift), t.size << BigInt(t.pageShift), t.pageShift);
      m.host = { startAddr: w.startAddr, pageShift: w.pageShift, levels: w.levels, adopted: true, own: true };
      // A fresh window is empty: drop whatever the old one held, the replay maps what the guest has.
      call(s, { op: 'unmapDma', liobn: t.liobn, iova: w.startAddr, size: w.windowSize }, () => s.fd.unmapDma({ iova: w.startAddr, size: w.windowSize }));
      linkWindow(s, m);
    } else {
      call(s, { op: 'removeWindow', iova: w.startAddr }, () => s.fd.removeWindow(w.startAddr));
    }
  }
  addWindows(s);
}

/** v1: ENABLE (vfio_spapr_container_setup); the one host window is the 32-bit one, 4 KiB pages. */
export function setupV1(s: SyncState): void {
  if (!s.fd.container.enabled) {
    s.fd.enable();
    s.enabledV1 = true;
  }
  addWindows(s);
}

/** The listener's first region_add of each followed guest window not mirrored yet. */
function addWindows(s: SyncState): void {
  for (const t of s.vm.tables.values()) {
    if (t.size === 0n || !follows(s, t.liobn) || s.mirrors.get(t.liobn)?.host) continue;
    addWindow(s, windowEvent(t, 'window-add'));
  }
}

function mirrorOf(s: SyncState, liobn: bigint, busOffset: bigint, windowSize: bigint, guestShift: number): Mirror {
  const m: Mirror = { liobn, busOffset, windowSize, guestShift, host: undefined, links: [], inKernel: false };
  s.mirrors.set(liobn, m);
  return m;
}

/**
 * vfio_spapr_create_window's page: the largest the host supports that is
 * at most the guest IOMMU page and the smallest RAM backing page
 * (qemu_minrampagesize); 0 when there is none.
 */
function hostPageShift(s: SyncState, guestShift: number): number {
  let limit = guestShift;
  for (const m of s.vm.memslots) limit = Math.min(limit, s.vm.mm.findMapping(m.ua)?.pageShift ?? s.vm.host.pageShift);
  const sizes = s.info.ddw?.pgSizes ?? 0n;
  for (let p = limit; p >= 12; p--) if (sizes & (1n << BigInt(p))) return p;
  return 0;
}

/** A guest window appeared (vfio_listener_region_add of an IOMMU region). */
export function addWindow(s: SyncState, ev: WindowEvent): void {
  const guestShift = ev.pageSize.toString(2).length - 1;
  const m = mirrorOf(s, ev.liobn, ev.busOffset, ev.windowSize, guestShift);
  const at = { liobn: ev.liobn, iova: ev.busOffset, size: ev.windowSize };
  if (!s.v2) {
    // v1: the guest window must lie in the 32-bit host window (vfio_find_hostwin).
    const start = s.info.dma32WindowStart;
    const end = start + s.info.dma32WindowSize;
    if (ev.busOffset < start || ev.busOffset + ev.windowSize > end) {
      report(s, new VfioSyncError('ENXIO', 'mapDma', 'outside-host-window', `guest window ${hex(ev.busOffset)}+${hex(ev.windowSize)} of LIOBN ${hex(ev.liobn)} is outside the v1 host window ${hex(start)}+${hex(s.info.dma32WindowSize)}`, at));
      return;
    }
    m.host = { startAddr: start, pageShift: 12, levels: 1, adopted: false, own: false };
    return;
  }
  const pageShift = hostPageShift(s, guestShift);
  if (pageShift === 0) {
    report(s, new VfioSyncError('EINVAL', 'createWindow', 'page-size', `the host supports no IOMMU page of at most 2^${guestShift} (page sizes ${hex(s.info.ddw?.pgSizes ?? 0n)}) for LIOBN ${hex(ev.liobn)}`, at));
    return;
  }
  // QEMU's level guess: split the index bits into levels of (system page shift + 8) bits, then retry with more.
  const sys = s.vm.host.pageShift;
  const entries = ev.windowSize >> BigInt(pageShift);
  const bitsTotal = ctz(entries * 8n);
  const bitsPerLevel = sys + 8;
  let levels = Math.floor(bitsTotal / bitsPerLevel) + (bitsTotal % bitsPerLevel ? 1 : 0);
  const maxLevels = Math.floor((64 - pageShift) / sys);
  let startAddr: bigint | undefined;
  let refusal: TceError | undefined;
  for (; levels <= maxLevels; levels++) {
    try {
      startAddr = s.fd.createWindow({ pageShift, windowSize: ev.windowSize, levels }).startAddr;
      note(s, { op: 'createWindow', liobn: ev.liobn, pageShift, levels, windowSize: ev.windowSize, startAddr });
      refusal = undefined;
      break;
    } catch (e) {
      if (!(e instanceof TceError)) throw e;
      note(s, { op: 'createWindow', liobn: ev.liobn, pageShift, levels, windowSize: ev.windowSize, error: e });
      refusal = e;
    }
  }
  if (startAddr === undefined) {
    const e = refusal ?? new TceError('EINVAL', `no level count up to ${maxLevels}`);
    report(s, new VfioSyncError(e.code, 'createWindow', 'refused', `createWindow for LIOBN ${hex(ev.liobn)} (${hex(ev.windowSize)} bytes of 2^${pageShift} pages): ${e.message}`, { ...at, cause: e }));
    return;
  }
  if (startAddr !== ev.busOffset) {
    // The host window must sit where the guest's is, else DMA addresses would differ: removed again.
    call(s, { op: 'removeWindow', liobn: ev.liobn, iova: startAddr }, () => s.fd.removeWindow(startAddr));
    report(s, new VfioSyncError('EINVAL', 'createWindow', 'window-start', `the host placed the window for LIOBN ${hex(ev.liobn)} at ${hex(startAddr)}, the guest's is at ${hex(ev.busOffset)}`, at));
    return;
  }
  m.host = { startAddr, pageShift, levels, adopted: false, own: true };
  linkWindow(s, m);
}

/**
 * A guest window went away (vfio_listener_region_del of an IOMMU region):
 * the notifier unregistered (the unmap events that came with the removal
 * make no call, listener.ts), one UNMAP over the whole window, then
 * TCE_REMOVE (vfio_spapr_container_del_section_window, v2 only).
 */
export function removeWindow(s: SyncState, ev: WindowEvent): void {
  const m = s.mirrors.get(ev.liobn);
  if (!m) return;
  s.mirrors.delete(ev.liobn);
  dropMirror(s, m);
}

/** At detach (`all`) or a failed attach (only what the sync made itself): each host window emptied, and removed if the sync owns it. */
export function removeWindows(s: SyncState, all: boolean): void {
  for (const m of s.mirrors.values()) {
    if (!m.host || (!all && m.host.adopted)) continue;
    dropMirror(s, m);
  }
  s.mirrors.clear();
}

/**
 * vfio_listener_region_del's calls for one mirror: the links' references
 * first (kvm profile; a divergence, QEMU leaves them to the kernel), so no
 * guest hypercall reaches the window once it is emptied; then one UNMAP
 * over the window (vfio_container_dma_unmap of the whole section: over an
 * empty range the kernel's tce_iommu_clear finds nothing and returns 0);
 * then TCE_REMOVE of a window the sync owns (v2). A window the host could
 * not provide makes no call.
 */
function dropMirror(s: SyncState, m: Mirror): void {
  const h = m.host;
  if (!h) return;
  unlinkWindow(s, m);
  // v1: the section is the guest window inside the one 32-bit host window.
  const iova = s.v2 ? h.startAddr : m.busOffset;
  call(s, { op: 'unmapDma', liobn: m.liobn, iova, size: m.windowSize }, () => s.fd.unmapDma({ iova, size: m.windowSize }));
  if (h.own) call(s, { op: 'removeWindow', liobn: m.liobn, iova: h.startAddr }, () => s.fd.removeWindow(h.startAddr));
}

/** v1: DISABLE, when the sync enabled the container. */
export function disableV1(s: SyncState): void {
  if (!s.enabledV1) return;
  s.enabledV1 = false;
  try {
    s.fd.disable();
  } catch (e) {
    if (!(e instanceof TceError)) throw e;
    report(s, new VfioSyncError(e.code, 'unmapDma', 'refused', `disable: ${e.message}`, { cause: e }));
  }
}

/** Trailing zero bits of a positive bigint (ctz64). */
function ctz(x: bigint): number {
  let n = 0;
  while (n < 64 && !(x & (1n << BigInt(n)))) n++;
  return n;
}
