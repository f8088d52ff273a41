// The JSON form of a host's state (version 2 of the body): the state of
// state.ts with 64-bit values as hex strings, next to the linear memory's
// non-zero 4 KiB pages (base64). encodeBody() writes it; decodeBody() reads
// a body of version 1 or 2, checking the type and range of every field (the
// first checker of a restore: fsck/ checks the meaning). The binary format
// (binary.ts) carries the same body, its pages left empty, as metadata.
//
// Version 2 differs from version 1 in one field: a mapping's page addresses
// are frame runs (`frames: [[first, count], …]`, each run going down one page
// at a time, as hostmem numbers them) instead of one hex string per page, so
// the body of a host with 1 GiB of guest RAM is a few hundred bytes, not 300 KB.
//
// Both versions may carry three fields that snapshots taken before them lack,
// each read with the meaning those snapshots had: `options.kernel` (the
// kernel era; absent: '4.12', whose behaviour the library had, with 0 in
// HDR.kernel), `fdTables` with `processes[].files` (the descriptor tables;
// absent: one table per pid, none copied from another) and `vms[].bypass`
// (the VIO LIOBNs in TCE bypass, absent when none). `tables[].callerRefs`
// (references taken through the kernel-layer API) is written only when
// non-zero; absent, the table's count is its window's, legacy group's and
// KVM links' alone.
import { hex } from '../core/format.js';
import { arr, bool, has, hex64, int, nullable, obj, oneOf, pair, refuse, str, u32 } from './fsck/read.js';
import { frameRuns, type ContainerState, type FrameRun, type GroupState, type HostState, type MappingState, type MmState, type PhbState, type ProcessState, type VmState, type WindowState } from './state.js';

/** The version of the body encodeBody() writes. */
export const BODY_VERSION = 2;
/** The body versions decodeBody() reads. */
export const BODY_VERSIONS_READ = [1, 2] as const;

/** Size of the pages linear memory is saved in. */
export const PAGE = 4096;

/** A mapping in JSON: frame runs (version 2). */
export interface MappingJson { ua: string; size: string; pageShift: number; frames: [string, number][]; hostOff: number }

/** Everything a JSON snapshot holds besides its envelope. */
export interface SnapshotBody {
  options: { ownerCheck: string; pidCheck: string; kernel?: string; engine: string; pageShift: number; maxMemory: number; memlockLimit: string | null; pin: string };
  counters: { lastId: number; lastTid: number };
  /** The non-zero 4 KiB pages of linear memory, [offset, base64], ascending (empty in binary metadata). */
  memory: { bytes: number; pages: [number, string][] };
  hostmem: { next: string; pins: [string, number][] };
  mms: { id: number; desc: number; nextUa: string; mappings: MappingJson[]; charges: [string, string][] }[];
  processes: { pid: number; tid: number; mm: number; memlockLimit: string | null; files?: number }[];
  /** Descriptor tables, numbered as processes[].files names them: the number of the table each was copied from by fork(), or null. */
  fdTables?: (number | null)[];
  /** callerRefs: references taken through the kernel-layer API (IommuTable.create, hold); absent when none. */
  tables: { desc: number; busOffset: string; kernelBytes: string; v2: boolean; viewMm: number | null; callerRefs?: number }[];
  groups: {
    id: number; tce32Start: string; tce32Size: string; pageShifts: number[]; maxWindows: number; maxLevels: number; ddw: boolean;
    hostDmaMappings: number; owned: boolean; hostWindow: boolean; slots: number[]; legacyTable: number;
  }[];
  containers: {
    id: number; v2: boolean | null; enabled: boolean; defWindowPending: boolean; lockedPages: string; v1ChargedMm: number | null; mm: number | null; ownerPid: number;
    windows: ({ startAddr: string; windowSize: string; pageShift: number; levels: number; table: number; chargedMm: number | null; tablePages: string } | null)[];
    groups: number[]; prereg: { region: number; mm: number }[]; fds: number[];
  }[];
  vms: {
    desc: number; process: number; mm: number; profile: 'kvm' | 'qemu';
    memslots: { gpa: string; size: string; ua: string }[];
    tables: { liobn: string; desc: number; pageShift: number; offset: string; size: string; chargedPages: string }[];
    vcpus: { index: number; desc: number; thread: number }[];
    friendly: { desc: number; thread: number } | null;
    phbs: { buid: string; index: number; dma32Addr: string; dma32Size: string; dma64Addr: string; pageSizeMask: string; ddw: boolean; defWin: boolean[] }[];
    /** The VIO LIOBNs in TCE bypass; absent when none. */
    bypass?: string[];
  }[];
}

const hexOrNull = (x: bigint | null): string | null => (x === null ? null : hex(x));

/** The JSON body of a state and its memory pages. */
export function encodeBody(s: HostState, pages: [number, string][]): SnapshotBody {
  const o = s.options;
  return {
    options: { ownerCheck: o.ownerCheck, pidCheck: o.pidCheck, kernel: o.kernel, engine: o.engine, pageShift: o.pageShift, maxMemory: o.maxMemory, memlockLimit: hexOrNull(o.memlockLimit), pin: o.pin },
    counters: { lastId: s.counters.lastId, lastTid: s.counters.lastTid },
    memory: { bytes: s.memoryBytes, pages },
    hostmem: { next: hex(s.hostmem.next), pins: s.hostmem.pins.map(([p, n]) => [hex(p), n]) },
    mms: s.mms.map((m) => ({
      id: m.id, desc: m.desc, nextUa: hex(m.nextUa),
      mappings: m.mappings.map((x) => ({ ua: hex(x.ua), size: hex(x.size), pageShift: x.pageShift, frames: x.frames.map(([f, c]) => [hex(f), c]), hostOff: x.hostOff })),
      charges: m.charges.map(([k, v]) => [k, hex(v)]),
    })),
    processes: s.processes.map((p) => ({ pid: p.pid, tid: p.tid, mm: p.mm, memlockLimit: hexOrNull(p.memlockLimit), files: p.files })),
    fdTables: [...s.fdTables],
    tables: s.tables.map((t) => ({ desc: t.desc, busOffset: hex(t.busOffset), kernelBytes: hex(t.kernelBytes), v2: t.v2, viewMm: t.viewMm, ...(t.callerRefs ? { callerRefs: t.callerRefs } : {}) })),
    groups: s.groups.map((g) => ({ ...g, tce32Start: hex(g.tce32Start), tce32Size: hex(g.tce32Size), pageShifts: [...g.pageShifts], slots: [...g.slots] })),
    containers: s.containers.map((c) => ({
      ...c, lockedPages: hex(c.lockedPages),
      windows: c.windows.map((w) => (w ? { ...w, startAddr: hex(w.startAddr), windowSize: hex(w.windowSize), tablePages: hex(w.tablePages) } : null)),
      groups: [...c.groups], prereg: c.prereg.map((p) => ({ ...p })), fds: [...c.fds],
    })),
    vms: s.vms.map((v) => ({
      desc: v.desc, process: v.process, mm: v.mm, profile: v.profile,
      memslots: v.memslots.map((m) => ({ gpa: hex(m.gpa), size: hex(m.size), ua: hex(m.ua) })),
      tables: v.tables.map((t) => ({ liobn: hex(t.liobn), desc: t.desc, pageShift: t.pageShift, offset: hex(t.offset), size: hex(t.size), chargedPages: hex(t.chargedPages) })),
      vcpus: v.vcpus.map((c) => ({ ...c })),
      friendly: v.friendly ? { ...v.friendly } : null,
      phbs: v.phbs.map((p) => ({ buid: hex(p.buid), index: p.index, dma32Addr: hex(p.dma32Addr), dma32Size: hex(p.dma32Size), dma64Addr: hex(p.dma64Addr), pageSizeMask: hex(p.pageSizeMask), ddw: p.ddw, defWin: [...p.defWin] })),
      ...(v.bypass.length ? { bypass: v.bypass.map(hex) } : {}),
    })),
  };
}

// ---------------------------------------------------------------------------
// Decoding: the types and ranges of every field. Ids and descriptor offsets
// are u32 (they live in u32 fields of linear memory); 64-bit values hex.

const MAX_OBJECTS = 1 << 20;
const id = (v: unknown, f: string): number => int(v, f, 1, 0xffff_ffff);
const ptr = (v: unknown, f: string): number => u32(v, f);
const shift = (v: unknown, f: string): number => int(v, f, 0, 63);

/** A decoded body: its state, its memory pages, and whether it predates kernel eras (no options.kernel: HDR.kernel is 0 in its image). */
export interface DecodedBody {
  state: HostState;
  pages: [number, Buffer][];
  preEra: boolean;
}

/** The state and memory pages of a JSON body of `version` (1 or 2), every field's type and range checked. */
export function decodeBody(raw: unknown, version: number, root = 'body'): DecodedBody {
  const b = obj(raw, root, ['options', 'counters', 'memory', 'hostmem', 'mms', 'processes', 'tables', 'groups', 'containers', 'vms'], ['fdTables']);
  const o = obj(b.options, `${root}.options`, ['ownerCheck', 'pidCheck', 'engine', 'pageShift', 'maxMemory', 'memlockLimit', 'pin'], ['kernel']);
  const pageShift = int(o.pageShift, `${root}.options.pageShift`, 12, 16);
  if (pageShift !== 12 && pageShift !== 16) refuse(`${root}.options.pageShift`, `must be 12 or 16 (the PAGE_SHIFT of ppc64 hosts), got ${pageShift}`);
  const maxMemory = int(o.maxMemory, `${root}.options.maxMemory`, 1 << 20, 0x1_0000_0000 - 65536);
  if (maxMemory % 65536 !== 0) refuse(`${root}.options.maxMemory`, `must be a whole number of 64 KiB WebAssembly pages, got ${maxMemory}`);
  const options = {
    ownerCheck: oneOf(o.ownerCheck, `${root}.options.ownerCheck`, ['none', 'pid', 'mm', 'fork-close'] as const),
    pidCheck: oneOf(o.pidCheck, `${root}.options.pidCheck`, ['call', 'entry'] as const),
    // A snapshot from before eras behaved as 4.12 (the userspace view at the first map).
    kernel: has(o, 'kernel') ? oneOf(o.kernel, `${root}.options.kernel`, ['4.12', '4.19', '5.19'] as const) : '4.12',
    engine: oneOf(o.engine, `${root}.options.engine`, ['wasm', 'native'] as const),
    pageShift,
    maxMemory,
    memlockLimit: nullable(o.memlockLimit, (v) => hex64(v, `${root}.options.memlockLimit`)),
    pin: oneOf(o.pin, `${root}.options.pin`, ['simulated', 'host'] as const),
  };
  const c = obj(b.counters, `${root}.counters`, ['lastId', 'lastTid']);
  const counters = { lastId: int(c.lastId, `${root}.counters.lastId`, 0, 0xffff_fffe), lastTid: int(c.lastTid, `${root}.counters.lastTid`, 999, 0xffff_fffe) };
  const m = obj(b.memory, `${root}.memory`, ['bytes', 'pages']);
  const memoryBytes = int(m.bytes, `${root}.memory.bytes`, 0, 0x1_0000_0000);
  if (memoryBytes !== maxMemory) refuse(`${root}.memory.bytes`, `must equal options.maxMemory (${maxMemory}), got ${memoryBytes}`);
  const pages = decodePages(m.pages, `${root}.memory.pages`, memoryBytes);
  const h = obj(b.hostmem, `${root}.hostmem`, ['next', 'pins']);
  const seen = new Set<bigint>();
  const hostmem = {
    next: hex64(h.next, `${root}.hostmem.next`),
    pins: arr(h.pins, `${root}.hostmem.pins`).map((p, i) => {
      const f = `${root}.hostmem.pins[${i}]`;
      const [page, n] = pair(p, f);
      const pg = hex64(page, `${f}[0]`);
      if (pg >= 1n << (64n - BigInt(pageShift))) refuse(`${f}[0]`, `page ${hex(pg)} is past the 64-bit physical address space`);
      if (seen.has(pg)) refuse(`${f}[0]`, `page ${hex(pg)} appears twice`);
      seen.add(pg);
      return [pg, int(n, `${f}[1]`, 1, 0x7fff_ffff)] as [bigint, number];
    }),
  };
  const { processes, fdTables } = decodeProcesses(b, root);
  const state: HostState = {
    options, counters, memoryBytes, hostmem,
    mms: arr(b.mms, `${root}.mms`, MAX_OBJECTS).map((x, i) => decodeMm(x, `${root}.mms[${i}]`, version)),
    processes,
    fdTables,
    tables: arr(b.tables, `${root}.tables`, MAX_OBJECTS).map((x, i) => {
      const f = `${root}.tables[${i}]`;
      const t = obj(x, f, ['desc', 'busOffset', 'kernelBytes', 'v2', 'viewMm'], ['callerRefs']);
      const callerRefs = has(t, 'callerRefs') ? int(t.callerRefs, `${f}.callerRefs`, 1, 0xffffffff) : 0;
      return { desc: ptr(t.desc, `${f}.desc`), busOffset: hex64(t.busOffset, `${f}.busOffset`), kernelBytes: hex64(t.kernelBytes, `${f}.kernelBytes`), v2: bool(t.v2, `${f}.v2`), viewMm: nullable(t.viewMm, (v) => id(v, `${f}.viewMm`)), callerRefs };
    }),
    groups: arr(b.groups, `${root}.groups`, MAX_OBJECTS).map((x, i) => decodeGroup(x, `${root}.groups[${i}]`)),
    containers: arr(b.containers, `${root}.containers`, MAX_OBJECTS).map((x, i) => decodeContainer(x, `${root}.containers[${i}]`)),
    vms: arr(b.vms, `${root}.vms`, MAX_OBJECTS).map((x, i) => decodeVm(x, `${root}.vms[${i}]`)),
  };
  return { state, pages, preEra: !has(o, 'kernel') };
}

/**
 * The tasks and their descriptor tables. With `fdTables`, every task names
 * one (`files`); without (a snapshot from before tables were saved), none
 * does, and each pid gets a table of its own that its threads share, as
 * those versions had no other tie between tasks.
 */
function decodeProcesses(b: Record<string, unknown>, root: string): { processes: ProcessState[]; fdTables: (number | null)[] } {
  const saved = has(b, 'fdTables');
  const fdTables = saved
    ? arr(b.fdTables, `${root}.fdTables`, MAX_OBJECTS).map((t, i) => nullable(t, (v) => int(v, `${root}.fdTables[${i}]`, 0, MAX_OBJECTS - 1)))
    : [];
  const byPid = new Map<number, number>();
  const processes = arr(b.processes, `${root}.processes`, MAX_OBJECTS).map((x, i) => {
    const f = `${root}.processes[${i}]`;
    const p = obj(x, f, ['pid', 'tid', 'mm', 'memlockLimit'], ['files']);
    if (saved !== has(p, 'files')) refuse(`${f}.files`, saved ? 'is missing (the body has fdTables: every task names its table)' : 'names a descriptor table, but the body has no fdTables');
    const pid = id(p.pid, `${f}.pid`);
    let files: number;
    if (saved) files = int(p.files, `${f}.files`, 0, MAX_OBJECTS - 1);
    else {
      files = byPid.get(pid) ?? fdTables.length;
      if (!byPid.has(pid)) {
        byPid.set(pid, files);
        fdTables.push(null);
      }
    }
    return { pid, tid: id(p.tid, `${f}.tid`), mm: id(p.mm, `${f}.mm`), memlockLimit: nullable(p.memlockLimit, (v) => hex64(v, `${f}.memlockLimit`)), files };
  });
  return { processes, fdTables };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodePages(v: unknown, field: string, bytes: number): [number, Buffer][] {
  let last = -1;
  return arr(v, field, Math.ceil(bytes / PAGE)).map((p, i) => {
    const [off, data] = pair(p, `${field}[${i}]`);
    const at = int(off, `${field}[${i}][0]`, 0, bytes - PAGE);
    if (at % PAGE !== 0) refuse(`${field}[${i}][0]`, `must be a multiple of ${PAGE}, got ${at}`);
    if (at <= last) refuse(`${field}[${i}][0]`, `pages must be in ascending order without repeats (${at} after ${last})`);
    last = at;
    const s = str(data, `${field}[${i}][1]`, 6000);
    const buf = BASE64.test(s) ? Buffer.from(s, 'base64') : undefined;
    if (!buf || buf.length !== PAGE || buf.toString('base64') !== s) refuse(`${field}[${i}][1]`, `must be the base64 of exactly ${PAGE} bytes`);
    return [at, buf] as [number, Buffer];
  });
}

function decodeMapping(x: unknown, f: string, version: number): MappingState {
  const m = obj(x, f, ['ua', 'size', 'pageShift', version === 1 ? 'hpas' : 'frames', 'hostOff']);
  const pageShift = int(m.pageShift, `${f}.pageShift`, 12, 34);
  let frames: FrameRun[];
  if (version === 1) {
    const hpas = arr(m.hpas, `${f}.hpas`).map((h, i) => hex64(h, `${f}.hpas[${i}]`));
    frames = frameRuns(BigUint64Array.from(hpas), pageShift);
  } else {
    frames = arr(m.frames, `${f}.frames`).map((r, i) => {
      const [first, count] = pair(r, `${f}.frames[${i}]`);
      return [hex64(first, `${f}.frames[${i}][0]`), int(count, `${f}.frames[${i}][1]`, 1, 0x7fff_ffff)] as FrameRun;
    });
  }
  return { ua: hex64(m.ua, `${f}.ua`), size: hex64(m.size, `${f}.size`), pageShift, frames, hostOff: ptr(m.hostOff, `${f}.hostOff`) };
}

function decodeMm(x: unknown, f: string, version: number): MmState {
  const m = obj(x, f, ['id', 'desc', 'nextUa', 'mappings', 'charges']);
  return {
    id: id(m.id, `${f}.id`),
    desc: ptr(m.desc, `${f}.desc`),
    nextUa: hex64(m.nextUa, `${f}.nextUa`),
    mappings: arr(m.mappings, `${f}.mappings`).map((y, i) => decodeMapping(y, `${f}.mappings[${i}]`, version)),
    charges: arr(m.charges, `${f}.charges`).map((c, i) => {
      const [k, v] = pair(c, `${f}.charges[${i}]`);
      return [str(k, `${f}.charges[${i}][0]`, 64), hex64(v, `${f}.charges[${i}][1]`)] as [string, bigint];
    }),
  };
}

function decodeGroup(x: unknown, f: string): GroupState {
  const g = obj(x, f, ['id', 'tce32Start', 'tce32Size', 'pageShifts', 'maxWindows', 'maxLevels', 'ddw', 'hostDmaMappings', 'owned', 'hostWindow', 'slots', 'legacyTable']);
  const slots = arr(g.slots, `${f}.slots`, 2).map((s, i) => ptr(s, `${f}.slots[${i}]`));
  if (slots.length !== 2) refuse(`${f}.slots`, `must have 2 elements (the group's two window slots), got ${slots.length}`);
  return {
    id: id(g.id, `${f}.id`),
    tce32Start: hex64(g.tce32Start, `${f}.tce32Start`),
    tce32Size: hex64(g.tce32Size, `${f}.tce32Size`),
    pageShifts: arr(g.pageShifts, `${f}.pageShifts`, 64).map((s, i) => int(s, `${f}.pageShifts[${i}]`, 12, 40)),
    maxWindows: int(g.maxWindows, `${f}.maxWindows`, 0, 2),
    maxLevels: int(g.maxLevels, `${f}.maxLevels`, 1, 5),
    ddw: bool(g.ddw, `${f}.ddw`),
    hostDmaMappings: int(g.hostDmaMappings, `${f}.hostDmaMappings`, 0, 0x7fff_ffff),
    owned: bool(g.owned, `${f}.owned`),
    hostWindow: bool(g.hostWindow, `${f}.hostWindow`),
    slots,
    legacyTable: ptr(g.legacyTable, `${f}.legacyTable`),
  };
}

function decodeWindow(x: unknown, f: string): WindowState {
  const w = obj(x, f, ['startAddr', 'windowSize', 'pageShift', 'levels', 'table', 'chargedMm', 'tablePages']);
  return {
    startAddr: hex64(w.startAddr, `${f}.startAddr`),
    windowSize: hex64(w.windowSize, `${f}.windowSize`),
    pageShift: shift(w.pageShift, `${f}.pageShift`),
    levels: int(w.levels, `${f}.levels`, 1, 5),
    table: ptr(w.table, `${f}.table`),
    chargedMm: nullable(w.chargedMm, (v) => id(v, `${f}.chargedMm`)),
    tablePages: hex64(w.tablePages, `${f}.tablePages`),
  };
}

function decodeContainer(x: unknown, f: string): ContainerState {
  const c = obj(x, f, ['id', 'v2', 'enabled', 'defWindowPending', 'lockedPages', 'v1ChargedMm', 'mm', 'ownerPid', 'windows', 'groups', 'prereg', 'fds']);
  const windows = arr(c.windows, `${f}.windows`, 2).map((w, i) => nullable(w, (v) => decodeWindow(v, `${f}.windows[${i}]`)));
  if (windows.length !== 2) refuse(`${f}.windows`, `must have 2 elements (the container's two window slots), got ${windows.length}`);
  return {
    id: id(c.id, `${f}.id`),
    v2: nullable(c.v2, (v) => bool(v, `${f}.v2`)),
    enabled: bool(c.enabled, `${f}.enabled`),
    defWindowPending: bool(c.defWindowPending, `${f}.defWindowPending`),
    lockedPages: hex64(c.lockedPages, `${f}.lockedPages`),
    v1ChargedMm: nullable(c.v1ChargedMm, (v) => id(v, `${f}.v1ChargedMm`)),
    mm: nullable(c.mm, (v) => id(v, `${f}.mm`)),
    ownerPid: u32(c.ownerPid, `${f}.ownerPid`),
    windows,
    groups: arr(c.groups, `${f}.groups`).map((g, i) => id(g, `${f}.groups[${i}]`)),
    prereg: arr(c.prereg, `${f}.prereg`).map((p, i) => {
      const q = obj(p, `${f}.prereg[${i}]`, ['region', 'mm']);
      return { region: ptr(q.region, `${f}.prereg[${i}].region`), mm: id(q.mm, `${f}.prereg[${i}].mm`) };
    }),
    fds: arr(c.fds, `${f}.fds`).map((t, i) => id(t, `${f}.fds[${i}]`)),
  };
}

function decodePhb(x: unknown, f: string): PhbState {
  const p = obj(x, f, ['buid', 'index', 'dma32Addr', 'dma32Size', 'dma64Addr', 'pageSizeMask', 'ddw', 'defWin']);
  const defWin = arr(p.defWin, `${f}.defWin`, 2).map((d, i) => bool(d, `${f}.defWin[${i}]`));
  if (defWin.length !== 2) refuse(`${f}.defWin`, `must have 2 elements (one per window), got ${defWin.length}`);
  return {
    buid: hex64(p.buid, `${f}.buid`), index: int(p.index, `${f}.index`, 0, 0x7fffff),
    dma32Addr: hex64(p.dma32Addr, `${f}.dma32Addr`), dma32Size: hex64(p.dma32Size, `${f}.dma32Size`), dma64Addr: hex64(p.dma64Addr, `${f}.dma64Addr`),
    pageSizeMask: hex64(p.pageSizeMask, `${f}.pageSizeMask`), ddw: bool(p.ddw, `${f}.ddw`), defWin,
  };
}

function decodeVm(x: unknown, f: string): VmState {
  const v = obj(x, f, ['desc', 'process', 'mm', 'profile', 'memslots', 'tables', 'vcpus', 'friendly', 'phbs'], ['bypass']);
  // Absent when no table is in bypass, so a present list is never empty; at most one entry per guest table.
  const bypass = has(v, 'bypass') ? arr(v.bypass, `${f}.bypass`, MAX_OBJECTS).map((l, i) => hex64(l, `${f}.bypass[${i}]`)) : [];
  if (has(v, 'bypass') && bypass.length === 0) refuse(`${f}.bypass`, 'is absent when no table is in bypass, never an empty list');
  return {
    desc: ptr(v.desc, `${f}.desc`),
    process: id(v.process, `${f}.process`),
    mm: id(v.mm, `${f}.mm`),
    profile: oneOf(v.profile, `${f}.profile`, ['kvm', 'qemu'] as const),
    memslots: arr(v.memslots, `${f}.memslots`).map((s, i) => {
      const m = obj(s, `${f}.memslots[${i}]`, ['gpa', 'size', 'ua']);
      return { gpa: hex64(m.gpa, `${f}.memslots[${i}].gpa`), size: hex64(m.size, `${f}.memslots[${i}].size`), ua: hex64(m.ua, `${f}.memslots[${i}].ua`) };
    }),
    tables: arr(v.tables, `${f}.tables`).map((t, i) => {
      const g = `${f}.tables[${i}]`;
      const q = obj(t, g, ['liobn', 'desc', 'pageShift', 'offset', 'size', 'chargedPages']);
      return { liobn: hex64(q.liobn, `${g}.liobn`), desc: ptr(q.desc, `${g}.desc`), pageShift: shift(q.pageShift, `${g}.pageShift`), offset: hex64(q.offset, `${g}.offset`), size: hex64(q.size, `${g}.size`), chargedPages: hex64(q.chargedPages, `${g}.chargedPages`) };
    }),
    vcpus: arr(v.vcpus, `${f}.vcpus`, 4096).map((c, i) => {
      const q = obj(c, `${f}.vcpus[${i}]`, ['index', 'desc', 'thread']);
      return { index: int(q.index, `${f}.vcpus[${i}].index`, 0, 4095), desc: ptr(q.desc, `${f}.vcpus[${i}].desc`), thread: id(q.thread, `${f}.vcpus[${i}].thread`) };
    }),
    friendly: nullable(v.friendly, (y) => {
      const q = obj(y, `${f}.friendly`, ['desc', 'thread']);
      return { desc: ptr(q.desc, `${f}.friendly.desc`), thread: id(q.thread, `${f}.friendly.thread`) };
    }),
    phbs: arr(v.phbs, `${f}.phbs`, 1024).map((p, i) => decodePhb(p, `${f}.phbs[${i}]`)),
    bypass,
  };
}
