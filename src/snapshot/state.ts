// A host's state outside linear memory, as typed data: what every snapshot
// format carries next to the memory image, what the restore checks
// (fsck/) and rebuilds (restore.ts), and what checkInvariants() checks a
// live host through. Descriptors are named by offset, objects by id or
// thread id, as in body.ts; 64-bit values are bigints here, hex strings in
// JSON. describeHost() reads it off a live host.
import type { HostContext, OwnerCheck, KernelEra } from '../core/context.js';
import type { HostMemory } from '../core/hostmem.js';
import type { Mm, Mapping } from '../kernel/mm.js';
import type { Task, FdTable } from '../kernel/task.js';
import type { IommuTable } from '../kernel/table.js';
import type { Group } from '../vfio/group.js';
import type { Container } from '../vfio/container.js';
import type { Vm } from '../vmm/vm.js';
import type { Phb } from '../vmm/rtas.js';

/** A run of host frames: hpa[k] = first − k · 2^pageShift for k < count (hostmem.allocFrames numbers a mapping's pages downwards). */
export type FrameRun = readonly [first: bigint, count: number];

/** One mmap'ed range of an address space. */
export interface MappingState {
  ua: bigint;
  size: bigint;
  pageShift: number;
  frames: FrameRun[];
  /** The linear-memory block holding its bytes (guest RAM); 0 when not backed. */
  hostOff: number;
}

/** An address space: its descriptor, mappings and named locked_vm charges. */
export interface MmState {
  id: number;
  desc: number;
  nextUa: bigint;
  mappings: MappingState[];
  charges: [string, bigint][];
}

/** A task. */
export interface ProcessState {
  pid: number;
  tid: number;
  mm: number;
  memlockLimit: bigint | null;
  /** Its descriptor table (files_struct): an index into HostState.fdTables. */
  files: number;
}

/** An IOMMU table (its descriptor and trees are in linear memory). */
export interface TableState {
  desc: number;
  busOffset: bigint;
  kernelBytes: bigint;
  v2: boolean;
  viewMm: number | null;
  /** References taken through the kernel-layer API (IommuTable.create, hold) and not yet released. */
  callerRefs: number;
}

/** An IOMMU group (tables by descriptor, 0 for none). */
export interface GroupState {
  id: number;
  tce32Start: bigint;
  tce32Size: bigint;
  pageShifts: number[];
  maxWindows: number;
  maxLevels: number;
  ddw: boolean;
  hostDmaMappings: number;
  owned: boolean;
  hostWindow: boolean;
  slots: number[];
  legacyTable: number;
}

/** A DMA window of a container (its table by descriptor, mms by id). */
export interface WindowState {
  startAddr: bigint;
  windowSize: bigint;
  pageShift: number;
  levels: number;
  table: number;
  chargedMm: number | null;
  tablePages: bigint;
}

/** A container (groups and mms by id, handles by thread id). */
export interface ContainerState {
  id: number;
  v2: boolean | null;
  enabled: boolean;
  defWindowPending: boolean;
  lockedPages: bigint;
  v1ChargedMm: number | null;
  mm: number | null;
  ownerPid: number;
  windows: (WindowState | null)[];
  groups: number[];
  prereg: { region: number; mm: number }[];
  fds: number[];
}

/** A PCI host bridge of a qemu-profile VM. */
export interface PhbState {
  buid: bigint;
  index: number;
  dma32Addr: bigint;
  dma32Size: bigint;
  dma64Addr: bigint;
  pageSizeMask: bigint;
  ddw: boolean;
  defWin: boolean[];
}

/** A guest-visible TCE table as the VM object lists it. */
export interface GuestTableState {
  liobn: bigint;
  desc: number;
  pageShift: number;
  offset: bigint;
  size: bigint;
  chargedPages: bigint;
}

/** A VM (descriptors by offset, processes by thread id). */
export interface VmState {
  desc: number;
  process: number;
  mm: number;
  profile: 'kvm' | 'qemu';
  memslots: { gpa: bigint; size: bigint; ua: bigint }[];
  tables: GuestTableState[];
  vcpus: { index: number; desc: number; thread: number }[];
  friendly: { desc: number; thread: number } | null;
  phbs: PhbState[];
  /** The VIO LIOBNs in TCE bypass (SpaprTceTable.bypass, which QEMU migrates per table). */
  bypass: bigint[];
}

/** The settings a host was created with. */
export interface OptionsState {
  ownerCheck: OwnerCheck;
  pidCheck: 'call' | 'entry';
  /** The kernel era, also in HDR.kernel for worker vCPUs. */
  kernel: KernelEra;
  engine: 'wasm' | 'native';
  pageShift: number;
  maxMemory: number;
  memlockLimit: bigint | null;
  pin: 'simulated' | 'host';
}

/** Everything of a host but the bytes of its linear memory. */
export interface HostState {
  options: OptionsState;
  counters: { lastId: number; lastTid: number };
  /** Bytes of linear memory. */
  memoryBytes: number;
  hostmem: { next: bigint; pins: [bigint, number][] };
  mms: MmState[];
  processes: ProcessState[];
  /**
   * The descriptor tables, numbered as processes[].files names them: for
   * each, the number of the table fork() copied it from (dup_fd), or null;
   * a table comes after the one it was copied from.
   */
  fdTables: (number | null)[];
  tables: TableState[];
  groups: GroupState[];
  containers: ContainerState[];
  vms: VmState[];
}

/** What a state is read off: a host's context and its objects (Host is one). */
export interface StateSource extends HostContext {
  readonly memlockLimit: bigint | null;
  readonly mms: Iterable<Mm>;
  readonly processes: ReadonlyMap<number, Task>;
  readonly tables: Iterable<IommuTable>;
  readonly groups: Iterable<Group>;
  readonly containers: Iterable<Container>;
  readonly vms: Iterable<Vm>;
}

/** The state of a live host. */
export function describeHost(host: StateSource): HostState {
  const files = numberFdTables(host.processes.values());
  return {
    options: { ownerCheck: host.ownerCheck, pidCheck: host.pidCheck, kernel: host.kernel, engine: host.engine.kind, pageShift: host.pageShift, maxMemory: host.mem.byteLength, memlockLimit: host.memlockLimit, pin: host.pinMode },
    counters: host.idCounters(),
    memoryBytes: host.mem.byteLength,
    hostmem: describeHostMemory(host.hostmem),
    mms: [...host.mms].map(describeMm),
    processes: [...host.processes.values()].map((p) => ({ pid: p.pid, tid: p.tid, mm: p.mm.id, memlockLimit: p.memlockLimit, files: files.number(p.files) })),
    fdTables: files.list,
    tables: [...host.tables].map(describeTable),
    groups: [...host.groups].map(describeGroup),
    containers: [...host.containers].map(describeContainer),
    vms: [...host.vms].map(describeVm),
  };
}

/**
 * Numbers the descriptor tables of `tasks` in the order they are first met,
 * each after the table it was copied from (so a restore can build them in
 * list order): `list` holds each table's parent number, or null.
 */
function numberFdTables(tasks: Iterable<Task>): { number(t: FdTable): number; list: (number | null)[] } {
  const ids = new Map<FdTable, number>();
  const list: (number | null)[] = [];
  const number = (t: FdTable): number => {
    // The unnumbered ancestors first, oldest first (a loop: a chain of forks may be long).
    const chain: FdTable[] = [];
    for (let a: FdTable | undefined = t; a && !ids.has(a); a = a.copiedFrom) chain.push(a);
    for (let i = chain.length - 1; i >= 0; i--) {
      const a = chain[i]!;
      ids.set(a, list.length);
      list.push(a.copiedFrom ? ids.get(a.copiedFrom)! : null);
    }
    return ids.get(t)!;
  };
  for (const t of tasks) number(t.files);
  return { number, list };
}

function describeHostMemory(h: HostMemory): HostState['hostmem'] {
  return { next: h.nextFrame, pins: h.pinnedPages() };
}

/** The frame runs of a mapping's page addresses. */
export function frameRuns(hpas: BigUint64Array, pageShift: number): FrameRun[] {
  const step = 1n << BigInt(pageShift);
  const runs: FrameRun[] = [];
  let first = 0n;
  let count = 0;
  let prev = 0n;
  for (const h of hpas) {
    if (count > 0 && h === prev - step) {
      count++;
    } else {
      if (count > 0) runs.push([first, count]);
      first = h;
      count = 1;
    }
    prev = h;
  }
  if (count > 0) runs.push([first, count]);
  return runs;
}

/** The page addresses of frame runs (the inverse of frameRuns). */
export function framesOf(runs: readonly FrameRun[], pageShift: number): BigUint64Array {
  const step = 1n << BigInt(pageShift);
  let n = 0;
  for (const [, c] of runs) n += c;
  const out = new BigUint64Array(n);
  let i = 0;
  for (const [first, c] of runs) {
    let h = first;
    for (let k = 0; k < c; k++, h -= step) out[i++] = h;
  }
  return out;
}

/** A mapping's frames never change after mmap, so their runs are computed once per mapping. */
const runsOf = new WeakMap<BigUint64Array, FrameRun[]>();

/** The page addresses of a restored mapping, built from `runs` (framesOf), with the runs remembered for its next snapshot. */
export function hpasOfRuns(runs: FrameRun[], pageShift: number): BigUint64Array {
  const hpas = framesOf(runs, pageShift);
  runsOf.set(hpas, runs);
  return hpas;
}

function describeMapping(m: Mapping): MappingState {
  let frames = runsOf.get(m.hpas);
  if (!frames) {
    frames = frameRuns(m.hpas, m.pageShift);
    runsOf.set(m.hpas, frames);
  }
  return { ua: m.ua, size: m.size, pageShift: m.pageShift, frames, hostOff: m.hostOff };
}

function describeMm(mm: Mm): MmState {
  return { id: mm.id, desc: mm.desc, nextUa: mm.nextUa, mappings: mm.mappings.map(describeMapping), charges: [...mm.charges] };
}

function describeTable(t: IommuTable): TableState {
  return { desc: t.desc, busOffset: t.busOffset, kernelBytes: t.kernelBytes, v2: t.v2, viewMm: t.viewMm?.id ?? null, callerRefs: t.callerRefs };
}

function describeGroup(g: Group): GroupState {
  return {
    id: g.id, tce32Start: g.tce32Start, tce32Size: g.tce32Size, pageShifts: [...g.pageShifts], maxWindows: g.maxWindows, maxLevels: g.maxLevels, ddw: g.ddw,
    hostDmaMappings: g.hostDmaMappings, owned: g.owned, hostWindow: g.hostWindow,
    slots: g.slots.map((t) => t?.desc ?? 0), legacyTable: g.legacyTable?.desc ?? 0,
  };
}

function describeContainer(c: Container): ContainerState {
  return {
    id: c.id, v2: c.v2 ?? null, enabled: c.enabled, defWindowPending: c.defWindowPending,
    lockedPages: c.lockedPages, v1ChargedMm: c.v1ChargedMm?.id ?? null, mm: c.mm?.id ?? null, ownerPid: c.ownerPid,
    windows: c.windows.map((w) => (w ? { startAddr: w.startAddr, windowSize: w.windowSize, pageShift: w.pageShift, levels: w.levels, table: w.table.desc, chargedMm: w.chargedMm?.id ?? null, tablePages: w.tablePages } : null)),
    groups: c.groups.map((g) => g.id),
    prereg: c.prereg.map((p) => ({ region: p.region.desc, mm: p.mm.id })),
    fds: [...c.fds].map((fd) => fd.process.tid),
  };
}

/** Subscribers are not state: they are the VMM's functions. */
function describeVm(vm: Vm): VmState {
  return {
    desc: vm.desc, process: vm.process.tid, mm: vm.mm.id, profile: vm.profile,
    memslots: vm.memslots.map((m) => ({ gpa: m.gpa, size: m.size, ua: m.ua })),
    tables: [...vm.tables.values()].map((t) => ({ liobn: t.liobn, desc: t.desc, pageShift: t.pageShift, offset: t.offset, size: t.size, chargedPages: t.chargedPages })),
    vcpus: [...vm.vcpus.values()].map((c) => ({ index: c.index, desc: c.desc, thread: c.thread.tid })),
    friendly: vm.friendly ? { desc: vm.friendly.desc, thread: vm.friendly.thread.tid } : null,
    phbs: vm.phbs.map(describePhb),
    bypass: [...vm.bypass],
  };
}

function describePhb(p: Phb): PhbState {
  return { buid: p.buid, index: p.index, dma32Addr: p.dma32Addr, dma32Size: p.dma32Size, dma64Addr: p.dma64Addr, pageSizeMask: p.pageSizeMask, ddw: p.ddw, defWin: [...p.defWin] };
}
