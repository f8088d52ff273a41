// Shared by the allocator tests (test/unit/alloc-*.test.ts): the heap's
// geometry as assembly/alloc.ts lays it out, a walk of its BEGIN/FREE
// bitmaps that does not use the engine's own heapCheck, the "fits" rule, and
// which engines can run here.
import { Host } from '../../src/index.js';
import {
  HEADER_BASE, HEAP_BASE, HDR_MEM_END, HDR_ALLOC_TOP, HDR_ALLOC_BYTES, HDR_ALLOC_BLOCKS, HDR_ALLOC_FREE_BLOCKS,
  HDR_ALLOC_REFUSED, HDR_ALLOC_BUSY, MIN_BLOCK_SHIFT, ALLOC_SL_BITS, ALLOC_MAX_BYTES,
} from '../../src/generated/layout.js';

/** Every block is a multiple of this and aligned to it. */
export const GRANULE = 1 << MIN_BLOCK_SHIFT;

/** Why engine 'native' cannot run here (the addon did not build), or undefined when it can. */
export const nativeMissing: string | undefined = await Host.create({ engine: 'native', maxMemory: 1 << 20 }).then(
  () => undefined,
  (e: unknown) => (e as Error).message,
);

/** The engines to run each allocator test on, with the reason a missing one is skipped. */
export const ENGINES = [
  { engine: 'wasm' as const, skip: undefined, name: 'wasm' },
  { engine: 'native' as const, skip: nativeMissing, name: nativeMissing ? `native (skipped: ${nativeMissing})` : 'native' },
];

/** Where the bitmaps and blocks of a host's heap are. */
export interface Geometry {
  /** End of the arena (memEnd rounded down to a granule). */
  end: number;
  /** The FREE bitmap; the BEGIN bitmap is at HEAP_BASE. */
  freeMap: number;
  /** The first block. */
  start: number;
}

/** The geometry alloc.ts derives from the header's memEnd. */
export function geometry(host: Host): Geometry {
  const end = host.mem.getU32(HEADER_BASE + HDR_MEM_END) & ~(GRANULE - 1);
  const mapBytes = Math.ceil((end - HEAP_BASE) / GRANULE / 32) * 4;
  const freeMap = HEAP_BASE + mapBytes;
  const start = Math.ceil((freeMap + mapBytes) / GRANULE) * GRANULE;
  return { end, freeMap, start };
}

/** The top of the heap's blocks (HEAP_BASE in the header means nothing was allocated yet: the first block's address). */
export function heapTop(host: Host): number {
  const t = host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP);
  return t === HEAP_BASE ? geometry(host).start : t;
}

/** The allocator's counters in the header. */
export function counters(host: Host) {
  const m = host.mem;
  return {
    bytes: Number(m.getU64(HEADER_BASE + HDR_ALLOC_BYTES)),
    blocks: m.getU32(HEADER_BASE + HDR_ALLOC_BLOCKS),
    freeBlocks: m.getU32(HEADER_BASE + HDR_ALLOC_FREE_BLOCKS),
    refused: m.getU32(HEADER_BASE + HDR_ALLOC_REFUSED),
    busy: Number(m.getU64(HEADER_BASE + HDR_ALLOC_BUSY)),
  };
}

function bitAt(host: Host, map: number, g: number): boolean {
  return ((host.mem.getU32(map + (g >>> 5) * 4) >>> (g & 31)) & 1) === 1;
}

/** One block of the heap, as the bitmaps say. */
export interface Block {
  p: number;
  size: number;
  free: boolean;
}

/**
 * The heap's blocks in address order, read from the bitmaps alone: a block
 * starts at every BEGIN bit in [start, top) and ends at the next one (or at
 * top); it is free when FREE is set at its first granule.
 */
export function blocks(host: Host): Block[] {
  const { freeMap, start } = geometry(host);
  const top = heapTop(host);
  const g0 = (start - HEAP_BASE) / GRANULE;
  const g1 = (top - HEAP_BASE) / GRANULE;
  const words = new Uint32Array(host.mem.memory.buffer, HEAP_BASE, Math.ceil(g1 / 32));
  const begins: number[] = [];
  for (let i = g0 >>> 5; i < words.length; i++) {
    let w = words[i]!;
    while (w !== 0) {
      const low = w & -w;
      const g = i * 32 + (31 - Math.clz32(low));
      if (g >= g0 && g < g1) begins.push(g);
      w = (w & ~low) >>> 0;
    }
  }
  return begins.map((g, i) => {
    const p = HEAP_BASE + g * GRANULE;
    const e = i + 1 < begins.length ? HEAP_BASE + begins[i + 1]! * GRANULE : top;
    return { p, size: e - p, free: bitAt(host, freeMap, g) };
  });
}

/** Bytes a request takes: rounded up to the granule; 0 when it cannot be served. */
export function blockSize(bytes: number): number {
  if (bytes < 1 || bytes > ALLOC_MAX_BYTES) return 0;
  return Math.ceil(bytes / GRANULE) * GRANULE;
}

/** `s` rounded up to the lower bound of the first TLSF class all of whose blocks hold it. */
export function classCeil(s: number): number {
  if (s < GRANULE << ALLOC_SL_BITS) return s;
  const w = 2 ** (Math.floor(Math.log2(s)) - ALLOC_SL_BITS);
  return Math.ceil(s / w) * w;
}

/**
 * Whether alloc(bytes) must succeed on this heap, by the rule of
 * assembly/alloc.ts: a free block of at least classCeil(s), or the free
 * block ending at top plus the never-used memory hold s.
 */
export function fits(host: Host, bytes: number): boolean {
  const s = blockSize(bytes);
  if (s === 0) return false;
  const bs = blocks(host);
  if (bs.some((b) => b.free && b.size >= classCeil(s))) return true;
  const last = bs[bs.length - 1];
  const tail = last?.free ? last.size : 0;
  return tail + geometry(host).end - heapTop(host) >= s;
}

/** A copy of linear memory up to the heap top. */
export function snapshotHeap(host: Host): Buffer {
  return Buffer.from(host.mem.u8.subarray(0, Math.max(heapTop(host), host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP))));
}

const zeros = new Uint8Array(1 << 20);

/** Whether [p, p + n) is all zero. */
export function isZero(host: Host, p: number, n: number): boolean {
  for (let off = 0; off < n; off += zeros.length) {
    const len = Math.min(zeros.length, n - off);
    if (Buffer.compare(host.mem.u8.subarray(p + off, p + off + len), zeros.subarray(0, len)) !== 0) return false;
  }
  return true;
}
