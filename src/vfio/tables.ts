// The tables behind a container's windows: programming one into a group's
// slot, finding the window of a bus address, clearing entries of either
// type (tce_iommu_clear) and freeing a window's table.
import type { Container } from './container.js';
import type { Window } from './types.js';
import type { Group } from './group.js';
import type { IommuTable } from '../kernel/table.js';
import { chargeKey, type Mm } from '../kernel/mm.js';
import { fail } from '../core/errors.js';
import { TCE_PERM_MASK } from '../generated/layout.js';

/** pnv_pci_ioda2_set_window: checks the group can hold the table. */
export function setWindow(g: Group, slot: number, table: IommuTable): void {
  if (!g.pageShifts.includes(table.pageShift)) fail('EINVAL', `group ${g.id} does not support 2^${table.pageShift}-byte pages`);
  g.slots[slot] = table;
}

/** tce_iommu_find_table: the slot whose window contains `ioba`, or -1. */
export function findWindow(c: Container, ioba: bigint): number {
  return c.windows.findIndex((w) => !!w && ioba >= w.startAddr && ioba < w.table.busEnd);
}

/** tce_iommu_clear for either type. */
export function clearTable(c: Container, w: Window, entry: bigint, n: bigint, mm: Mm | undefined): void {
  if (n === 0n) return;
  // v2 windows are always charged to an mm, so `mm` is known for them.
  if (w.table.v2) w.table.clearV2(mm ?? w.chargedMm!, entry, n);
  else clearV1(c, w, entry, n);
}

/** tce_iommu_clear, v1: every valid entry cleared and its page unpinned. */
export function clearV1(c: Container, w: Window, entry: bigint, n: bigint): void {
  const end = entry + n;
  for (let e = w.table.nextValid(entry, end); e >= 0n; e = w.table.nextValid(e + 1n, end)) {
    const old = w.table.xchg(e, 0n);
    if (old & BigInt(TCE_PERM_MASK)) c.host.unpin(old & ~BigInt(TCE_PERM_MASK));
  }
}

/** Drops window `slot`: its table reference and, for a table the container created, its charge. */
export function freeWindow(c: Container, slot: number): void {
  const w = c.windows[slot];
  if (!w) return;
  c.windows[slot] = undefined;
  if (!w.chargedMm) return;
  // A KVM link may still hold the table; the last reference frees it.
  w.table.releaseHolder();
  w.chargedMm.unaccount(chargeKey.window(c.id, slot), w.tablePages);
}
