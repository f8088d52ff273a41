// The IOMMU driver side of a container: its type (VFIO_SET_IOMMU), the
// groups set to it and their attach/detach to the driver
// (tce_iommu_attach_group, tce_iommu_detach_group), GET_INFO, and release
// (tce_iommu_release) when the last handle or group goes.
import type { Container } from './container.js';
import type { Window, TceInfo } from './types.js';
import type { Task } from '../kernel/task.js';
import { Group } from './group.js';
import { guard, storedMm, requireDriver } from './owner.js';
import { setWindow, clearTable, freeWindow } from './tables.js';
import { disableV1 } from './v1.js';
import { preregPut } from '../kernel/prereg.js';
import { fail, TceError } from '../core/errors.js';
import * as v from '../core/validate.js';
import { VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU } from '../generated/layout.js';

/** VFIO_CHECK_EXTENSION: 1 for the sPAPR TCE types, 0 otherwise. */
export function checkExtension(ext: number): number {
  v.int('ext', ext, 0, 0xffffffff);
  return ext === VFIO_SPAPR_TCE_IOMMU || ext === VFIO_SPAPR_TCE_V2_IOMMU ? 1 : 0;
}

/** VFIO_SET_IOMMU: needs a group and no driver yet (EINVAL); attaches every group, undoing all on failure. */
export function setIommu(c: Container, type: 'v1' | 'v2' | number): void {
  if (type !== 'v1' && type !== 'v2' && typeof type !== 'number') throw new TypeError(`type must be 'v1', 'v2' or a number, got ${String(type)}`);
  const t = type === 'v1' ? VFIO_SPAPR_TCE_IOMMU : type === 'v2' ? VFIO_SPAPR_TCE_V2_IOMMU : v.int('type', type, 0, 0xffffffff);
  if (c.groups.length === 0 || c.iommuSet) {
    fail('EINVAL', c.iommuSet ? 'setIommu: an IOMMU type is already set' : 'setIommu: attach a group first');
  }
  // vfio_ioctl_set_iommu: no driver accepting the type → ENODEV.
  if (t !== VFIO_SPAPR_TCE_IOMMU && t !== VFIO_SPAPR_TCE_V2_IOMMU) fail('ENODEV', `setIommu: no IOMMU driver for type ${t}`);
  c.v2 = t === VFIO_SPAPR_TCE_V2_IOMMU;
  const pending = [...c.groups];
  c.groups.length = 0;
  try {
    for (const g of pending) {
      driverAttach(c, g);
      c.groups.push(g);
    }
  } catch (e) {
    for (const g of [...c.groups].reverse()) driverDetach(c, g);
    c.groups.length = 0;
    c.groups.push(...pending);
    resetDriver(c);
    throw e;
  }
}

/** VFIO_GROUP_SET_CONTAINER: records the group, attaching it to the driver if one is set. */
export function attachGroup(c: Container, g: Group): void {
  v.owned('group', g, Group, 'a Group', c.host);
  if (g.container === c) fail('EBUSY', `group ${g.id} is already attached to this container`);
  if (g.container) fail('EBUSY', `group ${g.id} is attached to container ${g.container.id}`);
  // VFIO_GROUP_SET_CONTAINER is a group-fd ioctl: tce_iommu_attach_group makes no mm check.
  if (c.iommuSet) driverAttach(c, g);
  c.groups.push(g);
  g.container = c;
}

/** VFIO_GROUP_UNSET_CONTAINER: detaches; the last group's departure releases the container. */
export function detachGroup(c: Container, g: Group): void {
  v.instance('group', g, Group, 'a Group');
  const i = c.groups.indexOf(g);
  if (i < 0) fail('EINVAL', `group ${g.id} is not attached to container ${c.id}`);
  // VFIO_GROUP_UNSET_CONTAINER: a group-fd ioctl, no mm check either.
  if (c.iommuSet) driverDetach(c, g);
  c.groups.splice(i, 1);
  g.container = undefined;
  if (c.groups.length === 0 && c.iommuSet) release(c);
}

/**
 * tce_iommu_attach_group (R): ENODEV / EBUSY (legacy group while others
 * attached, or attached twice) / EPERM (other ops family, legacy with v2,
 * DDW with v1); takes ownership (EBUSY with host DMA mappings) and programs
 * the container's existing windows (rolled back on error).
 */
function driverAttach(c: Container, g: Group): void {
  const others = c.groups;
  if (!g.ddw && others.length > 0) fail('EBUSY', `legacy group ${g.id} cannot join a container with other groups`);
  if (others.includes(g)) fail('EBUSY', `group ${g.id} is already attached`);
  if (others.some((o) => o.ddw !== g.ddw)) fail('EPERM', `group ${g.id} has other IOMMU ops than the attached groups`);
  if (!g.ddw && c.v2) fail('EPERM', `legacy group ${g.id} cannot be used with a v2 container`);
  if (g.ddw && !c.v2) fail('EPERM', `DDW group ${g.id} needs a v2 container`);
  g.takeOwnership();
  if (!g.ddw) {
    c.windows[0] = legacyWindow(g);
    return;
  }
  const programmed: number[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const w = c.windows[i];
      if (!w) continue;
      setWindow(g, i, w.table);
      programmed.push(i);
    }
  } catch (e) {
    for (const i of programmed) g.slots[i] = undefined;
    g.releaseOwnership();
    throw e;
  }
  if (others.length === 0 && !c.windows[0]) c.defWindowPending = true;
}

/** The window a v1 container borrows from a legacy group: its own 32-bit table, charged to nobody. */
function legacyWindow(g: Group): Window {
  const t = g.legacyTable!;
  return { startAddr: g.tce32Start, windowSize: g.tce32Size, pageShift: 12, levels: 1, table: t, chargedMm: undefined, tablePages: 0n };
}

/**
 * tce_iommu_detach_group: legacy — clear and hand the table back; DDW —
 * clear every container table first (4ba2fdff2eb1), unset the windows,
 * release ownership. Tables stay with the container.
 */
function driverDetach(c: Container, g: Group): void {
  if (!g.ddw) {
    const w = c.windows[0];
    if (w) clearTable(c, w, w.table.offset, w.table.size, storedMm(c, w));
    c.windows[0] = undefined;
  } else {
    for (const w of c.windows) if (w) clearTable(c, w, w.table.offset, w.table.size, storedMm(c, w));
    g.slots[0] = g.slots[1] = undefined;
  }
  g.releaseOwnership();
}

/** tce_iommu_release: everything cleared, freed, unpinned and unaccounted; the driver is unbound. */
export function release(c: Container): void {
  if (!c.iommuSet) return;
  for (const g of [...c.groups]) {
    driverDetach(c, g);
  }
  for (let i = 0; i < 2; i++) {
    const w = c.windows[i];
    if (!w) continue;
    clearTable(c, w, w.table.offset, w.table.size, storedMm(c, w));
    freeWindow(c, i);
  }
  for (const p of [...c.prereg].reverse()) {
    try {
      preregPut(p.mm, p.region);
    } catch (e) {
      // The kernel WARNs and goes on; the region is left to its mm.
      if (!(e instanceof TceError)) throw e;
    }
  }
  c.prereg.length = 0;
  disableV1(c);
  resetDriver(c);
}

/** The container as before SET_IOMMU: no type, nothing enabled, no owner, no windows. */
function resetDriver(c: Container): void {
  c.v2 = undefined;
  c.enabled = false;
  c.defWindowPending = false;
  c.mm = undefined;
  c.ownerPid = 0;
  c.windows[0] = c.windows[1] = undefined;
}

/** VFIO_IOMMU_SPAPR_TCE_GET_INFO: the first group's 32-bit window; DDW details for v2. */
export function getInfo(c: Container, caller: Task): TceInfo {
  requireDriver(c, 'getInfo');
  guard(c, caller, false);
  const g = c.groups[0];
  if (!g) fail('ENXIO', 'getInfo: no group attached');
  const info: TceInfo = { dma32WindowStart: g.tce32Start, dma32WindowSize: g.tce32Size, flags: 0 };
  if (c.v2 && g.ddw && g.maxWindows > 0) {
    info.flags = 1;
    info.ddw = { pgSizes: g.pgSizes, maxDynamicWindowsSupported: g.maxWindows, levels: g.maxLevels };
  }
  return info;
}
