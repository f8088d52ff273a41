// A KVM guest (struct kvm, the parts sPAPR TCE uses): memslots, guest-visible
// TCE tables per LIOBN (KVM_CREATE_SPAPR_TCE_64), links to VFIO hardware
// tables (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE) and vCPUs. Profile 'kvm' follows
// the kernel's handlers; profile 'qemu' QEMU's emulated ones. What a VMM
// adds on top (device DMA, map/unmap events, PHBs and RTAS) is Vm, in src/vmm/vm.ts.
import type { HostContext } from '../core/context.js';
import type { Mm } from '../kernel/mm.js';
import { Task } from '../kernel/task.js';
import type { Group } from '../vfio/group.js';
import { Vcpu, type HcallStats } from './vcpu.js';
import { addMemslot, removeMemslot, type Memslot } from './memslot.js';
import * as guest from './guest-table.js';
import type { GuestTable, Translation } from './guest-table.js';
import * as v from '../core/validate.js';
import { VmView } from '../generated/views.js';
import {
  PROFILE_KVM, PROFILE_QEMU, KIND_PUT, KIND_INDIRECT, KIND_STUFF, KIND_GET, LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT,
} from '../generated/layout.js';

/**
 * What a vCPU tells after each hypercall when `active` (the VMM's map/unmap
 * events, src/vmm/events.ts): its number, arguments and status. With nobody
 * listening the hot path reads one boolean.
 */
export interface HcallObserver {
  readonly active: boolean;
  afterHcall(nr: bigint, liobn: bigint, ioba: bigint, arg: bigint, npages: bigint, rc: number): void;
}

/**
 * A LIOBN → table map that counts its changes (a table created, enabled,
 * disabled or restored is always a set()): what lets a DMA accessor keep a
 * window cached and know, with one comparison, when it is stale.
 */
class TableMap extends Map<bigint, GuestTable> {
  private readonly changed: () => void;
  constructor(changed: () => void) {
    super();
    this.changed = changed;
  }
  override set(liobn: bigint, t: GuestTable): this {
    super.set(liobn, t);
    this.changed();
    return this;
  }
  override delete(liobn: bigint): boolean {
    this.changed();
    return super.delete(liobn);
  }
  override clear(): void {
    this.changed();
    super.clear();
  }
}

/** The observer of a VM nobody listens to. */
const NOBODY: HcallObserver = { active: false, afterHcall: () => undefined };

/** A VM as KVM holds it. */
export class KvmVm {
  readonly host: HostContext;
  /** The creating task (a Process): its memlock limit is charged, its threads run the vCPUs by default. */
  readonly process: Task;
  /** The creator's address space (kvm->mm): region lookups of the hypercalls use it. */
  readonly mm: Mm;
  readonly profile: 'kvm' | 'qemu';
  readonly desc: number;
  readonly memslots: Memslot[] = [];
  /**
   * @internal bumped by every change a DMA translation depends on other than
   * the entries themselves (which are read live): a window (tables), a
   * memslot, a VIO bypass. Cached translations compare it (src/vmm/dma.ts).
   */
  generation = 0;
  readonly tables: Map<bigint, GuestTable> = new TableMap(() => {
    this.generation++;
  });
  /** @internal what the vCPUs report their hypercalls to; Vcpu checks `events.active`. */
  readonly events: HcallObserver;
  /** @internal the vCPUs by index. */
  readonly vcpus = new Map<number, Vcpu>();
  /** @internal the vCPU of vm.hcall(). */
  friendly: Vcpu | undefined;

  /**
   * @internal use process.createVm(). Allocates the VM descriptor, or adopts
   * `desc` (a restored VM); `observe` gives the observer of its hypercalls.
   */
  constructor(process: Task, profile: 'kvm' | 'qemu', desc?: number, observe: (vm: KvmVm) => HcallObserver = () => NOBODY) {
    this.host = process.host;
    this.process = process;
    this.mm = process.mm;
    this.profile = profile;
    if (desc === undefined) {
      const d = new VmView(this.host.mem, this.host.alloc(VmView.BYTES, 'VM descriptor'));
      d.mm = this.mm.desc;
      d.profile = profile === 'qemu' ? PROFILE_QEMU : PROFILE_KVM;
      d.id = this.host.nextId();
      desc = d.at;
    }
    this.desc = desc;
    this.events = observe(this);
  }

  /** KVM_SET_USER_MEMORY_REGION (see memslot.ts). */
  addMemslot(slot: Memslot): void {
    addMemslot(this, slot);
    this.generation++;
  }

  /** KVM_SET_USER_MEMORY_REGION with size 0: deletes the memslot starting at `gpa`; TCEs pointing into it are left as the kernel leaves them (see memslot.ts). */
  removeMemslot(gpa: bigint): void {
    removeMemslot(this, gpa);
    this.generation++;
  }

  /** KVM_CREATE_SPAPR_TCE_64 (see guest-table.ts). */
  createTceTable(args: { liobn: bigint; pageShift: number; offset: bigint; size: bigint }): GuestTable {
    return guest.createTceTable(this, args);
  }

  /** KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: links a hardware table of `group` to the LIOBN (see guest-table.ts). */
  attachGroup(group: Group, liobn: bigint): void {
    guest.attachGroup(this, group, liobn);
  }

  /** The hardware tables linked to a LIOBN, with their reference counts. */
  links(liobn: bigint): { tableDesc: number; refs: number }[] {
    return guest.links(this, liobn);
  }

  /** The guest TCE at relative index `idx` of a table (0 when its page was never allocated). */
  guestEntry(t: GuestTable, idx: bigint): bigint {
    return guest.guestEntry(this, t, idx);
  }

  /** The translation a device model gets for a DMA at `iova` through `liobn` (spapr_tce_translate_iommu). */
  translate(liobn: bigint, iova: bigint, access?: 'read' | 'write'): Translation {
    return guest.translate(this, liobn, iova, access);
  }

  /** vCPU `index`, created on first use, run by `thread` (default: a new thread of the VM's process). */
  vcpu(index: number, opts?: { thread?: Task }): Vcpu {
    v.int('index', index, 0, 4095);
    const o = v.options<{ thread: Task }>('opts', opts);
    if (o.thread !== undefined) v.owned('opts.thread', o.thread, Task, 'a Process', this.host);
    let c = this.vcpus.get(index);
    if (!c) {
      c = new Vcpu(this, index, o.thread ?? this.process.thread());
      this.vcpus.set(index, c);
    }
    return c;
  }

  /**
   * The convenience form: runs hypercall `nr` with bigint arguments r4.. on a
   * vCPU of the VM's process and returns {ret, out: [r4]} (r4 holds H_GET_TCE's result).
   */
  hcall(nr: number, ...args: bigint[]): { ret: number; out: bigint[]; level: string } {
    v.int('nr', nr, 0, 0xffffffff);
    if (args.length > 8) throw new RangeError(`hcall takes at most 8 arguments, got ${args.length}`);
    args.forEach((a, i) => v.u64(`args[${i}]`, a));
    this.friendly ??= new Vcpu(this, -1 >>> 0, this.process);
    const r = this.friendly.regs;
    r[3] = BigInt(nr);
    for (let i = 0; i < 8; i++) r[4 + i] = args[i] ?? 0n;
    const ret = this.friendly.hcall();
    return { ret, out: [r[4]!], level: this.friendly.lastLevel };
  }

  /** Completions per hypercall: in real mode, in virtual mode, and exits to the VMM (or, in the qemu profile, handled by it). */
  stats(): Record<'H_PUT_TCE' | 'H_PUT_TCE_INDIRECT' | 'H_STUFF_TCE' | 'H_GET_TCE', HcallStats> {
    const all = [...this.vcpus.values(), ...(this.friendly ? [this.friendly] : [])];
    const sum = (kind: number): HcallStats => ({
      real: all.reduce((a, c) => a + c.count(kind, LEVEL_REAL), 0),
      virtual: all.reduce((a, c) => a + c.count(kind, LEVEL_VIRTUAL), 0),
      exit: all.reduce((a, c) => a + c.count(kind, LEVEL_EXIT), 0),
    });
    return { H_PUT_TCE: sum(KIND_PUT), H_PUT_TCE_INDIRECT: sum(KIND_INDIRECT), H_STUFF_TCE: sum(KIND_STUFF), H_GET_TCE: sum(KIND_GET) };
  }
}
