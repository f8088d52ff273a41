// Restoring a host: the settings to create it with, then its objects rebuilt
// over the saved bytes, each through its own constructor (which checks the
// saved arguments again) adopting its saved descriptor. The caller (Host)
// creates the bare host and keeps the objects handed to `adopt`.
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
import type { SnapshotBody, MmState, TableState, GroupState, ContainerState, VmState } from './body.js';

/** Where the restored objects go: the host keeps its lists, and makes its own kind of process. */
export interface Adopt {
  mm(mm: Mm): void;
  process(pid: number, tid: number, mm: Mm, memlockLimit: bigint | null, files: FdTable): Task;
  group(g: Group): void;
  container(c: Container): void;
  vm(vm: Vm): void;
}

/** The settings and memlock limit of the host a body was taken of. */
export function settingsOf(body: SnapshotBody): { settings: HostSettings; memlockLimit: bigint | null } {
  const o = body.options;
  return {
    settings: {
      ownerCheck: o.ownerCheck as HostSettings['ownerCheck'], pidCheck: o.pidCheck as HostSettings['pidCheck'],
      // a snapshot from before eras behaved as 4.12 (the view at the first map)
      kernel: (o.kernel ?? '4.12') as HostSettings['kernel'], engine: o.engine as HostSettings['engine'],
      pageShift: o.pageShift, maxMemory: o.maxMemory, pin: o.pin as HostSettings['pin'],
    },
    memlockLimit: o.memlockLimit === null ? null : BigInt(o.memlockLimit),
  };
}

/** Rebuilds every object of `body` in `host`, a fresh host created with settingsOf(body). */
export function restoreBody(host: HostContext, body: SnapshotBody, adopt: Adopt): void {
  if (host.mem.byteLength !== body.memory.bytes) throw new Error('Host.restore: could not recreate a memory of the saved size');
  for (const [off, data] of body.memory.pages) host.mem.u8.set(Buffer.from(data, 'base64'), off);
  host.setIdCounters(body.counters);
  host.hostmem.reset(BigInt(body.hostmem.next), body.hostmem.pins.map(([page, n]) => [BigInt(page), n] as const));
  const mms = new Map<number, Mm>();
  for (const s of body.mms) {
    const mm = restoreMm(host, s);
    mms.set(mm.id, mm);
    adopt.mm(mm);
  }
  const processes = new Map<number, Task>();
  const files = restoreFdTables(body);
  for (const p of body.processes) {
    processes.set(p.tid, adopt.process(p.pid, p.tid, mms.get(p.mm)!, p.memlockLimit === null ? null : BigInt(p.memlockLimit), files(p)));
  }
  const tables = new Map<number, IommuTable>();
  for (const s of body.tables) tables.set(s.desc, restoreTable(host, s, mms));
  const groups = new Map<number, Group>();
  for (const s of body.groups) {
    const g = restoreGroup(host, s, tables);
    groups.set(g.id, g);
    adopt.group(g);
  }
  for (const s of body.containers) adopt.container(restoreContainer(host, s, { mms, groups, tables, processes }));
  for (const s of body.vms) adopt.vm(restoreVm(s, processes));
}

/** The mm over a memory already holding its descriptor and backed bytes. */
function restoreMm(host: HostContext, s: MmState): Mm {
  const mm = new Mm(host, s.id, s.desc);
  mm.nextUa = BigInt(s.nextUa);
  for (const m of s.mappings) {
    const size = BigInt(m.size);
    const bytes = m.hostOff ? host.mem.bytes(m.hostOff, Number(size)) : undefined;
    mm.mappings.push({ ua: BigInt(m.ua), size, pageShift: m.pageShift, hpas: BigUint64Array.from(m.hpas, (x) => BigInt(x)), bytes, hostOff: m.hostOff });
  }
  for (const [k, v] of s.charges) mm.charges.set(k, BigInt(v));
  return mm;
}

/** The table over a memory already holding its descriptor and trees; listed live again. */
function restoreTable(host: HostContext, s: TableState, mms: Map<number, Mm>): IommuTable {
  const t = new IommuTable(host, s.desc, BigInt(s.busOffset), BigInt(s.kernelBytes), s.v2, s.viewMm === null ? undefined : mms.get(s.viewMm));
  liveTables(host).add(t);
  return t;
}

function restoreGroup(host: HostContext, s: GroupState, tables: Map<number, IommuTable>): Group {
  const opts = { tce32Start: BigInt(s.tce32Start), tce32Size: BigInt(s.tce32Size), pageShifts: [...s.pageShifts], maxWindows: s.maxWindows, maxLevels: s.maxLevels, ddw: s.ddw };
  const g = new Group(host, s.id, opts, s.legacyTable ? tables.get(s.legacyTable) : undefined);
  g.hostDmaMappings = s.hostDmaMappings;
  g.owned = s.owned;
  g.hostWindow = s.hostWindow;
  s.slots.forEach((d, i) => (g.slots[i] = d ? tables.get(d) : undefined));
  return g;
}

/**
 * The descriptor tables of the saved processes, their fork() ancestry kept.
 * A snapshot from before tables were saved gives each pid one table (its
 * threads share it), as those versions had no other tie between tasks.
 */
function restoreFdTables(body: SnapshotBody): (p: SnapshotBody['processes'][number]) => FdTable {
  const saved = body.fdTables;
  if (saved) {
    const tables: FdTable[] = [];
    for (const parent of saved) tables.push(new FdTable(parent === null ? undefined : tables[parent]));
    return (p) => tables[p.files ?? -1] ?? new FdTable();
  }
  const byPid = new Map<number, FdTable>();
  return (p) => {
    let t = byPid.get(p.pid);
    if (!t) byPid.set(p.pid, (t = new FdTable()));
    return t;
  };
}

/** The container, with new handles for the processes that held it open. */
function restoreContainer(host: HostContext, s: ContainerState, ctx: { mms: Map<number, Mm>; groups: Map<number, Group>; tables: Map<number, IommuTable>; processes: Map<number, Task> }): Container {
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
  for (const tid of s.fds) c.open(ctx.processes.get(tid)!);
  return c;
}

/** The VM over a memory already holding its descriptors, guest tables and register blocks. */
function restoreVm(s: VmState, processes: Map<number, Task>): Vm {
  const vm = new Vm(processes.get(s.process)!, s.profile, s.desc);
  for (const m of s.memslots) vm.memslots.push({ gpa: BigInt(m.gpa), size: BigInt(m.size), ua: BigInt(m.ua) });
  for (const t of s.tables) vm.tables.set(BigInt(t.liobn), { liobn: BigInt(t.liobn), desc: t.desc, pageShift: t.pageShift, offset: BigInt(t.offset), size: BigInt(t.size), chargedPages: BigInt(t.chargedPages) });
  for (const c of s.vcpus) vm.vcpus.set(c.index, new Vcpu(vm, c.index, processes.get(c.thread)!, c.desc));
  if (s.friendly) vm.friendly = new Vcpu(vm, -1 >>> 0, processes.get(s.friendly.thread)!, s.friendly.desc);
  for (const p of s.phbs) {
    const opts = { buid: BigInt(p.buid), index: p.index, dma32: { addr: BigInt(p.dma32Addr), size: BigInt(p.dma32Size) }, dma64Addr: BigInt(p.dma64Addr), pageSizeMask: BigInt(p.pageSizeMask), ddw: p.ddw };
    vm.phbs.push(new Phb(vm, opts, vm.phbs, { defWin: p.defWin }));
  }
  for (const l of s.bypass ?? []) vm.bypass.add(BigInt(l));
  return vm;
}
