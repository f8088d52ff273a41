// Rebuilding a host's objects from a state the fsck has accepted, over the
// memory image already loaded: each object through its own constructor,
// adopting its saved descriptor. Nothing here checks anything: by the time
// it runs, every reference resolves and every descriptor is what its object
// says (fsck/). The caller (Host) creates the bare host and keeps the
// objects handed to `adopt`.
import type { HostContext, HostSettings } from '../core/context.js';
import { Mm } from '../kernel/mm.js';
import { FdTable, type Task } from '../kernel/task.js';
import { IommuTable, liveTables } from '../kernel/table.js';
import { Region } from '../kernel/prereg.js';
import { Group } from '../vfio/group.js';
import { Container } from '../vfio/container.js';
import { Vcpu } from '../kvm/vcpu.js';
import { Vm } from '../vmm/vm.js';
import { Phb } from '../vmm/rtas.js';
import { hpasOfRuns, type HostState, type MmState, type TableState, type GroupState, type ContainerState, type VmState } from './state.js';

/** Where the restored objects go: the host keeps its lists, and makes its own kind of process. */
export interface Adopt {
  mm(mm: Mm): void;
  process(pid: number, tid: number, mm: Mm, memlockLimit: bigint | null, files: FdTable): Task;
  group(g: Group): void;
  container(c: Container): void;
  vm(vm: Vm): void;
}

/** The settings and memlock limit of the host a state was taken of. */
export function settingsOf(s: HostState): { settings: HostSettings; memlockLimit: bigint | null } {
  const o = s.options;
  return {
    settings: { ownerCheck: o.ownerCheck, pidCheck: o.pidCheck, kernel: o.kernel, engine: o.engine, pageShift: o.pageShift, maxMemory: o.maxMemory, pin: o.pin },
    memlockLimit: o.memlockLimit,
  };
}

/** Rebuilds every object of `s` in `host`, whose memory holds the checked image. */
export function restoreObjects(host: HostContext, s: HostState, adopt: Adopt): void {
  host.setIdCounters(s.counters);
  host.hostmem.reset(s.hostmem.next, s.hostmem.pins);
  const mms = new Map<number, Mm>();
  for (const m of s.mms) {
    const mm = restoreMm(host, m);
    mms.set(mm.id, mm);
    adopt.mm(mm);
  }
  // Descriptor tables in list order: the table each was copied from comes before it, so fork() ancestry is kept.
  const files: FdTable[] = [];
  for (const parent of s.fdTables) files.push(new FdTable(parent === null ? undefined : files[parent]));
  const processes = new Map<number, Task>();
  for (const p of s.processes) processes.set(p.tid, adopt.process(p.pid, p.tid, mms.get(p.mm)!, p.memlockLimit, files[p.files]!));
  const tables = new Map<number, IommuTable>();
  for (const t of s.tables) tables.set(t.desc, restoreTable(host, t, mms));
  const groups = new Map<number, Group>();
  for (const gs of s.groups) {
    const g = restoreGroup(host, gs, tables);
    groups.set(g.id, g);
    adopt.group(g);
  }
  for (const c of s.containers) adopt.container(restoreContainer(host, c, { mms, groups, tables, processes }));
  for (const v of s.vms) adopt.vm(restoreVm(v, processes));
}

/** The mm over a memory already holding its descriptor and backed bytes. */
function restoreMm(host: HostContext, s: MmState): Mm {
  const mm = new Mm(host, s.id, s.desc);
  mm.nextUa = s.nextUa;
  for (const m of s.mappings) {
    const bytes = m.hostOff ? host.mem.bytes(m.hostOff, Number(m.size)) : undefined;
    mm.mappings.push({ ua: m.ua, size: m.size, pageShift: m.pageShift, hpas: hpasOfRuns(m.frames, m.pageShift), bytes, hostOff: m.hostOff });
  }
  for (const [k, v] of s.charges) mm.charges.set(k, v);
  return mm;
}

/** The table over a memory already holding its descriptor and trees; listed live again. */
function restoreTable(host: HostContext, s: TableState, mms: Map<number, Mm>): IommuTable {
  const t = new IommuTable(host, s.desc, s.busOffset, s.kernelBytes, s.v2, s.viewMm === null ? undefined : mms.get(s.viewMm), s.callerRefs);
  liveTables(host).add(t);
  return t;
}

function restoreGroup(host: HostContext, s: GroupState, tables: Map<number, IommuTable>): Group {
  const opts = { tce32Start: s.tce32Start, tce32Size: s.tce32Size, pageShifts: [...s.pageShifts], maxWindows: s.maxWindows, maxLevels: s.maxLevels, ddw: s.ddw };
  const g = new Group(host, s.id, opts, s.legacyTable ? tables.get(s.legacyTable) : undefined);
  g.hostDmaMappings = s.hostDmaMappings;
  g.owned = s.owned;
  g.hostWindow = s.hostWindow;
  s.slots.forEach((d, i) => (g.slots[i] = d ? tables.get(d) : undefined));
  return g;
}

/** The container, with new handles for the processes that held it open. */
function restoreContainer(host: HostContext, s: ContainerState, ctx: { mms: Map<number, Mm>; groups: Map<number, Group>; tables: Map<number, IommuTable>; processes: Map<number, Task> }): Container {
  const c = new Container(host, s.id);
  const mm = (id: number | null): Mm | undefined => (id === null ? undefined : ctx.mms.get(id));
  c.v2 = s.v2 ?? undefined;
  c.enabled = s.enabled;
  c.defWindowPending = s.defWindowPending;
  c.lockedPages = s.lockedPages;
  c.v1ChargedMm = mm(s.v1ChargedMm);
  c.mm = mm(s.mm);
  c.ownerPid = s.ownerPid;
  s.windows.forEach((w, i) => {
    c.windows[i] = w ? { startAddr: w.startAddr, windowSize: w.windowSize, pageShift: w.pageShift, levels: w.levels, table: ctx.tables.get(w.table)!, chargedMm: mm(w.chargedMm), tablePages: w.tablePages } : undefined;
  });
  for (const id of s.groups) {
    const g = ctx.groups.get(id)!;
    c.groups.push(g);
    g.container = c;
  }
  for (const p of s.prereg) c.prereg.push({ region: new Region(host, p.region), mm: mm(p.mm)! });
  for (const tid of s.fds) c.open(ctx.processes.get(tid)!);
  return c;
}

/** The VM over a memory already holding its descriptors, guest tables and register blocks. */
function restoreVm(s: VmState, processes: Map<number, Task>): Vm {
  const vm = new Vm(processes.get(s.process)!, s.profile, s.desc);
  for (const m of s.memslots) vm.memslots.push({ gpa: m.gpa, size: m.size, ua: m.ua });
  for (const t of s.tables) vm.tables.set(t.liobn, { ...t });
  for (const c of s.vcpus) vm.vcpus.set(c.index, new Vcpu(vm, c.index, processes.get(c.thread)!, c.desc));
  if (s.friendly) vm.friendly = new Vcpu(vm, -1 >>> 0, processes.get(s.friendly.thread)!, s.friendly.desc);
  for (const p of s.phbs) {
    const opts = { buid: p.buid, index: p.index, dma32: { addr: p.dma32Addr, size: p.dma32Size }, dma64Addr: p.dma64Addr, pageSizeMask: p.pageSizeMask, ddw: p.ddw };
    vm.phbs.push(new Phb(vm, opts, vm.phbs, { defWin: p.defWin }));
  }
  for (const l of s.bypass) vm.bypass.add(l);
  return vm;
}
