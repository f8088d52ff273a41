// Snapshot and restore of a whole host. The linear memory is saved as its
// non-zero 4 KiB pages (descriptors, tables, views, guest tables, guest RAM
// all live there), and the TypeScript objects around it as plain data that
// names descriptors by offset and objects by id. A restore rebuilds the same
// objects over the same bytes, so every later answer is the original's.
// JSON-safe: 64-bit values are hex strings. Versioned and checksummed: a
// snapshot of another version or a corrupted one is refused before anything
// is built.
import { createHash } from 'node:crypto';
import type { Host, HostOptions } from './host.js';
import { HostMemory, type HostMemoryState } from './hostmem.js';
import { Mm, type MmState } from './mm.js';
import { Process } from './process.js';
import { IommuTable, type TableState } from './table.js';
import { Group, type GroupState } from './group.js';
import { Container, type ContainerState } from './container.js';
import { Vm, type VmState } from './vm.js';
import { HEADER_BASE, HDR_ALLOC_TOP } from './generated/layout.js';

/** The format name and version every snapshot carries. */
export const SNAPSHOT_FORMAT = 'spapr-tce-snapshot';
export const SNAPSHOT_VERSION = 1;

const PAGE = 4096;

/** Everything a snapshot holds besides its envelope. */
export interface SnapshotBody {
  options: { ownerCheck: string; pidCheck: string; engine: string; pageShift: number; maxMemory: number; memlockLimit: string | null; pin: string };
  counters: { lastId: number; lastTid: number };
  memory: { bytes: number; pages: [number, string][] };
  hostmem: HostMemoryState;
  mms: MmState[];
  processes: { pid: number; tid: number; mm: number; memlockLimit: string | null }[];
  tables: TableState[];
  groups: GroupState[];
  containers: ContainerState[];
  vms: VmState[];
}

/** A host snapshot: JSON-safe, versioned, checksummed. */
export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  version: number;
  /** sha256 of JSON.stringify(body). */
  checksum: string;
  body: SnapshotBody;
}

const digest = (body: unknown): string => createHash('sha256').update(JSON.stringify(body)).digest('hex');

/** Takes a snapshot (no vCPU may be running on another thread meanwhile). */
export function takeSnapshot(host: Host): Snapshot {
  const mem = host.mem;
  const top = Math.max(mem.getU32(HEADER_BASE + HDR_ALLOC_TOP), HEADER_BASE + PAGE);
  const words = new Uint32Array(mem.memory.buffer, 0, Math.ceil(top / PAGE) * (PAGE / 4));
  const pages: [number, string][] = [];
  for (let off = 0; off < top; off += PAGE) {
    const w0 = off / 4;
    for (let i = 0; i < PAGE / 4; i++) {
      if (words[w0 + i] !== 0) {
        pages.push([off, Buffer.from(mem.u8.subarray(off, off + PAGE)).toString('base64')]);
        break;
      }
    }
  }
  const hx = (x: bigint | null): string | null => (x === null ? null : '0x' + x.toString(16));
  const body: SnapshotBody = {
    options: { ownerCheck: host.ownerCheck, pidCheck: host.pidCheck, engine: host.engine.kind, pageShift: host.pageShift, maxMemory: mem.byteLength, memlockLimit: hx(host.memlockLimit), pin: host.pinMode },
    counters: host.idCounters(),
    memory: { bytes: mem.byteLength, pages },
    hostmem: host.hostmem.save(),
    mms: [...host.mms].map((m) => m.save()),
    processes: [...host.processes.values()].map((p) => ({ pid: p.pid, tid: p.tid, mm: p.mm.id, memlockLimit: hx(p.memlockLimit) })),
    tables: [...host.tables].map((t) => t.save()),
    groups: [...host.groups].map((g) => g.save()),
    containers: [...host.containers].map((c) => c.save()),
    vms: [...host.vms].map((v) => v.save()),
  };
  return { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, checksum: digest(body), body };
}

/** Checks a snapshot's envelope and checksum; throws a clear error before anything is built. */
export function checkSnapshot(s: unknown): Snapshot {
  if (typeof s !== 'object' || s === null) throw new TypeError('Host.restore: snapshot must be an object');
  const snap = s as Partial<Snapshot>;
  if (snap.format !== SNAPSHOT_FORMAT) throw new Error(`Host.restore: not a ${SNAPSHOT_FORMAT} (format: ${String(snap.format)})`);
  if (snap.version !== SNAPSHOT_VERSION) throw new Error(`Host.restore: snapshot version ${String(snap.version)} is not supported (this library reads version ${SNAPSHOT_VERSION})`);
  if (typeof snap.body !== 'object' || snap.body === null || typeof snap.checksum !== 'string') throw new Error('Host.restore: the snapshot has no body or checksum');
  if (digest(snap.body) !== snap.checksum) throw new Error('Host.restore: the snapshot is corrupted (its checksum does not match its contents)');
  return snap as Snapshot;
}

/** Rebuilds a host from a checked snapshot; `make` creates the bare host with the saved options. */
export function restoreSnapshot(snap: Snapshot, make: (o: HostOptions & { maxMemory: number }) => Host): Host {
  const b = snap.body;
  const o = b.options;
  const host = make({
    ownerCheck: o.ownerCheck as HostOptions['ownerCheck'], pidCheck: o.pidCheck as HostOptions['pidCheck'], engine: o.engine as HostOptions['engine'],
    pageShift: o.pageShift, maxMemory: o.maxMemory, memlockLimit: o.memlockLimit === null ? 'unlimited' : BigInt(o.memlockLimit), pin: o.pin as HostOptions['pin'],
  });
  if (host.mem.byteLength !== b.memory.bytes) throw new Error('Host.restore: could not recreate a memory of the saved size');
  for (const [off, data] of b.memory.pages) host.mem.u8.set(Buffer.from(data, 'base64'), off);
  host.restoreInternals(b.counters, HostMemory.restore(o.pageShift, b.hostmem));
  const mms = new Map<number, Mm>();
  for (const m of b.mms) {
    const mm = Mm.restore(host, m);
    mms.set(mm.id, mm);
    host.mms.add(mm);
  }
  const processes = new Map<number, Process>();
  for (const p of b.processes) processes.set(p.tid, new Process(host, p.pid, p.tid, mms.get(p.mm)!, p.memlockLimit === null ? null : BigInt(p.memlockLimit)));
  const tables = new Map<number, IommuTable>();
  for (const t of b.tables) tables.set(t.desc, IommuTable.restore(host, t, mms));
  const groups = new Map<number, Group>();
  for (const g of b.groups) {
    const group = Group.restore(host, g, tables);
    groups.set(group.id, group);
    host.groups.add(group);
  }
  for (const c of b.containers) Container.restore(host, c, { mms, groups, tables, processes });
  for (const v of b.vms) Vm.restore(host, v, { mms, processes });
  return host;
}
