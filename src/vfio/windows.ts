// Dynamic DMA windows of a v2 container (VFIO_IOMMU_SPAPR_TCE_CREATE /
// _REMOVE, tce_iommu_create_window, tce_iommu_remove_window) and the pending
// default window QEMU usually removes first (tce_iommu_create_default_window).
import type { Container } from './container.js';
import type { Group } from './group.js';
import type { Task } from '../kernel/task.js';
import { DDW_BUS_OFFSET, type CreateWindow } from './types.js';
import { claim, ctxMm, requireType } from './owner.js';
import { setWindow, findWindow, clearTable, freeWindow } from './tables.js';
import { IommuTable } from '../kernel/table.js';
import { chargeKey } from '../kernel/mm.js';
import { getTableSize, checkGeometry } from '../kernel/geometry.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';

/** tce_iommu_create_default_window: materialises the pending 4 KiB, tce32_size, 1-level window in slot 0. */
export function createDefaultWindow(c: Container, caller: Task): void {
  if (!c.defWindowPending) return;
  const g = c.groups[0];
  if (!g) fail('ENODEV', 'no group attached for the default window');
  createWindowIn(c, caller, 12, g.tce32Size, 1);
  c.defWindowPending = false;
}

/**
 * tce_iommu_create_window: first free slot (ENOSPC), page size supported
 * (EINVAL), size and levels (EINVAL), the table charged to the mm (ENOMEM),
 * then programmed into every group (undone on error).
 */
function createWindowIn(c: Container, caller: Task, pageShift: number, windowSize: bigint, levels: number): bigint {
  const slot = c.windows.findIndex((w, i) => !w && i < 2);
  if (slot < 0) fail('ENOSPC', 'createWindow: both window slots are in use');
  const g = c.groups[0];
  if (!g) fail('EFAULT', 'createWindow: no group');
  if (!g.pageShifts.includes(pageShift)) fail('EINVAL', `createWindow: page shift ${pageShift} is not supported (${g.pageShifts.join(', ')})`);
  const bytes = getTableSize(pageShift, windowSize, levels, c.host.pageShift);
  if (bytes === 0n) fail('EINVAL', `createWindow: no table of ${levels} level(s) for a ${hex(windowSize)}-byte window`);
  if (levels > g.maxLevels) fail('EINVAL', `createWindow: ${levels} levels exceed the group's ${g.maxLevels}`);
  // The whole of get_table_size (the TCE tree and its userspace copy) is
  // charged now, to the owner, as tce_iommu_create_table does (in every
  // era). From 4.19 the view comes with the table, as
  // pnv_pci_ioda2_table_alloc_pages(..., alloc_userspace_copy) allocates it
  // (090bad39b237), its lower levels on demand (a68bd1267b72); under '4.12'
  // it is allocated at the first map (39701e56f5f1; see buildV2 in dma.ts).
  // The kernel charges before pnv_pci_ioda2_table_alloc_pages refuses a
  // geometry of 2^55 bytes or more and never returns that charge; here a
  // refused geometry is uncharged (a divergence: a refusal changes nothing).
  const tablePages = bytes >> BigInt(c.host.pageShift);
  const mm = ctxMm(c, caller);
  const key = chargeKey.window(c.id, slot);
  mm.account(key, tablePages, caller.memlockLimitPages);
  let table: IommuTable | undefined;
  try {
    const busOffset = slot === 0 ? g.tce32Start : DDW_BUS_OFFSET;
    checkGeometry({ pageShift, windowSize, levels, busOffset }, c.host.pageShift);
    table = IommuTable.createHeld(c.host, { pageShift, windowSize, levels, busOffset }, true);
    if (c.host.kernel !== '4.12') table.allocView();
  } catch (e) {
    table?.free();
    mm.unaccount(key, tablePages);
    throw e;
  }
  const set: Group[] = [];
  try {
    for (const gr of c.groups) {
      setWindow(gr, slot, table);
      set.push(gr);
    }
  } catch (e) {
    for (const gr of set) gr.slots[slot] = undefined;
    table.free();
    mm.unaccount(key, tablePages);
    throw e;
  }
  table.viewMm = mm;
  if (c.ownerPid) table.ownerPid = c.ownerPid;
  c.windows[slot] = { startAddr: table.offset << BigInt(pageShift), windowSize, pageShift, levels, table, chargedMm: mm, tablePages };
  return table.offset << BigInt(pageShift);
}

const CREATE_WINDOW = v.keys<CreateWindow>('fd.createWindow', { pageShift: true, windowSize: true, levels: true, flags: true });

/** VFIO_IOMMU_SPAPR_TCE_CREATE (v2): claims; ENXIO without groups; flags EINVAL; default window first. */
export function createWindow(c: Container, caller: Task, args: CreateWindow): { startAddr: bigint } {
  const o = v.options('args', args, CREATE_WINDOW);
  const pageShift = v.int('pageShift', o.pageShift, 0, 63);
  const windowSize = v.u64('windowSize', o.windowSize);
  const levels = v.int('levels', o.levels, 0, 0xffffffff);
  const flags = o.flags === undefined ? 0 : v.int('flags', o.flags, 0, 0xffffffff);
  requireType(c, caller, true, 'createWindow');
  claim(c, caller);
  if (c.groups.length === 0) fail('ENXIO', 'createWindow: no group attached');
  if (flags !== 0) fail('EINVAL', `createWindow: flags must be 0, got ${flags}`);
  createDefaultWindow(c, caller);
  return { startAddr: createWindowIn(c, caller, pageShift, windowSize, levels) };
}

/**
 * VFIO_IOMMU_SPAPR_TCE_REMOVE (v2): claims; ENXIO without groups; flags
 * EINVAL; start 0 while the default window is pending cancels it; else the
 * window containing start_addr (EINVAL if none) is cleared, unset and freed.
 */
export function removeWindow(c: Container, caller: Task, startAddr: bigint | number, flags: number): void {
  startAddr = v.u64('startAddr', startAddr);
  v.int('flags', flags, 0, 0xffffffff);
  requireType(c, caller, true, 'removeWindow');
  claim(c, caller);
  if (c.groups.length === 0) fail('ENXIO', 'removeWindow: no group attached');
  if (flags !== 0) fail('EINVAL', `removeWindow: flags must be 0, got ${flags}`);
  if (c.defWindowPending && startAddr === 0n) {
    c.defWindowPending = false;
    return;
  }
  const slot = findWindow(c, startAddr);
  if (slot < 0) fail('EINVAL', `removeWindow: no window contains ${hex(startAddr)}`);
  const w = c.windows[slot]!;
  clearTable(c, w, w.table.offset, w.table.size, ctxMm(c, caller));
  for (const g of c.groups) g.slots[slot] = undefined;
  freeWindow(c, slot);
}
