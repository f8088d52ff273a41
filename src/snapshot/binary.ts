// The binary snapshot format: a 64-byte header, the body (body.ts, its
// pages empty) as UTF-8 JSON metadata, a table of memory runs, a table of
// heap blocks (RAM-less snapshots only), then the bytes of the data runs,
// stored as they are. All numbers little-endian.
//
//   0  magic "SPTCESNP"          32 dataBytes (u64)
//   8  version (1)               40 base's metaCrc  } incremental: which
//  12  flags: 1 incremental,     44 base's dataCrc  } base it applies to
//      2 RAM-less                48 metaCrc: crc32 of the metadata
//  16  metaBytes                 52 dataCrc: crc32 of everything after it
//  20  runCount                  56 (0)
//  24  blockCount                60 headerCrc: crc32 of bytes [0, 60)
//  28  (0)
//  64  metadata · runs: runCount × {off, len, kind (0 data, 1 zero), 0}
//      · blocks: blockCount × {start, size | 1 if free, prev, next} · data
//
// A full snapshot's runs are the non-zero 4 KiB pages up to the allocator's
// top; an incremental one's are the pages that differ from its base (kind 1
// where a page became zero), and it is restored over that base. A RAM-less
// snapshot stores the header page and every used block but guest RAM whole,
// the free blocks' list links, and the block list itself, from which the
// restore rebuilds the allocator's bitmaps: O(allocated state), never a look
// at guest RAM. The checksums catch accidents; the restore's fsck the rest.
import { crc32 } from './checksum.js';
import type { LinearMemory } from '../core/memory.js';
import { loadNative } from '../engine/native.js';
import { refuse } from './fsck/read.js';
import { memBuffer, pageIsZero, PAGE, type BlockRecord, type Run } from './scan.js';

/** The first bytes of every binary snapshot. */
export const BINARY_MAGIC = 'SPTCESNP';
/** The version of binary snapshots this library writes and reads (it carries body version 2). */
export const BINARY_VERSION = 1;
/** Header flag: an incremental snapshot, restored over its base. */
export const F_INCREMENTAL = 1;
/** Header flag: a RAM-less snapshot (guest RAM left out, the heap's blocks listed). */
export const F_NO_RAM = 2;

const HEADER = 64;
const RUN = 16;
const BLOCK = 16;
const KIND_DATA = 0;
const KIND_ZERO = 1;
/** Data is copied and checksummed in chunks that stay in the cache between the two. */
const CHUNK = 256 << 10;

/**
 * Asks for huge pages behind `view` when it is large (huge_pages.cc): a
 * snapshot or restore writes it whole, and on fresh memory the page faults,
 * one per 4 KiB page, would bound it. Without the addon, nothing.
 */
export function adviseHugePages(view: Uint8Array): void {
  if (view.length >= 4 << 20) loadNative()?.adviseHugePages?.(view);
}

/** A run of a binary snapshot: data stored in the snapshot, or (incremental) a range that became zero. */
export interface BinaryRun extends Run {
  zero: boolean;
}

/** A binary snapshot's parts, checked for shape and the header's and metadata's checksums (the data's is checked as it is copied: copyData). */
export interface ParsedBinary {
  bytes: Uint8Array;
  what: string;
  /** Where the run and block tables start: the data checksum covers [tablesAt, end). */
  tablesAt: number;
  /** Where the data of the first run starts. */
  dataStart: number;
  flags: number;
  meta: unknown;
  runs: BinaryRun[];
  blocks: BlockRecord[];
  /** Offset in `bytes` of each run's data (−1 for a zero run). */
  dataAt: number[];
  metaCrc: number;
  dataCrc: number;
  baseMetaCrc: number;
  baseDataCrc: number;
}

/** What encodeBinary writes: the metadata, the runs (data taken from `mem`), the blocks, and the base of an incremental. */
export interface BinaryParts {
  flags: number;
  meta: string;
  mem: LinearMemory;
  runs: BinaryRun[];
  blocks: BlockRecord[];
  base?: { metaCrc: number; dataCrc: number };
}

/** The bytes of a binary snapshot. */
export function encodeBinary(p: BinaryParts): Uint8Array {
  const meta = Buffer.from(p.meta, 'utf8');
  let dataBytes = 0;
  for (const r of p.runs) if (!r.zero) dataBytes += r.len;
  const tables = HEADER + meta.length;
  const dataStart = tables + p.runs.length * RUN + p.blocks.length * BLOCK;
  const out = new Uint8Array(dataStart + dataBytes);
  adviseHugePages(out);
  const dv = new DataView(out.buffer);
  out.set(meta, HEADER);
  let at = tables;
  for (const r of p.runs) {
    dv.setUint32(at, r.off, true);
    dv.setUint32(at + 4, r.len, true);
    dv.setUint32(at + 8, r.zero ? KIND_ZERO : KIND_DATA, true);
    at += RUN;
  }
  for (const b of p.blocks) {
    dv.setUint32(at, b.start, true);
    dv.setUint32(at + 4, b.size | (b.free ? 1 : 0), true);
    dv.setUint32(at + 8, b.free?.prev ?? 0, true);
    dv.setUint32(at + 12, b.free?.next ?? 0, true);
    at += BLOCK;
  }
  const u8 = p.mem.u8;
  let dataCrc = crc32(out.subarray(tables, at));
  for (const r of p.runs) {
    if (r.zero) continue;
    for (let k = 0; k < r.len; k += CHUNK) {
      const n = Math.min(CHUNK, r.len - k);
      out.set(u8.subarray(r.off + k, r.off + k + n), at);
      dataCrc = crc32(out.subarray(at, at + n), dataCrc);
      at += n;
    }
  }
  const metaCrc = crc32(meta);
  Buffer.from(out.buffer, 0, 8).write(BINARY_MAGIC, 'latin1');
  dv.setUint32(8, BINARY_VERSION, true);
  dv.setUint32(12, p.flags, true);
  dv.setUint32(16, meta.length, true);
  dv.setUint32(20, p.runs.length, true);
  dv.setUint32(24, p.blocks.length, true);
  dv.setBigUint64(32, BigInt(dataBytes), true);
  dv.setUint32(40, p.base?.metaCrc ?? 0, true);
  dv.setUint32(44, p.base?.dataCrc ?? 0, true);
  dv.setUint32(48, metaCrc, true);
  dv.setUint32(52, dataCrc, true);
  dv.setUint32(60, crc32(out.subarray(0, 60)), true);
  return out;
}

/** Whether `v` starts like a binary snapshot. */
export function isBinary(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length >= 8 && Buffer.from(v.buffer, v.byteOffset, 8).toString('latin1') === BINARY_MAGIC;
}

/** The header of a binary snapshot, checked (magic, version, flags, lengths, header checksum), without reading the rest. */
export function parseHeader(bytes: Uint8Array, what: string): { flags: number; metaBytes: number; runCount: number; blockCount: number; dataBytes: number; metaCrc: number; dataCrc: number; baseMetaCrc: number; baseDataCrc: number } {
  if (!(bytes instanceof Uint8Array)) refuse(what, 'must be a Uint8Array');
  if (bytes.length < HEADER) refuse(`${what}: header`, `a binary snapshot has a ${HEADER}-byte header; got ${bytes.length} bytes`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!isBinary(bytes)) refuse(`${what}: header.magic`, `not a spapr-tce binary snapshot (magic ${JSON.stringify(BINARY_MAGIC)})`);
  const version = dv.getUint32(8, true);
  if (version !== BINARY_VERSION) refuse(`${what}: header.version`, `binary snapshot version ${version} is not supported (this library reads version ${BINARY_VERSION})`);
  if (crc32(bytes.subarray(0, 60)) !== dv.getUint32(60, true)) refuse(`${what}: header`, 'the snapshot is corrupted (its header checksum does not match)');
  const flags = dv.getUint32(12, true);
  if (flags & ~(F_INCREMENTAL | F_NO_RAM) || flags === (F_INCREMENTAL | F_NO_RAM)) refuse(`${what}: header.flags`, `${flags} is not a known kind of snapshot`);
  if (dv.getUint32(28, true) !== 0 || dv.getUint32(56, true) !== 0) refuse(`${what}: header`, 'reserved words are not zero');
  const metaBytes = dv.getUint32(16, true);
  const runCount = dv.getUint32(20, true);
  const blockCount = dv.getUint32(24, true);
  const dataBytes = Number(dv.getBigUint64(32, true));
  if (HEADER + metaBytes + runCount * RUN + blockCount * BLOCK + dataBytes !== bytes.length) refuse(`${what}: header`, `its lengths (metadata ${metaBytes}, ${runCount} runs, ${blockCount} blocks, ${dataBytes} data bytes) do not add up to the snapshot's ${bytes.length} bytes`);
  if (blockCount !== 0 && !(flags & F_NO_RAM)) refuse(`${what}: header.blockCount`, 'only a RAM-less snapshot lists heap blocks');
  return { flags, metaBytes, runCount, blockCount, dataBytes, metaCrc: dv.getUint32(48, true), dataCrc: dv.getUint32(52, true), baseMetaCrc: dv.getUint32(40, true), baseDataCrc: dv.getUint32(44, true) };
}

/**
 * A binary snapshot parsed: header, both checksums, the metadata as JSON,
 * the runs (ascending, disjoint, inside a memory of `memBytes`, aligned to
 * 4 KiB pages, or to 64-byte granules in a RAM-less snapshot, their data
 * adding up) and the blocks. `memBytes` comes from the metadata.
 */
export function parseBinary(bytes: Uint8Array, what: string): ParsedBinary {
  const h = parseHeader(bytes, what);
  const metaEnd = HEADER + h.metaBytes;
  if (crc32(bytes.subarray(HEADER, metaEnd)) !== h.metaCrc) refuse(what, 'the snapshot is corrupted (its checksum does not match its contents)');
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(HEADER, metaEnd)));
  } catch (e) {
    refuse(`${what}: metadata`, `is not UTF-8 JSON (${(e as Error).message})`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const runs: BinaryRun[] = [];
  const dataAt: number[] = [];
  const blocks: BlockRecord[] = [];
  const dataStart = metaEnd + h.runCount * RUN + h.blockCount * BLOCK;
  // A table that does not parse is, if the data checksum fails too, an accident: say so rather than what broke.
  try {
    const align = h.flags & F_NO_RAM ? 64 : PAGE;
    let at = metaEnd;
    let data = dataStart;
    let last = 0;
    for (let i = 0; i < h.runCount; i++, at += RUN) {
      const f = `${what}: runs[${i}]`;
      const off = dv.getUint32(at, true);
      const len = dv.getUint32(at + 4, true);
      const kind = dv.getUint32(at + 8, true);
      if (dv.getUint32(at + 12, true) !== 0) refuse(f, 'the reserved word is not zero');
      if (kind !== KIND_DATA && !(kind === KIND_ZERO && h.flags & F_INCREMENTAL)) refuse(f, `kind ${kind} is not a run of this kind of snapshot`);
      if (len === 0 || off % align !== 0 || len % align !== 0) refuse(f, `[${off}, +${len}) is empty or not aligned to ${align} bytes`);
      if (off < last) refuse(f, `starts at ${off}, inside or before the previous run (runs ascend, disjoint)`);
      last = off + len;
      runs.push({ off, len, zero: kind === KIND_ZERO });
      if (kind === KIND_DATA) {
        dataAt.push(data);
        data += len;
        if (data > bytes.length) refuse(f, 'its data runs past the end of the snapshot');
      } else dataAt.push(-1);
    }
    if (data !== bytes.length) refuse(`${what}: runs`, `their data (${data - dataStart} bytes) is not the snapshot's ${h.dataBytes} data bytes`);
    for (let i = 0; i < h.blockCount; i++, at += BLOCK) {
      const sz = dv.getUint32(at + 4, true);
      const free = (sz & 1) === 1;
      const prev = dv.getUint32(at + 8, true);
      const next = dv.getUint32(at + 12, true);
      if (!free && (prev !== 0 || next !== 0)) refuse(`${what}: blocks[${i}]`, 'a used block has no list links');
      blocks.push({ start: dv.getUint32(at, true), size: sz & ~1, free: free ? { prev, next } : null });
    }
  } catch (e) {
    if (crc32(bytes.subarray(metaEnd)) !== h.dataCrc) refuse(what, 'the snapshot is corrupted (its checksum does not match its contents)');
    throw e;
  }
  return { bytes, what, tablesAt: metaEnd, dataStart, flags: h.flags, meta, runs, blocks, dataAt, metaCrc: h.metaCrc, dataCrc: h.dataCrc, baseMetaCrc: h.baseMetaCrc, baseDataCrc: h.baseDataCrc };
}

/** Whether the data checksum of a parsed snapshot holds (reads all of it). */
export function dataIntact(p: ParsedBinary): boolean {
  return crc32(p.bytes.subarray(p.tablesAt)) === p.dataCrc;
}

/**
 * Hands every data run of `p` to `sink` in chunks, in order (`at`: the
 * chunk's offset in its run), checking the data checksum on the way, each
 * chunk read once while it is in the cache; refuses the snapshot as corrupted
 * if the checksum fails once all is copied. A sink that refuses a run first
 * gets the checksum's verdict instead when the data is corrupted.
 */
export function copyData(p: ParsedBinary, sink: (run: number, at: number, chunk: Uint8Array) => void): void {
  let crc = crc32(p.bytes.subarray(p.tablesAt, p.dataStart));
  try {
    p.runs.forEach((r, i) => {
      if (r.zero) return;
      const d = p.dataAt[i]!;
      for (let k = 0; k < r.len; k += CHUNK) {
        const chunk = p.bytes.subarray(d + k, d + Math.min(r.len, k + CHUNK));
        crc = crc32(chunk, crc);
        sink(i, k, chunk);
      }
    });
  } catch (e) {
    if (!dataIntact(p)) refuse(p.what, 'the snapshot is corrupted (its checksum does not match its contents)');
    throw e;
  }
  if (crc !== p.dataCrc) refuse(p.what, 'the snapshot is corrupted (its checksum does not match its contents)');
}

/**
 * The runs of an incremental snapshot of `mem` over `base` (a full
 * snapshot): every 4 KiB page up to `end` whose bytes differ from the
 * base's, as data, or as a zero run where the page became zero. Pages the
 * base holds are compared with memcmp; the gaps between them (zero in the
 * base) are scanned for non-zero pages.
 */
export function diffRuns(mem: LinearMemory, base: ParsedBinary, end: number, nonZero: (from: number, to: number) => Run[]): BinaryRun[] {
  const buf = memBuffer(mem);
  const b = Buffer.from(base.bytes.buffer, base.bytes.byteOffset, base.bytes.byteLength);
  const out: BinaryRun[] = [];
  const push = (off: number, len: number, zero: boolean): void => {
    const last = out[out.length - 1];
    if (last && last.zero === zero && last.off + last.len === off) last.len += len;
    else out.push({ off, len, zero });
  };
  let cursor = 0;
  const gap = (to: number): void => {
    const hi = Math.min(to, end);
    if (cursor < hi) for (const r of nonZero(cursor, hi)) push(r.off, r.len, false);
  };
  base.runs.forEach((r, i) => {
    gap(r.off);
    const d = base.dataAt[i]!;
    for (let p = 0; p < r.len; ) {
      const chunk = Math.min(65536, r.len - p);
      const off = r.off + p;
      const inMem = off + chunk <= buf.length;
      if (inMem && buf.compare(b, d + p, d + p + chunk, off, off + chunk) === 0) {
        p += chunk;
        continue;
      }
      for (let q = 0; q < chunk; q += PAGE) {
        const at = off + q;
        if (at + PAGE > buf.length) {
          push(at, PAGE, true);
          continue;
        }
        if (buf.compare(b, d + p + q, d + p + q + PAGE, at, at + PAGE) === 0) continue;
        push(at, PAGE, pageIsZero(buf, at));
      }
      p += chunk;
    }
    cursor = r.off + r.len;
  });
  gap(end);
  return out;
}
