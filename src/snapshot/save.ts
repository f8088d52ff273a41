// Taking a snapshot of a host, in each format: the JSON body with its
// non-zero pages (base64), the full binary image, an incremental one against
// a base, and the RAM-less one. A snapshot is a point-in-time copy of
// memory that running vCPUs change: pause every vCPU first (as QEMU stops
// its vCPUs before saving device state). An allocation in progress on
// another thread is detected (the allocator lock is held) and refused.
import { HdrView } from '../generated/views.js';
import { HEADER_BASE } from '../generated/layout.js';
import { describeHost, type StateSource } from './state.js';
import { encodeBody, type SnapshotBody } from './body.js';
import { nonZeroRuns, savedEnd, heapBlocks, PAGE, type Run } from './scan.js';
import { encodeBinary, parseBinary, diffRuns, F_INCREMENTAL, F_NO_RAM, type BinaryRun } from './binary.js';
import { SnapshotError } from './fsck/read.js';

/** Refuses to copy a memory whose allocator is in the middle of a change. */
function quiescent(host: StateSource): void {
  if (new HdrView(host.mem, HEADER_BASE).allocLock !== 0) {
    throw new Error('host.snapshot: an allocation is in progress on another thread; pause every vCPU before taking a snapshot');
  }
}

/** The JSON body of a snapshot of `host`: its state and the non-zero pages of linear memory up to the allocator's top. */
export function saveBody(host: StateSource): SnapshotBody {
  quiescent(host);
  const pages: [number, string][] = [];
  const u8 = host.mem.u8;
  for (const r of nonZeroRuns(host.mem, 0, savedEnd(host.mem))) {
    for (let off = r.off; off < r.off + r.len; off += PAGE) pages.push([off, Buffer.from(u8.buffer, u8.byteOffset + off, PAGE).toString('base64')]);
  }
  return encodeBody(describeHost(host), pages);
}

/** The metadata of a binary snapshot: the body without pages. */
function meta(host: StateSource): string {
  return JSON.stringify(encodeBody(describeHost(host), []));
}

const dataRuns = (runs: Run[]): BinaryRun[] => runs.map((r) => ({ ...r, zero: false }));

/** A full binary snapshot: the non-zero pages up to the allocator's top, stored as they are. */
export function saveBinary(host: StateSource): Uint8Array {
  quiescent(host);
  return encodeBinary({ flags: 0, meta: meta(host), mem: host.mem, runs: dataRuns(nonZeroRuns(host.mem, 0, savedEnd(host.mem))), blocks: [] });
}

/**
 * An incremental binary snapshot: the pages that differ from `base`, a full
 * binary snapshot of a host with the same memory size (normally an earlier
 * one of this host), restored with Host.restore(bytes, { base }).
 */
export function saveIncremental(host: StateSource, base: Uint8Array): Uint8Array {
  quiescent(host);
  let b;
  try {
    b = parseBinary(base, 'opts.since');
  } catch (e) {
    if (e instanceof SnapshotError) throw new TypeError(`host.snapshot: opts.since: ${e.message.replace(/^Host\.restore: /, '')}`);
    throw e;
  }
  if (b.flags !== 0) throw new TypeError('host.snapshot: opts.since must be a full binary snapshot (not incremental, not RAM-less)');
  const m = (b.meta as { memory?: { bytes?: unknown } }).memory;
  if (m?.bytes !== host.mem.byteLength) throw new TypeError(`host.snapshot: opts.since is a snapshot of a ${String(m?.bytes)}-byte memory, this host's is ${host.mem.byteLength}`);
  const runs = diffRuns(host.mem, b, savedEnd(host.mem), (from, to) => nonZeroRuns(host.mem, from, to));
  return encodeBinary({ flags: F_INCREMENTAL, meta: meta(host), mem: host.mem, runs, blocks: [], base: { metaCrc: b.metaCrc, dataCrc: b.dataCrc } });
}

/**
 * A RAM-less binary snapshot: the header page, every used block but guest
 * RAM (the backed mappings' blocks, stepped over unread), the free blocks'
 * links and the block list. Costs O(allocated state), not O(memory).
 */
export function saveRamless(host: StateSource): Uint8Array {
  quiescent(host);
  const ram = new Map<number, number>();
  for (const mm of host.mms) for (const m of mm.mappings) if (m.hostOff) ram.set(m.hostOff, Number(m.size));
  const blocks = heapBlocks(host.mem, ram);
  const runs: BinaryRun[] = [{ off: HEADER_BASE, len: HdrView.BYTES, zero: false }];
  for (const b of blocks) if (!b.free && !ram.has(b.start)) runs.push({ off: b.start, len: b.size, zero: false });
  return encodeBinary({ flags: F_NO_RAM, meta: meta(host), mem: host.mem, runs, blocks });
}
