// VFIO sPAPR TCE containers (drivers/vfio/vfio_iommu_spapr_tce.c, reference
// ≈v5.10–6.3) with the owner check in three modes. A Container is the shared
// kernel object; a ContainerFd is a handle on it bound to the process that
// uses it (open, or inherited through fork()/fd passing).
//
// Owner check ("what stops a forked child or another process?"):
//   none — the 2015 patch as posted: nothing; lookups and accounting use the
//          calling process's mm (current->mm).
//   pid  — the owner's pid, claimed where `mm` claims, is required for every
//          call that changes state; it is also stored in each table next to
//          the userspace view for the real-mode path.
//   mm   — Linux ≥ 4.10 (bc82d122ae4a): the container is bound to the first
//          mm that needs one; every other mm gets EPERM (except CHECK_EXTENSION).
import type { Host } from './host.js';
import type { Mm } from './mm.js';
import type { Process } from './process.js';
import { Group } from './group.js';
import { IommuTable, getTableSize, checkGeometry } from './table.js';
import { preregGet, preregNew, preregPut, findExact, Region } from './prereg.js';
import { fail, TceError } from './errors.js';
import * as v from './validate.js';
import { VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU, TCE_READ, TCE_WRITE, TCE_PERM_MASK } from './generated/layout.js';

/** VFIO_DMA_MAP_FLAG_READ / _WRITE: the device may read / write memory. */
const MAP_READ = 1;
const MAP_WRITE = 2;
/** Bus address of window slot 1 on IODA2 (slot 0 sits at the group's tce32_start). */
export const DDW_BUS_OFFSET = 1n << 59n;
const hex = (x: bigint): string => '0x' + x.toString(16);

/** A DMA window of a container. */
export interface Window {
  readonly startAddr: bigint;
  readonly windowSize: bigint;
  readonly pageShift: number;
  readonly levels: number;
  readonly table: IommuTable;
  /** The mm charged for the table and its view; undefined for a borrowed legacy table. */
  readonly chargedMm: Mm | undefined;
  readonly tablePages: bigint;
}

/** What getInfo() returns (struct vfio_iommu_spapr_tce_info). */
export interface TceInfo {
  dma32WindowStart: bigint;
  dma32WindowSize: bigint;
  /** 1 (VFIO_IOMMU_SPAPR_INFO_DDW) when ddw is present. */
  flags: number;
  ddw?: { pgSizes: bigint; maxDynamicWindowsSupported: number; levels: number };
}

/** Arguments of mapDma (struct vfio_iommu_type1_dma_map). */
export interface DmaMap {
  iova: bigint;
  vaddr: bigint;
  size: bigint;
  read?: boolean;
  write?: boolean;
  /** Raw VFIO flags (READ 1, WRITE 2), instead of read/write. */
  flags?: number;
}

/** Arguments of unmapDma. */
export interface DmaUnmap {
  iova: bigint;
  size: bigint;
  flags?: number;
}

/** Arguments of createWindow (struct vfio_iommu_spapr_tce_create). */
export interface CreateWindow {
  pageShift: number;
  windowSize: bigint;
  levels: number;
  flags?: number;
}

/** Snapshot form of a Container (tables by descriptor, mms and groups by id, handles by thread id). */
export interface ContainerState {
  id: number;
  v2: boolean | null;
  enabled: boolean;
  defWindowPending: boolean;
  lockedPages: string;
  v1ChargedMm: number | null;
  mm: number | null;
  ownerPid: number;
  windows: ({ startAddr: string; windowSize: string; pageShift: number; levels: number; table: number; chargedMm: number | null; tablePages: string } | null)[];
  groups: number[];
  prereg: { region: number; mm: number }[];
  fds: number[];
}

/** The container object shared by every handle on it. */
export class Container {
  readonly host: Host;
  readonly id: number;
  /** v2 (pre-registered memory) or v1; undefined until setIommu. */
  v2: boolean | undefined;
  enabled = false;
  defWindowPending = false;
  /** v1: pages charged at ENABLE. */
  lockedPages = 0n;
  private v1ChargedMm: Mm | undefined;
  /** The mm the container is bound to (modes mm and pid), once claimed. */
  mm: Mm | undefined;
  /** The owner's pid (mode pid), once claimed; 0 before. */
  ownerPid = 0;
  readonly windows: (Window | undefined)[] = [undefined, undefined];
  /** Groups set to the container, in attach order. */
  readonly groups: Group[] = [];
  private readonly prereg: { region: Region; mm: Mm }[] = [];
  /** Open handles; the container is released when the last one closes. */
  handles = 0;
  /** The open handles, by process. */
  readonly fds = new Set<ContainerFd>();

  /** @internal */
  constructor(host: Host, id: number) {
    this.host = host;
    this.id = id;
    host.containers.add(this);
  }

  /** State for snapshots. */
  save(): ContainerState {
    const h = (x: bigint): string => '0x' + x.toString(16);
    return {
      id: this.id, v2: this.v2 ?? null, enabled: this.enabled, defWindowPending: this.defWindowPending,
      lockedPages: h(this.lockedPages), v1ChargedMm: this.v1ChargedMm?.id ?? null, mm: this.mm?.id ?? null, ownerPid: this.ownerPid,
      windows: this.windows.map((w) => w ? { startAddr: h(w.startAddr), windowSize: h(w.windowSize), pageShift: w.pageShift, levels: w.levels, table: w.table.desc, chargedMm: w.chargedMm?.id ?? null, tablePages: h(w.tablePages) } : null),
      groups: this.groups.map((g) => g.id),
      prereg: this.prereg.map((p) => ({ region: p.region.desc, mm: p.mm.id })),
      fds: [...this.fds].map((fd) => fd.process.tid),
    };
  }

  /** The container a snapshot describes, with new handles for the processes that held it open. */
  static restore(host: Host, s: ContainerState, ctx: { mms: Map<number, Mm>; groups: Map<number, Group>; tables: Map<number, IommuTable>; processes: Map<number, Process> }): Container {
    const c = new Container(host, s.id);
    const mm = (id: number | null): Mm | undefined => (id === null ? undefined : ctx.mms.get(id));
    c.v2 = s.v2 ?? undefined;
    c.enabled = s.enabled;
    c.defWindowPending = s.defWindowPending;
    c.lockedPages = BigInt(s.lockedPages);
    c.v1ChargedMm = mm(s.v1ChargedMm);
    c.mm = mm(s.mm);
    c.ownerPid = s.ownerPid;
    s.windows.forEach((w, i) => {
      c.windows[i] = w ? { startAddr: BigInt(w.startAddr), windowSize: BigInt(w.windowSize), pageShift: w.pageShift, levels: w.levels, table: ctx.tables.get(w.table)!, chargedMm: mm(w.chargedMm), tablePages: BigInt(w.tablePages) } : undefined;
    });
    for (const id of s.groups) {
      const g = ctx.groups.get(id)!;
      c.groups.push(g);
      g.container = c;
    }
    for (const p of s.prereg) c.prereg.push({ region: new Region(host, p.region), mm: mm(p.mm)! });
    for (const tid of s.fds) new ContainerFd(ctx.processes.get(tid)!, c);
    return c;
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

  // --- the owner check ------------------------------------------------------

  /** The common first check of tce_iommu_ioctl: another mm (mode mm) or pid (mode pid, for changes) → EPERM. */
  private guard(caller: Process, changes: boolean): void {
    const mode = this.host.ownerCheck;
    if (mode === 'mm' && this.mm && this.mm !== caller.mm) {
      fail('EPERM', `container ${this.id} belongs to mm ${this.mm.id}; pid ${caller.pid} uses mm ${caller.mm.id}`);
    }
    if (mode === 'pid' && changes && this.ownerPid !== 0 && caller.pid !== this.ownerPid) {
      fail('EPERM', `container ${this.id} belongs to pid ${this.ownerPid}; refused for pid ${caller.pid}`);
    }
  }

  /** tce_iommu_mm_set: binds the container to the caller on first need (modes mm and pid). */
  private claim(caller: Process): void {
    const mode = this.host.ownerCheck;
    if (mode === 'none' || this.mm) return;
    this.mm = caller.mm;
    if (mode === 'pid') {
      this.ownerPid = caller.pid;
      for (const w of this.windows) if (w && w.chargedMm) w.table.ownerPid = caller.pid;
    }
  }

  /** The mm that lookups and accounting use: the bound one, or the caller's (mode none: current->mm). */
  private ctxMm(caller: Process): Mm {
    return this.host.ownerCheck === 'none' ? caller.mm : this.mm ?? caller.mm;
  }

  /** Ioctls that only the IOMMU driver answers: EINVAL before SET_IOMMU (vfio_fops_unl_ioctl). */
  private requireDriver(what: string): void {
    if (!this.iommuSet) fail('EINVAL', `${what}: no IOMMU type set on container ${this.id} (setIommu first)`);
  }

  private requireType(v2: boolean, what: string): void {
    this.requireDriver(what);
    if (this.v2 !== v2) fail('ENOTTY', `${what} is a ${v2 ? 'v2' : 'v1'} ioctl; this container is ${this.v2 ? 'v2' : 'v1'}`);
  }

  // --- VFIO core --------------------------------------------------------------

  /** VFIO_CHECK_EXTENSION: 1 for the sPAPR TCE types, 0 otherwise. */
  checkExtension(ext: number): number {
    v.int('ext', ext, 0, 0xffffffff);
    return ext === VFIO_SPAPR_TCE_IOMMU || ext === VFIO_SPAPR_TCE_V2_IOMMU ? 1 : 0;
  }

  /** VFIO_SET_IOMMU: needs a group and no driver yet (EINVAL); attaches every group, undoing all on failure. */
  setIommu(type: 'v1' | 'v2' | number): void {
    const t = type === 'v1' ? VFIO_SPAPR_TCE_IOMMU : type === 'v2' ? VFIO_SPAPR_TCE_V2_IOMMU : typeof type === 'number' ? v.int('type', type, 0, 0xffffffff) : NaN;
    if (Number.isNaN(t)) throw new TypeError(`type must be 'v1', 'v2' or a number, got ${String(type)}`);
    if (this.groups.length === 0 || this.iommuSet) {
      fail('EINVAL', this.iommuSet ? 'setIommu: an IOMMU type is already set' : 'setIommu: attach a group first');
    }
    // vfio_ioctl_set_iommu: no driver accepting the type → ENODEV.
    if (t !== VFIO_SPAPR_TCE_IOMMU && t !== VFIO_SPAPR_TCE_V2_IOMMU) fail('ENODEV', `setIommu: no IOMMU driver for type ${t}`);
    this.v2 = t === VFIO_SPAPR_TCE_V2_IOMMU;
    const pending = [...this.groups];
    this.groups.length = 0;
    try {
      for (const g of pending) {
        this.driverAttach(g);
        this.groups.push(g);
      }
    } catch (e) {
      for (const g of [...this.groups].reverse()) this.driverDetach(g);
      this.groups.length = 0;
      this.groups.push(...pending);
      this.resetDriver();
      throw e;
    }
  }

  /** VFIO_GROUP_SET_CONTAINER: records the group, attaching it to the driver if one is set. */
  attachGroup(g: Group): void {
    v.instance('group', g, Group, 'a Group');
    if (g.host !== this.host) throw new TypeError('group belongs to another host');
    if (g.container === this) fail('EBUSY', `group ${g.id} is already attached to this container`);
    if (g.container) fail('EBUSY', `group ${g.id} is attached to container ${g.container.id}`);
    // VFIO_GROUP_SET_CONTAINER is a group-fd ioctl: tce_iommu_attach_group makes no mm check.
    if (this.iommuSet) this.driverAttach(g);
    this.groups.push(g);
    g.container = this;
  }

  /** VFIO_GROUP_UNSET_CONTAINER: detaches; the last group's departure releases the container. */
  detachGroup(g: Group): void {
    v.instance('group', g, Group, 'a Group');
    const i = this.groups.indexOf(g);
    if (i < 0) fail('EINVAL', `group ${g.id} is not attached to container ${this.id}`);
    // VFIO_GROUP_UNSET_CONTAINER: a group-fd ioctl, no mm check either.
    if (this.iommuSet) this.driverDetach(g);
    this.groups.splice(i, 1);
    g.container = undefined;
    if (this.groups.length === 0 && this.iommuSet) this.release();
  }

  /**
   * tce_iommu_attach_group (R): ENODEV / EBUSY (legacy group while others
   * attached, or attached twice) / EPERM (other ops family, legacy with v2,
   * DDW with v1); takes ownership (EBUSY with host DMA mappings) and programs
   * the container's existing windows (rolled back on error).
   */
  private driverAttach(g: Group): void {
    const others = this.groups;
    if (!g.ddw && others.length > 0) fail('EBUSY', `legacy group ${g.id} cannot join a container with other groups`);
    if (others.includes(g)) fail('EBUSY', `group ${g.id} is already attached`);
    if (others.some((o) => o.ddw !== g.ddw)) fail('EPERM', `group ${g.id} has other IOMMU ops than the attached groups`);
    if (!g.ddw && this.v2) fail('EPERM', `legacy group ${g.id} cannot be used with a v2 container`);
    if (g.ddw && !this.v2) fail('EPERM', `DDW group ${g.id} needs a v2 container`);
    g.takeOwnership();
    if (!g.ddw) {
      this.windows[0] = this.legacyWindow(g);
      return;
    }
    const programmed: number[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const w = this.windows[i];
        if (!w) continue;
        this.setWindow(g, i, w.table);
        programmed.push(i);
      }
    } catch (e) {
      for (const i of programmed) g.slots[i] = undefined;
      g.releaseOwnership();
      throw e;
    }
    if (others.length === 0 && !this.windows[0]) this.defWindowPending = true;
  }

  private legacyWindow(g: Group): Window {
    const t = g.legacyTable!;
    return { startAddr: g.tce32Start, windowSize: g.tce32Size, pageShift: 12, levels: 1, table: t, chargedMm: undefined, tablePages: 0n };
  }

  /** pnv_pci_ioda2_set_window: checks the group can hold the table. */
  private setWindow(g: Group, slot: number, table: IommuTable): void {
    if (!g.pageShifts.includes(table.pageShift)) fail('EINVAL', `group ${g.id} does not support 2^${table.pageShift}-byte pages`);
    g.slots[slot] = table;
  }

  /**
   * tce_iommu_detach_group: legacy — clear and hand the table back; DDW —
   * clear every container table first (4ba2fdff2eb1), unset the windows,
   * release ownership. Tables stay with the container.
   */
  private driverDetach(g: Group): void {
    if (!g.ddw) {
      const w = this.windows[0];
      if (w) this.clearTable(w, w.table.offset, w.table.size, this.storedMm(w));
      this.windows[0] = undefined;
    } else {
      for (const w of this.windows) if (w) this.clearTable(w, w.table.offset, w.table.size, this.storedMm(w));
      g.slots[0] = g.slots[1] = undefined;
    }
    g.releaseOwnership();
  }

  /** The mm a window's entries were mapped in, for clearing outside any caller (release, detach). */
  private storedMm(w: Window): Mm | undefined {
    return this.mm ?? w.table.viewMm ?? w.chargedMm;
  }

  /** tce_iommu_release: everything cleared, freed, unpinned and unaccounted; the driver is unbound. */
  release(): void {
    if (!this.iommuSet) return;
    for (const g of [...this.groups]) {
      this.driverDetach(g);
    }
    for (let i = 0; i < 2; i++) {
      const w = this.windows[i];
      if (!w) continue;
      this.clearTable(w, w.table.offset, w.table.size, this.storedMm(w));
      this.freeWindow(i);
    }
    for (const p of [...this.prereg].reverse()) {
      try {
        preregPut(p.mm, p.region);
      } catch (e) {
        // The kernel WARNs and goes on; the region is left to its mm.
        if (!(e instanceof TceError)) throw e;
      }
    }
    this.prereg.length = 0;
    this.disableV1();
    this.resetDriver();
  }

  private resetDriver(): void {
    this.v2 = undefined;
    this.enabled = false;
    this.defWindowPending = false;
    this.mm = undefined;
    this.ownerPid = 0;
    this.windows[0] = this.windows[1] = undefined;
  }

  // --- sPAPR ioctls ------------------------------------------------------------

  /** VFIO_IOMMU_SPAPR_TCE_GET_INFO: the first group's 32-bit window; DDW details for v2. */
  getInfo(caller: Process): TceInfo {
    this.requireDriver('getInfo');
    this.guard(caller, false);
    const g = this.groups[0];
    if (!g) fail('ENXIO', 'getInfo: no group attached');
    const info: TceInfo = { dma32WindowStart: g.tce32Start, dma32WindowSize: g.tce32Size, flags: 0 };
    if (this.v2 && g.ddw && g.maxWindows > 0) {
      info.flags = 1;
      info.ddw = { pgSizes: g.pgSizes, maxDynamicWindowsSupported: g.maxWindows, levels: g.maxLevels };
    }
    return info;
  }

  /** VFIO_IOMMU_ENABLE (v1): EBUSY / ENODEV / EPERM (no 32-bit window); claims; charges tce32_size pages (ENOMEM). */
  enable(caller: Process): void {
    this.requireType(false, 'enable');
    this.guard(caller, true);
    if (this.enabled) fail('EBUSY', 'enable: the container is already enabled');
    const g = this.groups[0];
    if (!g) fail('ENODEV', 'enable: no group attached');
    if (g.tce32Size === 0n) fail('EPERM', 'enable: the group has no 32-bit window');
    this.claim(caller);
    const mm = this.ctxMm(caller);
    const pages = g.tce32Size >> BigInt(this.host.pageShift);
    mm.account(`container${this.id}:v1`, pages, caller.memlockLimitPages);
    this.lockedPages = pages;
    this.v1ChargedMm = mm;
    this.enabled = true;
  }

  /** VFIO_IOMMU_DISABLE (v1): always succeeds; returns the ENABLE charge. */
  disable(caller: Process): void {
    this.requireType(false, 'disable');
    this.guard(caller, true);
    this.disableV1();
  }

  private disableV1(): void {
    if (!this.enabled || this.v2 !== false) return;
    this.enabled = false;
    this.v1ChargedMm?.unaccount(`container${this.id}:v1`, this.lockedPages);
    this.v1ChargedMm = undefined;
    this.lockedPages = 0n;
  }

  /**
   * VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): claims the mm before checking
   * anything; EINVAL for flags, misalignment or wrap; EBUSY if this container
   * has the region already; otherwise get-or-new (§2.1) and enabled for good.
   */
  registerMemory(caller: Process, vaddr: bigint, size: bigint, flags: number): void {
    v.u64('vaddr', vaddr);
    v.u64('size', size);
    v.int('flags', flags, 0, 0xffffffff);
    this.requireType(true, 'registerMemory');
    this.guard(caller, true);
    this.claim(caller);
    if (flags !== 0) fail('EINVAL', `registerMemory: flags must be 0, got ${flags}`);
    const mask = (1n << BigInt(this.host.pageShift)) - 1n;
    if (vaddr & mask || size & mask) fail('EINVAL', `registerMemory: vaddr ${hex(vaddr)} and size ${hex(size)} must be aligned to the 2^${this.host.pageShift} system page`);
    if (vaddr + size > (1n << 64n) - 1n) fail('EINVAL', 'registerMemory: the range wraps around');
    const mm = this.ctxMm(caller);
    const entries = size >> BigInt(this.host.pageShift);
    const existing = findExact(mm, vaddr, entries);
    if (existing && this.prereg.some((p) => p.region.desc === existing.desc)) {
      fail('EBUSY', `registerMemory: ${hex(vaddr)}+${hex(size)} is already registered in this container`);
    }
    const region = preregGet(mm, vaddr, entries) ?? preregNew(caller, vaddr, entries);
    this.prereg.push({ region, mm });
    this.enabled = true;
  }

  /**
   * VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): EPERM before any claim (modes
   * mm, pid); EINVAL misaligned; ENOENT unless this container registered
   * exactly that range; EBUSY (divergence: the kernel returns 0 and orphans
   * the region) while TCEs still point into it and this is its last user.
   */
  unregisterMemory(caller: Process, vaddr: bigint, size: bigint, flags: number): void {
    v.u64('vaddr', vaddr);
    v.u64('size', size);
    v.int('flags', flags, 0, 0xffffffff);
    this.requireType(true, 'unregisterMemory');
    this.guard(caller, true);
    if (this.host.ownerCheck !== 'none' && !this.mm) fail('EPERM', 'unregisterMemory: the container has no mm yet');
    if (flags !== 0) fail('EINVAL', `unregisterMemory: flags must be 0, got ${flags}`);
    const mask = (1n << BigInt(this.host.pageShift)) - 1n;
    if (vaddr & mask || size & mask) fail('EINVAL', `unregisterMemory: vaddr ${hex(vaddr)} and size ${hex(size)} must be aligned to the 2^${this.host.pageShift} system page`);
    const mm = this.ctxMm(caller);
    const region = findExact(mm, vaddr, size >> BigInt(this.host.pageShift));
    const i = region ? this.prereg.findIndex((p) => p.region.desc === region.desc) : -1;
    if (!region || i < 0) fail('ENOENT', `unregisterMemory: ${hex(vaddr)}+${hex(size)} is not registered in this container`);
    preregPut(mm, region);
    this.prereg.splice(i, 1);
  }

  /** tce_iommu_create_default_window: materialises the pending 4 KiB, tce32_size, 1-level window in slot 0. */
  private createDefaultWindow(caller: Process): void {
    if (!this.defWindowPending) return;
    const g = this.groups[0];
    if (!g) fail('ENODEV', 'no group attached for the default window');
    this.createWindowIn(caller, 12, g.tce32Size, 1);
    this.defWindowPending = false;
  }

  /**
   * tce_iommu_create_window: first free slot (ENOSPC), page size supported
   * (EINVAL), size and levels (EINVAL), the table charged to the mm (ENOMEM),
   * then programmed into every group (undone on error).
   */
  private createWindowIn(caller: Process, pageShift: number, windowSize: bigint, levels: number): bigint {
    const slot = this.windows.findIndex((w, i) => !w && i < 2);
    if (slot < 0) fail('ENOSPC', 'createWindow: both window slots are in use');
    const g = this.groups[0];
    if (!g) fail('EFAULT', 'createWindow: no group');
    if (!g.pageShifts.includes(pageShift)) fail('EINVAL', `createWindow: page shift ${pageShift} is not supported (${g.pageShifts.join(', ')})`);
    const bytes = getTableSize(pageShift, windowSize, levels, this.host.pageShift);
    if (bytes === 0n) fail('EINVAL', `createWindow: no table of ${levels} level(s) for a ${hex(windowSize)}-byte window`);
    if (levels > g.maxLevels) fail('EINVAL', `createWindow: ${levels} levels exceed the group's ${g.maxLevels}`);
    // The whole of get_table_size (the TCE tree and its userspace copy) is
    // charged now, to the owner, as tce_iommu_create_table does; the view's
    // memory itself is only allocated at the first map (see buildV2).
    const tablePages = bytes >> BigInt(this.host.pageShift);
    const mm = this.ctxMm(caller);
    const key = `container${this.id}:table${slot}`;
    mm.account(key, tablePages, caller.memlockLimitPages);
    let table: IommuTable;
    try {
      const busOffset = slot === 0 ? g.tce32Start : DDW_BUS_OFFSET;
      checkGeometry({ pageShift, windowSize, levels, busOffset }, this.host.pageShift);
      table = IommuTable.create(this.host, { pageShift, windowSize, levels, busOffset }, true);
    } catch (e) {
      mm.unaccount(key, tablePages);
      throw e;
    }
    const set: Group[] = [];
    try {
      for (const gr of this.groups) {
        this.setWindow(gr, slot, table);
        set.push(gr);
      }
    } catch (e) {
      for (const gr of set) gr.slots[slot] = undefined;
      table.free();
      mm.unaccount(key, tablePages);
      throw e;
    }
    table.viewMm = mm;
    if (this.ownerPid) table.ownerPid = this.ownerPid;
    this.windows[slot] = { startAddr: table.offset << BigInt(pageShift), windowSize, pageShift, levels, table, chargedMm: mm, tablePages };
    return table.offset << BigInt(pageShift);
  }

  /** VFIO_IOMMU_SPAPR_TCE_CREATE (v2): claims; ENXIO without groups; flags EINVAL; default window first. */
  createWindow(caller: Process, args: CreateWindow): { startAddr: bigint } {
    const o = v.options<CreateWindow>('args', args);
    const pageShift = v.int('pageShift', o.pageShift, 0, 63);
    const windowSize = v.u64('windowSize', o.windowSize);
    const levels = v.int('levels', o.levels, 0, 0xffffffff);
    const flags = o.flags === undefined ? 0 : v.int('flags', o.flags, 0, 0xffffffff);
    this.requireType(true, 'createWindow');
    this.guard(caller, true);
    this.claim(caller);
    if (this.groups.length === 0) fail('ENXIO', 'createWindow: no group attached');
    if (flags !== 0) fail('EINVAL', `createWindow: flags must be 0, got ${flags}`);
    this.createDefaultWindow(caller);
    return { startAddr: this.createWindowIn(caller, pageShift, windowSize, levels) };
  }

  /**
   * VFIO_IOMMU_SPAPR_TCE_REMOVE (v2): claims; ENXIO without groups; flags
   * EINVAL; start 0 while the default window is pending cancels it; else the
   * window containing start_addr (EINVAL if none) is cleared, unset and freed.
   */
  removeWindow(caller: Process, startAddr: bigint, flags: number): void {
    v.u64('startAddr', startAddr);
    v.int('flags', flags, 0, 0xffffffff);
    this.requireType(true, 'removeWindow');
    this.guard(caller, true);
    this.claim(caller);
    if (this.groups.length === 0) fail('ENXIO', 'removeWindow: no group attached');
    if (flags !== 0) fail('EINVAL', `removeWindow: flags must be 0, got ${flags}`);
    if (this.defWindowPending && startAddr === 0n) {
      this.defWindowPending = false;
      return;
    }
    const slot = this.findWindow(startAddr);
    if (slot < 0) fail('EINVAL', `removeWindow: no window contains ${hex(startAddr)}`);
    const w = this.windows[slot]!;
    this.clearTable(w, w.table.offset, w.table.size, this.ctxMm(caller));
    for (const g of this.groups) g.slots[slot] = undefined;
    this.freeWindow(slot);
  }

  private freeWindow(slot: number): void {
    const w = this.windows[slot];
    if (!w) return;
    this.windows[slot] = undefined;
    if (!w.chargedMm) return;
    // A KVM link may still hold the table; the last reference frees it.
    w.table.release();
    w.chargedMm.unaccount(`container${this.id}:table${slot}`, w.tablePages);
  }

  /** tce_iommu_find_table: the slot whose window contains `ioba`, or -1. */
  private findWindow(ioba: bigint): number {
    return this.windows.findIndex((w) => !!w && ioba >= w.startAddr && ioba < w.table.busEnd);
  }

  /** The checks MAP_DMA and UNMAP_DMA share after `enabled` and the flags, after which `iova` is known to be in window `w`. */
  private dmaWindow(caller: Process, what: string, iova: bigint, size: bigint): Window {
    this.createDefaultWindow(caller);
    const slot = this.findWindow(iova);
    if (slot < 0) fail('ENXIO', `${what}: iova ${hex(iova)} is in no DMA window`);
    const w = this.windows[slot]!;
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
  mapDma(caller: Process, args: DmaMap): void {
    const o = v.options<DmaMap>('args', args);
    const iova = v.u64('iova', o.iova);
    const vaddr = v.u64('vaddr', o.vaddr);
    const size = v.u64('size', o.size);
    let flags: number;
    if (o.flags !== undefined) flags = v.int('flags', o.flags, 0, 0xffffffff);
    else flags = (v.bool('read', o.read, false) ? MAP_READ : 0) | (v.bool('write', o.write, false) ? MAP_WRITE : 0);
    this.requireDriver('mapDma');
    this.guard(caller, true);
    if (!this.enabled) fail('EPERM', `mapDma: the container is not enabled${this.v2 ? ' (register memory first)' : ''}`);
    if (flags & ~(MAP_READ | MAP_WRITE)) fail('EINVAL', `mapDma: unknown flags ${hex(BigInt(flags))}`);
    const w = this.dmaWindow(caller, 'mapDma', iova, size);
    const pmask = (1n << BigInt(w.pageShift)) - 1n;
    if (vaddr & pmask) fail('EINVAL', `mapDma: vaddr ${hex(vaddr)} is not aligned to the 2^${w.pageShift} IOMMU page`);
    if (!(flags & (MAP_READ | MAP_WRITE))) fail('EINVAL', 'mapDma: neither read nor write');
    if (vaddr + size > 1n << 64n) fail('EINVAL', 'mapDma: vaddr + size wraps around');
    // TCE_READ/TCE_WRITE have the same meaning and values as the VFIO flags.
    const perm = (flags & MAP_READ ? TCE_READ : 0) | (flags & MAP_WRITE ? TCE_WRITE : 0);
    const entry = iova >> BigInt(w.pageShift);
    const n = size >> BigInt(w.pageShift);
    if (this.v2) this.buildV2(caller, w, entry, n, vaddr, perm);
    else this.buildV1(caller, w, entry, n, vaddr, perm);
  }

  private buildV2(caller: Process, w: Window, entry: bigint, n: bigint, vaddr: bigint, perm: number): void {
    if (n === 0n) return;
    const mm = this.ctxMm(caller);
    // The userspace view's memory comes with the first map (it was charged with the table).
    w.table.viewMm ??= mm;
    w.table.buildV2(mm, entry, n, vaddr, perm);
  }

  /** tce_iommu_build: pin each system page (EFAULT), exchange, unpin the old page; roll back on error. */
  private buildV1(caller: Process, w: Window, entry: bigint, n: bigint, vaddr: bigint, perm: number): void {
    const ps = 1n << BigInt(w.pageShift);
    const mm = this.ctxMm(caller);
    let i = 0n;
    try {
      for (; i < n; i++) {
        const ua = vaddr + i * ps;
        const t = mm.translate(ua);
        if (!t) fail('EFAULT', `mapDma: vaddr ${hex(ua)} is not mapped`);
        this.host.pin(t.hpa);
        const old = w.table.xchg(entry + i, (t.hpa & ~pageMaskOf(w.pageShift)) | BigInt(perm));
        if (old & BigInt(TCE_PERM_MASK)) this.host.unpin(old & ~BigInt(TCE_PERM_MASK));
      }
    } catch (e) {
      this.clearV1(w, entry, i);
      throw e;
    }
  }

  /** VFIO_IOMMU_UNMAP_DMA: flags EINVAL; the range's entries cleared (regions decremented / pages unpinned). */
  unmapDma(caller: Process, args: DmaUnmap): void {
    const o = v.options<DmaUnmap>('args', args);
    const iova = v.u64('iova', o.iova);
    const size = v.u64('size', o.size);
    const flags = o.flags === undefined ? 0 : v.int('flags', o.flags, 0, 0xffffffff);
    this.requireDriver('unmapDma');
    this.guard(caller, true);
    if (!this.enabled) fail('EPERM', 'unmapDma: the container is not enabled');
    if (flags !== 0) fail('EINVAL', `unmapDma: flags must be 0, got ${flags}`);
    const w = this.dmaWindow(caller, 'unmapDma', iova, size);
    this.clearTable(w, iova >> BigInt(w.pageShift), size >> BigInt(w.pageShift), this.ctxMm(caller));
  }

  /** tce_iommu_clear for either type. */
  private clearTable(w: Window, entry: bigint, n: bigint, mm: Mm | undefined): void {
    if (n === 0n) return;
    // v2 windows are always charged to an mm, so `mm` is known for them.
    if (w.table.v2) w.table.clearV2(mm ?? w.chargedMm!, entry, n);
    else this.clearV1(w, entry, n);
  }

  private clearV1(w: Window, entry: bigint, n: bigint): void {
    const end = entry + n;
    for (let e = w.table.nextValid(entry, end); e >= 0n; e = w.table.nextValid(e + 1n, end)) {
      const old = w.table.xchg(e, 0n);
      if (old & BigInt(TCE_PERM_MASK)) this.host.unpin(old & ~BigInt(TCE_PERM_MASK));
    }
  }
}

function pageMaskOf(shift: number): bigint {
  return (1n << BigInt(shift)) - 1n;
}

/** A container handle as one process holds it (an open file descriptor). */
export class ContainerFd {
  readonly process: Process;
  readonly container: Container;
  private open = true;

  /** @internal use process.openContainer() or process.inherit(fd) */
  constructor(process: Process, container: Container) {
    this.process = process;
    this.container = container;
    container.handles++;
    container.fds.add(this);
  }

  private c(): Container {
    if (!this.open) fail('EBADF', 'the container handle is closed');
    return this.container;
  }

  /** VFIO_CHECK_EXTENSION. */
  checkExtension(ext: number): number { return this.c().checkExtension(ext); }
  /** VFIO_SET_IOMMU with 'v1' / 'v2' (or the raw type 2 / 7). */
  setIommu(type: 'v1' | 'v2' | number): void { this.c().setIommu(type); }
  /** VFIO_GROUP_SET_CONTAINER. */
  attachGroup(g: Group): void { this.c().attachGroup(g); }
  /** VFIO_GROUP_UNSET_CONTAINER. */
  detachGroup(g: Group): void { this.c().detachGroup(g); }
  /** VFIO_IOMMU_SPAPR_TCE_GET_INFO. */
  getInfo(): TceInfo { return this.c().getInfo(this.process); }
  /** VFIO_IOMMU_ENABLE (v1). */
  enable(): void { this.c().enable(this.process); }
  /** VFIO_IOMMU_DISABLE (v1). */
  disable(): void { this.c().disable(this.process); }
  /** VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2). */
  registerMemory(vaddr: bigint, size: bigint, flags = 0): void { this.c().registerMemory(this.process, vaddr, size, flags); }
  /** VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2). */
  unregisterMemory(vaddr: bigint, size: bigint, flags = 0): void { this.c().unregisterMemory(this.process, vaddr, size, flags); }
  /** VFIO_IOMMU_SPAPR_TCE_CREATE (v2). */
  createWindow(args: CreateWindow): { startAddr: bigint } { return this.c().createWindow(this.process, args); }
  /** VFIO_IOMMU_SPAPR_TCE_REMOVE (v2). */
  removeWindow(startAddr: bigint, flags = 0): void { this.c().removeWindow(this.process, startAddr, flags); }
  /** VFIO_IOMMU_MAP_DMA. */
  mapDma(args: DmaMap): void { this.c().mapDma(this.process, args); }
  /** VFIO_IOMMU_UNMAP_DMA. */
  unmapDma(args: DmaUnmap): void { this.c().unmapDma(this.process, args); }

  /** close(2): the container is released when its last handle closes. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    const c = this.container;
    c.fds.delete(this);
    if (--c.handles === 0) {
      for (const g of [...c.groups]) g.container = undefined;
      c.release();
      c.groups.length = 0;
    }
  }

  /** Whether this handle is still open. */
  get isOpen(): boolean {
    return this.open;
  }
}
