// The heap allocator of the shared linear memory: a TLSF (two-level
// segregated fit, as AssemblyScript's own std/assembly/rt/tlsf.ts) with
// immediate coalescing, whose boundary tags live out of band.
//
// All state is in the header (HDR_ALLOC_*, see src/layout/layout.def.mjs)
// and in two bitmaps at the start of the heap, never in module globals or
// data segments, so every instance (main thread, workers, the native
// engine's host) sees the same heap. Only virtual-mode code allocates:
// real-mode routines never call this file and answer "too hard" instead.
//
// Why the tags are out of band: a used block holds the caller's bytes (guest
// RAM, TCEs the guest chose), so nothing in it may ever be read as allocator
// state; and an in-band header before a 64-byte-aligned payload would cost a
// whole granule per block (twice the memory of a 64-byte table node). The
// caller passes the size to free(), and the bitmaps say where blocks begin,
// so a used block needs no header at all.
//
// ╒═════════════════════════ Heap (64-byte granules) ════════════════════════╕
//   HEAP_BASE        +M            +2M (rounded to 64)                top      end
//   ├─ BEGIN map ────┼─ FREE map ──┼─ block ─┼─ block ─┼── … ──┼─ block ─┼ zero ┤
//   one bit per granule g = (address - HEAP_BASE) >> 6 of [HEAP_BASE, end):
//     BEGIN[g]: a block (used or free) starts at granule g;
//     FREE[g]:  g is the first or the last granule of a free block.
//   Blocks tile [heapStart, top) exactly; [top, end) was never used and is zero.
// ╘══════════════════════════════════════════════════════════════════════════╛
//
// ╒═════════════════════════════ Block layout ═══════════════════════════════╕
//   used:  ├ payload: n·64 bytes, all the caller's ──────────────────────────┤
//   free:  ├ size ┼ prev ┼ next ┼ (stale bytes) ………………………………………………… ┼ back ┤
//           +0     +4     +8                                          size-4
//   size: bytes of the block; prev/next: the doubly linked free list of its
//   class; back: the block's own address, so the block to the right finds
//   where its free left neighbour starts (TLSF's GETFREELEFT).
// ╘══════════════════════════════════════════════════════════════════════════╛
//
// ╒══════════════════════ Size classes (mapping_insert) ═════════════════════╕
//   size < 1 KiB: fl 0, sl = size / 64          (one list per granule count)
//   size ≥ 1 KiB: fl = log2(size) - 9, sl = the next ALLOC_SL_BITS bits
//   heads[fl·16 + sl] in HDR_ALLOC_HEADS; slMap[fl] bit sl and flMap bit fl
//   say which lists are not empty, so a search is two ctz's (mapping_search).
// ╘══════════════════════════════════════════════════════════════════════════╛
//
// What "fits" means: a request of b bytes (1 ≤ b ≤ ALLOC_MAX_BYTES) takes
// s = b rounded up to 64. It succeeds when a free block of at least s
// rounded up to its class exists (below 1 KiB s itself, else s rounded up to
// a multiple of 2^(floor(log2 s) - 4): at most 1/16 more), or when the free
// block ending at top (if any) plus the never-used memory [top, end) hold s.
// After everything is freed the heap is one free block that ends at top, so
// any s ≤ end - heapStart fits.
//
// Every pointer read from memory (a list head, prev, next, back) is checked
// against the bitmaps before it is followed, and every check of a call comes
// before its first store: a bad free (not a live block of that size: a
// pointer no alloc() returned, a double free, a wrong size) or a corrupt free
// block is refused, counted in HDR_ALLOC_REFUSED, and changes nothing else.
// (A second free of an address alloc() has since handed out again, with the
// new block's size, cannot be told from the new owner's: nothing can.)
// The lock is tried ALLOC_LOCK_SPINS times; then alloc answers 0 and free
// gives up (the block stays allocated), counted in HDR_ALLOC_BUSY. Inside
// the lock every loop is bounded by the heap's granules (free's scan of its
// own block reads one bit per granule); zeroing is done after unlocking.
import {
  HEADER_BASE, HEAP_BASE, HDR_ALLOC_LOCK, HDR_ALLOC_TOP, HDR_MEM_END, HDR_ALLOC_BYTES,
  HDR_ALLOC_BLOCKS, HDR_ALLOC_FREE_BLOCKS, HDR_ALLOC_REFUSED, HDR_ALLOC_BUSY,
  HDR_ALLOC_FL_MAP, HDR_ALLOC_SL_MAP, HDR_ALLOC_HEADS,
  MIN_BLOCK_SHIFT, ALLOC_SL_BITS, ALLOC_FL_COUNT, ALLOC_MAX_BYTES, ALLOC_LOCK_SPINS,
} from './generated/layout';

const H: u32 = <u32>HEADER_BASE;
const BASE: u32 = <u32>HEAP_BASE;
const SHIFT: u32 = <u32>MIN_BLOCK_SHIFT;
const GMASK: u32 = (<u32>1 << SHIFT) - 1;
const SL_BITS: u32 = <u32>ALLOC_SL_BITS;
const SL_MASK: u32 = (<u32>1 << SL_BITS) - 1;
// Sizes below SB (1 KiB) have one list per granule count.
const SB_SHIFT: u32 = SHIFT + SL_BITS;
const SB: u32 = <u32>1 << SB_SHIFT;
const CLASSES: u32 = <u32>ALLOC_FL_COUNT << SL_BITS;

/** heapCheck() failures (negative results), one per invariant. */
const CHECK_BUSY: i32 = -1;
const CHECK_ARENA: i32 = -2;
const CHECK_TILING: i32 = -3;
const CHECK_FREE_BLOCK: i32 = -4;
const CHECK_ADJACENT_FREE: i32 = -5;
const CHECK_USED_TAGS: i32 = -6;
const CHECK_COUNTERS: i32 = -7;
const CHECK_LISTS: i32 = -8;
const CHECK_MAPS: i32 = -9;
const CHECK_OUTSIDE: i32 = -10;

/** log2 of the power of two `bytes` rounds up to (at least the 64-byte granule); 0 when impossible. */
export function blockShift(bytes: u32): u32 {
  if (bytes == 0 || bytes > 0x80000000) return 0;
  const s: u32 = 32 - <u32>clz<u32>(bytes - 1);
  return s < SHIFT ? SHIFT : s;
}

/** Bytes a request of `bytes` takes (a multiple of 64); 0 when impossible. */
export function blockSize(bytes: u32): u32 {
  if (bytes == 0 || bytes > <u32>ALLOC_MAX_BYTES) return 0;
  return (bytes + GMASK) & ~GMASK;
}

// ---------------------------------------------------------------------------
// The lock: bounded, so a vCPU's virtual mode gets "no memory" rather than
// hanging when a holder never lets go.

function lock(): bool {
  for (let i: u32 = 0; i < <u32>ALLOC_LOCK_SPINS; i++) {
    if (atomic.load<u32>(H + HDR_ALLOC_LOCK) == 0 && atomic.cmpxchg<u32>(H + HDR_ALLOC_LOCK, 0, 1) == 0) return true;
  }
  atomic.add<u64>(H + HDR_ALLOC_BUSY, 1);
  return false;
}

@inline function unlock(): void {
  atomic.store<u32>(H + HDR_ALLOC_LOCK, 0);
}

// ---------------------------------------------------------------------------
// The arena, from the header: end (memEnd rounded down to a granule), the
// FREE map (the BEGIN map is at HEAP_BASE), the first block, the top.

/** The arena's end, or 0 when the header's memEnd does not describe this memory. */
function arenaEnd(): u32 {
  const end = load<u32>(H + HDR_MEM_END) & ~GMASK;
  if (end <= BASE || <u64>end > (<u64>memory.size() << 16)) return 0;
  return end;
}

/** Address of the FREE map of an arena ending at `end` (each map: one bit per granule of [HEAP_BASE, end)). */
@inline function freeMapOf(end: u32): u32 {
  return BASE + (((((end - BASE) >> SHIFT) + 31) >> 5) << 2);
}

/** The first block's address: after both maps. */
@inline function heapStartOf(fm: u32): u32 {
  return (fm + (fm - BASE) + GMASK) & ~GMASK;
}

/** The top: HEAP_BASE (nothing allocated yet) reads as heapStart; 0 when the header's value is impossible. */
function topOf(start: u32, end: u32): u32 {
  const top = load<u32>(H + HDR_ALLOC_TOP);
  if (top == BASE) return start;
  if (top < start || top > end || (top & GMASK) != 0) return 0;
  return top;
}

@inline function gran(a: u32): u32 {
  return (a - BASE) >> SHIFT;
}

@inline function bit(map: u32, g: u32): bool {
  return ((load<u32>(map + ((g >> 5) << 2)) >> (g & 31)) & 1) != 0;
}

@inline function setBit(map: u32, g: u32): void {
  const a = map + ((g >> 5) << 2);
  store<u32>(a, load<u32>(a) | (<u32>1 << (g & 31)));
}

@inline function clearBit(map: u32, g: u32): void {
  const a = map + ((g >> 5) << 2);
  store<u32>(a, load<u32>(a) & ~(<u32>1 << (g & 31)));
}

/** The first granule in [from, to) whose bit is set in `map`; `to` if none. */
function nextSet(map: u32, from: u32, to: u32): u32 {
  let g = from;
  while (g < to) {
    const w = load<u32>(map + ((g >> 5) << 2)) >> (g & 31);
    if (w != 0) {
      const r = g + <u32>ctz<u32>(w);
      return r < to ? r : to;
    }
    g = (g | 31) + 1;
  }
  return to;
}

// ---------------------------------------------------------------------------
// Size classes (mapping_insert / mapping_search of the TLSF paper).

/** The list index fl·16 + sl of a free block of `size` bytes. */
function classOf(size: u32): u32 {
  if (size < SB) return size >> SHIFT;
  const k: u32 = 31 - <u32>clz<u32>(size);
  return ((k - (SB_SHIFT - 1)) << SL_BITS) | ((size >> (k - SL_BITS)) & SL_MASK);
}

/** The first list whose every block holds `s` bytes: s rounded up to its class (TLSF's roundSize). */
function searchClassOf(s: u32): u32 {
  if (s < SB) return s >> SHIFT;
  const k: u32 = 31 - <u32>clz<u32>(s);
  return classOf(s + (<u32>1 << (k - SL_BITS)) - 1);
}

@inline function headAt(cls: u32): u32 {
  return H + HDR_ALLOC_HEADS + (cls << 2);
}

@inline function slMapAt(fl: u32): u32 {
  return H + HDR_ALLOC_SL_MAP + (fl << 2);
}

/** Head of the first non-empty list at or above `cls`; 0 if none. */
function searchFree(cls: u32): u32 {
  let fl = cls >> SL_BITS;
  let slMap = load<u32>(slMapAt(fl)) & (<u32>0xffffffff << (cls & SL_MASK));
  if (slMap == 0) {
    const flMap = load<u32>(H + HDR_ALLOC_FL_MAP) & (<u32>0xffffffff << (fl + 1));
    if (flMap == 0) return 0;
    fl = <u32>ctz<u32>(flMap);
    slMap = load<u32>(slMapAt(fl));
    if (slMap == 0) return 0;
  }
  return load<u32>(headAt((fl << SL_BITS) | <u32>ctz<u32>(slMap)));
}

// ---------------------------------------------------------------------------
// Free blocks: checks before use, then list and bitmap updates.

/** Whether `b` starts a well-formed free block of [start, top): bitmaps, size, back pointer and right edge agree. */
function isFreeBlock(fm: u32, start: u32, top: u32, b: u32): bool {
  if (b < start || b >= top || (b & GMASK) != 0) return false;
  const g = gran(b);
  if (!bit(BASE, g) || !bit(fm, g)) return false;
  const size = load<u32>(b);
  if (size == 0 || (size & GMASK) != 0 || size > top - b) return false;
  const e = b + size;
  if (!bit(fm, gran(e) - 1) || load<u32>(e - 4) != b) return false;
  return e == top || bit(BASE, gran(e));
}

/** Whether the free block `b` (already checked) can be unlinked: its neighbours on its list point back at it. */
function canUnlink(fm: u32, start: u32, top: u32, b: u32): bool {
  const cls = classOf(load<u32>(b));
  const prev = load<u32>(b + 4);
  const next = load<u32>(b + 8);
  if (prev == 0) {
    if (load<u32>(headAt(cls)) != b) return false;
  } else if (!isFreeBlock(fm, start, top, prev) || load<u32>(prev + 8) != b || classOf(load<u32>(prev)) != cls) {
    return false;
  }
  return next == 0 || (isFreeBlock(fm, start, top, next) && load<u32>(next + 4) == b && classOf(load<u32>(next)) == cls);
}

/**
 * Whether list `cls` can take a new head once the blocks `gone1` and
 * `gone2` (already checked by canUnlink) have left their lists.
 */
function headOk(fm: u32, start: u32, top: u32, cls: u32, gone1: u32, gone2: u32): bool {
  const h = load<u32>(headAt(cls));
  if (h == 0 || h == gone1 || h == gone2) return true;
  return isFreeBlock(fm, start, top, h) && load<u32>(h + 4) == 0 && classOf(load<u32>(h)) == cls;
}

/** Takes the free block `b` off its list (removeBlock); its bitmap bits are the caller's. */
function unlink(b: u32): void {
  const cls = classOf(load<u32>(b));
  const prev = load<u32>(b + 4);
  const next = load<u32>(b + 8);
  if (prev != 0) {
    store<u32>(prev + 8, next);
  } else {
    store<u32>(headAt(cls), next);
    if (next == 0) {
      const fl = cls >> SL_BITS;
      const slMap = load<u32>(slMapAt(fl)) & ~(<u32>1 << (cls & SL_MASK));
      store<u32>(slMapAt(fl), slMap);
      if (slMap == 0) store<u32>(H + HDR_ALLOC_FL_MAP, load<u32>(H + HDR_ALLOC_FL_MAP) & ~(<u32>1 << fl));
    }
  }
  if (next != 0) store<u32>(next + 4, prev);
}

/** Makes [b, b + size) a free block at the head of its list (insertBlock, without the merging). */
function insertFree(fm: u32, b: u32, size: u32): void {
  const cls = classOf(size);
  const head = load<u32>(headAt(cls));
  store<u32>(b, size);
  store<u32>(b + 4, 0);
  store<u32>(b + 8, head);
  store<u32>(b + size - 4, b);
  if (head != 0) store<u32>(head + 4, b);
  store<u32>(headAt(cls), b);
  const fl = cls >> SL_BITS;
  store<u32>(slMapAt(fl), load<u32>(slMapAt(fl)) | (<u32>1 << (cls & SL_MASK)));
  store<u32>(H + HDR_ALLOC_FL_MAP, load<u32>(H + HDR_ALLOC_FL_MAP) | (<u32>1 << fl));
  setBit(BASE, gran(b));
  setBit(fm, gran(b));
  setBit(fm, gran(b + size) - 1);
}

// ---------------------------------------------------------------------------
// The routines.

/** Allocates a zeroed, 64-byte-aligned block of at least `bytes` bytes; 0 when it does not fit (see above). */
export function alloc(bytes: u32): u32 {
  const s = blockSize(bytes);
  if (s == 0) return 0;
  if (!lock()) return 0;
  const end = arenaEnd();
  const fm = freeMapOf(end);
  const start = heapStartOf(fm);
  const top: u32 = end == 0 || start > end ? 0 : topOf(start, end);
  if (top == 0) {
    unlock();
    return 0;
  }
  // The region [b, b + avail) the block is carved from, and the free block [b, freeEnd) it takes, if any.
  let b = searchFree(searchClassOf(s));
  let avail: u32 = 0;
  let freeEnd: u32 = 0;
  if (b != 0) {
    if (!isFreeBlock(fm, start, top, b) || !canUnlink(fm, start, top, b) || load<u32>(b) < s) {
      unlock();
      return 0;
    }
    avail = load<u32>(b);
    freeEnd = b + avail;
  } else {
    // No list has a block that surely fits: grow at the top, from the free block ending there if any.
    b = top;
    if (top > start && bit(fm, gran(top) - 1)) {
      b = load<u32>(top - 4);
      if (!isFreeBlock(fm, start, top, b) || !canUnlink(fm, start, top, b)) {
        unlock();
        return 0;
      }
      freeEnd = top;
    }
    if (s > end - b) {
      unlock();
      return 0;
    }
    avail = s > top - b ? s : top - b;
  }
  const rest = avail - s;
  if (rest != 0 && !headOk(fm, start, top, classOf(rest), freeEnd != 0 ? b : 0, 0)) {
    unlock();
    return 0;
  }
  // Checked: from here on nothing is refused.
  if (freeEnd != 0) {
    unlink(b);
    clearBit(fm, gran(b));
    clearBit(fm, gran(freeEnd) - 1);
    store<u32>(H + HDR_ALLOC_FREE_BLOCKS, load<u32>(H + HDR_ALLOC_FREE_BLOCKS) - 1);
  }
  setBit(BASE, gran(b));
  if (b + avail > top) store<u32>(H + HDR_ALLOC_TOP, b + avail);
  if (rest != 0) {
    insertFree(fm, b + s, rest);
    store<u32>(H + HDR_ALLOC_FREE_BLOCKS, load<u32>(H + HDR_ALLOC_FREE_BLOCKS) + 1);
  }
  store<u64>(H + HDR_ALLOC_BYTES, load<u64>(H + HDR_ALLOC_BYTES) + <u64>s);
  store<u32>(H + HDR_ALLOC_BLOCKS, load<u32>(H + HDR_ALLOC_BLOCKS) + 1);
  unlock();
  // Memory above the old top was never used and is still zero (a fresh WebAssembly memory is).
  const dirty: u32 = b >= top ? 0 : (top - b < s ? top - b : s);
  if (dirty != 0) memory.fill(b, 0, dirty);
  return b;
}

/**
 * Returns the block `p` that alloc(bytes) gave, with the same `bytes`, and
 * merges it with its free neighbours at once. Anything else (p not the
 * start of a live block of that size) is refused and changes nothing.
 */
export function free(p: u32, bytes: u32): void {
  if (p == 0) return;
  const s = blockSize(bytes);
  if (!lock()) return;
  const end = arenaEnd();
  const fm = freeMapOf(end);
  const start = heapStartOf(fm);
  const top: u32 = end == 0 || start > end ? 0 : topOf(start, end);
  // A live block: inside the heap, BEGIN set and FREE clear at p, a block
  // boundary at p + s and none in between.
  let ok = top != 0 && s != 0 && p >= start && p < top && (p & GMASK) == 0 && s <= top - p;
  const e = p + s;
  if (ok) ok = bit(BASE, gran(p)) && !bit(fm, gran(p)) && (e == top || bit(BASE, gran(e)));
  if (ok) ok = nextSet(BASE, gran(p) + 1, gran(e)) == gran(e);
  // Its free neighbours (TLSF's LEFTFREE / FREE tags), checked before anything is written.
  let left: u32 = 0;
  let right: u32 = 0;
  if (ok && e < top && bit(fm, gran(e))) {
    right = e;
    ok = isFreeBlock(fm, start, top, right) && canUnlink(fm, start, top, right);
  }
  if (ok && p > start && bit(fm, gran(p) - 1)) {
    left = load<u32>(p - 4);
    ok = isFreeBlock(fm, start, top, left) && left + load<u32>(left) == p && canUnlink(fm, start, top, left);
  }
  const b = left != 0 ? left : p;
  const size = (right != 0 ? e + load<u32>(right) : e) - b;
  if (ok) ok = headOk(fm, start, top, classOf(size), left, right);
  if (!ok) {
    store<u32>(H + HDR_ALLOC_REFUSED, load<u32>(H + HDR_ALLOC_REFUSED) + 1);
    unlock();
    return;
  }
  let merged: u32 = 0;
  if (right != 0) {
    unlink(right);
    clearBit(BASE, gran(right));
    clearBit(fm, gran(right));
    merged++;
  }
  if (left != 0) {
    unlink(left);
    clearBit(fm, gran(p) - 1);
    clearBit(BASE, gran(p));
    merged++;
  }
  insertFree(fm, b, size);
  store<u32>(H + HDR_ALLOC_FREE_BLOCKS, load<u32>(H + HDR_ALLOC_FREE_BLOCKS) + 1 - merged);
  store<u64>(H + HDR_ALLOC_BYTES, load<u64>(H + HDR_ALLOC_BYTES) - <u64>s);
  store<u32>(H + HDR_ALLOC_BLOCKS, load<u32>(H + HDR_ALLOC_BLOCKS) - 1);
  unlock();
}

/**
 * Walks the whole heap under the lock and checks the allocator's
 * invariants: blocks tile [heapStart, top); every free block is well formed,
 * has no free neighbour and sits on the list of its class; lists, bitmaps
 * and counters agree; no tag outside the heap. Returns the number of free
 * blocks, or a negative CHECK_* code naming the first invariant that fails.
 */
export function heapCheck(): i32 {
  if (!lock()) return CHECK_BUSY;
  const r = check();
  unlock();
  return r;
}

function check(): i32 {
  const end = arenaEnd();
  const fm = freeMapOf(end);
  const start = heapStartOf(fm);
  const top: u32 = end == 0 || start > end ? 0 : topOf(start, end);
  if (top == 0) return CHECK_ARENA;
  const grans = gran(end);
  if (nextSet(BASE, 0, gran(start)) != gran(start) || nextSet(fm, 0, gran(start)) != gran(start)) return CHECK_OUTSIDE;
  if (nextSet(BASE, gran(top), grans) != grans || nextSet(fm, gran(top), grans) != grans) return CHECK_OUTSIDE;
  let usedBytes: u64 = 0;
  let used: u32 = 0;
  let frees: u32 = 0;
  let prevFree = false;
  let b = start;
  while (b < top) {
    const g = gran(b);
    if (!bit(BASE, g)) return CHECK_TILING;
    let e: u32;
    if (bit(fm, g)) {
      if (!isFreeBlock(fm, start, top, b)) return CHECK_FREE_BLOCK;
      if (prevFree) return CHECK_ADJACENT_FREE;
      e = b + load<u32>(b);
      if (nextSet(BASE, g + 1, gran(e)) != gran(e) || nextSet(fm, g + 1, gran(e) - 1) != gran(e) - 1) return CHECK_TILING;
      frees++;
      prevFree = true;
    } else {
      const ge = nextSet(BASE, g + 1, gran(top));
      e = BASE + (ge << SHIFT);
      if (nextSet(fm, g, ge) != ge) return CHECK_USED_TAGS;
      usedBytes += <u64>(e - b);
      used++;
      prevFree = false;
    }
    b = e;
  }
  if (usedBytes != load<u64>(H + HDR_ALLOC_BYTES) || used != load<u32>(H + HDR_ALLOC_BLOCKS)) return CHECK_COUNTERS;
  if (frees != load<u32>(H + HDR_ALLOC_FREE_BLOCKS)) return CHECK_COUNTERS;
  // Every list: well-formed blocks of its class, linked both ways; the maps say which lists are not empty.
  let listed: u32 = 0;
  let flMap: u32 = 0;
  for (let fl: u32 = 0; fl < <u32>ALLOC_FL_COUNT; fl++) {
    let slMap: u32 = 0;
    for (let sl: u32 = 0; sl <= SL_MASK; sl++) {
      const cls = (fl << SL_BITS) | sl;
      let prev: u32 = 0;
      let x = load<u32>(headAt(cls));
      if (x != 0) slMap |= <u32>1 << sl;
      while (x != 0) {
        if (listed >= frees) return CHECK_LISTS;
        if (!isFreeBlock(fm, start, top, x) || classOf(load<u32>(x)) != cls || load<u32>(x + 4) != prev) return CHECK_LISTS;
        listed++;
        prev = x;
        x = load<u32>(x + 8);
      }
    }
    if (load<u32>(slMapAt(fl)) != slMap) return CHECK_MAPS;
    if (slMap != 0) flMap |= <u32>1 << fl;
  }
  if (load<u32>(H + HDR_ALLOC_FL_MAP) != flMap) return CHECK_MAPS;
  if (listed != frees) return CHECK_LISTS;
  return <i32>frees;
}
