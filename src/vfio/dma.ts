// VFIO_IOMMU_MAP_DMA / UNMAP_DMA (tce_iommu_map_dma, tce_iommu_unmap_dma):
// the checks both share, then v2 through pre-registered regions and the
// userspace view, v1 by pinning each page.
import type { Container } from './container.js';
import type { Window, DmaMap, DmaUnmap } from './types.js';
import type { Task } from '../kernel/task.js';
import { MAP_READ, MAP_WRITE } from './types.js';
import { guard, ctxMm, requireDriver } from './owner.js';
import { findWindow, clearTable } from './tables.js';
import { createDefaultWindow } from './windows.js';
import { buildV1 } from './v1.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { TCE_READ, TCE_WRITE } from '../generated/layout.js';

const DMA_MAP = v.keys<DmaMap>('fd.mapDma', { iova: true, vaddr: true, size: true, read: true, write: true, flags: true });
const DMA_UNMAP = v.keys<DmaUnmap>('fd.unmapDma', { iova: true, size: true, flags: true });

/** The checks MAP_DMA and UNMAP_DMA share after `enabled` and the flags, after which `iova` is known to be in window `w`. */
function dmaWindow(c: Container, caller: Task, what: string, iova: bigint, size: bigint): Window {
  createDefaultWindow(c, caller);
  const slot = findWindow(c, iova);
  if (slot < 0) fail('ENXIO', `${what}: iova ${hex(iova)} is in no DMA window`);
  const w = c.windows[slot]!;
  const pmask = (1n << BigInt(w.pageShift)) - 1n;
  if (size & pmask) fail('EINVAL', `${what}: size ${hex(size)} is not a multiple of the 2^${w.pageShift} IOMMU page`);
  // Divergences (README): the kernel returns +1 for a misaligned iova and checks only the first page's range.
  if (iova & pmask) fail('EINVAL', `${what}: iova ${hex(iova)} is not aligned to the 2^${w.pageShift} IOMMU page`);
  if (!w.table.contains(iova >> BigInt(w.pageShift), size >> BigInt(w.pageShift))) {
    fail('EINVAL', `${what}: [${hex(iova)}, +${hex(size)}) runs past the end of the window at ${hex(w.startAddr)}`);
  }
  return w;
}

/** VFIO_IOMMU_MAP_DMA: v2 through pre-registered regions and the userspace view; v1 pinning per page. */
export function mapDma(c: Container, caller: Task, args: DmaMap): void {
  const o = v.options('args', args, DMA_MAP);
  const iova = v.u64('iova', o.iova);
  const vaddr = v.u64('vaddr', o.vaddr);
  const size = v.u64('size', o.size);
  let flags: number;
  if (o.flags !== undefined) flags = v.int('flags', o.flags, 0, 0xffffffff);
  else flags = (v.bool('read', o.read, false) ? MAP_READ : 0) | (v.bool('write', o.write, false) ? MAP_WRITE : 0);
  requireDriver(c, 'mapDma');
  guard(c, caller, true);
  if (!c.enabled) fail('EPERM', `mapDma: the container is not enabled${c.v2 ? ' (register memory first)' : ''}`);
  if (flags & ~(MAP_READ | MAP_WRITE)) fail('EINVAL', `mapDma: unknown flags ${hex(flags)}`);
  const w = dmaWindow(c, caller, 'mapDma', iova, size);
  const pmask = (1n << BigInt(w.pageShift)) - 1n;
  if (vaddr & pmask) fail('EINVAL', `mapDma: vaddr ${hex(vaddr)} is not aligned to the 2^${w.pageShift} IOMMU page`);
  if (!(flags & (MAP_READ | MAP_WRITE))) fail('EINVAL', 'mapDma: neither read nor write');
  if (vaddr + size > 1n << 64n) fail('EINVAL', 'mapDma: vaddr + size wraps around');
  // TCE_READ/TCE_WRITE have the same meaning and values as the VFIO flags.
  const perm = (flags & MAP_READ ? TCE_READ : 0) | (flags & MAP_WRITE ? TCE_WRITE : 0);
  const entry = iova >> BigInt(w.pageShift);
  const n = size >> BigInt(w.pageShift);
  if (c.v2) buildV2(c, caller, w, entry, n, vaddr, perm);
  else buildV1(c, caller, w, entry, n, vaddr, perm);
}

/** tce_iommu_build_v2 over the window's table, in the mm lookups use. */
function buildV2(c: Container, caller: Task, w: Window, entry: bigint, n: bigint, vaddr: bigint, perm: number): void {
  if (n === 0n) return;
  const mm = ctxMm(c, caller);
  // Under '4.12' the userspace view's memory comes with the first map (it was charged with the table).
  w.table.viewMm ??= mm;
  w.table.buildV2(mm, entry, n, vaddr, perm);
}

/** VFIO_IOMMU_UNMAP_DMA: flags EINVAL; the range's entries cleared (regions decremented / pages unpinned). */
export function unmapDma(c: Container, caller: Task, args: DmaUnmap): void {
  const o = v.options('args', args, DMA_UNMAP);
  const iova = v.u64('iova', o.iova);
  const size = v.u64('size', o.size);
  const flags = o.flags === undefined ? 0 : v.int('flags', o.flags, 0, 0xffffffff);
  requireDriver(c, 'unmapDma');
  guard(c, caller, true);
  if (!c.enabled) fail('EPERM', 'unmapDma: the container is not enabled');
  if (flags !== 0) fail('EINVAL', `unmapDma: flags must be 0, got ${flags}`);
  const w = dmaWindow(c, caller, 'unmapDma', iova, size);
  clearTable(c, w, iova >> BigInt(w.pageShift), size >> BigInt(w.pageShift), ctxMm(c, caller));
}
