// The snapshot envelopes and what a restore reads from them. JSON: the body
// (body.ts) with its format name, version and checksum, JSON-safe as a
// whole; versions 1 and 2 are read. Binary: binary.ts. Either way the result
// is a checked state (types and ranges) and a loader of its memory image;
// meaning is checked by the fsck once the image is loaded. A restored host
// gives the same answers as the original, and after the same calls the same
// memory, because restore.ts rebuilds the same objects over the same bytes.
import { createHash } from 'node:crypto';
import type { LinearMemory } from '../core/memory.js';
import { BODY_VERSION, BODY_VERSIONS_READ, decodeBody, type SnapshotBody } from './body.js';
import { isBinary, parseBinary, F_INCREMENTAL, F_NO_RAM, BINARY_VERSION, type ParsedBinary } from './binary.js';
import { loadPages, loadRuns, loadRamless, type RamSource } from './image.js';
import type { Heap } from './fsck/heap.js';
import type { HostState } from './state.js';
import { refuse } from './fsck/read.js';
import { HdrView } from '../generated/views.js';
import { HEADER_BASE, KERNEL_4_12 } from '../generated/layout.js';

/** The format name every JSON snapshot carries. */
export const SNAPSHOT_FORMAT = 'spapr-tce-snapshot';
/** The version of JSON snapshots this library writes (that of the body). */
export const SNAPSHOT_VERSION = BODY_VERSION;

/** A host snapshot: JSON-safe, versioned, checksummed. */
export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  version: number;
  /** sha256 of JSON.stringify(body). */
  checksum: string;
  body: SnapshotBody;
}

const digest = (body: unknown): string => createHash('sha256').update(JSON.stringify(body)).digest('hex');

/** A body in its envelope. */
export function seal(body: SnapshotBody): Snapshot {
  return { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, checksum: digest(body), body };
}

/** Options of Host.restore. */
export interface RestoreOptions {
  /** The full binary snapshot an incremental one was taken against (host.snapshot({ format: 'binary', since: base })). */
  base?: Uint8Array;
  /** Guest RAM for a RAM-less snapshot: the bytes of each backed mapping (undefined: zeros). Default: zeros. */
  ram?: RamSource;
}

/** A snapshot read: its state (types and ranges checked) and the loader of its memory image into a fresh memory. */
export interface ReadSnapshot {
  state: HostState;
  /** Loads the image; returns the heap's blocks when the format lists them (RAM-less). */
  load(mem: LinearMemory): Heap | undefined;
}

/** Reads a snapshot of any format; refuses a wrong envelope, a corrupted one or a field of the wrong type before anything is built. */
export function readSnapshot(s: unknown, opts: RestoreOptions): ReadSnapshot {
  if (isBinary(s)) return readBinary(s, opts);
  if (s instanceof Uint8Array) refuse('snapshot', 'a Uint8Array that is not a spapr-tce binary snapshot (wrong magic)');
  if (typeof s !== 'object' || s === null) throw new TypeError('Host.restore: snapshot must be a snapshot object or a binary snapshot (Uint8Array)');
  if (opts.base !== undefined || opts.ram !== undefined) refuse('opts', 'base and ram are options of binary snapshots (incremental and RAM-less)');
  const snap = s as Partial<Snapshot>;
  if (snap.format !== SNAPSHOT_FORMAT) refuse('snapshot.format', `not a ${SNAPSHOT_FORMAT} (format: ${String(snap.format)})`);
  if (!(BODY_VERSIONS_READ as readonly unknown[]).includes(snap.version)) refuse('snapshot.version', `snapshot version ${String(snap.version)} is not supported (this library reads versions ${BODY_VERSIONS_READ.join(' and ')})`);
  if (typeof snap.body !== 'object' || snap.body === null || typeof snap.checksum !== 'string') refuse('snapshot', 'the snapshot has no body or checksum');
  if (digest(snap.body) !== snap.checksum) refuse('snapshot.checksum', 'the snapshot is corrupted (its checksum does not match its contents)');
  const { state, pages, preEra } = decodeBody(snap.body, snap.version!);
  return eraOf({ state, load: (mem) => void loadPages(mem, pages) }, preEra);
}

/**
 * A snapshot from before kernel eras (no options.kernel) has 0 in HDR.kernel,
 * which was padding then: its image gets the code of the era it restores as
 * ('4.12'). Any other value is left for the fsck to compare with the option.
 */
function eraOf(read: ReadSnapshot, preEra: boolean): ReadSnapshot {
  if (!preEra) return read;
  return {
    state: read.state,
    load: (mem) => {
      const heap = read.load(mem);
      const h = new HdrView(mem, HEADER_BASE);
      if (h.kernel === 0) h.kernel = KERNEL_4_12;
      return heap;
    },
  };
}

function readBinary(bytes: Uint8Array, opts: RestoreOptions): ReadSnapshot {
  const p = parseBinary(bytes, 'snapshot');
  const { state, pages, preEra } = decodeBody(p.meta, BODY_VERSION);
  return eraOf(readBinaryImage(p, state, pages, opts), preEra);
}

function readBinaryImage(p: ParsedBinary, state: HostState, pages: unknown[], opts: RestoreOptions): ReadSnapshot {
  if (pages.length) refuse('body.memory.pages', 'a binary snapshot carries its memory in runs, not in the metadata');
  if (p.flags & F_INCREMENTAL) {
    if (opts.base === undefined) refuse('opts.base', 'an incremental snapshot is restored over its base: Host.restore(bytes, { base })');
    const b = parseBinary(opts.base, 'opts.base');
    if (b.flags !== 0) refuse('opts.base', 'the base of an incremental snapshot is a full binary snapshot');
    if (b.metaCrc !== p.baseMetaCrc || b.dataCrc !== p.baseDataCrc) refuse('opts.base', 'is not the snapshot this incremental one was taken against (its checksums differ)');
    const bm = (b.meta as { memory?: { bytes?: unknown } }).memory;
    if (bm?.bytes !== state.memoryBytes) refuse('opts.base', 'is a snapshot of a memory of another size');
    if (opts.ram !== undefined) refuse('opts.ram', 'is an option of RAM-less snapshots');
    return { state, load: (mem) => void loadRuns(mem, p, b) };
  }
  if (opts.base !== undefined) refuse('opts.base', `this binary snapshot (version ${BINARY_VERSION}) is not incremental`);
  if (p.flags & F_NO_RAM) return { state, load: (mem) => loadRamless(mem, p, state, opts.ram) };
  if (opts.ram !== undefined) refuse('opts.ram', 'is an option of RAM-less snapshots; this one carries its RAM');
  return { state, load: (mem) => void loadRuns(mem, p) };
}
