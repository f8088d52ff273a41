// alloc.ts: a TLSF over the heap, boundary tags in two bitmaps at HEAP_BASE
// (BEGIN: a block starts at this granule; FREE: first or last granule of a
// free block), free lists and their maps in the header, a bounded lock
// shared with every WebAssembly instance on the memory. The block layout,
// the size classes and what "fits" means are drawn in assembly/alloc.ts.
//
// The C++ twin of assembly/alloc.ts, routine by routine (the kernel
// allocates with its page allocator; this heap lives inside the memory).
#include "engine_access.h"

namespace spapr {

namespace {
constexpr uint32_t kBase = kHeapBase;
constexpr uint32_t kGMask = (1u << kMinBlockShift) - 1;
constexpr uint32_t kSlBits = static_cast<uint32_t>(ALLOC_SL_BITS);
constexpr uint32_t kSlMask = (1u << kSlBits) - 1;
constexpr uint32_t kSbShift = kMinBlockShift + kSlBits;
constexpr uint32_t kSb = 1u << kSbShift;
constexpr uint32_t kFlCount = static_cast<uint32_t>(ALLOC_FL_COUNT);
constexpr uint32_t kLockSpins = static_cast<uint32_t>(ALLOC_LOCK_SPINS);

// heapCheck() failures, as alloc.ts#CHECK_*.
constexpr int32_t kCheckBusy = -1;
constexpr int32_t kCheckArena = -2;
constexpr int32_t kCheckTiling = -3;
constexpr int32_t kCheckFreeBlock = -4;
constexpr int32_t kCheckAdjacentFree = -5;
constexpr int32_t kCheckUsedTags = -6;
constexpr int32_t kCheckCounters = -7;
constexpr int32_t kCheckLists = -8;
constexpr int32_t kCheckMaps = -9;
constexpr int32_t kCheckOutside = -10;

inline uint32_t shr32(uint32_t x, uint32_t n) { return x >> (n & 31); }
inline uint32_t ctz32(uint32_t x) { return static_cast<uint32_t>(std::countr_zero(x)); }
inline uint32_t clz32(uint32_t x) { return static_cast<uint32_t>(std::countl_zero(x)); }

/** Address of the FREE map of an arena ending at `end` (alloc.ts#freeMapOf). */
inline uint32_t freeMapOf(uint32_t end) { return kBase + ((((end - kBase) >> kMinBlockShift) + 31) >> 5 << 2); }
/** The first block's address, after both maps (alloc.ts#heapStartOf). */
inline uint32_t heapStartOf(uint32_t fm) { return (fm + (fm - kBase) + kGMask) & ~kGMask; }
inline uint32_t gran(uint32_t a) { return (a - kBase) >> kMinBlockShift; }
inline uint32_t headAt(uint32_t cls) { return H + HDR_ALLOC_HEADS + (cls << 2); }
inline uint32_t slMapAt(uint32_t fl) { return H + HDR_ALLOC_SL_MAP + (fl << 2); }

/** The list index fl·16 + sl of a free block of `size` bytes (alloc.ts#classOf). */
inline uint32_t classOf(uint32_t size) {
  if (size < kSb) return size >> kMinBlockShift;
  const uint32_t k = 31 - clz32(size);
  return shl32(k - (kSbShift - 1), kSlBits) | (shr32(size, k - kSlBits) & kSlMask);
}

/** The first list whose every block holds `s` bytes (alloc.ts#searchClassOf). */
inline uint32_t searchClassOf(uint32_t s) {
  if (s < kSb) return s >> kMinBlockShift;
  const uint32_t k = 31 - clz32(s);
  return classOf(s + shl32(1, k - kSlBits) - 1);
}
}  // namespace

uint32_t blockShift(uint32_t bytes) {
  if (bytes == 0 || bytes > 0x80000000u) return 0;
  const uint32_t s = 32 - static_cast<uint32_t>(std::countl_zero(bytes - 1));
  return s < kMinBlockShift ? kMinBlockShift : s;
}

/** Bytes a request of `bytes` takes (a multiple of 64); 0 when impossible (alloc.ts#blockSize). */
uint32_t blockSize(uint32_t bytes) {
  if (bytes == 0 || bytes > static_cast<uint32_t>(ALLOC_MAX_BYTES)) return 0;
  return (bytes + kGMask) & ~kGMask;
}

bool TceEngine::lock() {
  // After a fault ald32/acas32 answer 0 ("acquired") and nothing is written.
  for (uint32_t i = 0; i < kLockSpins; i++) {
    if (ald32(at(H, HDR_ALLOC_LOCK)) == 0 && acas32(at(H, HDR_ALLOC_LOCK), 0, 1) == 0) return true;
  }
  aadd64(at(H, HDR_ALLOC_BUSY), 1);
  return false;
}

void TceEngine::unlock() { ast32(at(H, HDR_ALLOC_LOCK), 0); }

/** The arena's end, or 0 when the header's memEnd does not describe this memory (alloc.ts#arenaEnd). */
uint32_t TceEngine::arenaEnd() {
  const uint32_t end = ld32(at(H, HDR_MEM_END)) & ~kGMask;
  if (end <= kBase || static_cast<uint64_t>(end) > length_) return 0;
  return end;
}

/** The top; HEAP_BASE reads as heapStart; 0 when impossible (alloc.ts#topOf). */
uint32_t TceEngine::topOf(uint32_t start, uint32_t end) {
  const uint32_t top = ld32(at(H, HDR_ALLOC_TOP));
  if (top == kBase) return start;
  if (top < start || top > end || (top & kGMask) != 0) return 0;
  return top;
}

SPAPR_HOT bool TceEngine::bit(uint32_t map, uint32_t g) { return (shr32(ld32(map + ((g >> 5) << 2)), g & 31) & 1) != 0; }

SPAPR_HOT void TceEngine::setBit(uint32_t map, uint32_t g) {
  const uint32_t a = map + ((g >> 5) << 2);
  st32(a, ld32(a) | shl32(1, g & 31));
}

SPAPR_HOT void TceEngine::clearBit(uint32_t map, uint32_t g) {
  const uint32_t a = map + ((g >> 5) << 2);
  st32(a, ld32(a) & ~shl32(1, g & 31));
}

/** The first granule in [from, to) whose bit is set in `map`; `to` if none (alloc.ts#nextSet). */
uint32_t TceEngine::nextSet(uint32_t map, uint32_t from, uint32_t to) {
  uint32_t g = from;
  while (g < to) {
    const uint32_t w = shr32(ld32(map + ((g >> 5) << 2)), g & 31);
    if (w != 0) {
      const uint32_t r = g + ctz32(w);
      return r < to ? r : to;
    }
    g = (g | 31) + 1;
  }
  return to;
}

/** Head of the first non-empty list at or above `cls`; 0 if none (alloc.ts#searchFree). */
uint32_t TceEngine::searchFree(uint32_t cls) {
  uint32_t fl = cls >> kSlBits;
  uint32_t slMap = ld32(slMapAt(fl)) & shl32(0xffffffffu, cls & kSlMask);
  if (slMap == 0) {
    const uint32_t flMap = ld32(at(H, HDR_ALLOC_FL_MAP)) & shl32(0xffffffffu, fl + 1);
    if (flMap == 0) return 0;
    fl = ctz32(flMap);
    slMap = ld32(slMapAt(fl));
    if (slMap == 0) return 0;
  }
  return ld32(headAt(shl32(fl, kSlBits) | ctz32(slMap)));
}

/** Whether `b` starts a well-formed free block of [start, top) (alloc.ts#isFreeBlock). */
bool TceEngine::isFreeBlock(uint32_t fm, uint32_t start, uint32_t top, uint32_t b) {
  if (b < start || b >= top || (b & kGMask) != 0) return false;
  const uint32_t g = gran(b);
  if (!bit(kBase, g) || !bit(fm, g)) return false;
  const uint32_t size = ld32(b);
  if (size == 0 || (size & kGMask) != 0 || size > top - b) return false;
  const uint32_t e = b + size;
  if (!bit(fm, gran(e) - 1) || ld32(e - 4) != b) return false;
  return e == top || bit(kBase, gran(e));
}

/** Whether the free block `b` can be unlinked: its list neighbours point back at it (alloc.ts#canUnlink). */
bool TceEngine::canUnlink(uint32_t fm, uint32_t start, uint32_t top, uint32_t b) {
  const uint32_t cls = classOf(ld32(b));
  const uint32_t prev = ld32(b + 4);
  const uint32_t next = ld32(b + 8);
  if (prev == 0) {
    if (ld32(headAt(cls)) != b) return false;
  } else if (!isFreeBlock(fm, start, top, prev) || ld32(prev + 8) != b || classOf(ld32(prev)) != cls) {
    return false;
  }
  return next == 0 || (isFreeBlock(fm, start, top, next) && ld32(next + 4) == b && classOf(ld32(next)) == cls);
}

/** Whether list `cls` can take a new head once `gone1` and `gone2` left their lists (alloc.ts#headOk). */
bool TceEngine::headOk(uint32_t fm, uint32_t start, uint32_t top, uint32_t cls, uint32_t gone1, uint32_t gone2) {
  const uint32_t h = ld32(headAt(cls));
  if (h == 0 || h == gone1 || h == gone2) return true;
  return isFreeBlock(fm, start, top, h) && ld32(h + 4) == 0 && classOf(ld32(h)) == cls;
}

/** Takes the free block `b` off its list (alloc.ts#unlink). */
void TceEngine::unlink(uint32_t b) {
  const uint32_t cls = classOf(ld32(b));
  const uint32_t prev = ld32(b + 4);
  const uint32_t next = ld32(b + 8);
  if (prev != 0) {
    st32(prev + 8, next);
  } else {
    st32(headAt(cls), next);
    if (next == 0) {
      const uint32_t fl = cls >> kSlBits;
      const uint32_t slMap = ld32(slMapAt(fl)) & ~shl32(1, cls & kSlMask);
      st32(slMapAt(fl), slMap);
      if (slMap == 0) st32(at(H, HDR_ALLOC_FL_MAP), ld32(at(H, HDR_ALLOC_FL_MAP)) & ~shl32(1, fl));
    }
  }
  if (next != 0) st32(next + 4, prev);
}

/** Makes [b, b + size) a free block at the head of its list (alloc.ts#insertFree). */
void TceEngine::insertFree(uint32_t fm, uint32_t b, uint32_t size) {
  const uint32_t cls = classOf(size);
  const uint32_t head = ld32(headAt(cls));
  st32(b, size);
  st32(b + 4, 0);
  st32(b + 8, head);
  st32(b + size - 4, b);
  if (head != 0) st32(head + 4, b);
  st32(headAt(cls), b);
  const uint32_t fl = cls >> kSlBits;
  st32(slMapAt(fl), ld32(slMapAt(fl)) | shl32(1, cls & kSlMask));
  st32(at(H, HDR_ALLOC_FL_MAP), ld32(at(H, HDR_ALLOC_FL_MAP)) | shl32(1, fl));
  setBit(kBase, gran(b));
  setBit(fm, gran(b));
  setBit(fm, gran(b + size) - 1);
}

/** Allocates a zeroed, 64-byte-aligned block of at least `bytes` bytes; 0 when it does not fit (alloc.ts#alloc). */
uint32_t TceEngine::alloc(uint32_t bytes) {
  const uint32_t s = blockSize(bytes);
  if (s == 0) return 0;
  if (!lock()) return 0;
  const uint32_t end = arenaEnd();
  const uint32_t fm = freeMapOf(end);
  const uint32_t start = heapStartOf(fm);
  const uint32_t top = end == 0 || start > end ? 0 : topOf(start, end);
  if (top == 0) {
    unlock();
    return 0;
  }
  uint32_t b = searchFree(searchClassOf(s));
  uint32_t avail = 0;
  uint32_t freeEnd = 0;
  if (b != 0) {
    if (!isFreeBlock(fm, start, top, b) || !canUnlink(fm, start, top, b) || ld32(b) < s) {
      unlock();
      return 0;
    }
    avail = ld32(b);
    freeEnd = b + avail;
  } else {
    b = top;
    if (top > start && bit(fm, gran(top) - 1)) {
      b = ld32(top - 4);
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
  const uint32_t rest = avail - s;
  if (rest != 0 && !headOk(fm, start, top, classOf(rest), freeEnd != 0 ? b : 0, 0)) {
    unlock();
    return 0;
  }
  if (freeEnd != 0) {
    unlink(b);
    clearBit(fm, gran(b));
    clearBit(fm, gran(freeEnd) - 1);
    st32(at(H, HDR_ALLOC_FREE_BLOCKS), ld32(at(H, HDR_ALLOC_FREE_BLOCKS)) - 1);
  }
  setBit(kBase, gran(b));
  if (b + avail > top) st32(at(H, HDR_ALLOC_TOP), b + avail);
  if (rest != 0) {
    insertFree(fm, b + s, rest);
    st32(at(H, HDR_ALLOC_FREE_BLOCKS), ld32(at(H, HDR_ALLOC_FREE_BLOCKS)) + 1);
  }
  st64(at(H, HDR_ALLOC_BYTES), ld64(at(H, HDR_ALLOC_BYTES)) + s);
  st32(at(H, HDR_ALLOC_BLOCKS), ld32(at(H, HDR_ALLOC_BLOCKS)) + 1);
  unlock();
  // Memory above the old top was never used and is still zero.
  const uint32_t dirty = b >= top ? 0 : (top - b < s ? top - b : s);
  if (dirty != 0) fill0(b, dirty);
  return b;
}

/** Returns the block `p` that alloc(bytes) gave and merges it with its free neighbours; refuses anything else (alloc.ts#free). */
void TceEngine::free(uint32_t p, uint32_t bytes) {
  if (p == 0) return;
  const uint32_t s = blockSize(bytes);
  if (!lock()) return;
  const uint32_t end = arenaEnd();
  const uint32_t fm = freeMapOf(end);
  const uint32_t start = heapStartOf(fm);
  const uint32_t top = end == 0 || start > end ? 0 : topOf(start, end);
  bool ok = top != 0 && s != 0 && p >= start && p < top && (p & kGMask) == 0 && s <= top - p;
  const uint32_t e = p + s;
  if (ok) ok = bit(kBase, gran(p)) && !bit(fm, gran(p)) && (e == top || bit(kBase, gran(e)));
  if (ok) ok = nextSet(kBase, gran(p) + 1, gran(e)) == gran(e);
  uint32_t left = 0;
  uint32_t right = 0;
  if (ok && e < top && bit(fm, gran(e))) {
    right = e;
    ok = isFreeBlock(fm, start, top, right) && canUnlink(fm, start, top, right);
  }
  if (ok && p > start && bit(fm, gran(p) - 1)) {
    left = ld32(p - 4);
    ok = isFreeBlock(fm, start, top, left) && left + ld32(left) == p && canUnlink(fm, start, top, left);
  }
  const uint32_t b = left != 0 ? left : p;
  const uint32_t size = (right != 0 ? e + ld32(right) : e) - b;
  if (ok) ok = headOk(fm, start, top, classOf(size), left, right);
  if (!ok) {
    st32(at(H, HDR_ALLOC_REFUSED), ld32(at(H, HDR_ALLOC_REFUSED)) + 1);
    unlock();
    return;
  }
  uint32_t merged = 0;
  if (right != 0) {
    unlink(right);
    clearBit(kBase, gran(right));
    clearBit(fm, gran(right));
    merged++;
  }
  if (left != 0) {
    unlink(left);
    clearBit(fm, gran(p) - 1);
    clearBit(kBase, gran(p));
    merged++;
  }
  insertFree(fm, b, size);
  st32(at(H, HDR_ALLOC_FREE_BLOCKS), ld32(at(H, HDR_ALLOC_FREE_BLOCKS)) + 1 - merged);
  st64(at(H, HDR_ALLOC_BYTES), ld64(at(H, HDR_ALLOC_BYTES)) - s);
  st32(at(H, HDR_ALLOC_BLOCKS), ld32(at(H, HDR_ALLOC_BLOCKS)) - 1);
  unlock();
}

/** Checks the allocator's invariants over the whole heap: free blocks, or a negative code (alloc.ts#heapCheck). */
int32_t TceEngine::heapCheck() {
  if (!lock()) return kCheckBusy;
  const int32_t r = checkHeap();
  unlock();
  return r;
}

int32_t TceEngine::checkHeap() {
  const uint32_t end = arenaEnd();
  const uint32_t fm = freeMapOf(end);
  const uint32_t start = heapStartOf(fm);
  const uint32_t top = end == 0 || start > end ? 0 : topOf(start, end);
  if (top == 0) return kCheckArena;
  const uint32_t grans = gran(end);
  if (nextSet(kBase, 0, gran(start)) != gran(start) || nextSet(fm, 0, gran(start)) != gran(start)) return kCheckOutside;
  if (nextSet(kBase, gran(top), grans) != grans || nextSet(fm, gran(top), grans) != grans) return kCheckOutside;
  uint64_t usedBytes = 0;
  uint32_t used = 0;
  uint32_t frees = 0;
  bool prevFree = false;
  uint32_t b = start;
  while (b < top) {
    const uint32_t g = gran(b);
    if (!bit(kBase, g)) return kCheckTiling;
    uint32_t e;
    if (bit(fm, g)) {
      if (!isFreeBlock(fm, start, top, b)) return kCheckFreeBlock;
      if (prevFree) return kCheckAdjacentFree;
      e = b + ld32(b);
      if (nextSet(kBase, g + 1, gran(e)) != gran(e) || nextSet(fm, g + 1, gran(e) - 1) != gran(e) - 1) return kCheckTiling;
      frees++;
      prevFree = true;
    } else {
      const uint32_t ge = nextSet(kBase, g + 1, gran(top));
      e = kBase + (ge << kMinBlockShift);
      if (nextSet(fm, g, ge) != ge) return kCheckUsedTags;
      usedBytes += e - b;
      used++;
      prevFree = false;
    }
    b = e;
  }
  if (usedBytes != ld64(at(H, HDR_ALLOC_BYTES)) || used != ld32(at(H, HDR_ALLOC_BLOCKS))) return kCheckCounters;
  if (frees != ld32(at(H, HDR_ALLOC_FREE_BLOCKS))) return kCheckCounters;
  uint32_t listed = 0;
  uint32_t flMap = 0;
  for (uint32_t fl = 0; fl < kFlCount; fl++) {
    uint32_t slMap = 0;
    for (uint32_t sl = 0; sl <= kSlMask; sl++) {
      const uint32_t cls = shl32(fl, kSlBits) | sl;
      uint32_t prev = 0;
      uint32_t x = ld32(headAt(cls));
      if (x != 0) slMap |= shl32(1, sl);
      while (x != 0) {
        if (listed >= frees) return kCheckLists;
        if (!isFreeBlock(fm, start, top, x) || classOf(ld32(x)) != cls || ld32(x + 4) != prev) return kCheckLists;
        listed++;
        prev = x;
        x = ld32(x + 8);
      }
    }
    if (ld32(slMapAt(fl)) != slMap) return kCheckMaps;
    if (slMap != 0) flMap |= shl32(1, fl);
  }
  if (ld32(at(H, HDR_ALLOC_FL_MAP)) != flMap) return kCheckMaps;
  if (listed != frees) return kCheckLists;
  return static_cast<int32_t>(frees);
}

}  // namespace spapr
