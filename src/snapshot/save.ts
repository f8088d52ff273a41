// Saving a host: every object kind's state as the body describes it
// (body.ts), next to the non-zero pages of linear memory. No vCPU may run on
// another thread meanwhile.
import type { HostContext } from '../core/context.js';
import type { HostMemory } from '../core/hostmem.js';
import type { Mm } from '../kernel/mm.js';
import type { Task, FdTable } from '../kernel/task.js';
import type { IommuTable } from '../kernel/table.js';
import type { Group } from '../vfio/group.js';
import type { Container } from '../vfio/container.js';
import type { Vm } from '../vmm/vm.js';
import type { Phb } from '../vmm/rtas.js';
import { hex } from '../core/format.js';
import type {
  SnapshotBody, HostMemoryState, MmState, TableState, GroupState, ContainerState, VmState, PhbState,
} from './body.js';

/** Size of the pages linear memory is saved in. */
export const PAGE = 4096;

/** What a snapshot is taken of: a host's context and its objects (Host is one). */
export interface SnapshotSource extends HostContext {
  readonly memlockLimit: bigint | null;
  readonly mms: Iterable<Mm>;
  readonly processes: ReadonlyMap<number, Task>;
  readonly tables: Iterable<IommuTable>;
  readonly groups: Iterable<Group>;
  readonly containers: Iterable<Container>;
  readonly vms: Iterable<Vm>;
}

const hexOrNull = (x: bigint | null): string | null => (x === null ? null : hex(x));

/** The body of a snapshot of `host`. */
export function saveBody(host: SnapshotSource): SnapshotBody {
  const mem = host.mem;
  const files = numberFdTables(host.processes.values());
  return {
    options: { ownerCheck: host.ownerCheck, pidCheck: host.pidCheck, kernel: host.kernel, engine: host.engine.kind, pageShift: host.pageShift, maxMemory: mem.byteLength, memlockLimit: hexOrNull(host.memlockLimit), pin: host.pinMode },
    counters: host.idCounters(),
    memory: { bytes: mem.byteLength, pages: savePages(host) },
    hostmem: saveHostMemory(host.hostmem),
    mms: [...host.mms].map(saveMm),
    processes: [...host.processes.values()].map((p) => ({ pid: p.pid, tid: p.tid, mm: p.mm.id, memlockLimit: hexOrNull(p.memlockLimit), files: files.number(p.files) })),
    fdTables: files.list,
    tables: [...host.tables].map(saveTable),
    groups: [...host.groups].map(saveGroup),
    containers: [...host.containers].map(saveContainer),
    vms: [...host.vms].map(saveVm),
  };
}

/** The non-zero pages of linear memory up to the allocator's top, base64. */
function savePages(host: HostContext): [number, string][] {
  const mem = host.mem;
  const top = Math.max(host.header.allocTop, host.header.at + PAGE);
  const words = mem.u32;
  const pages: [number, string][] = [];
  for (let off = 0; off < top; off += PAGE) {
    const w0 = off / 4;
    for (let i = 0; i < PAGE / 4; i++) {
      if (words[w0 + i] !== 0) {
        pages.push([off, Buffer.from(mem.bytes(off, PAGE)).toString('base64')]);
        break;
      }
    }
  }
  return pages;
}

function saveHostMemory(h: HostMemory): HostMemoryState {
  return { next: hex(h.nextFrame), pins: h.pinnedPages().map(([page, n]) => [hex(page), n]) };
}

function saveMm(mm: Mm): MmState {
  return {
    id: mm.id,
    desc: mm.desc,
    nextUa: hex(mm.nextUa),
    mappings: mm.mappings.map((m) => ({ ua: hex(m.ua), size: hex(m.size), pageShift: m.pageShift, hpas: [...m.hpas].map(hex), hostOff: m.hostOff })),
    charges: [...mm.charges].map(([k, v]) => [k, hex(v)]),
  };
}

function saveTable(t: IommuTable): TableState {
  return { desc: t.desc, busOffset: hex(t.busOffset), kernelBytes: hex(t.kernelBytes), v2: t.v2, viewMm: t.viewMm?.id ?? null };
}

function saveGroup(g: Group): GroupState {
  return {
    id: g.id, tce32Start: hex(g.tce32Start), tce32Size: hex(g.tce32Size),
    pageShifts: [...g.pageShifts], maxWindows: g.maxWindows, maxLevels: g.maxLevels, ddw: g.ddw,
    hostDmaMappings: g.hostDmaMappings, owned: g.owned, hostWindow: g.hostWindow,
    slots: g.slots.map((t) => t?.desc ?? 0), legacyTable: g.legacyTable?.desc ?? 0,
  };
}

function saveContainer(c: Container): ContainerState {
  return {
    id: c.id, v2: c.v2 ?? null, enabled: c.enabled, defWindowPending: c.defWindowPending,
    lockedPages: hex(c.lockedPages), v1ChargedMm: c.v1ChargedMm?.id ?? null, mm: c.mm?.id ?? null, ownerPid: c.ownerPid,
    windows: c.windows.map((w) => w ? { startAddr: hex(w.startAddr), windowSize: hex(w.windowSize), pageShift: w.pageShift, levels: w.levels, table: w.table.desc, chargedMm: w.chargedMm?.id ?? null, tablePages: hex(w.tablePages) } : null),
    groups: c.groups.map((g) => g.id),
    prereg: c.prereg.map((p) => ({ region: p.region.desc, mm: p.mm.id })),
    fds: [...c.fds].map((fd) => fd.process.tid),
  };
}

/** Subscribers are not saved: they are the VMM's functions. */
function saveVm(vm: Vm): VmState {
  return {
    desc: vm.desc, process: vm.process.tid, mm: vm.mm.id, profile: vm.profile,
    memslots: vm.memslots.map((m) => ({ gpa: hex(m.gpa), size: hex(m.size), ua: hex(m.ua) })),
    tables: [...vm.tables.values()].map((t) => ({ liobn: hex(t.liobn), desc: t.desc, pageShift: t.pageShift, offset: hex(t.offset), size: hex(t.size), chargedPages: hex(t.chargedPages) })),
    vcpus: [...vm.vcpus.values()].map((c) => ({ index: c.index, desc: c.desc, thread: c.thread.tid })),
    friendly: vm.friendly ? { desc: vm.friendly.desc, thread: vm.friendly.thread.tid } : null,
    phbs: vm.phbs.map(savePhb),
    ...(vm.bypass.size > 0 ? { bypass: [...vm.bypass].map(hex) } : {}),
  };
}

function savePhb(p: Phb): PhbState {
  return { buid: hex(p.buid), index: p.index, dma32Addr: hex(p.dma32Addr), dma32Size: hex(p.dma32Size), dma64Addr: hex(p.dma64Addr), pageSizeMask: hex(p.pageSizeMask), ddw: p.ddw, defWin: [...p.defWin] };
}

/** Numbers the descriptor tables of `tasks` (and the tables they were copied from): each entry of `list` is the number of its parent, or null. */
function numberFdTables(tasks: Iterable<Task>): { number(t: FdTable): number; list: (number | null)[] } {
  const ids = new Map<FdTable, number>();
  const list: (number | null)[] = [];
  const number = (t: FdTable): number => {
    let id = ids.get(t);
    if (id === undefined) {
      const parent = t.copiedFrom ? number(t.copiedFrom) : null;
      id = list.length;
      ids.set(t, id);
      list.push(parent);
    }
    return id;
  };
  for (const t of tasks) number(t.files);
  return { number, list };
}
