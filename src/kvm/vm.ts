// A KVM guest (struct kvm, the parts sPAPR TCE uses): memslots, guest-visible
// TCE tables per LIOBN (KVM_CREATE_SPAPR_TCE_64), links to VFIO hardware
// tables (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE) and vCPUs. Profile 'kvm' follows
// the kernel's handlers; profile 'qemu' QEMU's emulated ones.
import type { Host } from './host.js';
import { Process } from './process.js';
import type { Mm } from './mm.js';
import { Group } from './group.js';
import type { IommuTable } from './table.js';
import { Vcpu, type HcallStats } from './vcpu.js';
import { createDma, type DmaAccessor } from './dma.js';
import { EventHub, replayMappings, type IommuListener } from './events.js';
import { Phb, rtasCall, type PhbOptions, type PhbState } from './rtas.js';
import { fail } from './errors.js';
import * as v from './validate.js';
import {
  VM_BYTES, VM_MM, VM_SLOTS, VM_STTS, VM_PROFILE, VM_ID, SLOT_BYTES, SLOT_NEXT, SLOT_GPA, SLOT_SIZE,
  SLOT_UA, SLOT_HOST_OFF, STT_BYTES, STT_NEXT, STT_VM, STT_LIOBN, STT_OFFSET, STT_SIZE, STT_PAGE_SHIFT,
  STT_NPAGES, STT_PAGES, STT_STIT_COUNT, STT_STITS, STT_STIT_REFS, STT_ID, PROFILE_KVM, PROFILE_QEMU,
  MAX_STITS, KIND_PUT, KIND_INDIRECT, KIND_STUFF, KIND_GET, LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT,
} from './generated/layout.js';

/** What translate() returns: the guest page behind an IOVA, or why there is none. */
export type Translation =
  | { ok: true; gpa: bigint; pageIova: bigint; pageSize: bigint; perm: number }
  | { ok: false; fault: 'no-window' | 'out-of-range' | 'no-permission' };

/** A guest memory slot. */
export interface Memslot {
  gpa: bigint;
  size: bigint;
  ua: bigint;
}

/** A guest-visible TCE table (one LIOBN). */
export interface GuestTable {
  readonly liobn: bigint;
  readonly desc: number;
  readonly pageShift: number;
  /** First entry index (bus offset >> pageShift). */
  readonly offset: bigint;
  /** Entries. */
  readonly size: bigint;
  /** Pages charged to locked_vm (kvm profile). */
  readonly chargedPages: bigint;
}

const hex = (x: bigint): string => '0x' + x.toString(16);

/** Snapshot form of a Vm (descriptors by offset, processes by thread id). */
export interface VmState {
  desc: number;
  process: number;
  mm: number;
  profile: 'kvm' | 'qemu';
  memslots: { gpa: string; size: string; ua: string }[];
  tables: { liobn: string; desc: number; pageShift: number; offset: string; size: string; chargedPages: string }[];
  vcpus: { index: number; desc: number; thread: number }[];
  friendly: { desc: number; thread: number } | null;
  phbs: PhbState[];
}

/** A virtual machine. */
export class Vm {
  readonly host: Host;
  readonly process: Process;
  /** The creator's address space (kvm->mm): region lookups of the hypercalls use it. */
  readonly mm: Mm;
  readonly profile: 'kvm' | 'qemu';
  readonly desc: number;
  readonly memslots: Memslot[] = [];
  readonly tables = new Map<bigint, GuestTable>();
  /** PCI host bridges added with addPhb() (qemu profile). */
  readonly phbs: Phb[] = [];
  /** @internal map/unmap subscribers; Vcpu checks `events.active`. */
  readonly events: EventHub = new EventHub(this);
  private readonly vcpus = new Map<number, Vcpu>();
  private friendly: Vcpu | undefined;

  /** @internal use process.createVm() */
  constructor(process: Process, profile: 'kvm' | 'qemu') {
    this.host = process.host;
    this.process = process;
    this.mm = process.mm;
    this.profile = profile;
    const mem = this.host.mem;
    this.desc = this.host.alloc(VM_BYTES, 'VM descriptor');
    mem.setU32(this.desc + VM_MM, this.mm.desc);
    mem.setU32(this.desc + VM_PROFILE, profile === 'qemu' ? PROFILE_QEMU : PROFILE_KVM);
    mem.setU32(this.desc + VM_ID, this.host.nextId());
    this.host.vms.add(this);
  }

  /** State for snapshots; descriptors, guest tables and registers are in linear memory. Subscribers are not saved. */
  save(): VmState {
    return {
      desc: this.desc, process: this.process.tid, mm: this.mm.id, profile: this.profile,
      memslots: this.memslots.map((m) => ({ gpa: hex(m.gpa), size: hex(m.size), ua: hex(m.ua) })),
      tables: [...this.tables.values()].map((t) => ({ liobn: hex(t.liobn), desc: t.desc, pageShift: t.pageShift, offset: hex(t.offset), size: hex(t.size), chargedPages: hex(t.chargedPages) })),
      vcpus: [...this.vcpus.values()].map((c) => ({ index: c.index, desc: c.desc, thread: c.thread.tid })),
      friendly: this.friendly ? { desc: this.friendly.desc, thread: this.friendly.thread.tid } : null,
      phbs: this.phbs.map((p) => p.save()),
    };
  }

  /** The VM a snapshot describes, over a memory already holding its descriptors. */
  static restore(host: Host, s: VmState, ctx: { mms: Map<number, Mm>; processes: Map<number, Process> }): Vm {
    const vm = Object.create(Vm.prototype) as Vm;
    const process = ctx.processes.get(s.process)!;
    Object.assign(vm, {
      host, process, mm: ctx.mms.get(s.mm)!, profile: s.profile, desc: s.desc,
      memslots: s.memslots.map((m) => ({ gpa: BigInt(m.gpa), size: BigInt(m.size), ua: BigInt(m.ua) })),
      tables: new Map(s.tables.map((t) => [BigInt(t.liobn), { liobn: BigInt(t.liobn), desc: t.desc, pageShift: t.pageShift, offset: BigInt(t.offset), size: BigInt(t.size), chargedPages: BigInt(t.chargedPages) }])),
      phbs: [], vcpus: new Map(), friendly: undefined,
    });
    Object.assign(vm, { events: new EventHub(vm) });
    for (const c of s.vcpus) vm.vcpus.set(c.index, Vcpu.restore(vm, c.index, ctx.processes.get(c.thread)!, c.desc));
    if (s.friendly) vm.friendly = Vcpu.restore(vm, -1 >>> 0, ctx.processes.get(s.friendly.thread)!, s.friendly.desc);
    for (const p of s.phbs) vm.phbs.push(Phb.restore(vm, p));
    host.vms.add(vm);
    return vm;
  }

  /**
   * KVM_SET_USER_MEMORY_REGION: guest physical [gpa, gpa + size) is the
   * creator's memory at ua. Page aligned (EINVAL), no overlap (EEXIST is
   * reported as EINVAL here), inside one mapping (EFAULT).
   */
  addMemslot(slot: Memslot): void {
    const o = v.options<Memslot>('slot', slot);
    const gpa = v.u64('gpa', o.gpa);
    const size = v.u64('size', o.size);
    const ua = v.u64('ua', o.ua);
    const mask = (1n << BigInt(this.host.pageShift)) - 1n;
    if (gpa & mask || size & mask || ua & mask || size === 0n) fail('EINVAL', `addMemslot: gpa ${hex(gpa)}, size ${hex(size)} and ua ${hex(ua)} must be non-empty and page aligned`);
    if (gpa + size > 1n << 64n) fail('EINVAL', 'addMemslot: the range wraps around');
    for (const s of this.memslots) if (gpa < s.gpa + s.size && s.gpa < gpa + size) fail('EINVAL', `addMemslot: overlaps the memslot at ${hex(s.gpa)}`);
    const m = this.mm.findMapping(ua);
    if (!m || ua + size > m.ua + m.size) fail('EFAULT', `addMemslot: [${hex(ua)}, +${hex(size)}) is not one mapping of the VM's process`);
    const mem = this.host.mem;
    const d = this.host.alloc(SLOT_BYTES, 'memslot');
    mem.setU64(d + SLOT_GPA, gpa);
    mem.setU64(d + SLOT_SIZE, size);
    mem.setU64(d + SLOT_UA, ua);
    mem.setU32(d + SLOT_HOST_OFF, m.hostOff ? m.hostOff + Number(ua - m.ua) : 0);
    mem.setU32(d + SLOT_NEXT, mem.getU32(this.desc + VM_SLOTS));
    mem.setU32(this.desc + VM_SLOTS, d);
    this.memslots.push({ gpa, size, ua });
  }

  /**
   * KVM_CREATE_SPAPR_TCE_64 {liobn, page_shift, offset, size} (offset and size
   * in IOMMU pages): size 0, page shift outside [12, 34] or an end past 2^64
   * → EINVAL; pages charged to the creator (ENOMEM); duplicate LIOBN → EBUSY.
   * In the qemu profile this is QEMU's table: nothing is charged.
   */
  createTceTable(args: { liobn: bigint; pageShift: number; offset: bigint; size: bigint }): GuestTable {
    const o = v.options<{ liobn: bigint; pageShift: number; offset: bigint; size: bigint }>('args', args);
    const liobn = v.u64('liobn', o.liobn);
    const pageShift = v.int('pageShift', o.pageShift, 0, 63);
    const offset = v.u64('offset', o.offset);
    const size = v.u64('size', o.size);
    if (size === 0n) fail('EINVAL', 'createTceTable: size must not be 0');
    if (pageShift < 12 || pageShift > 34) fail('EINVAL', `createTceTable: page shift ${pageShift} is outside [12, 34]`);
    if (offset + size > ((1n << 64n) - 1n) >> BigInt(pageShift)) fail('EINVAL', 'createTceTable: offset + size overflows the 64-bit bus');
    const sh = BigInt(this.host.pageShift);
    const perPage = (1n << sh) / 8n;
    const npages = (size + perPage - 1n) / perPage;
    if (npages > 0x3fff_ffffn) fail('ENOMEM', `createTceTable: ${size} entries is more than this host can hold`);
    // kvmppc_stt_pages: the pages of TCEs plus the pages of the descriptor and its page array.
    const charged = this.profile === 'kvm' ? npages + ((BigInt(STT_BYTES) + npages * 8n + (1n << sh) - 1n) >> sh) : 0n;
    const key = `vm${this.desc}:stt${liobn.toString(16)}`;
    this.mm.account(key, charged, this.process.memlockLimitPages);
    let d = 0;
    let pages = 0;
    try {
      if (this.tables.has(liobn)) fail('EBUSY', `createTceTable: LIOBN ${hex(liobn)} exists`);
      d = this.host.alloc(STT_BYTES, 'guest TCE table');
      pages = this.host.alloc(Number(npages) * 4, 'guest TCE page array');
    } catch (e) {
      if (d) this.host.free(d, STT_BYTES);
      this.mm.unaccount(key, charged);
      throw e;
    }
    const mem = this.host.mem;
    mem.setU32(d + STT_VM, this.desc);
    mem.setU64(d + STT_LIOBN, liobn);
    mem.setU64(d + STT_OFFSET, offset);
    mem.setU64(d + STT_SIZE, size);
    mem.setU32(d + STT_PAGE_SHIFT, pageShift);
    mem.setU32(d + STT_NPAGES, Number(npages));
    mem.setU32(d + STT_PAGES, pages);
    mem.setU32(d + STT_ID, this.host.nextId());
    mem.setU32(d + STT_NEXT, mem.getU32(this.desc + VM_STTS));
    mem.setU32(this.desc + VM_STTS, d);
    const t: GuestTable = { liobn, desc: d, pageShift, offset, size, chargedPages: charged };
    this.tables.set(liobn, t);
    return t;
  }

  /**
   * KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: links a hardware table of the group
   * (page ≤ guest page, same bus start, window at least the guest's; else
   * EINVAL) to the LIOBN; linking it again only counts a reference. With the
   * mm owner check, the group's container must belong to the VM's mm (EPERM):
   * the one check that mode needs, paid here rather than per hypercall.
   */
  attachGroup(group: Group, liobn: bigint): void {
    v.instance('group', group, Group, 'a Group');
    if (group.host !== this.host) throw new TypeError('attachGroup: the group belongs to another host');
    v.u64('liobn', liobn);
    if (this.profile !== 'kvm') fail('ENODEV', 'attachGroup: the qemu profile has no in-kernel acceleration');
    const t = this.tables.get(liobn);
    if (!t) fail('EINVAL', `attachGroup: no guest table with LIOBN ${hex(liobn)}`);
    const c = group.container;
    if (this.host.ownerCheck === 'mm' && c?.mm && c.mm !== this.mm) {
      fail('EPERM', `attachGroup: the group's container belongs to mm ${c.mm.id}, the VM to mm ${this.mm.id}`);
    }
    const bus = t.offset << BigInt(t.pageShift);
    const span = t.size << BigInt(t.pageShift);
    // Any table of the group qualifies: a DDW group's windows or a legacy group's own table.
    const hw = [...group.slots, group.legacyTable].find((tb): tb is IommuTable => !!tb && tb.pageShift <= t.pageShift && tb.offset << BigInt(tb.pageShift) === bus && tb.size << BigInt(tb.pageShift) >= span);
    if (!hw) fail('EINVAL', `attachGroup: group ${group.id} has no hardware table compatible with LIOBN ${hex(liobn)}`);
    const mem = this.host.mem;
    const n = mem.getU32(t.desc + STT_STIT_COUNT);
    for (let i = 0; i < n; i++) {
      if (mem.getU32(t.desc + STT_STITS + i * 4) === hw.desc) {
        mem.setU32(t.desc + STT_STIT_REFS + i * 4, mem.getU32(t.desc + STT_STIT_REFS + i * 4) + 1);
        return;
      }
    }
    if (n >= MAX_STITS) fail('ENOSPC', `attachGroup: LIOBN ${hex(liobn)} already links ${MAX_STITS} hardware tables`);
    hw.hold();
    mem.setU32(t.desc + STT_STITS + n * 4, hw.desc);
    mem.setU32(t.desc + STT_STIT_REFS + n * 4, 1);
    mem.setU32(t.desc + STT_STIT_COUNT, n + 1);
  }

  /** The hardware tables linked to a LIOBN, with their reference counts. */
  links(liobn: bigint): { tableDesc: number; refs: number }[] {
    const t = this.tables.get(v.u64('liobn', liobn));
    if (!t) return [];
    const mem = this.host.mem;
    const out: { tableDesc: number; refs: number }[] = [];
    const n = mem.getU32(t.desc + STT_STIT_COUNT);
    for (let i = 0; i < n; i++) out.push({ tableDesc: mem.getU32(t.desc + STT_STITS + i * 4), refs: mem.getU32(t.desc + STT_STIT_REFS + i * 4) });
    return out;
  }

  /** The guest TCE at relative index `idx` of a table (0 when its page was never allocated). */
  guestEntry(t: GuestTable, idx: bigint): bigint {
    const mem = this.host.mem;
    const per = (1n << BigInt(this.host.pageShift)) / 8n;
    const page = mem.getU32(mem.getU32(t.desc + STT_PAGES) + Number(idx / per) * 4);
    return page === 0 ? 0n : mem.getU64(page + Number(idx % per) * 8);
  }

  /**
   * The translation a device model gets for a DMA at `iova` through LIOBN
   * `liobn` (spapr_tce_translate_iommu): the guest physical address and its
   * page, or a fault. `access` 'read' needs the READ bit, 'write' the WRITE
   * bit; without `access` only the window is checked.
   */
  translate(liobn: bigint, iova: bigint, access?: 'read' | 'write'): Translation {
    v.u64('liobn', liobn);
    v.u64('iova', iova);
    if (access !== undefined) v.oneOf('access', access, ['read', 'write'] as const, 'read');
    const t = this.tables.get(liobn);
    if (!t || t.size === 0n) return { ok: false, fault: 'no-window' };
    const shift = BigInt(t.pageShift);
    const bus = t.offset << shift;
    const idx = iova >= bus ? (iova - bus) >> shift : t.size;
    if (idx >= t.size) return { ok: false, fault: 'out-of-range' };
    const tce = this.guestEntry(t, idx);
    const perm = Number(tce & 3n);
    if ((access === 'read' && !(perm & 1)) || (access === 'write' && !(perm & 2)) || (access !== undefined && perm === 0)) {
      return { ok: false, fault: 'no-permission' };
    }
    const mask = (1n << shift) - 1n;
    return { ok: true, gpa: (tce & ~mask) | (iova & mask), pageIova: iova & ~mask, pageSize: 1n << shift, perm };
  }

  /**
   * A device model's view of guest memory through LIOBN `liobn`: read(iova,
   * length) and write(iova, bytes), translated page by page when called (so
   * later PUTs take effect at once); a DmaFault, with nothing touched, when
   * any page has no window, no permission or no backed RAM behind it.
   */
  dma(liobn: bigint): DmaAccessor {
    return createDma(this, liobn);
  }

  /**
   * Calls `fn` synchronously with one map/unmap event per guest TCE written
   * by this VM's hypercalls (vcpu.hcall() and vm.hcall() on this thread; not
   * vCPUs run by workers), on LIOBN `liobn` or on any ('*'), in hypercall
   * order. Returns the unsubscribe function.
   */
  subscribe(liobn: bigint | '*', fn: IommuListener): () => void {
    return this.events.subscribe(liobn, fn);
  }

  /** Calls `fn` with a 'map' event for every present mapping (perm ≠ 0) of LIOBN `liobn`, in ascending IOVA. */
  replay(liobn: bigint, fn: IommuListener): void {
    replayMappings(this, liobn, fn);
  }

  /** Adds a PCI host bridge with its two DMA windows, the default one enabled (qemu profile; see PhbOptions). */
  addPhb(opts: PhbOptions): Phb {
    const p = new Phb(this, opts);
    this.phbs.push(p);
    return p;
  }

  /** Runs a guest DDW RTAS call by name (RTAS_DDW_CALLS) with u32 argument cells; returns the result cells, [status] on an error. */
  rtas(name: string, args: number[], nret: number): number[] {
    return rtasCall(this, name, args, nret);
  }

  /** vCPU `index`, created on first use, run by `thread` (default: a new thread of the VM's process). */
  vcpu(index: number, opts?: { thread?: Process }): Vcpu {
    v.int('index', index, 0, 4095);
    const o = v.options<{ thread: Process }>('opts', opts);
    if (o.thread !== undefined) {
      v.instance('opts.thread', o.thread, Process, 'a Process');
      if (o.thread.host !== this.host) throw new TypeError('vcpu: opts.thread belongs to another host');
    }
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
