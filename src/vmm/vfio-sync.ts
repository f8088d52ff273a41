// A VFIO sPAPR container kept in step with a VM's guest TCE tables: what
// QEMU's VFIO code does for a passed-through device when QEMU itself handles
// the TCE hypercalls (hw/vfio/spapr.c, hw/vfio/listener.c), as a library
// object the VMM attaches with vm.attachContainer(fd). It is a VMM of the
// container: every change goes through the public ContainerFd ioctls, as
// QEMU's goes through ioctl(2).
//
// - The prereg listener (vfio_prereg_listener_region_add / _del): every
//   memslot is REGISTER_MEMORY'd, and UNREGISTER_MEMORY'd when it goes.
// - Windows (vfio_spapr_create_window / vfio_spapr_remove_window, called
//   from vfio_listener_region_add / _del): each guest window gets a host
//   window of the same size at the same bus address, with the largest host
//   IOMMU page that is at most the guest's page and the RAM backing page;
//   levels by QEMU's heuristic, retried upward; a start address other than
//   the guest's bus offset is removed again and reported.
// - Mappings (vfio_iommu_map_notify): map events become MAP_DMA (READ
//   always, WRITE with the TCE's write bit; the address must be guest RAM),
//   unmap events UNMAP_DMA. Unlike QEMU, which makes one call per IOMMU
//   page, the events of one operation (a hypercall, an RTAS call, a reset, a
//   replay) are coalesced: consecutive maps whose IOVAs, userspace addresses
//   and permission continue each other are one MAP_DMA, consecutive unmaps
//   of contiguous IOVAs one UNMAP_DMA (a contiguous 512-entry
//   H_PUT_TCE_INDIRECT is one call). Nothing is deferred past the operation,
//   so the host is in step before the hypercall returns, as in QEMU.
// - Attach (vfio_spapr_container_setup, then the listener's first
//   region_add and memory_region_iommu_replay): regions registered, the
//   kernel's default window removed, windows created, present mappings
//   replayed.
//
// Failures after attach are never dropped: each is counted in
// stats().errors and passed to opts.onError (QEMU logs them, and a guest
// whose map could not be mirrored has still got H_SUCCESS). A failure while
// attaching undoes what the attach made and is thrown, as QEMU fails the
// device. What the sync finds already done for it on the container (after
// Host.restore: a region registered for a memslot, a window at a guest
// window's bus offset with the page size it would choose) it adopts: an
// adopted window is emptied with one UNMAP and refilled by the replay, so
// the host matches the guest as if freshly created; other windows are
// removed. detach() undoes what the sync made or adopted.
import type { Vm } from './vm.js';
import type { VmEvent, IommuEvent, WindowEvent } from './events.js';
import type { Memslot } from '../kvm/memslot.js';
import type { Container } from '../vfio/container.js';
import type { TceInfo } from '../vfio/types.js';
import { ContainerFd } from '../vfio/fd.js';
import { TceError, fail, type ErrnoCode } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';

/** The container calls a VfioSync makes (the ioctls of QEMU's sPAPR VFIO code). */
export type VfioOp = 'registerMemory' | 'unregisterMemory' | 'createWindow' | 'removeWindow' | 'mapDma' | 'unmapDma';

/** stats(): calls made on the container by op (refused ones included), and failures. */
export interface VfioSyncStats {
  mapDma: number;
  unmapDma: number;
  registerMemory: number;
  unregisterMemory: number;
  createWindow: number;
  removeWindow: number;
  /** Refused calls, plus events that could not be mirrored at all (a map of a non-RAM address, a window the host could not provide). */
  errors: number;
}

/** One call made on the container, as opts.onCall sees it after it ran (QEMU's trace points). */
export interface VfioCall {
  op: VfioOp;
  /** The guest LIOBN the call is for (windows and mappings). */
  liobn?: bigint;
  /** mapDma/unmapDma: the IOVA and size; removeWindow: startAddr in iova. */
  iova?: bigint;
  size?: bigint;
  /** mapDma: the userspace address and whether the device may write; registerMemory/unregisterMemory: the region. */
  vaddr?: bigint;
  write?: boolean;
  /** createWindow: the request. */
  pageShift?: number;
  levels?: number;
  windowSize?: bigint;
  /** createWindow: the start address the container returned. */
  startAddr?: bigint;
  /** mapDma/unmapDma: how many guest entries the call stands for. */
  entries?: number;
  /** The container's refusal; undefined when the call succeeded. */
  error?: TceError;
}

/** Why a VfioSync could not mirror something: a refused call (reason 'refused'), or a problem it found before making one. */
export type VfioSyncReason = 'refused' | 'not-ram' | 'no-host-window' | 'window-start' | 'page-size' | 'outside-host-window';

/** A host-side failure of a VfioSync, reported through opts.onError (or thrown by attachContainer). `code` is the errno. */
export class VfioSyncError extends TceError {
  /** The call that failed, or the one that could not be made. */
  readonly op: VfioOp;
  readonly reason: VfioSyncReason;
  readonly liobn: bigint | undefined;
  readonly iova: bigint | undefined;
  readonly size: bigint | undefined;
  /** The container's TceError when reason is 'refused'. */
  override readonly cause: TceError | undefined;
  constructor(code: ErrnoCode, op: VfioOp, reason: VfioSyncReason, message: string, at: { liobn?: bigint; iova?: bigint; size?: bigint; cause?: TceError } = {}) {
    super(code, message);
    this.name = 'VfioSyncError';
    this.op = op;
    this.reason = reason;
    this.liobn = at.liobn;
    this.iova = at.iova;
    this.size = at.size;
    this.cause = at.cause;
  }
}

/** Options of vm.attachContainer(). */
export interface VfioSyncOptions {
  /** The LIOBNs whose windows the container mirrors (the device's DMA address space; a PHB's `liobns`); default every LIOBN of the VM, later ones included. */
  liobns?: readonly (bigint | number)[];
  /** Called with every host-side failure after attach. */
  onError?: (error: VfioSyncError) => void;
  /** Called after every call made on the container, refused ones included. */
  onCall?: (call: VfioCall) => void;
}

/** A host window mirroring a guest window. */
export interface VfioSyncWindow {
  liobn: bigint;
  /** The guest window (bus offset = the host window's start address). */
  busOffset: bigint;
  windowSize: bigint;
  /** The host IOMMU page shift (≤ the guest's). */
  pageShift: number;
  levels: number;
  /** Whether the sync found it on the container (after a restore) rather than creating it. */
  adopted: boolean;
}

interface Mirror {
  liobn: bigint;
  busOffset: bigint;
  windowSize: bigint;
  guestShift: number;
  /** The host window; undefined when none could be made. */
  host: { startAddr: bigint; pageShift: number; levels: number; adopted: boolean; own: boolean } | undefined;
}

interface RegionRecord {
  ua: bigint;
  size: bigint;
  /** The memslot it was registered for still exists. */
  live: boolean;
  adopted: boolean;
}

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

const SYNC_OPTIONS = v.keys<VfioSyncOptions>('vm.attachContainer', { liobns: true, onError: true, onCall: true });

/** The containers with a sync attached: one sync per container. */
const ATTACHED = new WeakMap<Container, VfioSync>();

/** A VFIO container kept in sync with a VM's guest windows and mappings (create with vm.attachContainer). */
export class VfioSync {
  readonly vm: Vm;
  readonly fd: ContainerFd;
  private readonly only: ReadonlySet<bigint> | undefined;
  private readonly onError: ((e: VfioSyncError) => void) | undefined;
  private readonly onCall: ((c: VfioCall) => void) | undefined;
  private readonly v2: boolean;
  private readonly counts: VfioSyncStats = { mapDma: 0, unmapDma: 0, registerMemory: 0, unregisterMemory: 0, createWindow: 0, removeWindow: 0, errors: 0 };
  private readonly mirrors = new Map<bigint, Mirror>();
  private readonly regions: RegionRecord[] = [];
  private info!: TceInfo;
  private enabledV1 = false;
  /** While attaching, a failure is thrown instead of reported. */
  private attaching = true;
  private attached = false;
  private unsubscribe: (() => void) | undefined;
  private unlisten: (() => void) | undefined;

  /** @internal use vm.attachContainer(). */
  constructor(vm: Vm, fd: unknown, opts: unknown) {
    this.vm = vm;
    this.fd = v.instance('fd', fd, ContainerFd, 'a ContainerFd');
    v.sameHost('fd', this.fd.container, vm.host);
    const o = v.options('opts', opts, SYNC_OPTIONS);
    if (o.liobns !== undefined) this.only = new Set(v.array('opts.liobns', o.liobns, 'LIOBNs').map((l, i) => v.liobn(`opts.liobns[${i}]`, l)));
    this.onError = o.onError === undefined ? undefined : v.fn<(e: VfioSyncError) => void>('opts.onError', o.onError);
    this.onCall = o.onCall === undefined ? undefined : v.fn<(c: VfioCall) => void>('opts.onCall', o.onCall);
    if (vm.profile !== 'qemu') {
      fail('ENODEV', 'attachContainer: in the kvm profile the kernel updates the hardware tables itself (in-kernel TCE acceleration): link them with vm.attachGroup(group, liobn); a VFIO listener is what QEMU runs when it handles the TCE hypercalls, the qemu profile');
    }
    if (!this.fd.isOpen) fail('EBADF', 'attachContainer: the container handle is closed');
    const c = this.fd.container;
    if (this.fd.process.mm !== vm.mm) fail('EINVAL', 'attachContainer: the handle belongs to a process of another address space than the VM (QEMU holds both in one process)');
    if (c.v2 === undefined || c.groups.length === 0) fail('ENXIO', 'attachContainer: attach a group and set the IOMMU type (v1 or v2) first');
    if (ATTACHED.has(c)) fail('EBUSY', `attachContainer: container ${c.id} is already kept in sync`);
    this.v2 = c.v2;
  }

  /** @internal the attach itself: setup, windows, subscription, replay; undone and thrown on failure. */
  start(): this {
    ATTACHED.set(this.fd.container, this);
    try {
      this.info = this.fd.getInfo();
      if (this.v2) this.setupV2();
      else this.setupV1();
      this.unsubscribe = this.vm.events.subscribeBatch((events) => this.apply(events));
      this.unlisten = this.vm.events.listenMemory((kind, slot) => this.onMemslot(kind, slot));
      this.attached = true;
      // memory_region_iommu_replay of every mirrored window; a replayed map that cannot be mirrored is only reported.
      this.attaching = false;
      for (const m of this.mirrors.values()) this.replay(m.liobn);
    } catch (e) {
      this.attaching = false;
      this.teardown(false);
      throw e;
    }
    return this;
  }

  /** Calls made on the container so far, by op, and failures. */
  stats(): VfioSyncStats {
    return { ...this.counts };
  }

  /** The host windows mirroring guest windows, in the order they were made or adopted. */
  windows(): VfioSyncWindow[] {
    const out: VfioSyncWindow[] = [];
    for (const m of this.mirrors.values()) {
      if (m.host) out.push({ liobn: m.liobn, busOffset: m.busOffset, windowSize: m.windowSize, pageShift: m.host.pageShift, levels: m.host.levels, adopted: m.host.adopted });
    }
    return out;
  }

  /** Whether the sync is still attached. */
  get isAttached(): boolean {
    return this.attached;
  }

  /**
   * Stops following the VM and undoes what the sync made or adopted: one
   * UNMAP_DMA over each host window, TCE_REMOVE of the windows it created
   * (v2), UNREGISTER_MEMORY of its regions, DISABLE if it enabled a v1
   * container. Failures are reported as usual. Idempotent.
   */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.teardown(true);
  }

  // ------------------------------------------------------------------ setup

  /** vfio_spapr_container_setup for v2 and the listener's first region_adds. */
  private setupV2(): void {
    const c = this.fd.container;
    // vfio_prereg_listener_region_add for each RAM section.
    for (const s of this.vm.memslots) {
      if (c.regions.some((r) => r.ua === s.ua && r.size === s.size)) this.regions.push({ ua: s.ua, size: s.size, live: true, adopted: true });
      else this.register(s);
    }
    // "There is a default window in just created container": removed so that host windows mirror the guest's.
    if (c.defWindowPending) this.call({ op: 'removeWindow', iova: this.info.dma32WindowStart }, () => this.fd.removeWindow(this.info.dma32WindowStart));
    // Windows already there (a restored container): adopt those that mirror a followed guest window, remove the rest.
    for (const w of [...c.windows]) {
      if (!w) continue;
      const t = [...this.vm.tables.values()].find((g) => g.size !== 0n && this.follows(g.liobn) && g.offset << BigInt(g.pageShift) === w.startAddr);
      const want = t ? this.hostPageShift(t.pageShift) : 0;
      if (t && want === w.pageShift && t.size << BigInt(t.pageShift) === w.windowSize && !this.mirrors.has(t.liobn)) {
        const m = this.mirrorOf(t.liobn, t.offset << BigInt(t.pageShift), t.size << BigInt(t.pageShift), t.pageShift);
        m.host = { startAddr: w.startAddr, pageShift: w.pageShift, levels: w.levels, adopted: true, own: true };
        // A fresh window is empty: drop whatever the old one held, the replay maps what the guest has.
        this.call({ op: 'unmapDma', liobn: t.liobn, iova: w.startAddr, size: w.windowSize }, () => this.fd.unmapDma({ iova: w.startAddr, size: w.windowSize }));
      } else {
        this.call({ op: 'removeWindow', iova: w.startAddr }, () => this.fd.removeWindow(w.startAddr));
      }
    }
    for (const t of this.vm.tables.values()) {
      if (t.size === 0n || !this.follows(t.liobn) || this.mirrors.get(t.liobn)?.host) continue;
      this.addWindow({ liobn: t.liobn, kind: 'window-add', busOffset: t.offset << BigInt(t.pageShift), pageSize: 1n << BigInt(t.pageShift), windowSize: t.size << BigInt(t.pageShift) });
    }
  }

  /** v1: ENABLE (vfio_spapr_container_setup); the one host window is the 32-bit one, 4 KiB pages. */
  private setupV1(): void {
    if (!this.fd.container.enabled) {
      this.fd.enable();
      this.enabledV1 = true;
    }
    for (const t of this.vm.tables.values()) {
      if (t.size === 0n || !this.follows(t.liobn)) continue;
      this.addWindow({ liobn: t.liobn, kind: 'window-add', busOffset: t.offset << BigInt(t.pageShift), pageSize: 1n << BigInt(t.pageShift), windowSize: t.size << BigInt(t.pageShift) });
    }
  }

  private follows(liobn: bigint): boolean {
    return this.only === undefined || this.only.has(liobn);
  }

  private mirrorOf(liobn: bigint, busOffset: bigint, windowSize: bigint, guestShift: number): Mirror {
    const m: Mirror = { liobn, busOffset, windowSize, guestShift, host: undefined };
    this.mirrors.set(liobn, m);
    return m;
  }

  /**
   * vfio_spapr_create_window's page: the largest the host supports that is
   * at most the guest IOMMU page and the smallest RAM backing page
   * (qemu_minrampagesize); 0 when there is none.
   */
  private hostPageShift(guestShift: number): number {
    let limit = guestShift;
    for (const s of this.vm.memslots) limit = Math.min(limit, this.vm.mm.findMapping(s.ua)?.pageShift ?? this.vm.host.pageShift);
    const sizes = this.info.ddw?.pgSizes ?? 0n;
    for (let s = limit; s >= 12; s--) if (sizes & (1n << BigInt(s))) return s;
    return 0;
  }

  // ---------------------------------------------------------------- windows

  /** A guest window appeared (vfio_listener_region_add of an IOMMU region). */
  private addWindow(ev: WindowEvent): void {
    const guestShift = ev.pageSize.toString(2).length - 1;
    const m = this.mirrorOf(ev.liobn, ev.busOffset, ev.windowSize, guestShift);
    const at = { liobn: ev.liobn, iova: ev.busOffset, size: ev.windowSize };
    if (!this.v2) {
      // v1: the guest window must lie in the 32-bit host window (vfio_find_hostwin).
      const start = this.info.dma32WindowStart;
      const end = start + this.info.dma32WindowSize;
      if (ev.busOffset < start || ev.busOffset + ev.windowSize > end) {
        this.report(new VfioSyncError('ENXIO', 'mapDma', 'outside-host-window', `guest window ${hex(ev.busOffset)}+${hex(ev.windowSize)} of LIOBN ${hex(ev.liobn)} is outside the v1 host window ${hex(start)}+${hex(this.info.dma32WindowSize)}`, at));
        return;
      }
      m.host = { startAddr: start, pageShift: 12, levels: 1, adopted: false, own: false };
      return;
    }
    const pageShift = this.hostPageShift(guestShift);
    if (pageShift === 0) {
      this.report(new VfioSyncError('EINVAL', 'createWindow', 'page-size', `the host supports no IOMMU page of at most 2^${guestShift} (page sizes ${hex(this.info.ddw?.pgSizes ?? 0n)}) for LIOBN ${hex(ev.liobn)}`, at));
      return;
    }
    // QEMU's level guess: split the index bits into levels of (system page shift + 8) bits, then retry with more.
    const sys = this.vm.host.pageShift;
    const entries = ev.windowSize >> BigInt(pageShift);
    const bitsTotal = ctz(entries * 8n);
    const bitsPerLevel = sys + 8;
    let levels = Math.floor(bitsTotal / bitsPerLevel) + (bitsTotal % bitsPerLevel ? 1 : 0);
    const maxLevels = Math.floor((64 - pageShift) / sys);
    let startAddr: bigint | undefined;
    let refusal: TceError | undefined;
    for (; levels <= maxLevels; levels++) {
      try {
        startAddr = this.fd.createWindow({ pageShift, windowSize: ev.windowSize, levels }).startAddr;
        this.note({ op: 'createWindow', liobn: ev.liobn, pageShift, levels, windowSize: ev.windowSize, startAddr });
        refusal = undefined;
        break;
      } catch (e) {
        if (!(e instanceof TceError)) throw e;
        this.note({ op: 'createWindow', liobn: ev.liobn, pageShift, levels, windowSize: ev.windowSize, error: e });
        refusal = e;
      }
    }
    if (startAddr === undefined) {
      const e = refusal ?? new TceError('EINVAL', `no level count up to ${maxLevels}`);
      this.report(new VfioSyncError(e.code, 'createWindow', 'refused', `createWindow for LIOBN ${hex(ev.liobn)} (${hex(ev.windowSize)} bytes of 2^${pageShift} pages): ${e.message}`, { ...at, cause: e }));
      return;
    }
    if (startAddr !== ev.busOffset) {
      // The host window must sit where the guest's is, else DMA addresses would differ: removed again.
      this.call({ op: 'removeWindow', liobn: ev.liobn, iova: startAddr }, () => this.fd.removeWindow(startAddr));
      this.report(new VfioSyncError('EINVAL', 'createWindow', 'window-start', `the host placed the window for LIOBN ${hex(ev.liobn)} at ${hex(startAddr)}, the guest's is at ${hex(ev.busOffset)}`, at));
      return;
    }
    m.host = { startAddr, pageShift, levels, adopted: false, own: true };
  }

  /** A guest window went away (vfio_listener_region_del → vfio_spapr_remove_window); its mappings' unmaps came first. */
  private removeWindow(ev: WindowEvent): void {
    const m = this.mirrors.get(ev.liobn);
    if (!m) return;
    this.mirrors.delete(ev.liobn);
    if (m.host?.own) this.call({ op: 'removeWindow', liobn: ev.liobn, iova: m.host.startAddr }, () => this.fd.removeWindow(m.host!.startAddr));
  }

  // --------------------------------------------------------------- mappings

  /** Replays the present mappings of a window as one batch (coalesced like any other). */
  private replay(liobn: bigint): void {
    const found: IommuEvent[] = [];
    this.vm.replay(liobn, (e) => found.push(e));
    if (found.length > 0) this.apply(found);
  }

  /** One operation's events, in order, with contiguous runs coalesced into single calls. */
  private apply(events: readonly VmEvent[]): void {
    let run: Run | undefined;
    const flush = (): void => {
      if (run) this.flush(run);
      run = undefined;
    };
    for (const e of events) {
      if (!this.follows(e.liobn)) continue;
      if (e.kind === 'window-add' || e.kind === 'window-remove') {
        flush();
        if (e.kind === 'window-remove') this.removeWindow(e);
        else if (!this.mirrors.has(e.liobn)) this.addWindow(e);
        continue;
      }
      const ev = e as IommuEvent;
      const m = this.mirrors.get(ev.liobn);
      if (ev.kind === 'unmap') {
        // Nothing was mapped in a window the host could not provide.
        if (!m?.host) continue;
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
        this.report(new VfioSyncError('ENXIO', 'mapDma', 'no-host-window', `map of IOVA ${hex(ev.iova)} through LIOBN ${hex(ev.liobn)}: no host window mirrors this guest window`, { liobn: ev.liobn, iova: ev.iova, size: ev.size }));
        continue;
      }
      // vfio_get_xlat_addr: the whole IOMMU page must be guest RAM; its host address is the memslot's.
      const slot = this.vm.memslots.find((s) => ev.gpa >= s.gpa && ev.gpa - s.gpa < s.size && ev.size <= s.size - (ev.gpa - s.gpa));
      if (!slot) {
        flush();
        this.report(new VfioSyncError('EFAULT', 'mapDma', 'not-ram', `map of IOVA ${hex(ev.iova)} through LIOBN ${hex(ev.liobn)} to guest address ${hex(ev.gpa)}: not guest RAM, nothing mapped (the guest got H_SUCCESS)`, { liobn: ev.liobn, iova: ev.iova, size: ev.size }));
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

  /** One MAP_DMA or UNMAP_DMA for a run. */
  private flush(r: Run): void {
    if (r.kind === 'map') {
      this.call({ op: 'mapDma', liobn: r.liobn, iova: r.iova, size: r.size, vaddr: r.vaddr, write: r.write, entries: r.entries }, () => this.fd.mapDma({ iova: r.iova, vaddr: r.vaddr, size: r.size, read: true, write: r.write }));
    } else {
      this.call({ op: 'unmapDma', liobn: r.liobn, iova: r.iova, size: r.size, entries: r.entries }, () => this.fd.unmapDma({ iova: r.iova, size: r.size }));
    }
  }

  // ----------------------------------------------------------------- memory

  private register(s: Memslot): void {
    if (this.call({ op: 'registerMemory', vaddr: s.ua, size: s.size }, () => this.fd.registerMemory(s.ua, s.size))) {
      this.regions.push({ ua: s.ua, size: s.size, live: true, adopted: false });
    }
  }

  /** vfio_prereg_listener_region_add / _del for a memslot added or removed after attach. */
  private onMemslot(kind: 'add' | 'remove', s: Memslot): void {
    if (!this.v2) return;
    if (kind === 'add') {
      this.register(s);
      return;
    }
    const i = this.regions.findIndex((r) => r.live && r.ua === s.ua && r.size === s.size);
    if (i < 0) return;
    const r = this.regions[i]!;
    r.live = false;
    // The kernel refuses while TCEs point in (EBUSY): reported, and kept to be retried by detach().
    if (this.call({ op: 'unregisterMemory', vaddr: r.ua, size: r.size }, () => this.fd.unregisterMemory(r.ua, r.size))) this.regions.splice(i, 1);
  }

  // --------------------------------------------------------------- teardown

  /** Undoes what the sync did: with `all`, what it adopted too (detach); without, only what it made (a failed attach). */
  private teardown(all: boolean): void {
    this.unsubscribe?.();
    this.unlisten?.();
    this.unsubscribe = this.unlisten = undefined;
    for (const m of this.mirrors.values()) {
      const h = m.host;
      if (!h || (!all && h.adopted)) continue;
      // vfio_listener_region_del: one UNMAP over the window, then TCE_REMOVE (v2).
      const iova = this.v2 ? h.startAddr : m.busOffset;
      this.call({ op: 'unmapDma', liobn: m.liobn, iova, size: m.windowSize }, () => this.fd.unmapDma({ iova, size: m.windowSize }));
      if (h.own) this.call({ op: 'removeWindow', liobn: m.liobn, iova: h.startAddr }, () => this.fd.removeWindow(h.startAddr));
    }
    this.mirrors.clear();
    for (const r of [...this.regions]) {
      if (!all && r.adopted) continue;
      this.call({ op: 'unregisterMemory', vaddr: r.ua, size: r.size }, () => this.fd.unregisterMemory(r.ua, r.size));
    }
    this.regions.length = 0;
    if (this.enabledV1) {
      this.enabledV1 = false;
      try {
        this.fd.disable();
      } catch (e) {
        if (!(e instanceof TceError)) throw e;
        this.report(new VfioSyncError(e.code, 'unmapDma', 'refused', `disable: ${e.message}`, { cause: e }));
      }
    }
    if (ATTACHED.get(this.fd.container) === this) ATTACHED.delete(this.fd.container);
  }

  // ------------------------------------------------------------------ calls

  /**
   * Makes one container call and counts it; a refusal (TceError) is
   * reported (thrown while attaching). Returns whether it succeeded.
   */
  private call(what: Omit<VfioCall, 'error'>, fn: () => void): boolean {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof TceError)) throw e;
      this.note({ ...what, error: e });
      const base = what.op === 'registerMemory' || what.op === 'unregisterMemory' ? what.vaddr : what.iova;
      const range = base === undefined ? '' : what.size !== undefined ? ` [${hex(base)}, +${hex(what.size)})` : ` at ${hex(base)}`;
      const of = what.liobn !== undefined ? ` for LIOBN ${hex(what.liobn)}` : '';
      this.report(new VfioSyncError(e.code, what.op, 'refused', `${what.op}${range}${of}: ${e.message}`, { liobn: what.liobn, iova: what.iova, size: what.size, cause: e }));
      return false;
    }
    this.note(what);
    return true;
  }

  /** Counts a call made and tells opts.onCall. */
  private note(c: VfioCall): void {
    this.counts[c.op]++;
    this.onCall?.(c);
  }

  /** A failure: counted and reported; thrown instead while attaching. */
  private report(e: VfioSyncError): void {
    this.counts.errors++;
    if (this.attaching) throw e;
    this.onError?.(e);
  }
}

/** Trailing zero bits of a positive bigint (ctz64). */
function ctz(x: bigint): number {
  let n = 0;
  while (n < 64 && !(x & (1n << BigInt(n)))) n++;
  return n;
}
