// The heap allocator of the shared linear memory.
//
// Power-of-two blocks (64 B minimum) carved from a bump pointer, recycled
// through one free list per size class. All state is in the header (see
// src/layout/layout.def.mjs), never in module globals or data segments, so
// every instance (main thread, workers, the native engine's host) sees the
// same heap. Only virtual-mode code allocates: real-mode routines never call
// this file and answer "too hard" instead.
//
//   header.freeHeads[k] ──► block of 2^k bytes ──► next free block of 2^k …
//                           [u32 next | …]
//   header.allocTop: first never-used byte; blocks below it are live or free.
import {
  HEADER_BASE, HEAP_BASE, HDR_ALLOC_LOCK, HDR_ALLOC_TOP, HDR_MEM_END, HDR_ALLOC_BYTES,
  HDR_ALLOC_BLOCKS, HDR_FREE_HEADS, MIN_BLOCK_SHIFT,
} from './generated/layout';

const H: u32 = <u32>HEADER_BASE;

/** Size class (log2 of the block size) for a request; 0 when impossible. */
export function blockShift(bytes: u32): u32 {
  if (bytes == 0 || bytes > 0x80000000) return 0;
  const s: u32 = 32 - <u32>clz<u32>(bytes - 1);
  return s < <u32>MIN_BLOCK_SHIFT ? <u32>MIN_BLOCK_SHIFT : s;
}

@inline function lock(): void {
  while (atomic.cmpxchg<u32>(H + HDR_ALLOC_LOCK, 0, 1) != 0) {}
}

@inline function unlock(): void {
  atomic.store<u32>(H + HDR_ALLOC_LOCK, 0);
}

/** Whether `p` can be a block: inside [HEAP_BASE, top) and on a minimum-block boundary. */
@inline function isBlock(p: u32, top: u32): bool {
  return p >= <u32>HEAP_BASE && p < top && (p & ((<u32>1 << <u32>MIN_BLOCK_SHIFT) - 1)) == 0;
}

/** Allocates a zeroed block of at least `bytes` bytes; 0 when the memory is full. */
export function alloc(bytes: u32): u32 {
  const shift = blockShift(bytes);
  if (shift == 0) return 0;
  const size: u32 = 1 << shift;
  const head = H + HDR_FREE_HEADS + (shift << 2);
  lock();
  let p = load<u32>(head);
  // Never-used memory is still zero (a fresh WebAssembly memory is); only recycled blocks need clearing.
  let dirty = false;
  if (p != 0) {
    // A corrupt free-list head: refuse it rather than trap while holding the lock.
    if (!isBlock(p, load<u32>(H + HDR_ALLOC_TOP))) {
      unlock();
      return 0;
    }
    store<u32>(head, load<u32>(p));
    dirty = true;
  } else {
    const top = load<u32>(H + HDR_ALLOC_TOP);
    const end = load<u32>(H + HDR_MEM_END);
    if (top > end || size > end - top) {
      unlock();
      return 0;
    }
    p = top;
    store<u32>(H + HDR_ALLOC_TOP, top + size);
  }
  store<u64>(H + HDR_ALLOC_BYTES, load<u64>(H + HDR_ALLOC_BYTES) + <u64>size);
  store<u32>(H + HDR_ALLOC_BLOCKS, load<u32>(H + HDR_ALLOC_BLOCKS) + 1);
  unlock();
  if (dirty) memory.fill(p, 0, size);
  return p;
}

/** Returns a block obtained from alloc(bytes) with the same `bytes`. */
export function free(p: u32, bytes: u32): void {
  const shift = blockShift(bytes);
  if (p == 0 || shift == 0) return;
  // A pointer no alloc() returned is refused before the lock is taken, so it never traps inside the critical section.
  if (!isBlock(p, atomic.load<u32>(H + HDR_ALLOC_TOP))) return;
  const size: u32 = 1 << shift;
  const head = H + HDR_FREE_HEADS + (shift << 2);
  lock();
  store<u32>(p, load<u32>(head));
  store<u32>(head, p);
  store<u64>(H + HDR_ALLOC_BYTES, load<u64>(H + HDR_ALLOC_BYTES) - <u64>size);
  store<u32>(H + HDR_ALLOC_BLOCKS, load<u32>(H + HDR_ALLOC_BLOCKS) - 1);
  unlock();
}
