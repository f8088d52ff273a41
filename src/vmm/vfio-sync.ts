// A VFIO sPAPR container kept in step with a VM's guest TCE tables: what
// QEMU's VFIO code does for a passed-through device (hw/vfio/spapr.c,
// hw/vfio/listener.c), as a library object the VMM attaches with
// vm.attachContainer(fd). In the qemu profile QEMU handles the TCE
// hypercalls and maps each one with MAP_DMA; in the kvm profile (in-kernel
// acceleration) the same listeners run, and each host window is also linked
// to its guest table, after which the kernel updates it itself (links.ts).
// It is a VMM of the container: every change goes through the public
// ContainerFd ioctls (and vm.attachGroup), as QEMU's goes through ioctl(2).
// This file is the object and its life (attach, detach); each concern has
// its own file in vfio-sync/:
//   prereg.ts    the prereg listener: a registered region per memslot (v2)
//   windows.ts   a host window per guest window (create, adopt, remove; v1's one window)
//   links.ts     kvm profile: the host window linked to the guest table (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE)
//   listener.ts  an operation's events: windows, and coalesced MAP_DMA / UNMAP_DMA runs
//   state.ts     what they share, and how a call is made, counted and reported
//   types.ts     the options, calls, counts, windows and error it shows
//
// Attach (vfio_spapr_container_setup, then the listener's first region_add
// and memory_region_iommu_replay): regions registered, the kernel's default
// window removed, windows created (and linked, kvm profile), present
// mappings replayed.
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
import type { Container } from '../vfio/container.js';
import { ContainerFd } from '../vfio/fd.js';
import { fail } from '../core/errors.js';
import * as v from '../core/validate.js';
import type { VfioSyncError, VfioCall, VfioSyncOptions, VfioSyncStats, VfioSyncWindow } from './vfio-sync/types.js';
import type { SyncState } from './vfio-sync/state.js';
import { registerMemslots, onMemslot, unregisterAll } from './vfio-sync/prereg.js';
import { setupV1, setupV2, removeWindows, disableV1 } from './vfio-sync/windows.js';
import { apply, replay } from './vfio-sync/listener.js';

export { VfioSyncError, type VfioOp, type VfioSyncStats, type VfioCall, type VfioSyncReason, type VfioSyncOptions, type VfioSyncWindow } from './vfio-sync/types.js';

const SYNC_OPTIONS = v.keys<VfioSyncOptions>('vm.attachContainer', { liobns: true, onError: true, onCall: true });

/** The containers with a sync attached: one sync per container. */
const ATTACHED = new WeakMap<Container, VfioSync>();

/** A VFIO container kept in sync with a VM's guest windows and mappings (create with vm.attachContainer). */
export class VfioSync {
  readonly vm: Vm;
  readonly fd: ContainerFd;
  /** What the files of vfio-sync/ work on. */
  private readonly s: SyncState;
  private attached = false;
  private unsubscribe: (() => void) | undefined;
  private unlisten: (() => void) | undefined;

  /** @internal use vm.attachContainer(). */
  constructor(vm: Vm, fd: unknown, opts: unknown) {
    this.vm = vm;
    this.fd = v.instance('fd', fd, ContainerFd, 'a ContainerFd');
    v.sameHost('fd', this.fd.container, vm.host);
    const o = v.options('opts', opts, SYNC_OPTIONS);
    const only = o.liobns === undefined ? undefined : new Set(v.array('opts.liobns', o.liobns, 'LIOBNs').map((l, i) => v.liobn(`opts.liobns[${i}]`, l)));
    const onError = o.onError === undefined ? undefined : v.fn<(e: VfioSyncError) => void>('opts.onError', o.onError);
    const onCall = o.onCall === undefined ? undefined : v.fn<(c: VfioCall) => void>('opts.onCall', o.onCall);
    if (!this.fd.isOpen) fail('EBADF', 'attachContainer: the container handle is closed');
    const c = this.fd.container;
    if (this.fd.process.mm !== vm.mm) fail('EINVAL', 'attachContainer: the handle belongs to a process of another address space than the VM (QEMU holds both in one process)');
    if (c.v2 === undefined || c.groups.length === 0) fail('ENXIO', 'attachContainer: attach a group and set the IOMMU type (v1 or v2) first');
    if (ATTACHED.has(c)) fail('EBUSY', `attachContainer: container ${c.id} is already kept in sync`);
    // The kernel accelerates only v2 (kvmppc_tce_iommu_do_map finds no pre-registered memory for a
    // v1 table): every guest map would exit, and QEMU's handling of an exit is not modelled here.
    if (vm.profile === 'kvm' && !c.v2) fail('ENODEV', 'attachContainer: in the kvm profile the container must be v2 (the kernel accelerates TCE hypercalls only over pre-registered memory; a v1 table makes every guest map exit to the VMM)');
    this.s = {
      vm,
      fd: this.fd,
      only,
      onError,
      onCall,
      v2: c.v2,
      kvm: vm.profile === 'kvm',
      counts: { mapDma: 0, unmapDma: 0, registerMemory: 0, unregisterMemory: 0, createWindow: 0, removeWindow: 0, linkGroup: 0, unlinkGroup: 0, errors: 0 },
      mirrors: new Map(),
      regions: [],
      // GET_INFO first, as vfio_spapr_container_setup does: the windows and page sizes the host offers.
      info: this.fd.getInfo(),
      enabledV1: false,
      attaching: true,
    };
  }

  /** @internal the attach itself: setup, windows, subscription, replay; undone and thrown on failure. */
  start(): this {
    const s = this.s;
    ATTACHED.set(this.fd.container, this);
    try {
      if (s.v2) {
        registerMemslots(s);
        setupV2(s);
      } else setupV1(s);
      this.unsubscribe = this.vm.events.subscribeBatch((events) => apply(s, events));
      this.unlisten = this.vm.events.listenMemory((kind, slot) => onMemslot(s, kind, slot));
      this.attached = true;
      // memory_region_iommu_replay of every mirrored window; a replayed map that cannot be mirrored is only reported.
      s.attaching = false;
      for (const m of s.mirrors.values()) replay(s, m.liobn);
    } catch (e) {
      s.attaching = false;
      this.teardown(false);
      throw e;
    }
    return this;
  }

  /** Calls made on the container so far, by op, and failures. */
  stats(): VfioSyncStats {
    return { ...this.s.counts };
  }

  /** The host windows mirroring guest windows, in the order they were made or adopted. */
  windows(): VfioSyncWindow[] {
    const out: VfioSyncWindow[] = [];
    for (const m of this.s.mirrors.values()) {
      if (m.host) out.push({ liobn: m.liobn, busOffset: m.busOffset, windowSize: m.windowSize, pageShift: m.host.pageShift, levels: m.host.levels, adopted: m.host.adopted });
    }
    return out;
  }

  /** Whether the sync is still attached. */
  get isAttached(): boolean {
    return this.attached;
  }

  /**
   * Stops following the VM and undoes what the sync made or adopted: the
   * references of its links dropped (kvm profile), one UNMAP_DMA over each
   * host window, TCE_REMOVE of the windows it created (v2),
   * UNREGISTER_MEMORY of its regions, DISABLE if it enabled a v1
   * container. Failures are reported as usual. Idempotent.
   */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.teardown(true);
  }

  /** Undoes what the sync did: with `all`, what it adopted too (detach); without, only what it made (a failed attach). */
  private teardown(all: boolean): void {
    this.unsubscribe?.();
    this.unlisten?.();
    this.unsubscribe = this.unlisten = undefined;
    removeWindows(this.s, all);
    unregisterAll(this.s, all);
    disableV1(this.s);
    if (ATTACHED.get(this.fd.container) === this) ATTACHED.delete(this.fd.container);
  }
}
