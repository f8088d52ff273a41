// Loading a snapshot's memory image into the fresh memory of the host being
// restored (nothing else sees it until every check has passed), and the
// checks only the image can make: memory below the header is the library's
// own (as a fresh host has it), nothing lies above the allocator's top
// (alloc() hands out memory there without zeroing it), a RAM-less image's
// block list tiles the heap and its data lies inside the blocks it names.
import type { LinearMemory } from '../core/memory.js';
import { hex } from '../core/format.js';
import { HdrView } from '../generated/views.js';
import { HEADER_BASE, HEAP_BASE, MIN_BLOCK_SHIFT } from '../generated/layout.js';
import { heapGeometry, blockSize, type Heap } from './fsck/heap.js';
import { refuse } from './fsck/read.js';
import type { HostState } from './state.js';
import { copyData, adviseHugePages, type ParsedBinary } from './binary.js';
import { memBuffer } from './scan.js';

const ZERO = Buffer.alloc(65536);

const GRANULE = 1 << MIN_BLOCK_SHIFT;

/** Where the VMM's guest RAM comes from in a RAM-less restore: the bytes of one backed mapping, or undefined for zeros. */
export type RamSource = (mapping: { mm: number; tid: number; ua: bigint; size: bigint }) => Uint8Array | undefined;

/** Checks after a full image is loaded: [0, HEADER_BASE) as in `fresh`, nothing non-zero at or above the top. */
function checkLoaded(mem: LinearMemory, fresh: Uint8Array, ranges: readonly { off: number; len: number }[], what: string): void {
  const u8 = mem.u8;
  const buf = memBuffer(mem);
  if (buf.compare(fresh, 0, HEADER_BASE, 0, HEADER_BASE) !== 0) {
    let i = 0;
    while (u8[i] === fresh[i]) i++;
    refuse(what, `byte ${hex(i)} below the header (${hex(HEADER_BASE)}) is not what the library keeps there`);
  }
  const rawTop = new HdrView(mem, HEADER_BASE).allocTop;
  const top = rawTop === HEAP_BASE ? heapGeometry(mem.byteLength).start : rawTop;
  for (const r of ranges) {
    const from = Math.max(r.off, top);
    for (let i = from; i < r.off + r.len; ) {
      const to = Math.min(r.off + r.len, i + ZERO.length);
      if (buf.compare(ZERO, 0, to - i, i, to) !== 0) refuse(what, `bytes in [${hex(i)}, ${hex(to)}), at or above the allocator's top (${hex(top)}), are not zero: alloc() would hand them out as zeroed memory`);
      i = to;
    }
  }
}

/** Loads JSON pages (decoded by decodeBody). */
export function loadPages(mem: LinearMemory, pages: readonly [number, Buffer][]): void {
  const fresh = mem.u8.slice(0, HEADER_BASE);
  for (const [off, data] of pages) mem.u8.set(data, off);
  checkLoaded(mem, fresh, pages.map(([off, d]) => ({ off, len: d.length })), 'body.memory.pages');
}

/** Loads a full binary snapshot's runs, or an incremental's over its base's (checking each one's data checksum as it copies). */
export function loadRuns(mem: LinearMemory, p: ParsedBinary, base?: ParsedBinary): void {
  const fresh = mem.u8.slice(0, HEADER_BASE);
  const u8 = mem.u8;
  const ranges: { off: number; len: number }[] = [];
  for (const q of base ? [base, p] : [p]) {
    q.runs.forEach((r, i) => {
      if (r.off + r.len > mem.byteLength) refuse(`${q.what}: runs[${i}]`, `[${hex(r.off)}, +${hex(r.len)}) lies outside the ${mem.byteLength}-byte memory`);
      if (r.zero) u8.fill(0, r.off, r.off + r.len);
      else adviseHugePages(u8.subarray(r.off, r.off + r.len));
      ranges.push(r);
    });
    copyData(q, (i, at, chunk) => u8.set(chunk, q.runs[i]!.off + at));
  }
  checkLoaded(mem, fresh, ranges, 'snapshot: runs');
}

/**
 * Builds a RAM-less image: the header page from its run, the heap from the
 * block list (BEGIN and FREE bitmaps, free blocks' size, links and back
 * pointer, as assembly/alloc.ts keeps them), the used blocks' data from
 * their runs, guest RAM from `ram` (or zeros). The block list must tile
 * [heap start, top) with granule-sized blocks; data runs lie inside used
 * blocks that are not guest RAM. Returns the heap for the fsck.
 */
export function loadRamless(mem: LinearMemory, p: ParsedBinary, state: HostState, ram: RamSource | undefined): Heap {
  const u8 = mem.u8;
  const u32 = mem.u32;
  const header = p.runs.findIndex((r) => r.off === HEADER_BASE);
  if (header < 0 || p.runs[header]!.len !== HdrView.BYTES) refuse('snapshot: runs', `a RAM-less snapshot holds the header page, exactly, at ${hex(HEADER_BASE)}`);
  const d = p.dataAt[header]!;
  u8.set(p.bytes.subarray(d, d + HdrView.BYTES), HEADER_BASE);
  const { start, end, freeMap } = heapGeometry(mem.byteLength);
  const rawTop = new HdrView(mem, HEADER_BASE).allocTop;
  const top = rawTop === HEAP_BASE ? start : rawTop;
  if (top < start || top > end || top % GRANULE) refuse('memory: header.allocTop', `${hex(top)} is not a granule in [${hex(start)}, ${hex(end)}]`);
  const used = new Map<number, number>();
  const free = new Map<number, number>();
  let at = start;
  const gran = (a: number): number => (a - HEAP_BASE) / GRANULE;
  const setBit = (map: number, g: number): void => void (u32[(map >>> 2) + (g >>> 5)]! |= 1 << (g & 31));
  p.blocks.forEach((b, i) => {
    const f = `snapshot: blocks[${i}]`;
    if (b.start !== at) refuse(f, `starts at ${hex(b.start)}, not where the previous block ends (${hex(at)}): blocks tile the heap`);
    if (b.size === 0 || b.size % GRANULE || b.start + b.size > top) refuse(f, `size ${b.size} is not a whole number of granules inside the heap (top ${hex(top)})`);
    setBit(HEAP_BASE, gran(b.start));
    if (b.free) {
      setBit(freeMap, gran(b.start));
      setBit(freeMap, gran(b.start + b.size) - 1);
      u32[b.start >>> 2] = b.size;
      u32[(b.start >>> 2) + 1] = b.free.prev;
      u32[(b.start >>> 2) + 2] = b.free.next;
      u32[(b.start + b.size - 4) >>> 2] = b.start;
      free.set(b.start, b.size);
    } else used.set(b.start, b.size);
    at = b.start + b.size;
  });
  if (at !== top) refuse('snapshot: blocks', `end at ${hex(at)}, not at the heap's top ${hex(top)}`);
  const ramBlocks = new Map<number, { mm: number; ua: bigint; size: bigint }>();
  state.mms.forEach((mm, i) => mm.mappings.forEach((x, k) => {
    if (x.hostOff === 0) return;
    const f = `body.mms[${i}].mappings[${k}].hostOff`;
    if (x.size > 1n << 31n || used.get(x.hostOff) !== blockSize(Number(x.size))) refuse(f, `${hex(x.hostOff)} is not a used block of the mapping's ${x.size} bytes`);
    if (ramBlocks.has(x.hostOff)) refuse(f, `${hex(x.hostOff)} is also another mapping's guest RAM`);
    ramBlocks.set(x.hostOff, { mm: mm.id, ua: x.ua, size: x.size });
  }));
  // Each data run lies in one used block that is not guest RAM (or is the header page), checked before its first byte is written.
  const starts = [...used.keys()];
  copyData(p, (i, at, chunk) => {
    const r = p.runs[i]!;
    if (at === 0 && i !== header) {
      let lo = 0;
      let hi = starts.length - 1;
      let blk = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        if (starts[mid]! <= r.off) {
          blk = starts[mid]!;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (blk < 0 || r.off + r.len > blk + used.get(blk)! || ramBlocks.has(blk)) refuse(`snapshot: runs[${i}]`, `[${hex(r.off)}, +${hex(r.len)}) is not inside one used block other than guest RAM`);
    }
    if (i !== header) u8.set(chunk, r.off + at);
  });
  if (ram) {
    const tidOf = new Map<number, number>();
    for (const t of state.processes) if (!tidOf.has(t.mm) || t.tid < tidOf.get(t.mm)!) tidOf.set(t.mm, t.tid);
    for (const [off, x] of ramBlocks) {
      const bytes = ram({ mm: x.mm, tid: tidOf.get(x.mm) ?? 0, ua: x.ua, size: x.size });
      if (bytes === undefined) continue;
      if (!(bytes instanceof Uint8Array) || bytes.length !== Number(x.size)) refuse(`opts.ram(mm ${x.mm}, ua ${hex(x.ua)})`, `must return undefined or a Uint8Array of the mapping's ${x.size} bytes`);
      adviseHugePages(u8.subarray(off, off + bytes.length));
      u8.set(bytes, off);
    }
  }
  return { start, top, end, used, free };
}
