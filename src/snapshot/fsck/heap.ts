// The memory side of the fsck: the header, the allocator's heap, and the
// claims every structure makes on its blocks.
//
// The engines trust what they read from linear memory: a descriptor field
// is a pointer they follow, a length they loop over. So every descriptor
// and array a structure names must be a used block of exactly its size (what
// alloc() returned for it), and no block may be claimed twice: a second
// claim is a cycle in a list, a tree node shared by two tables, or two
// objects on one descriptor, each a way for one write to corrupt another
// structure or for a walk never to end. Used blocks nobody claims are a
// leak, harmless: nothing reads them. Free blocks and memory above the
// allocator's top belong to the allocator alone (heapCheck checks them).
import type { LinearMemory } from '../../core/memory.js';
import { hex } from '../../core/format.js';
import { HdrView } from '../../generated/views.js';
import {
  HEADER_BASE, HEAP_BASE, LAYOUT_MAGIC, LAYOUT_VERSION, MIN_BLOCK_SHIFT, STRUCTS,
  OWNER_CHECK_NONE, OWNER_CHECK_FORK_CLOSE, PID_CHECK_CALL, PID_CHECK_ENTRY, ABLATE_VIEW_LOCK, ABLATE_VALIDATE,
} from '../../generated/layout.js';
import { KERNEL_CODES, type KernelEra } from '../../core/context.js';
import { refuse } from './read.js';

const GRANULE = 1 << MIN_BLOCK_SHIFT;

/** The heap's geometry and its blocks, by start. */
export interface Heap {
  start: number;
  top: number;
  end: number;
  /** Used blocks: start → bytes. */
  used: Map<number, number>;
  /** Free blocks: start → bytes. */
  free: Map<number, number>;
}

/** Bytes of the block alloc(bytes) returns (what free(ptr, bytes) expects), 0 when impossible. */
export function blockSize(bytes: number): number {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x8000_0000) return 0;
  return (bytes + GRANULE - 1) & ~(GRANULE - 1);
}

/** The heap's fixed geometry for a memory of `memBytes` (assembly/alloc.ts: arenaEnd, freeMapOf, heapStartOf). */
export function heapGeometry(memBytes: number): { end: number; freeMap: number; start: number } {
  const end = Math.floor(memBytes / GRANULE) * GRANULE;
  const freeMap = HEAP_BASE + ((((end - HEAP_BASE) / GRANULE + 31) >>> 5) << 2);
  const start = Math.ceil((freeMap + (freeMap - HEAP_BASE)) / GRANULE) * GRANULE;
  return { end, freeMap, start };
}

/** The byte ranges of a struct that no field covers (padding: zero in every live descriptor). */
const padding = new Map<string, [number, number][]>();
for (const s of STRUCTS as readonly { name: string; size: number; fields: readonly { name: string; type: string; offset: number; count: number }[] }[]) {
  const covered = new Uint8Array(s.size);
  for (const f of s.fields) if (f.name !== 'pad') covered.fill(1, f.offset, f.offset + (f.type === 'u64' ? 8 : 4) * f.count);
  const gaps: [number, number][] = [];
  for (let i = 0; i < s.size; ) {
    if (covered[i]) {
      i++;
      continue;
    }
    let j = i;
    while (j < s.size && !covered[j]) j++;
    gaps.push([i, j]);
    i = j;
  }
  padding.set(s.name, gaps);
}

/** Reads of linear memory for the checkers: plain loads, offsets already known to lie in a claimed block. */
export class Mem {
  constructor(readonly mem: LinearMemory) {}
  u32(off: number): number {
    return this.mem.u32[off >>> 2]!;
  }
  u64(off: number): bigint {
    return this.mem.u64[off >>> 3]!;
  }
  /** Whether bytes [from, to) are all zero. */
  zero(from: number, to: number): boolean {
    const u8 = this.mem.u8;
    for (let i = from; i < to; i++) if (u8[i] !== 0) return false;
    return true;
  }
  /** Refuses a descriptor of struct `name` at `at` whose padding is not zero. */
  padding(name: string, at: number, field: string): void {
    for (const [a, b] of padding.get(name)!) {
      if (!this.zero(at + a, at + b)) refuse(field, `${name} descriptor at ${hex(at)}: bytes [${a}, ${b}) are padding and must be zero`);
    }
  }
}

/**
 * The header page (HDR) of a memory of `memBytes` for a host of system page
 * shift `pageShift` and kernel era `kernel`: the layout's magic and version,
 * the arena end, the settings real mode reads from their allowed sets (the
 * owner check and pid placement are switched in place by setRealModeCheck,
 * the era never: it is the option's code), no allocator lock held (a
 * snapshot taken during an allocation), tag 0 (the VFIO path's) never
 * handed out as a vCPU's view-lock tag, no benchmark ablation (only known
 * ABLATE_* bits on a live host, where bench/ sets them; none in a snapshot,
 * whose host would run without a safety mechanism), bytes past the last
 * field zero.
 */
export function checkHeader(m: Mem, memBytes: number, pageShift: number, kernel: KernelEra, snapshot: boolean): void {
  const h = new HdrView(m.mem, HEADER_BASE);
  const f = 'memory: header';
  if (h.magic !== LAYOUT_MAGIC) refuse(`${f}.magic`, `must be ${hex(LAYOUT_MAGIC)} (an initialised layout), got ${hex(h.magic)}`);
  if (h.version !== LAYOUT_VERSION) refuse(`${f}.version`, `layout version ${h.version} is not this library's (${LAYOUT_VERSION})`);
  if (h.memEnd !== memBytes) refuse(`${f}.memEnd`, `must be the memory's size ${memBytes}, got ${h.memEnd}`);
  if (h.sysPageShift !== pageShift) refuse(`${f}.sysPageShift`, `must be options.pageShift (${pageShift}), got ${h.sysPageShift}`);
  if (h.allocLock !== 0) refuse(`${f}.allocLock`, 'the allocator lock is held: the snapshot was taken during an allocation (pause every vCPU first)');
  if (h.ownerCheck < OWNER_CHECK_NONE || h.ownerCheck > OWNER_CHECK_FORK_CLOSE) refuse(`${f}.ownerCheck`, `must be an OWNER_CHECK_* code, got ${h.ownerCheck}`);
  if (h.pidPlacement !== PID_CHECK_CALL && h.pidPlacement !== PID_CHECK_ENTRY) refuse(`${f}.pidPlacement`, `must be a PID_CHECK_* code, got ${h.pidPlacement}`);
  // Worker vCPUs decide from HDR.kernel whether real mode exists, the main thread from the option: they must agree.
  if (h.kernel !== KERNEL_CODES[kernel]) refuse(`${f}.kernel`, `is ${h.kernel}, but options.kernel '${kernel}' is KERNEL_${kernel.replace('.', '_')} (${KERNEL_CODES[kernel]})`);
  if (h.lockTagsAt(0) & 1) refuse(`${f}.lockTags`, 'bit 0 is set: tag 0 is the VFIO path\'s, never a vCPU\'s');
  if (h.ablate & ~(ABLATE_VIEW_LOCK | ABLATE_VALIDATE)) refuse(`${f}.ablate`, `must be ABLATE_* bits, got ${hex(h.ablate)}`);
  if (snapshot && h.ablate !== 0) refuse(`${f}.ablate`, `is ${hex(h.ablate)}: a benchmark ablation was on when the snapshot was taken (the library never sets it, and the restored host would run without a safety mechanism)`);
  const { start, end } = heapGeometry(memBytes);
  const top = h.allocTop;
  if (top !== HEAP_BASE && (top < start || top > end || top % GRANULE !== 0)) refuse(`${f}.allocTop`, `must be HEAP_BASE or a granule in [${hex(start)}, ${hex(end)}], got ${hex(top)}`);
  m.padding('HDR', HEADER_BASE, f);
}

/** The top of the heap (allocTop; HEAP_BASE before the first allocation means the heap's start). */
export function heapTop(m: Mem, memBytes: number): number {
  const top = new HdrView(m.mem, HEADER_BASE).allocTop;
  return top === HEAP_BASE ? heapGeometry(memBytes).start : top;
}

/**
 * The blocks of a heap that heapCheck() accepted, read from its BEGIN and
 * FREE bitmaps (assembly/alloc.ts): a used block runs to the next BEGIN bit,
 * a free block's size is in its first word. Every step advances, so the walk
 * ends at the top.
 */
export function walkHeap(m: Mem, memBytes: number): Heap {
  const { start, end, freeMap } = heapGeometry(memBytes);
  const top = heapTop(m, memBytes);
  const u32 = m.mem.u32;
  const bit = (map: number, g: number): boolean => ((u32[(map >>> 2) + (g >>> 5)]! >>> (g & 31)) & 1) === 1;
  const gran = (a: number): number => (a - HEAP_BASE) / GRANULE;
  const topG = gran(top);
  const nextBegin = (g: number): number => {
    while (g < topG) {
      const w = u32[(HEAP_BASE >>> 2) + (g >>> 5)]! >>> (g & 31);
      if (w !== 0) return Math.min(topG, g + 31 - Math.clz32(w & -w));
      g = (g | 31) + 1;
    }
    return topG;
  };
  const used = new Map<number, number>();
  const free = new Map<number, number>();
  for (let b = start; b < top; ) {
    const g = gran(b);
    let e: number;
    if (bit(freeMap, g)) {
      e = b + u32[b >>> 2]!;
      free.set(b, e - b);
    } else {
      e = HEAP_BASE + nextBegin(g + 1) * GRANULE;
      used.set(b, e - b);
    }
    if (e <= b) refuse('memory: heap', `block at ${hex(b)} does not advance (heapCheck should have refused this heap)`);
    b = e;
  }
  return { start, top, end, used, free };
}

/** The claims of the structures on the heap's used blocks. */
export class Claims {
  private readonly owner = new Map<number, string>();
  constructor(private readonly heap: Heap) {}

  /**
   * Claims the block at `ptr` for a `what` of `bytes` bytes named by
   * `field`: it must be a used block of exactly blockSize(bytes), claimed
   * by nothing else.
   */
  claim(ptr: number, bytes: number, what: string, field: string): void {
    const want = blockSize(bytes);
    if (want === 0) refuse(field, `a ${what} of ${bytes} bytes cannot exist (blocks hold 1 byte to 2 GiB)`);
    if (ptr === 0) refuse(field, `the ${what} is missing (pointer 0)`);
    const size = this.heap.used.get(ptr);
    if (size === undefined) {
      const why = this.heap.free.has(ptr) ? 'a free block' : ptr < this.heap.start || ptr >= this.heap.top ? 'outside the heap\'s blocks' : 'not the start of a block';
      refuse(field, `the ${what} at ${hex(ptr)} is ${why}`);
    }
    if (size !== want) refuse(field, `the ${what} at ${hex(ptr)} is a block of ${size} bytes, not the ${want} a ${what} of ${bytes} bytes takes`);
    const prev = this.owner.get(ptr);
    if (prev !== undefined) refuse(field, `the ${what} at ${hex(ptr)} is already ${prev} (a cycle, or two structures on one block)`);
    this.owner.set(ptr, `the ${what} of ${field}`);
  }

  /** Whether `ptr` has been claimed. */
  claimed(ptr: number): boolean {
    return this.owner.has(ptr);
  }
}
