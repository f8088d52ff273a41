// A KVM guest (struct kvm, the parts sPAPR TCE uses): memslots, guest-visible
// TCE tables per LIOBN (KVM_CREATE_SPAPR_TCE_64), links to VFIO hardware
// tables (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE) and vCPUs. Profile 'kvm' follows
// the kernel's handlers; profile 'qemu' QEMU's emulated ones. What a VMM
// adds on top (device DMA, map/unmap events, PHBs and RTAS) is Vm, in src/vmm/vm.ts.
import type { HostContext } from '../core/context.js';
import type { Mm } from '../kernel/mm.js';
import { Task } from '../kernel/task.js';
import type { Group } from '../vfio/group.js';
import { Vcpu, type HcallStats, type Level } from './vcpu.js';
import { addMemslot, removeMemslot, freeDirtyLog, type Memslot, type MemslotArgs } from './memslot.js';
import * as guest from './guest-table.js';
import { liveTables, type IommuTable } from '../kernel/table.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import type { GuestTable, Translation } from './guest-table.js';
import * as v from '../core/validate.js';
import { SlotView, VmView } from '../generated/views.js';
import {
  H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_GET_TCE, PROFILE_KVM, PROFILE_QEMU, KIND_PUT, KIND_INDIRECT, KIND_STUFF, KIND_GET, LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT,
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

/** Options of vm.vcpu(). */
export interface VcpuOptions {
  /** The thread running the vCPU (a Process of the VM's host); default a new thread of the VM's process. */
  thread?: Task;
}
const VCPU_OPTIONS = v.keys<VcpuOptions>('vm.vcpu', { thread: true });

/** Arguments of vm.createTceTable() (struct kvm_create_spapr_tce_64; offset and size in IOMMU pages). */
export interface CreateTceTable {
  /** A 32-bit id (docs/semantics.md §8.1). */
  liobn: bigint | number;
  pageShift: number;
  offset: bigint | number;
  size: bigint | number;
}

/** What vm.hcall() returns: the status (also left in r3), r4 after the call (H_GET_TCE's TCE), and the level that finished it. */
export interface HcallResult {
  ret: number;
  out: bigint[];
  level: Level;
}

/** Each TCE hypercall's name and arguments (r4..), by number: the arity vm.hcall() checks (PAPR's H_PUT_TCE etc.). */
const HCALL_ARGS: ReadonlyMap<number, readonly string[]> = new Map([
  [H_PUT_TCE, ['H_PUT_TCE', 'liobn', 'ioba', 'tce']],
  [H_PUT_TCE_INDIRECT, ['H_PUT_TCE_INDIRECT', 'liobn', 'ioba', 'tce_list', 'npages']],
  [H_STUFF_TCE, ['H_STUFF_TCE', 'liobn', 'ioba', 'tce_value', 'npages']],
  [H_GET_TCE, ['H_GET_TCE', 'liobn', 'ioba']],
]);

/**
 * @internal Makes every change of `c`, a Map or Set keyed by LIOBN (set() or
 * add(), delete(), clear()), call `changed`: the VM's generation, which lets
 * a DMA accessor keep a window cached and know, with one comparison, when it
 * is stale. The one structure of the LIOBN → table map (a table created,
 * enabled, disabled or restored is always a set()) and of the VMM's VIO
 * bypass set (src/vmm/vm.ts). Reads (get, has, iteration) stay the
 * collection's own.
 */
export function countChanges<C extends Map<bigint, unknown> | Set<bigint>>(c: C, changed: () => void): C {
  const methods = c as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of [c instanceof Map ? 'set' : 'add', 'delete', 'clear']) {
    const own = methods[name]!;
    Object.defineProperty(c, name, {
      value: (...args: unknown[]): unknown => {
        changed();
        return own.apply(c, args);
      },
    });
  }
  return c;
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
   * @internal descriptors of removed memslots still in the grace period of
   * their removal: not reused until it ends (memslot.ts). Empty in a
   * restored VM, whose vCPUs start outside any hypercall.
   */
  readonly slotsInGrace = new Set<number>();
  /**
   * @internal bumped by every change a DMA translation depends on other than
   * the entries themselves (which are read live): a window (tables), a
   * memslot, a VIO bypass. Cached translations compare it (src/vmm/dma/window.ts).
   */
  generation = 0;
  readonly tables: Map<bigint, GuestTable> = countChanges(new Map<bigint, GuestTable>(), () => {
    this.generation++;
  });
  /** @internal what the vCPUs report their hypercalls to; Vcpu checks `events.active`. */
  readonly events: HcallObserver;
  /** @internal the vCPUs by index. */
  readonly vcpus = new Map<number, Vcpu>();
  /** @internal the vCPU of vm.hcall(). */
  friendly: Vcpu | undefined;
  /** @internal what the host does when the VM is destroyed (forget it). */
  onDestroy: (vm: KvmVm) => void = () => undefined;
  private destroyed = false;
  private descFreed = false;

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
  addMemslot(slot: MemslotArgs): void {
    this.alive();
    addMemslot(this, slot);
    this.generation++;
  }

  /** KVM_SET_USER_MEMORY_REGION with size 0: deletes the memslot starting at `gpa`; TCEs pointing into it are left as the kernel leaves them (see memslot.ts). */
  removeMemslot(gpa: bigint | number): void {
    removeMemslot(this, gpa);
    this.generation++;
  }

  /** KVM_CREATE_SPAPR_TCE_64 (see guest-table.ts). */
  createTceTable(args: CreateTceTable): GuestTable {
    this.alive();
    return guest.createTceTable(this, args, (liobn) => this.liobnHeld(liobn));
  }

  /** Throws when the VMM holds `liobn` for something else than a table createTceTable may make (none here). */
  protected liobnHeld(_liobn: bigint): void {}

  /** KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: links a hardware table of `group` to the LIOBN (see guest-table.ts). */
  attachGroup(group: Group, liobn: bigint | number): void {
    this.alive();
    guest.attachGroup(this, group, liobn);
  }

  /** @internal drops one reference of the link between `liobn` and hardware table `tableDesc` (see guest-table.ts unlinkTable); false when there is none. */
  unlinkTable(liobn: bigint, tableDesc: number): boolean {
    this.alive();
    return guest.unlinkTable(this, liobn, tableDesc, (d) => this.hardwareTable(d));
  }

  /** @internal closes the fd of the guest table of `liobn` (kvm_spapr_tce_release, see guest-table.ts releaseTable); false when there is none. */
  releaseTable(liobn: bigint): boolean {
    this.alive();
    return guest.releaseTable(this, liobn, (d) => this.hardwareTable(d));
  }

  /** The live hardware table of descriptor `desc`, if any (what a link's descriptor names). */
  private hardwareTable(desc: number): IommuTable | undefined {
    for (const t of liveTables(this.host)) if (t.desc === desc) return t;
    return undefined;
  }

  /** The hardware tables linked to a LIOBN, with their reference counts. */
  links(liobn: bigint | number): { tableDesc: number; refs: number }[] {
    return guest.links(this, liobn);
  }

  /** The guest TCE at relative index `idx` of a table (0 when its page was never allocated). */
  guestEntry(t: GuestTable, idx: bigint | number): bigint {
    return guest.guestEntry(this, t, idx);
  }

  /** The translation a device model gets for a DMA at `iova` through `liobn` (spapr_tce_translate_iommu). */
  translate(liobn: bigint | number, iova: bigint | number, access?: 'read' | 'write'): Translation {
    return guest.translate(this, liobn, iova, access);
  }

  /** vCPU `index`, created on first use, run by `thread` (default: a new thread of the VM's process). */
  vcpu(index: number, opts?: VcpuOptions): Vcpu {
    this.alive();
    v.int('index', index, 0, 4095);
    const o = v.options('opts', opts, VCPU_OPTIONS);
    const thread = o.thread === undefined ? undefined : v.owned('opts.thread', o.thread, Task, 'a Process', this.host);
    // kvm_vcpu_ioctl: `if (vcpu->kvm->mm != current->mm) return -EIO` — a vCPU runs only in the
    // VM's address space. Under ownerCheck 'none' the model keeps the old openness (see README).
    if (thread !== undefined && this.host.ownerCheck !== 'none' && thread.mm !== this.mm) {
      fail('EIO', `vcpu: thread ${thread.tid} (pid ${thread.pid}) is not in the VM's mm ${this.mm.id}: KVM refuses vCPU ioctls from another mm`);
    }
    let c = this.vcpus.get(index);
    if (!c) {
      c = new Vcpu(this, index, thread ?? this.process.thread());
      this.vcpus.set(index, c);
    }
    return c;
  }

  /**
   * The convenience form: runs hypercall `nr` with arguments r4.. on a vCPU
   * of the VM's process and returns {ret, out: [r4], level} (r4 holds
   * H_GET_TCE's result). The TCE hypercalls take exactly their arguments
   * (H_PUT_TCE 3, H_PUT_TCE_INDIRECT 4, H_STUFF_TCE 4, H_GET_TCE 2; a
   * TypeError otherwise); another number takes up to 8 and, not being one
   * of this library's, exits (H_TOO_HARD, level 'exit') for the VMM to
   * handle. The arguments are register contents: any u64 (bigint or
   * safe-integer number), answered by the hypercall, never refused here.
   */
  hcall(nr: number | bigint, ...args: (bigint | number)[]): HcallResult {
    const n = v.u32('nr', nr);
    const want = HCALL_ARGS.get(n);
    if (want ? args.length !== want.length - 1 : args.length > 8) {
      throw new TypeError(want
        ? `vm.hcall(${want[0]}) takes ${want.length - 1} arguments (${want.slice(1).join(', ')}), got ${args.length}`
        : `vm.hcall(${hex(n)}) takes at most 8 arguments (r4..r11), got ${args.length}`);
    }
    const regs = args.map((a, i) => v.u64(want ? want[i + 1]! : `args[${i}]`, a));
    this.alive();
    this.friendly ??= new Vcpu(this, -1 >>> 0, this.process);
    const r = this.friendly.regs;
    r[3] = BigInt(n);
    for (let i = 0; i < 8; i++) r[4 + i] = regs[i] ?? 0n;
    const ret = this.friendly.hcall();
    return { ret, out: [r[4]!], level: this.friendly.lastLevel };
  }

  /** Whether destroy() has run. */
  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /**
   * Closes the VM (the last reference to the KVM VM fd: kvm_destroy_vm):
   * its guest tables leave the VM's list, their links drop their
   * references (a hardware table VFIO has already let go is cleared and
   * freed), their charges go back, and the memslots go; everything a vCPU
   * may still be reading is freed after a grace period. vCPUs still running
   * on workers find no table any more (H_TOO_HARD, an exit); their register
   * blocks, and with the last of them the VM descriptor, go when the VMM
   * releases them (vcpu.release()), as a vCPU fd keeps its VM. Any later
   * call on the VM is EBADF; a second destroy() does nothing.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const host = this.host;
    guest.releaseTables(this, (d) => this.hardwareTable(d));
    const vmd = new VmView(host.mem, this.desc);
    let at = vmd.slots;
    vmd.slots = 0;
    while (at !== 0) {
      const d = new SlotView(host.mem, at);
      const next = d.next;
      freeDirtyLog(this, d);
      host.free(at, SlotView.BYTES);
      at = next;
    }
    this.memslots.length = 0;
    this.friendly?.release();
    this.friendly = undefined;
    this.onDestroy(this);
    this.vcpuGone();
  }

  /** @internal a vCPU was released: the VM descriptor goes with the last one once the VM is destroyed. */
  vcpuGone(): void {
    if (!this.destroyed || this.descFreed || this.vcpus.size > 0 || this.friendly !== undefined) return;
    this.descFreed = true;
    this.host.free(this.desc, VmView.BYTES);
  }

  private alive(): void {
    if (this.destroyed) fail('EBADF', `VM ${new VmView(this.host.mem, this.desc).id} has been destroyed`);
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
