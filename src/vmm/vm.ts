// The VM a VMM drives: KVM's VM (src/kvm/vm.ts) plus what QEMU adds around
// it for device models: DMA through a LIOBN's window (dma.ts), the events of
// guest TCE writes and of windows and their replay (events.ts), the PCI host
// bridges with the guest's DDW RTAS calls and the VIO bypass (rtas.ts), the
// machine reset of the IOMMU (reset.ts), and host VFIO containers kept in
// step with the guest (vfio-sync.ts).
import { KvmVm, countChanges, type CreateTceTable } from '../kvm/vm.js';
import type { Task } from '../kernel/task.js';
import type { GuestTable, Translation } from '../kvm/guest-table.js';
import type { MemslotArgs } from '../kvm/memslot.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { createDma, type DmaAccessor } from './dma.js';
import { DirtyLog } from './dirty.js';
import { EventHub, droppedMappings, replayMappings, windowEvent, type IommuListener, type VmListener } from './events.js';
import { Phb, rtasCall, isVioTable, type PhbOptions } from './rtas.js';
import { resetVm } from './reset.js';
import { VfioSync, type VfioSyncOptions } from './vfio-sync.js';
import type { ContainerFd } from '../vfio/fd.js';

/** A virtual machine. */
export class Vm extends KvmVm {
  /** PCI host bridges added with addPhb(). */
  readonly phbs: Phb[] = [];
  /** @internal map/unmap and window subscribers; Vcpu checks `events.active`. */
  declare readonly events: EventHub;
  /** @internal the VIO LIOBNs in TCE bypass (SpaprTceTable.bypass); a change bumps `generation` (cached DMA translations). */
  readonly bypass: Set<bigint> = countChanges(new Set<bigint>(), () => {
    this.generation++;
  });
  /** @internal the dirty logs of the memslots (dirty.ts). */
  readonly dirty = new DirtyLog(this);

  /** @internal use process.createVm(); `desc` adopts the descriptor of a restored VM. */
  constructor(process: Task, profile: 'kvm' | 'qemu', desc?: number) {
    super(process, profile, desc, (vm) => new EventHub(vm));
  }

  /** KVM_SET_USER_MEMORY_REGION; a container kept in sync (attachContainer) registers the memory. */
  override addMemslot(slot: MemslotArgs): void {
    super.addMemslot(slot);
    this.events.memslotChanged('add', this.memslots[this.memslots.length - 1]!);
  }

  /**
   * KVM_SET_USER_MEMORY_REGION with size 0: deletes the memslot starting at
   * `gpa` (EINVAL if none). Guest TCEs pointing into it stay, as the kernel
   * leaves them: vm.translate() still gives their address, vm.dma() faults
   * 'not-ram' there, a kvm-profile map of an address in it exits
   * (H_TOO_HARD), and hardware TCEs keep the memory pinned through its
   * pre-registered region. A container kept in sync unregisters the region,
   * which the kernel refuses while TCEs point into it (reported; retried by
   * detach()).
   */
  override removeMemslot(gpa: bigint | number): void {
    gpa = v.u64('gpa', gpa);
    const slot = this.memslots.find((s) => s.gpa === gpa);
    super.removeMemslot(gpa);
    this.dirty.drop(slot!);
    this.events.memslotChanged('remove', slot!);
  }

  /**
   * kvm_destroy_vm (see KvmVm.destroy), told first to whoever listens, as
   * QEMU's listeners hear region_del for every section when they go
   * (memory_listener_unregister): an unmap for every present mapping, then a
   * 'window-remove' for every enabled table, delivered together as for a
   * reset, then a removal for every memslot. A container kept in sync is thus emptied and
   * its regions unregistered rather than left mirroring a VM that is gone.
   * A listener that throws does not stop the destroy; its error is rethrown
   * after it.
   */
  override destroy(): void {
    if (this.isDestroyed) return;
    let error: unknown;
    let threw = false;
    const attempt = (f: () => void): void => {
      try {
        f();
      } catch (e) {
        if (!threw) error = e;
        threw = true;
      }
    };
    if (this.events.active) {
      attempt(() =>
        this.events.batch(() => {
          const on = [...this.tables.values()].filter((t) => t.size !== 0n);
          for (const t of on) for (const ev of droppedMappings(this, t)) this.events.emit(ev);
          for (const t of on) this.events.emit(windowEvent(t, 'window-remove'));
        }),
      );
    }
    for (const s of [...this.memslots]) attempt(() => this.events.memslotChanged('remove', s));
    super.destroy();
    if (threw) throw error;
  }

  /**
   * KVM_CREATE_SPAPR_TCE_64 (see guest-table.ts); the new window is a
   * 'window-add' event. A PHB's LIOBN is EBUSY even while its window is
   * disabled (in the kvm profile it has no table then): QEMU's TCE table
   * device holds it.
   */
  override createTceTable(args: CreateTceTable): GuestTable {
    const t = super.createTceTable(args);
    this.events.emit(windowEvent(t, 'window-add'));
    return t;
  }

  /** A PHB's window LIOBN: EBUSY (see createTceTable). */
  protected override liobnHeld(liobn: bigint): void {
    const phb = this.phbs.find((p) => p.liobns.includes(liobn));
    if (phb) fail('EBUSY', `createTceTable: LIOBN ${hex(liobn)} is a window of PHB ${hex(phb.buid)}`);
  }

  /**
   * The translation a device model gets for a DMA at `iova` through `liobn`
   * (spapr_tce_translate_iommu); for a VIO LIOBN in bypass the identity
   * (QEMU's bypass alias of guest RAM): the address is the guest physical
   * one, read and write allowed, in pages of the table's size.
   */
  override translate(liobn: bigint | number, iova: bigint | number, access?: 'read' | 'write'): Translation {
    if (this.bypass.size !== 0 && this.bypass.has((liobn = v.liobn('liobn', liobn)))) {
      iova = v.u64('iova', iova);
      if (access !== undefined) v.oneOf('access', access, ['read', 'write'] as const, 'read');
      const t = this.tables.get(liobn)!;
      const page = 1n << BigInt(t.size === 0n ? 12 : t.pageShift);
      return { ok: true, gpa: iova, pageIova: iova & ~(page - 1n), pageSize: page, perm: 3 };
    }
    return super.translate(liobn, iova, access);
  }

  /**
   * A device model's view of guest memory through LIOBN `liobn`: read(iova,
   * length), readInto(iova, dst) (no allocation) and write(iova, bytes),
   * translated page by page when called, each TCE read as it is then (so
   * later PUTs take effect at once); a DmaFault, with nothing touched, when
   * any page has no window, no permission or no backed RAM behind it. A
   * write marks its pages in the dirty log (dirtyLog()).
   */
  dma(liobn: bigint | number): DmaAccessor {
    return createDma(this, liobn, this.dirty);
  }

  /**
   * The dirty log of the memslot that contains guest physical `gpa`
   * (KVM_GET_DIRTY_LOG with manual protection: reading does not clear): one
   * bit per system page of the slot, bit i = page i, in little-endian 64-bit
   * words (a copy, its length a multiple of 8). A page is dirty when a DMA
   * write (vm.dma) touched it, or, with trackDmaWritable(true), when a TCE
   * maps it writable or did at any time since the last clear, by a vCPU on
   * any thread (the engines mark it: dirty.ts). ENOENT when no memslot
   * contains `gpa`.
   */
  dirtyLog(gpa: bigint | number): Uint8Array {
    return this.dirty.get(gpa);
  }

  /**
   * KVM_CLEAR_DIRTY_LOG on the memslot that contains `gpa`: clears the bits
   * set in `mask` (a bitmap as dirtyLog() returns, EINVAL if of another
   * length), all of them without one. Pages mapped writable while
   * trackDmaWritable is on are dirty again at once. ENOENT when no memslot
   * contains `gpa`.
   */
  clearDirtyLog(gpa: bigint | number, mask?: Uint8Array): void {
    this.dirty.clear(gpa, mask);
  }

  /**
   * Whether pages mapped writable by a TCE count as dirty (a VFIO device
   * may write them at any time without a trace): while on, such a page is
   * dirty for as long as it is mapped and until the first clear after it
   * was unmapped. Off (the default), hypercalls pay one load per call for
   * it; switching off frees the VM's logs, DMA-write bits included
   * (KVM_MEM_LOG_DIRTY_PAGES cleared), and the next DMA write starts anew.
   */
  trackDmaWritable(on: boolean): void {
    this.dirty.track(on);
  }

  /**
   * Calls `fn` synchronously with the events of LIOBN `liobn`, or of any
   * ('*'), in the order they happen: one 'map'/'unmap' per guest TCE
   * written by this VM's hypercalls (vcpu.hcall() and vm.hcall() on this
   * thread; not vCPUs run by workers); 'window-add' / 'window-remove' when a
   * window appears or goes (createTceTable, a PHB's default window, the DDW
   * RTAS calls, reset(), destroy()); and, before a 'window-remove' or in
   * reset(), an 'unmap' for every mapping that goes with it. The events of one call are
   * delivered before it returns. Returns the unsubscribe function.
   */
  subscribe(liobn: bigint | number | '*', fn: VmListener): () => void {
    return this.events.subscribe(liobn, fn);
  }

  /** Calls `fn` with a 'map' event for every present mapping (perm ≠ 0) of LIOBN `liobn`, in ascending IOVA. */
  replay(liobn: bigint | number, fn: IommuListener): void {
    replayMappings(this, liobn, fn);
  }

  /** Adds a PCI host bridge with its two DMA windows, the default one enabled (see PhbOptions; in the kvm profile each enabled window is a KVM table, see rtas.ts). */
  addPhb(opts: PhbOptions): Phb {
    return this.events.batch(() => {
      const p = new Phb(this, opts, this.phbs);
      this.phbs.push(p);
      return p;
    });
  }

  /**
   * Runs a guest RTAS call by name (RTAS_CALLS: the DDW calls and
   * ibm,set-tce-bypass) with u32 argument cells; returns the result cells,
   * [status] on an error.
   */
  rtas(name: string, args: readonly (number | bigint)[], nret: number): number[] {
    return rtasCall(this, name, args, nret);
  }

  /**
   * Switches the TCE bypass of a VIO unit's table (spapr_vio_set_bypass, what
   * the guest's ibm,set-tce-bypass does): while on, vm.translate() and
   * vm.dma() through `liobn` are the identity onto guest physical addresses
   * and the entries are ignored (they stay, and count again when it is off).
   * A LIOBN that is no VIO table (unknown, or a PHB's window) is EINVAL.
   */
  setTceBypass(liobn: bigint | number, on: boolean): void {
    const l = v.liobn('liobn', liobn);
    if (typeof on !== 'boolean') throw new TypeError(`on must be a boolean, got ${typeof on}`);
    if (!isVioTable(this, l)) fail('EINVAL', `setTceBypass: LIOBN ${hex(l)} is no VIO unit's table${this.tables.has(l) ? ' (it is a PHB window: PCI has no bypass)' : ''}`);
    if (on) this.bypass.add(l);
    else this.bypass.delete(l);
  }

  /** Whether LIOBN `liobn` is in TCE bypass. */
  tceBypass(liobn: bigint | number): boolean {
    const l = v.liobn('liobn', liobn);
    return this.bypass.has(l);
  }

  /**
   * QEMU's machine reset for the IOMMU, with vCPUs stopped (see reset.ts):
   * every PHB's DMA reset (its windows removed, the default one restored,
   * empty), every other guest table cleared (spapr_tce_reset), every bypass
   * off; events as for the RTAS calls, delivered when it has finished.
   */
  reset(): void {
    resetVm(this);
  }

  /**
   * Keeps a VFIO sPAPR container in step with this VM's guest windows and
   * mappings, as QEMU's VFIO and prereg listeners do (see vfio-sync.ts). In
   * the kvm profile each host window is also linked to its guest table
   * (vm.attachGroup for every group), so the kernel updates it on the
   * hypercalls it completes and no MAP_DMA is made for them; a v1 container
   * is ENODEV there. `fd` must be a handle of the VM's process on a
   * container with a group and an IOMMU type; a container has one sync at a
   * time (EBUSY).
   */
  attachContainer(fd: ContainerFd, opts?: VfioSyncOptions): VfioSync {
    return new VfioSync(this, fd, opts).start();
  }
}
