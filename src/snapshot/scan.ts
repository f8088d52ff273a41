// Finding what to save in linear memory at memory speed. Zero memory is
// skipped by asking for the first non-zero byte of what is left: the addon's
// firstNonZero (src/native/zero_scan.cc) OR-reduces one stream with AVX2 or
// SSE2 in one call over the whole range (a long one on several threads: one
// core reads memory slower than the machine delivers it), at the speed of a
// plain read of the same memory; without the addon, 256 KiB at a time are
// compared against a zero buffer with Buffer#compare (memcmp: two streams,
// 82-88 % of that speed, bench/results/zero-scan-ab-2026-12-01.md). A
// Uint32Array loop reaches 2.5 GB/s. The snapshot of a zero memory is this
// scan: its metadata and tables cost 0.2 ms. After a non-zero page, the pages
// that follow are told by their first word when it is not zero (most data
// pages), by a compare of the page otherwise. Memory above the allocator's
// top is never used and never read. The RAM-less snapshot walks the heap's
// blocks instead and never looks inside guest RAM.
import type { LinearMemory } from '../core/memory.js';
import { HdrView } from '../generated/views.js';
import { HEADER_BASE, HEAP_BASE, MIN_BLOCK_SHIFT } from '../generated/layout.js';
import { heapGeometry } from './fsck/heap.js';
import { loadNative } from '../engine/native.js';

/** Size of the pages memory is saved and compared in. */
export const PAGE = 4096;
const CHUNK = 256 << 10;
const ZERO = Buffer.alloc(CHUNK);
const GRANULE = 1 << MIN_BLOCK_SHIFT;

const buffers = new WeakMap<LinearMemory, Buffer>();

/** A Buffer over the whole of a linear memory (no copy), for memcmp-speed compares. */
export function memBuffer(mem: LinearMemory): Buffer {
  let b = buffers.get(mem);
  if (!b) {
    b = Buffer.from(mem.buffer as ArrayBuffer, 0, mem.byteLength);
    buffers.set(mem, b);
  }
  return b;
}

/** A byte range of linear memory: [off, off + len). */
export interface Run {
  off: number;
  len: number;
}

/** End of what a full snapshot saves: the allocator's top (memory above it was never used and is zero), at least the header. */
export function savedEnd(mem: LinearMemory): number {
  const top = new HdrView(mem, HEADER_BASE).allocTop;
  return Math.min(mem.byteLength, Math.ceil(Math.max(top, HEAP_BASE) / PAGE) * PAGE);
}

/** Whether the page at `off` is all zero. */
export function pageIsZero(buf: Buffer, off: number): boolean {
  return buf.compare(ZERO, 0, PAGE, off, off + PAGE) === 0;
}

/** Where the first non-zero byte of `buf` in [from, to) is, or `to` when there is none. */
export type FirstNonZero = (buf: Buffer, from: number, to: number) => number;

/** firstNonZero without the addon: Buffer#compare against a zero buffer, 256 KiB at a time, then narrowed to 4 KiB, 64 bytes and the byte. */
export function firstNonZeroByCompare(buf: Buffer, from: number, to: number): number {
  for (let off = from; off < to; ) {
    let end = Math.min(to, off + CHUNK);
    if (buf.compare(ZERO, 0, end - off, off, end) === 0) {
      off = end;
      continue;
    }
    for (const step of [PAGE, 64]) {
      for (let q = off; q < end; q += step) {
        const e = Math.min(end, q + step);
        if (buf.compare(ZERO, 0, e - q, q, e) !== 0) {
          off = q;
          end = e;
          break;
        }
      }
    }
    while (off < end && buf[off] === 0) off++;
    return off;
  }
  return to;
}

let native: FirstNonZero | null | undefined;

/** The addon's firstNonZero where it loads, else firstNonZeroByCompare. */
function defaultFirstNonZero(): FirstNonZero {
  if (native === undefined) native = loadNative()?.firstNonZero ?? null;
  return native ?? firstNonZeroByCompare;
}

/**
 * The runs of non-zero 4 KiB pages in [from, to) (both page aligned),
 * ascending, adjacent pages merged; `first` finds the next non-zero byte
 * (the addon's, or the fallback's: the tests run both).
 */
export function nonZeroRuns(mem: LinearMemory, from: number, to: number, first: FirstNonZero = defaultFirstNonZero()): Run[] {
  const buf = memBuffer(mem);
  const u32 = mem.u32;
  const runs: Run[] = [];
  for (let off = from; off < to; ) {
    // The page at `off` first, by itself: after a short gap it is often data, and a page compare costs less than a search.
    let start = off;
    if (u32[off >>> 2] === 0 && pageIsZero(buf, off)) {
      const nz = first(buf, off + PAGE, to);
      if (nz >= to) break;
      start = nz - ((nz - from) % PAGE);
    }
    let end = start + PAGE;
    // A page whose first word is not zero is not a zero page: most data pages are told without a compare.
    while (end < to && (u32[end >>> 2] !== 0 || !pageIsZero(buf, end))) end += PAGE;
    runs.push({ off: start, len: end - start });
    // The page at `end` (if any) was found zero: the next search starts after it.
    off = end + PAGE;
  }
  return runs;
}

/** A heap block as a RAM-less snapshot records it. */
export interface BlockRecord {
  start: number;
  size: number;
  /** A free block's list links (its size is `size`, its back pointer its own address). */
  free: { prev: number; next: number } | null;
}

/**
 * The blocks of a live heap, from its start to its top, read from the BEGIN
 * and FREE bitmaps (assembly/alloc.ts); the guest RAM blocks in `ram`
 * (start → bytes) are stepped over without reading their bitmap words, so
 * the walk costs O(blocks + bytes of the other blocks / 2048), not O(memory).
 */
export function heapBlocks(mem: LinearMemory, ram: ReadonlyMap<number, number>): BlockRecord[] {
  const { start, freeMap } = heapGeometry(mem.byteLength);
  const rawTop = new HdrView(mem, HEADER_BASE).allocTop;
  const top = rawTop === HEAP_BASE ? start : rawTop;
  const u32 = mem.u32;
  const gran = (a: number): number => (a - HEAP_BASE) / GRANULE;
  const topG = gran(top);
  const out: BlockRecord[] = [];
  for (let b = start; b < top; ) {
    const g = gran(b);
    let size: number;
    if ((u32[(freeMap >>> 2) + (g >>> 5)]! >>> (g & 31)) & 1) {
      size = u32[b >>> 2]!;
      out.push({ start: b, size, free: { prev: u32[(b >>> 2) + 1]!, next: u32[(b >>> 2) + 2]! } });
    } else {
      const r = ram.get(b);
      if (r !== undefined) {
        size = Math.ceil(r / GRANULE) * GRANULE;
      } else {
        let e = g + 1;
        while (e < topG) {
          const w = u32[(HEAP_BASE >>> 2) + (e >>> 5)]! >>> (e & 31);
          if (w !== 0) {
            e = Math.min(topG, e + 31 - Math.clz32(w & -w));
            break;
          }
          e = (e | 31) + 1;
        }
        size = (Math.min(e, topG) - g) * GRANULE;
      }
      out.push({ start: b, size, free: null });
    }
    if (size <= 0) throw new Error(`spapr-tce: the heap is corrupt at ${b} (a block of ${size} bytes)`);
    b += size;
  }
  return out;
}
