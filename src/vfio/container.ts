// VFIO sPAPR TCE containers (drivers/vfio/vfio_iommu_spapr_tce.c, reference
// ≈v5.10–6.3) with the owner check in three modes. A Container is the shared
// kernel object (struct tce_container); a ContainerFd (fd.ts) is a handle on
// it bound to the process that uses it (opened, inherited across fork() or
// from a thread, or received over a socket: src/host/process.ts). This file
// holds the container's state and its ioctl
// surface; each concern has its own file:
//   owner.ts         the owner check and the driver checks every ioctl makes first
//   iommu.ts         IOMMU type, groups, GET_INFO, release
//   v1.ts            ENABLE/DISABLE and the pin-per-page map of v1
//   registration.ts  REGISTER/UNREGISTER_MEMORY (v2)
//   windows.ts       TCE_CREATE/TCE_REMOVE and the default window (v2)
//   dma.ts           MAP_DMA/UNMAP_DMA
//   tables.ts        what they share: set_window, find, clear, free
import type { HostContext } from '../core/context.js';
import type { Mm } from '../kernel/mm.js';
import type { Region } from '../kernel/prereg.js';
import type { Task } from '../kernel/task.js';
import type { Group } from './group.js';
import type { Window, TceInfo, DmaMap, DmaUnmap, CreateWindow } from './types.js';
import { ContainerFd } from './fd.js';
import * as iommu from './iommu.js';
import * as v1 from './v1.js';
import * as registration from './registration.js';
import * as windows from './windows.js';
import * as dma from './dma.js';

/** The container object shared by every handle on it. */
export class Container {
  readonly host: HostContext;
  readonly id: number;
  /** v2 (pre-registered memory) or v1; undefined until setIommu. */
  v2: boolean | undefined;
  enabled = false;
  defWindowPending = false;
  /** v1: pages charged at ENABLE. */
  lockedPages = 0n;
  /** @internal v1: the mm the ENABLE charge went to. */
  v1ChargedMm: Mm | undefined;
  /** The mm the container is bound to (modes mm and pid), once claimed. */
  mm: Mm | undefined;
  /** The owner's pid (mode pid), once claimed; 0 before. */
  ownerPid = 0;
  readonly windows: (Window | undefined)[] = [undefined, undefined];
  /** Groups set to the container, in attach order. */
  readonly groups: Group[] = [];
  /** @internal the prereg_list: each region this container registered, with the mm it was found in. */
  readonly prereg: { region: Region; mm: Mm }[] = [];
  /** Open handles; the container is released when the last one closes. */
  handles = 0;
  /** The open handles, by process. */
  readonly fds = new Set<ContainerFd>();

  /** @internal use process.openContainer() */
  constructor(host: HostContext, id: number) {
    this.host = host;
    this.id = id;
  }

  /** @internal a new open handle on this container for `task` (open, inherit, receive, restore). */
  open(task: Task): ContainerFd {
    const fd = new ContainerFd(task, this);
    this.handles++;
    this.fds.add(fd);
    return fd;
  }

  /** Regions this container references (its prereg_list). */
  get regions(): Region[] {
    return this.prereg.map((p) => p.region);
  }

  /** What this container has charged to locked_vm, and to which mm: its windows' tables and the v1 ENABLE. */
  charges(): { mm: Mm; pages: bigint }[] {
    const out: { mm: Mm; pages: bigint }[] = [];
    for (const w of this.windows) if (w?.chargedMm) out.push({ mm: w.chargedMm, pages: w.tablePages });
    if (this.enabled && this.v2 === false && this.v1ChargedMm) out.push({ mm: this.v1ChargedMm, pages: this.lockedPages });
    return out;
  }

  /** Whether SET_IOMMU has been done (an IOMMU driver is bound). */
  get iommuSet(): boolean {
    return this.v2 !== undefined;
  }

  /** VFIO_CHECK_EXTENSION: 1 for the sPAPR TCE types, 0 otherwise. */
  checkExtension(ext: number): number {
    return iommu.checkExtension(ext);
  }

  /** VFIO_SET_IOMMU: needs a group and no driver yet (EINVAL); attaches every group, undoing all on failure. */
  setIommu(type: 'v1' | 'v2' | number): void {
    iommu.setIommu(this, type);
  }

  /** VFIO_GROUP_SET_CONTAINER: records the group, attaching it to the driver if one is set. */
  attachGroup(g: Group): void {
    iommu.attachGroup(this, g);
  }

  /** VFIO_GROUP_UNSET_CONTAINER: detaches; the last group's departure releases the container. */
  detachGroup(g: Group): void {
    iommu.detachGroup(this, g);
  }

  /** tce_iommu_release: everything cleared, freed, unpinned and unaccounted; the driver is unbound. */
  release(): void {
    iommu.release(this);
  }

  /** VFIO_IOMMU_SPAPR_TCE_GET_INFO: the first group's 32-bit window; DDW details for v2. */
  getInfo(caller: Task): TceInfo {
    return iommu.getInfo(this, caller);
  }

  /** VFIO_IOMMU_ENABLE (v1): EBUSY / ENODEV / EPERM (no 32-bit window); claims; charges tce32_size pages (ENOMEM). */
  enable(caller: Task): void {
    v1.enable(this, caller);
  }

  /** VFIO_IOMMU_DISABLE (v1): always succeeds; returns the ENABLE charge. */
  disable(caller: Task): void {
    v1.disable(this, caller);
  }

  /** VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): see registration.ts. */
  registerMemory(caller: Task, vaddr: bigint | number, size: bigint | number, flags: number): void {
    registration.registerMemory(this, caller, vaddr, size, flags);
  }

  /** VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): see registration.ts. */
  unregisterMemory(caller: Task, vaddr: bigint | number, size: bigint | number, flags: number): void {
    registration.unregisterMemory(this, caller, vaddr, size, flags);
  }

  /** VFIO_IOMMU_SPAPR_TCE_CREATE (v2): claims; ENXIO without groups; flags EINVAL; default window first. */
  createWindow(caller: Task, args: CreateWindow): { startAddr: bigint } {
    return windows.createWindow(this, caller, args);
  }

  /** VFIO_IOMMU_SPAPR_TCE_REMOVE (v2): see windows.ts. */
  removeWindow(caller: Task, startAddr: bigint | number, flags: number): void {
    windows.removeWindow(this, caller, startAddr, flags);
  }

  /** VFIO_IOMMU_MAP_DMA: v2 through pre-registered regions and the userspace view; v1 pinning per page. */
  mapDma(caller: Task, args: DmaMap): void {
    dma.mapDma(this, caller, args);
  }

  /** VFIO_IOMMU_UNMAP_DMA: flags EINVAL; the range's entries cleared (regions decremented / pages unpinned). */
  unmapDma(caller: Task, args: DmaUnmap): void {
    dma.unmapDma(this, caller, args);
  }
}
