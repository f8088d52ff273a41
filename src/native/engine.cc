// The C++ port of assembly/{alloc,region,table,guest,hcall,index}.ts. Each routine
// follows its AssemblyScript twin statement by statement (same loads, same
// stores, same atomics, in the same order); the kernel function each one
// stands for is named as in the AssemblyScript source.
//
// WebAssembly arithmetic, kept exactly:
//  - u32 pointer arithmetic on computed indices wraps (node + (i << 2));
//  - a descriptor field access `ptr + FIELD` does not wrap: Binaryen folds
//    the constant into the instruction's offset (AssemblyScript marks low
//    memory unused), and a WebAssembly effective address is ptr + offset
//    without wrap-around. Such pointers (within 128 bytes below 2^32) are out
//    of bounds of every memory a host creates, so both engines trap;
//  - shift counts are taken modulo the operand width (i64.shl by 64 is a
//    shift by 0), which C++ leaves undefined: shl64/shr64/shl32 mask them.
#include "engine.h"

#include <bit>
#include <cstring>

#include "generated/layout.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the linear memory is little-endian (WebAssembly) and its u64 fields are updated with host atomics "
              "(atomic add included), which a big-endian host cannot do without a different layout");

// The bounds-checked accessors run for every load and store of the real-mode
// routines: always inline them, and keep the fault path out of the way.
#define SPAPR_HOT __attribute__((always_inline)) inline
#define SPAPR_COLD __attribute__((cold, noinline))

namespace spapr {
namespace {

constexpr uint32_t H = static_cast<uint32_t>(HEADER_BASE);
constexpr uint64_t kPerm = static_cast<uint64_t>(TCE_PERM_MASK);
constexpr uint64_t kRead = static_cast<uint64_t>(TCE_READ);
constexpr uint64_t kWrite = static_cast<uint64_t>(TCE_WRITE);
constexpr uint32_t kOpAlloc = static_cast<uint32_t>(OP_ALLOC);
constexpr uint32_t kOpCheckPid = static_cast<uint32_t>(OP_CHECK_PID);
constexpr uint32_t kMinBlockShift = static_cast<uint32_t>(MIN_BLOCK_SHIFT);
constexpr uint32_t kHeapBase = static_cast<uint32_t>(HEAP_BASE);
constexpr uint32_t kTableV2 = static_cast<uint32_t>(TABLE_F_V2);
constexpr uint32_t kLevelNone = static_cast<uint32_t>(LEVEL_NONE);
constexpr uint32_t kLevelReal = static_cast<uint32_t>(LEVEL_REAL);
constexpr uint32_t kLevelVirtual = static_cast<uint32_t>(LEVEL_VIRTUAL);
constexpr uint32_t kLevelExit = static_cast<uint32_t>(LEVEL_EXIT);
constexpr uint64_t kHPut = static_cast<uint64_t>(H_PUT_TCE);
constexpr uint64_t kHIndirect = static_cast<uint64_t>(H_PUT_TCE_INDIRECT);
constexpr uint64_t kHStuff = static_cast<uint64_t>(H_STUFF_TCE);
constexpr uint64_t kHGet = static_cast<uint64_t>(H_GET_TCE);
constexpr uint64_t kIndirectMax = static_cast<uint64_t>(INDIRECT_MAX);
// Real trees have at most 5 levels; deeper recursion in freeTree means a
// corrupt tree (a cycle), where the WebAssembly build would exhaust its stack.
constexpr uint32_t kMaxTreeDepth = 4096;

inline uint64_t at(uint32_t p, uint32_t field) { return static_cast<uint64_t>(p) + field; }
inline uint64_t shl64(uint64_t x, uint64_t n) { return x << (n & 63); }
inline uint64_t shr64(uint64_t x, uint64_t n) { return x >> (n & 63); }
inline uint32_t shl32(uint32_t x, uint32_t n) { return x << (n & 31); }

}  // namespace

uint32_t blockShift(uint32_t bytes) {
  if (bytes == 0 || bytes > 0x80000000u) return 0;
  const uint32_t s = 32 - static_cast<uint32_t>(std::countl_zero(bytes - 1));
  return s < kMinBlockShift ? kMinBlockShift : s;
}

uint32_t nodeSize(bool isLeaf, uint32_t bits) {
  const uint64_t bytes = shl64(isLeaf ? 8 : 4, bits);
  return bytes > 0x80000000u ? 0 : static_cast<uint32_t>(bytes);
}

namespace {
inline uint64_t blockBytes(uint32_t bytes) { return shl64(1, blockShift(bytes)); }
}  // namespace

TceEngine::TceEngine(uint8_t* base, uint64_t length) : base_(base), length_(length), limit_(length) {}

void TceEngine::clearFault() {
  fault_ = Fault::kNone;
  faultAddr_ = 0;
  faultSize_ = 0;
  limit_ = length_;
}

// ---------------------------------------------------------------------------
// Checked accesses.

SPAPR_COLD void TceEngine::trap(Fault why, uint64_t a, uint32_t size) {
  if (fault_ == Fault::kNone) {
    fault_ = why;
    faultAddr_ = a;
    faultSize_ = size;
  }
  limit_ = 0;
}

SPAPR_HOT bool TceEngine::ok(uint64_t a, uint32_t size) {
  // a < 2^33 (u32 pointer + u32 field), so a + size cannot overflow.
  if (a + size <= limit_) return true;
  trap(Fault::kOutOfBounds, a, size);
  return false;
}

SPAPR_HOT bool TceEngine::okAtomic(uint64_t a, uint32_t size) {
  if (!ok(a, size)) return false;
  if ((a & (size - 1)) == 0) return true;
  trap(Fault::kUnaligned, a, size);
  return false;
}

SPAPR_HOT uint32_t TceEngine::ld32(uint64_t a) {
  uint32_t v = 0;
  if (ok(a, 4)) std::memcpy(&v, base_ + a, 4);
  return v;
}

SPAPR_HOT uint64_t TceEngine::ld64(uint64_t a) {
  uint64_t v = 0;
  if (ok(a, 8)) std::memcpy(&v, base_ + a, 8);
  return v;
}

SPAPR_HOT void TceEngine::st32(uint64_t a, uint32_t v) {
  if (ok(a, 4)) std::memcpy(base_ + a, &v, 4);
}

SPAPR_HOT void TceEngine::st64(uint64_t a, uint64_t v) {
  if (ok(a, 8)) std::memcpy(base_ + a, &v, 8);
}

SPAPR_HOT uint32_t TceEngine::ald32(uint64_t a) {
  if (!okAtomic(a, 4)) return 0;
  return __atomic_load_n(reinterpret_cast<uint32_t*>(base_ + a), __ATOMIC_SEQ_CST);
}

SPAPR_HOT uint64_t TceEngine::ald64(uint64_t a) {
  if (!okAtomic(a, 8)) return 0;
  return __atomic_load_n(reinterpret_cast<uint64_t*>(base_ + a), __ATOMIC_SEQ_CST);
}

SPAPR_HOT void TceEngine::ast32(uint64_t a, uint32_t v) {
  if (okAtomic(a, 4)) __atomic_store_n(reinterpret_cast<uint32_t*>(base_ + a), v, __ATOMIC_SEQ_CST);
}

SPAPR_HOT void TceEngine::ast64(uint64_t a, uint64_t v) {
  if (okAtomic(a, 8)) __atomic_store_n(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_SEQ_CST);
}

// Returns the value found, as WebAssembly's atomic.rmw.cmpxchg does (0 after a fault).
SPAPR_HOT uint32_t TceEngine::acas32(uint64_t a, uint32_t expected, uint32_t desired) {
  if (!okAtomic(a, 4)) return 0;
  __atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(base_ + a), &expected, desired, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
  return expected;
}

SPAPR_HOT uint64_t TceEngine::acas64(uint64_t a, uint64_t expected, uint64_t desired) {
  if (!okAtomic(a, 8)) return 0;
  __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(base_ + a), &expected, desired, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
  return expected;
}

SPAPR_HOT uint64_t TceEngine::axchg64(uint64_t a, uint64_t v) {
  if (!okAtomic(a, 8)) return 0;
  return __atomic_exchange_n(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_SEQ_CST);
}

SPAPR_HOT void TceEngine::aadd64(uint64_t a, uint64_t v) {
  if (okAtomic(a, 8)) __atomic_fetch_add(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_SEQ_CST);
}

// memory.fill: checks the whole range first and writes nothing when it fails (bulk memory semantics).
void TceEngine::fill0(uint64_t a, uint32_t size) {
  if (ok(a, size)) std::memset(base_ + a, 0, size);
}

// ---------------------------------------------------------------------------
// index.ts

/**
 * Initialises the header of a fresh memory of `memBytes` bytes, or checks an
 * existing one (a second instance attaching): 0, or -1 on a layout mismatch.
 */
int32_t TceEngine::init(uint32_t memBytes, uint32_t sysPageShift) {
  if (ald32(at(H, HDR_MAGIC)) == static_cast<uint32_t>(LAYOUT_MAGIC)) {
    return ld32(at(H, HDR_VERSION)) == static_cast<uint32_t>(LAYOUT_VERSION) ? 0 : -1;
  }
  st32(at(H, HDR_VERSION), static_cast<uint32_t>(LAYOUT_VERSION));
  st32(at(H, HDR_MEM_END), memBytes);
  st32(at(H, HDR_SYS_PAGE_SHIFT), sysPageShift);
  st32(at(H, HDR_ALLOC_TOP), static_cast<uint32_t>(HEAP_BASE));
  ast32(at(H, HDR_MAGIC), static_cast<uint32_t>(LAYOUT_MAGIC));
  return 0;
}

// ---------------------------------------------------------------------------
// alloc.ts: a TLSF over the heap, boundary tags in two bitmaps at HEAP_BASE
// (BEGIN: a block starts at this granule; FREE: first or last granule of a
// free block), free lists and their maps in the header, a bounded lock
// shared with every WebAssembly instance on the memory. The block layout,
// the size classes and what "fits" means are drawn in assembly/alloc.ts.

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

// ---------------------------------------------------------------------------
// region.ts: pre-registered regions as real mode sees them
// (arch/powerpc/mm/book3s64/iommu_api.c).

/** The host's system page shift (PAGE_SHIFT). */
uint64_t TceEngine::sysPageShift() { return ld32(at(H, HDR_SYS_PAGE_SHIFT)); }

/** The first region of `mm` that contains all of [ua, ua + size); 0 if none (mm_iommu_lookup). */
uint32_t TceEngine::regionLookup(uint32_t mm, uint64_t ua, uint64_t size) {
  if (mm == 0) return 0;
  const uint64_t sh = sysPageShift();
  uint32_t r = ald32(at(mm, MM_REGIONS));
  while (r != 0) {
    const uint64_t rua = ld64(at(r, REG_UA));
    const uint64_t rsize = shl64(ld64(at(r, REG_ENTRIES)), sh);
    // Overflow-safe form of rua <= ua && ua + size <= rua + rsize.
    if (ua >= rua && size <= rsize && ua - rua <= rsize - size) return r;
    r = ald32(at(r, REG_NEXT));
  }
  return 0;
}

/**
 * Host physical address backing `ua` in region `r` for an IOMMU page of
 * 2^pageShift bytes, or -EFAULT when ua is outside the region or the
 * region's pages are too small for such an IOMMU page (mm_iommu_ua_to_hpa).
 */
int64_t TceEngine::regionUaToHpa(uint32_t r, uint64_t ua, uint32_t pageShift) {
  const uint64_t sh = sysPageShift();
  const uint64_t rua = ld64(at(r, REG_UA));
  if (ua < rua) return -ERRNO_EFAULT;
  const uint64_t idx = shr64(ua - rua, sh);
  if (idx >= ld64(at(r, REG_ENTRIES))) return -ERRNO_EFAULT;
  if (pageShift > ld32(at(r, REG_PAGE_SHIFT))) return -ERRNO_EFAULT;
  if (ld32(at(r, REG_FLAGS)) & static_cast<uint32_t>(REGION_F_DEV)) {
    return static_cast<int64_t>(ld64(at(r, REG_DEV_HPA)) + (ua - rua));
  }
  const uint64_t pageMask = shl64(1, sh) - 1;
  const uint32_t hpas = ld32(at(r, REG_HPAS));
  const uint64_t hpa = ld64(static_cast<uint32_t>(hpas + static_cast<uint32_t>(idx << 3)));
  return static_cast<int64_t>((hpa & ~pageMask) | (ua & pageMask));
}

/** mapped++ unless the region is dying (mapped == 0): 0 or -ENXIO (mm_iommu_mapped_inc). */
int32_t TceEngine::regionMappedInc(uint32_t r) {
  const uint64_t p = at(r, REG_MAPPED);
  for (;;) {
    const uint64_t old = ald64(p);
    if (old == 0) return -ERRNO_ENXIO;
    if (acas64(p, old, old + 1) == old) return 0;
  }
}

/** mapped-- but never below 1 (mm_iommu_mapped_dec: atomic64_add_unless(-1, 1)). */
void TceEngine::regionMappedDec(uint32_t r) {
  const uint64_t p = at(r, REG_MAPPED);
  for (;;) {
    const uint64_t old = ald64(p);
    if (old <= 1) return;
    if (acas64(p, old, old - 1) == old) return;
  }
}

// ---------------------------------------------------------------------------
// table.ts: TCE tables (struct iommu_table) with the userspace view
// (it_userspace). Two trees of identical shape hang off a descriptor; level
// L indexes bits [L*bits, (L+1)*bits) of the relative entry index, the root
// [(levels-1)*bits, +rootBits); 0 child slots are absent levels. Virtual mode (OP_ALLOC) allocates them, real mode
// answers -ENOMEM (pnv_tce with alloc=false). Bit 0 of a view slot is the
// per-entry lock bit.

/** Entry index relative to it_offset, or -1 when `entry` is outside the table. */
int64_t TceEngine::relIndex(uint32_t tbl, uint64_t entry) {
  const uint64_t off = ld64(at(tbl, TBL_OFFSET));
  if (entry < off) return -1;
  const uint64_t idx = entry - off;
  if (idx >= ld64(at(tbl, TBL_SIZE))) return -1;
  return static_cast<int64_t>(idx);
}

/**
 * Pointer to the leaf slot of relative index `idx` in the tree whose root is
 * at `tbl + rootField`; 0 when a level is absent and `grow` is false, or when
 * allocation fails. Sets absentLevel_ on a read-only miss (pnv_tce).
 */
uint32_t TceEngine::slot(uint32_t tbl, uint32_t rootField, uint32_t bytesField, uint64_t idx, bool grow) {
  uint32_t node = ald32(at(tbl, rootField));
  const uint32_t levels = ld32(at(tbl, TBL_LEVELS));
  if (node == 0) {
    absentLevel_ = levels;
    return 0;
  }
  const uint32_t bits = ld32(at(tbl, TBL_LEVEL_BITS));
  const uint64_t lowMask = shl64(1, bits) - 1;
  const uint64_t rootMask = shl64(1, ld32(at(tbl, TBL_ROOT_BITS))) - 1;
  for (uint32_t lvl = levels - 1; lvl >= 1; lvl--) {
    const uint64_t m = lvl == levels - 1 ? rootMask : lowMask;
    const uint32_t sp = node + (static_cast<uint32_t>(shr64(idx, lvl * bits) & m) << 2);
    uint32_t child = ald32(sp);
    if (child == 0) {
      if (!grow) {
        absentLevel_ = lvl;
        return 0;
      }
      const uint32_t sz = nodeSize(lvl == 1, bits);
      const uint32_t fresh = sz == 0 ? 0 : alloc(sz);
      if (fresh == 0) return 0;
      const uint32_t prev = acas32(sp, 0, fresh);
      if (prev != 0) {
        free(fresh, sz);
        child = prev;
      } else {
        child = fresh;
        aadd64(at(tbl, bytesField), blockBytes(sz));
      }
    }
    node = child;
  }
  return node + (static_cast<uint32_t>(idx & (levels == 1 ? rootMask : lowMask)) << 3);
}

/** First relative index after the subtree that the last read-only miss found absent. */
uint64_t TceEngine::skipAbsent(uint32_t tbl, uint64_t idx) {
  if (absentLevel_ >= ld32(at(tbl, TBL_LEVELS))) return ~uint64_t{0};
  const uint64_t span = static_cast<uint64_t>(absentLevel_) * static_cast<uint64_t>(ld32(at(tbl, TBL_LEVEL_BITS)));
  return span >= 64 ? ~uint64_t{0} : (idx | ((uint64_t{1} << span) - 1)) + 1;
}

uint32_t TceEngine::rootSize(uint32_t tbl) {
  const bool leaf = ld32(at(tbl, TBL_LEVELS)) == 1;
  return nodeSize(leaf, ld32(at(tbl, TBL_ROOT_BITS)));
}

/** Allocates the TCE tree root of a described table: 0 or -ENOMEM (pnv_pci_ioda2_table_alloc_pages). */
int32_t TceEngine::tableInit(uint32_t tbl) {
  if (ld32(at(tbl, TBL_ROOT)) != 0) return 0;
  const uint32_t sz = rootSize(tbl);
  const uint32_t root = sz == 0 ? 0 : alloc(sz);
  if (root == 0) return -ERRNO_ENOMEM;
  st32(at(tbl, TBL_ROOT), root);
  st64(at(tbl, TBL_NODE_BYTES), blockBytes(sz));
  return 0;
}

/** Allocates the userspace view root if it is absent: 0 or -ENOMEM (tce_iommu_userspace_view_alloc). */
int32_t TceEngine::tableUaAlloc(uint32_t tbl) {
  if (ald32(at(tbl, TBL_UA_ROOT)) != 0) return 0;
  const uint32_t sz = rootSize(tbl);
  const uint32_t root = sz == 0 ? 0 : alloc(sz);
  if (root == 0) return -ERRNO_ENOMEM;
  if (acas32(at(tbl, TBL_UA_ROOT), 0, root) != 0) {
    free(root, sz);
    return 0;
  }
  // Added, not stored: a vCPU may already be growing the view and counting its nodes.
  aadd64(at(tbl, TBL_UA_NODE_BYTES), blockBytes(sz));
  return 0;
}

// Frees a subtree whose node at level `lvl` has 2^nodeBits slots
// (pnv_pci_ioda2_table_do_free_pages): children first, in slot order, then the node.
void TceEngine::freeTree(uint32_t node, uint32_t lvl, uint32_t nodeBits, uint32_t bits, uint32_t depth) {
  if (node == 0) return;
  if (depth > kMaxTreeDepth) {
    trap(Fault::kTooDeep, node, 0);
    return;
  }
  if (lvl > 0) {
    const uint32_t n = shl32(1, nodeBits);
    for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
      freeTree(ld32(static_cast<uint32_t>(node + (i << 2))), lvl - 1, bits, bits, depth + 1);
    }
  }
  free(node, nodeSize(lvl == 0, nodeBits));
}

/** Frees the userspace view (ownership released or table freed). */
void TceEngine::tableUaFree(uint32_t tbl) {
  const uint32_t root = ld32(at(tbl, TBL_UA_ROOT));
  const uint32_t top = ld32(at(tbl, TBL_LEVELS)) - 1;
  const uint32_t rootBits = ld32(at(tbl, TBL_ROOT_BITS));
  const uint32_t bits = ld32(at(tbl, TBL_LEVEL_BITS));
  freeTree(root, top, rootBits, bits, 0);
  st32(at(tbl, TBL_UA_ROOT), 0);
  st64(at(tbl, TBL_UA_NODE_BYTES), 0);
}

/** Frees both trees of a table; the descriptor itself is the caller's (iommu_table_free). */
void TceEngine::tableFree(uint32_t tbl) {
  tableUaFree(tbl);
  const uint32_t root = ld32(at(tbl, TBL_ROOT));
  const uint32_t top = ld32(at(tbl, TBL_LEVELS)) - 1;
  const uint32_t rootBits = ld32(at(tbl, TBL_ROOT_BITS));
  const uint32_t bits = ld32(at(tbl, TBL_LEVEL_BITS));
  freeTree(root, top, rootBits, bits, 0);
  st32(at(tbl, TBL_ROOT), 0);
  st64(at(tbl, TBL_NODE_BYTES), 0);
}

/** The TCE at absolute `entry`; 0 when absent or outside the table (pnv_tce_get). */
uint64_t TceEngine::tableGet(uint32_t tbl, uint64_t entry) {
  const int64_t idx = relIndex(tbl, entry);
  if (idx < 0) return 0;
  const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, static_cast<uint64_t>(idx), false);
  return p == 0 ? 0 : ald64(p);
}

/** The userspace address recorded for absolute `entry`; 0 when none (IOMMU_TABLE_USERSPACE_ENTRY_RO). */
uint64_t TceEngine::tableUaGet(uint32_t tbl, uint64_t entry) {
  const int64_t idx = relIndex(tbl, entry);
  if (idx < 0) return 0;
  const uint32_t p = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, static_cast<uint64_t>(idx), false);
  return p == 0 ? 0 : ald64(p) & ~uint64_t{1};
}

/** The first absolute entry in [entry, end) holding a non-zero TCE, or -1; skips absent levels. */
int64_t TceEngine::tableNextValid(uint32_t tbl, uint64_t entry, uint64_t end) {
  const uint64_t off = ld64(at(tbl, TBL_OFFSET));
  const uint64_t size = ld64(at(tbl, TBL_SIZE));
  uint64_t idx = entry > off ? entry - off : 0;
  const uint64_t stop = end <= off ? 0 : end - off < size ? end - off : size;
  // The fault test only stops a scan the WebAssembly build would have trapped out of.
  while (idx < stop && fault_ == Fault::kNone) {
    const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false);
    if (p == 0) {
      idx = skipAbsent(tbl, idx);
      continue;
    }
    if (ald64(p) != 0) return static_cast<int64_t>(idx + off);
    idx++;
  }
  return -1;
}

/**
 * Exchanges the TCE at `entry` (iommu_tce_xchg / pnv_tce_xchg): stores `tce`
 * (WRITE implies READ, as on PowerNV) and returns the old TCE, or -errno.
 * Clearing an absent level succeeds without allocating; setting one needs
 * OP_ALLOC, else -ENOMEM. No view bookkeeping: the v1 path.
 */
int64_t TceEngine::tableXchg(uint32_t tbl, uint64_t entry, uint64_t tce, uint32_t flags) {
  const int64_t idx = relIndex(tbl, entry);
  if (idx < 0 || (tce >> 62) != 0) return -ERRNO_EINVAL;
  uint64_t word = tce;
  if (word & kWrite) word |= kRead;
  const bool grow = (word & kPerm) != 0 && (flags & kOpAlloc) != 0;
  const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, static_cast<uint64_t>(idx), grow);
  if (p == 0) return (word & kPerm) == 0 ? 0 : -ERRNO_ENOMEM;
  if ((word & kPerm) == 0) word = 0;
  return static_cast<int64_t>(axchg64(p, word));
}

/** Takes the lock bit of a view slot and returns the ua it held. */
uint64_t TceEngine::lockView(uint32_t pua) {
  for (;;) {
    // After a fault both atomics answer 0, which ends the loop.
    const uint64_t v = ald64(pua);
    if ((v & 1) == 0 && acas64(pua, v, v | 1) == v) return v;
  }
}

/** Decrements the region an old entry was mapped from, looked up in `mm` (tce_iommu_unuse_page_v2). */
void TceEngine::unuseUa(uint32_t mm, uint64_t ua, uint32_t pageShift) {
  if (ua == 0) return;
  const uint32_t r = regionLookup(mm, ua, shl64(1, pageShift));
  if (r != 0 && regionUaToHpa(r, ua, pageShift) >= 0) regionMappedDec(r);
}

/**
 * Maps one entry from a pre-registered userspace address (tce_iommu_build_v2,
 * one iteration; kvmppc_tce_iommu_do_map): looks `ua` up in `mm`, translates
 * it, counts the new region, exchanges the TCE, releases the old entry's
 * region, records `ua` in the view. Returns 0 or -errno with nothing changed.
 */
int32_t TceEngine::buildOneV2(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t ua, uint32_t perm, uint32_t flags,
                              uint32_t pid) {
  if ((flags & kOpCheckPid) != 0 && ld32(at(tbl, TBL_OWNER_PID)) != pid) return -ERRNO_EPERM;
  const bool grow = (flags & kOpAlloc) != 0;
  const uint32_t shift = ld32(at(tbl, TBL_PAGE_SHIFT));
  // Resolve the region before allocating levels, so a refused page allocates nothing.
  const uint32_t r = regionLookup(mm, ua, shl64(1, shift));
  if (r == 0) return -ERRNO_EINVAL;
  const int64_t hpa = regionUaToHpa(r, ua, shift);
  if (hpa < 0) return -ERRNO_EINVAL;
  const uint32_t pua = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, grow);
  if (pua == 0) return -ERRNO_ENOMEM;
  const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, grow);
  if (p == 0) return -ERRNO_ENOMEM;
  if (regionMappedInc(r) != 0) return -ERRNO_ENXIO;
  uint64_t word = static_cast<uint64_t>(hpa) | (perm & kPerm);
  if (word & kWrite) word |= kRead;
  const uint64_t oldUa = lockView(pua);
  const uint64_t old = axchg64(p, word);
  if ((old & kPerm) != 0) unuseUa(mm, oldUa, shift);
  ast64(pua, ua);
  return 0;
}

/**
 * Clears one valid entry (one iteration of tce_iommu_clear, v2): the TCE
 * becomes 0 and the region its view names, looked up in `mm`, loses one
 * mapping. Returns the old TCE (0 if it was already clear) or -EPERM.
 */
int64_t TceEngine::clearOne(uint32_t tbl, uint32_t mm, uint64_t idx, uint32_t p, uint32_t flags, uint32_t pid) {
  if ((flags & kOpCheckPid) != 0 && ld32(at(tbl, TBL_OWNER_PID)) != pid) return -ERRNO_EPERM;
  const uint32_t pua = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, false);
  if (pua == 0) return static_cast<int64_t>(axchg64(p, 0));
  const uint64_t oldUa = lockView(pua);
  const uint64_t old = axchg64(p, 0);
  if ((old & kPerm) != 0) unuseUa(mm, oldUa, ld32(at(tbl, TBL_PAGE_SHIFT)));
  ast64(pua, 0);
  return static_cast<int64_t>(old);
}

/**
 * Clears `n` entries from absolute `entry` (tce_iommu_clear), skipping absent
 * levels. Returns 0, -EINVAL for a range outside the table, or -EPERM (owner
 * check; entries before the refused one stay cleared).
 */
int32_t TceEngine::tableClearV2(uint32_t tbl, uint32_t mm, uint64_t entry, uint64_t n, uint32_t flags, uint32_t pid) {
  const int64_t start = relIndex(tbl, entry);
  if (start < 0 || n > ld64(at(tbl, TBL_SIZE)) - static_cast<uint64_t>(start)) return n == 0 ? 0 : -ERRNO_EINVAL;
  uint64_t idx = static_cast<uint64_t>(start);
  const uint64_t end = idx + n;
  while (idx < end && fault_ == Fault::kNone) {
    const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false);
    if (p == 0) {
      idx = skipAbsent(tbl, idx);
      continue;
    }
    if (ald64(p) != 0) {
      const int64_t r = clearOne(tbl, mm, idx, p, flags, pid);
      if (r < 0) return static_cast<int32_t>(r);
    }
    idx++;
  }
  return 0;
}

/**
 * Maps `n` consecutive entries from absolute `entry` to consecutive IOMMU
 * pages starting at `ua` (tce_iommu_build_v2). On a failure at page k the
 * entries [0, k) are cleared again, as the kernel does, and -errno returned.
 */
int32_t TceEngine::tableBuildV2(uint32_t tbl, uint32_t mm, uint64_t entry, uint64_t n, uint64_t ua, uint32_t perm,
                                uint32_t flags, uint32_t pid) {
  const int64_t start = relIndex(tbl, entry);
  if (start < 0 || n > ld64(at(tbl, TBL_SIZE)) - static_cast<uint64_t>(start)) return n == 0 ? 0 : -ERRNO_EINVAL;
  if ((perm & static_cast<uint32_t>(TCE_PERM_MASK)) == 0 || (perm & ~static_cast<uint32_t>(TCE_PERM_MASK)) != 0) {
    return -ERRNO_EINVAL;
  }
  const uint64_t shift = ld32(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t idx0 = static_cast<uint64_t>(start);
  for (uint64_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const int32_t r = buildOneV2(tbl, mm, idx0 + i, ua + shl64(i, shift), perm, flags, pid);
    if (r < 0) {
      tableClearV2(tbl, mm, entry, i, flags & ~kOpCheckPid, pid);
      return r;
    }
  }
  return 0;
}

/**
 * Whether buildOneV2 on relative index `idx` could complete: 0, -ENOMEM when
 * a level (or, in virtual mode, the view itself) is missing, -EINVAL when no
 * region of `mm` backs `ua` with pages big enough. Changes nothing: the
 * hypercall paths run it over every entry before writing any.
 */
int32_t TceEngine::checkMapOne(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t ua, bool grow) {
  if (idx >= ld64(at(tbl, TBL_SIZE))) return -ERRNO_EINVAL;
  if (grow) {
    if (ald32(at(tbl, TBL_UA_ROOT)) == 0) return -ERRNO_ENOMEM;
  } else if (slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, false) == 0 ||
             slot(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false) == 0) {
    return -ERRNO_ENOMEM;
  }
  const uint32_t shift = ld32(at(tbl, TBL_PAGE_SHIFT));
  const uint32_t r = regionLookup(mm, ua, shl64(1, shift));
  if (r == 0 || regionUaToHpa(r, ua, shift) < 0) return -ERRNO_EINVAL;
  return 0;
}

/** Clears `n` entries from relative index `idx` (the hypercall unmap path, kvmppc_tce_iommu_unmap). */
int32_t TceEngine::clearRel(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t n, uint32_t flags, uint32_t pid) {
  return tableClearV2(tbl, mm, idx + ld64(at(tbl, TBL_OFFSET)), n, flags, pid);
}

// ---------------------------------------------------------------------------
// guest.ts: the guest side of a VM: memslots (guest physical -> userspace
// address and the linear-memory bytes behind it) and the guest-visible TCE
// tables (kvmppc_spapr_tce_table.pages[], QEMU's table), whose pages of
// TCEs are allocated on demand.

/** The guest TCE table of `vm` with this LIOBN, or 0 (kvmppc_find_table). */
uint32_t TceEngine::findStt(uint32_t vm, uint64_t liobn) {
  uint32_t s = ald32(at(vm, VM_STTS));
  while (s != 0) {
    if (ld64(at(s, STT_LIOBN)) == liobn) return s;
    s = ald32(at(s, STT_NEXT));
  }
  return 0;
}

/** The memslot holding `gpa`, or 0. */
uint32_t TceEngine::findSlot(uint32_t vm, uint64_t gpa) {
  uint32_t s = ald32(at(vm, VM_SLOTS));
  while (s != 0) {
    const uint64_t base = ld64(at(s, SLOT_GPA));
    if (gpa >= base && gpa - base < ld64(at(s, SLOT_SIZE))) return s;
    s = ald32(at(s, SLOT_NEXT));
  }
  return 0;
}

/** Userspace address of a guest physical address, 0 outside every memslot (kvmppc_tce_to_ua). */
uint64_t TceEngine::gpaToUa(uint32_t vm, uint64_t gpa) {
  const uint32_t s = findSlot(vm, gpa);
  return s == 0 ? 0 : ld64(at(s, SLOT_UA)) + (gpa - ld64(at(s, SLOT_GPA)));
}

/** Linear-memory offset of `len` guest bytes at `gpa`, 0 when not all backed by one memslot. */
uint32_t TceEngine::gpaToHost(uint32_t vm, uint64_t gpa, uint64_t len) {
  const uint32_t s = findSlot(vm, gpa);
  if (s == 0) return 0;
  const uint32_t host = ld32(at(s, SLOT_HOST_OFF));
  const uint64_t off = gpa - ld64(at(s, SLOT_GPA));
  if (host == 0 || len > ld64(at(s, SLOT_SIZE)) - off) return 0;
  return host + static_cast<uint32_t>(off);
}

/** TCEs per page of a guest table (one system page of u64s: TCES_PER_PAGE). */
uint64_t TceEngine::tcesPerPage() { return shl64(1, sysPageShift()) >> 3; }

/** Pointer to the guest TCE of relative index `idx`; 0 if its page is absent and `grow` is false or allocation fails. */
uint32_t TceEngine::sttSlot(uint32_t stt, uint64_t idx, bool grow) {
  const uint64_t per = tcesPerPage();
  if (per == 0) {
    // i64.div_u by zero traps (a header whose system page shift is below 3).
    trap(Fault::kDivByZero, stt, 0);
    return 0;
  }
  const uint32_t pg = static_cast<uint32_t>(idx / per);
  if (pg >= ld32(at(stt, STT_NPAGES))) return 0;
  const uint32_t pp = ld32(at(stt, STT_PAGES)) + (pg << 2);
  uint32_t page = ald32(pp);
  if (page == 0) {
    if (!grow) return 0;
    const uint32_t bytes = static_cast<uint32_t>(per << 3);
    const uint32_t fresh = alloc(bytes);
    if (fresh == 0) return 0;
    page = acas32(pp, 0, fresh);
    if (page != 0) {
      free(fresh, bytes);
    } else {
      page = fresh;
    }
  }
  return page + (static_cast<uint32_t>(idx % per) << 3);
}

/** Whether every guest-table page of relative entries [idx, idx + n) exists (kvmppc_rm_ioba_validate). */
bool TceEngine::sttPagesPresent(uint32_t stt, uint64_t idx, uint64_t n) {
  if (n == 0) return true;
  const uint64_t per = tcesPerPage();
  const uint32_t pages = ld32(at(stt, STT_PAGES));
  if (per == 0) {
    trap(Fault::kDivByZero, stt, 0);
    return false;
  }
  const uint64_t last = (idx + n - 1) / per;
  // After a fault the atomic load answers 0, which ends the loop.
  for (uint64_t pg = idx / per; pg <= last; pg++) {
    if (ald32(static_cast<uint32_t>(pages + (static_cast<uint32_t>(pg) << 2))) == 0) return false;
  }
  return true;
}

/** The guest TCE at relative index `idx` (0 when its page is absent). */
uint64_t TceEngine::sttGet(uint32_t stt, uint64_t idx) {
  const uint32_t p = sttSlot(stt, idx, false);
  return p == 0 ? 0 : ald64(p);
}

/** Frees every allocated page of a guest table. */
void TceEngine::sttFreePages(uint32_t stt) {
  const uint32_t n = ld32(at(stt, STT_NPAGES));
  const uint32_t pages = ld32(at(stt, STT_PAGES));
  const uint32_t bytes = static_cast<uint32_t>(tcesPerPage() << 3);
  for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const uint32_t p = ld32(static_cast<uint32_t>(pages + (i << 2)));
    if (p != 0) free(p, bytes);
    st32(static_cast<uint32_t>(pages + (i << 2)), 0);
  }
}

// ---------------------------------------------------------------------------
// hcall.ts: the TCE hypercalls on a vCPU register block (r3 = number, r4.. =
// args). Profile kvm (book3s_64_vio_hv.c, the real-mode handlers of <=v5.18,
// and book3s_64_vio.c): one routine serves both modes; real mode (no
// OP_ALLOC) never allocates. Every call checks everything it needs before it
// writes, so H_TOO_HARD and H_PARAMETER leave the tables as they were.
// Profile qemu (hw/ppc/spapr_iommu.c): H_SUCCESS or H_PARAMETER, may stop
// part-way.

namespace {
/** Counter index of a hypercall number (KIND_*), or -1. */
inline int32_t kindOf(uint64_t nr) {
  if (nr == kHPut) return KIND_PUT;
  if (nr == kHIndirect) return KIND_INDIRECT;
  if (nr == kHStuff) return KIND_STUFF;
  if (nr == kHGet) return KIND_GET;
  return -1;
}
}  // namespace

// `n` is a constant at every call site: the field offset folds (no wrap-around), as in the WebAssembly build.
uint64_t TceEngine::gpr(uint32_t vcpu, uint32_t n) { return ld64(at(vcpu, VCPU_GPR + (n << 3))); }

void TceEngine::setGpr(uint32_t vcpu, uint32_t n, uint64_t v) { st64(at(vcpu, VCPU_GPR + (n << 3)), v); }

/**
 * Runs the hypercall in the vCPU's registers at `level` (LEVEL_REAL: real
 * mode, never allocates; LEVEL_VIRTUAL: may allocate). Returns the H_*
 * status; r3 receives it unless it is H_TOO_HARD. Unknown hypercall numbers
 * are H_TOO_HARD. The QEMU profile runs at any level, as LEVEL_EXIT. Counts
 * the completion in the vCPU's stats[kind][level].
 */
int32_t TceEngine::hcall(uint32_t vcpu, uint32_t level) {
  // The reclamation read side, as in assembly/hcall.ts: a seq_cst store at
  // entry (ordered before the call's loads of shared descriptors), a release
  // store at exit (ordered after them; a plain mov on x86).
  const uint64_t seqAt = at(vcpu, VCPU_RCU_SEQ);
  const uint32_t inside = (ld32(seqAt) + 1) | 1;
  ast32(seqAt, inside);
  const int32_t rc = hcallInside(vcpu, level);
  if (okAtomic(seqAt, 4)) __atomic_store_n(reinterpret_cast<uint32_t*>(base_ + seqAt), inside + 1, __ATOMIC_RELEASE);
  return rc;
}

/** hcall() between the read-side entry and exit. */
int32_t TceEngine::hcallInside(uint32_t vcpu, uint32_t level) {
  const uint32_t vm = ld32(at(vcpu, VCPU_VM));
  const uint64_t nr = gpr(vcpu, 3);
  const uint32_t flags = level == kLevelReal ? 0 : kOpAlloc;
  int32_t rc;
  uint32_t done = level;
  if (ld32(at(vm, VM_PROFILE)) == static_cast<uint32_t>(PROFILE_QEMU)) {
    rc = qemuHcall(vm, vcpu, nr);
    done = kLevelExit;
  } else if (nr == kHPut) {
    rc = putTce(vm, vcpu, flags);
  } else if (nr == kHIndirect) {
    rc = putTceIndirect(vm, vcpu, flags);
  } else if (nr == kHStuff) {
    rc = stuffTce(vm, vcpu, flags);
  } else if (nr == kHGet) {
    rc = getTce(vm, vcpu);
  } else {
    rc = H_TOO_HARD;
  }
  if (rc != H_TOO_HARD) {
    setGpr(vcpu, 3, static_cast<uint64_t>(static_cast<int64_t>(rc)));
  } else if (level == kLevelVirtual) {
    done = kLevelExit;
  } else {
    done = kLevelNone;
  }
  st32(at(vcpu, VCPU_LEVEL), done);
  const int32_t kind = kindOf(nr);
  if (kind >= 0 && done != kLevelNone) {
    const uint32_t c = vcpu + VCPU_STATS + ((static_cast<uint32_t>(kind) * 4 + done) << 2);
    st32(c, ld32(c) + 1);
  }
  return rc;
}

int32_t TceEngine::hcallLoop(uint32_t vcpu, uint32_t level, uint64_t iterations) {
  const uint64_t r3 = gpr(vcpu, 3);
  const uint64_t r4 = gpr(vcpu, 4);
  int32_t rc = 0;
  for (uint64_t i = 0; i < iterations && fault_ == Fault::kNone; i++) {
    setGpr(vcpu, 3, r3);
    setGpr(vcpu, 4, r4);
    rc = hcall(vcpu, level);
  }
  return rc;
}

// --- profile kvm ---------------------------------------------------------------

/** kvmppc_ioba_validate: aligned to the guest page and [ioba, +npages) inside the table. */
bool TceEngine::iobaOk(uint32_t stt, uint64_t ioba, uint64_t npages) {
  const uint64_t shift = ld32(at(stt, STT_PAGE_SHIFT));
  if (ioba & (shl64(1, shift) - 1)) return false;
  const uint64_t idx = shr64(ioba, shift);
  const uint64_t off = ld64(at(stt, STT_OFFSET));
  if (idx < off) return false;
  const uint64_t size = ld64(at(stt, STT_SIZE));
  return npages <= size && idx - off <= size - npages;
}

/** The pid check once per hypercall: every linked table must belong to the vCPU's process. */
bool TceEngine::pidCallCheck(uint32_t stt, uint32_t pid) {
  const uint32_t n = ld32(at(stt, STT_STIT_COUNT));
  for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const uint32_t tbl = ld32(static_cast<uint32_t>(stt + STT_STITS + (i << 2)));
    if (ld32(at(tbl, TBL_OWNER_PID)) != pid) return false;
  }
  return true;
}

/** OP_CHECK_PID when the host checks the pid at every view write, else 0. */
uint32_t TceEngine::entryCheckFlag() {
  return ld32(at(H, HDR_OWNER_CHECK)) == static_cast<uint32_t>(OWNER_CHECK_PID) &&
                 ld32(at(H, HDR_PID_PLACEMENT)) == static_cast<uint32_t>(PID_CHECK_ENTRY)
             ? kOpCheckPid
             : 0;
}

/** The pid check at hypercall entry, for both placements (a refused call changes nothing). */
bool TceEngine::callCheckFails(uint32_t stt, uint32_t pid) {
  return ld32(at(H, HDR_OWNER_CHECK)) == static_cast<uint32_t>(OWNER_CHECK_PID) && !pidCallCheck(stt, pid);
}

/**
 * Checks that guest entry `entry` (absolute) can be mapped to `ua` (perm != 0)
 * or unmapped in every linked hardware table, subpage by subpage
 * (kvmppc_tce_validate + the failure cases of kvmppc_rm_tce_iommu_do_map).
 */
bool TceEngine::checkStits(uint32_t stt, uint32_t mm, uint64_t entry, uint64_t ua, uint32_t perm, bool grow) {
  const uint32_t n = ld32(at(stt, STT_STIT_COUNT));
  const uint32_t gshift = ld32(at(stt, STT_PAGE_SHIFT));
  for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const uint32_t tbl = ld32(static_cast<uint32_t>(stt + STT_STITS + (i << 2)));
    // A v1 table pins pages per entry, which only the VMM can do: every change exits.
    if ((ld32(at(tbl, TBL_FLAGS)) & kTableV2) == 0) return false;
    if (perm == 0) continue;
    const uint32_t tshift = ld32(at(tbl, TBL_PAGE_SHIFT));
    const uint64_t sub = shl64(1, static_cast<uint32_t>(gshift - tshift));
    const uint64_t rel = entry * sub - ld64(at(tbl, TBL_OFFSET));
    for (uint64_t k = 0; k < sub && fault_ == Fault::kNone; k++) {
      if (checkMapOne(tbl, mm, rel + k, ua + shl64(k, tshift), grow) != 0) return false;
    }
  }
  return true;
}

/**
 * Maps or unmaps guest entry `entry` in every linked table; checkStits has passed, so only an allocation can
 * fail. `checkPid` (kOpCheckPid or 0) compares the pid at every view write.
 */
bool TceEngine::applyStits(uint32_t stt, uint32_t mm, uint64_t entry, uint64_t ua, uint32_t perm, uint32_t flags,
                           uint32_t checkPid, uint32_t pid) {
  const uint32_t n = ld32(at(stt, STT_STIT_COUNT));
  const uint32_t gshift = ld32(at(stt, STT_PAGE_SHIFT));
  const uint32_t f = (flags & kOpAlloc) | checkPid;
  for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const uint32_t tbl = ld32(static_cast<uint32_t>(stt + STT_STITS + (i << 2)));
    const uint32_t tshift = ld32(at(tbl, TBL_PAGE_SHIFT));
    const uint64_t sub = shl64(1, static_cast<uint32_t>(gshift - tshift));
    const uint64_t rel = entry * sub - ld64(at(tbl, TBL_OFFSET));
    if (perm == 0) {
      clearRel(tbl, mm, rel, sub, checkPid, pid);
      continue;
    }
    for (uint64_t k = 0; k < sub && fault_ == Fault::kNone; k++) {
      if (buildOneV2(tbl, mm, rel + k, ua + shl64(k, tshift), perm, f, pid) < 0) {
        // Only an allocation failure of virtual mode gets here: undo this table's subpages.
        clearRel(tbl, mm, rel, k, 0, 0);
        return false;
      }
    }
  }
  return true;
}

namespace {
/**
 * The answer to a TCE whose address is misaligned to the guest page: real
 * mode (kvmppc_rm_tce_validate) and the 4.12 virtual mode say H_PARAMETER;
 * from 4.19 the virtual-mode kvmppc_tce_validate (42de7b9e2167) says
 * H_TOO_HARD, which exits to the VMM. `kernel` is HDR.kernel, loaded only on
 * that error path.
 */
int32_t misalignedTce(uint32_t flags, uint32_t kernel) {
  return (flags & kOpAlloc) != 0 && kernel >= static_cast<uint32_t>(KERNEL_4_19) ? H_TOO_HARD : H_PARAMETER;
}
}  // namespace

/** Stores a guest TCE (kvmppc_tce_put): an absent page is allocated unless the TCE is 0. */
void TceEngine::sttPut(uint32_t stt, uint64_t idx, uint64_t tce, bool grow) {
  const uint32_t p = sttSlot(stt, idx, grow && tce != 0);
  if (p != 0) ast64(p, tce);
}

/** H_PUT_TCE(liobn, ioba, tce). */
int32_t TceEngine::putTce(uint32_t vm, uint32_t vcpu, uint32_t flags) {
  const uint32_t stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  const uint64_t tce = gpr(vcpu, 6);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const bool grow = (flags & kOpAlloc) != 0;
  const uint64_t shift = ld32(at(stt, STT_PAGE_SHIFT));
  const uint64_t entry = shr64(ioba, shift);
  const uint64_t idx = entry - ld64(at(stt, STT_OFFSET));
  if (!grow && tce != 0 && !sttPagesPresent(stt, idx, 1)) return H_TOO_HARD;
  const uint32_t perm = static_cast<uint32_t>(tce & kPerm);
  const uint32_t pid = ld32(at(vcpu, VCPU_PID));
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  const uint32_t mm = ld32(at(vm, VM_MM));
  uint64_t ua = 0;
  if (perm != 0) {
    const uint64_t gpa = tce & ~kPerm;
    if (gpa & (shl64(1, shift) - 1)) return misalignedTce(flags, ld32(at(H, HDR_KERNEL)));
    ua = gpaToUa(vm, gpa);
    if (ua == 0) return H_TOO_HARD;
  }
  if (!checkStits(stt, mm, entry, ua, perm, grow)) return H_TOO_HARD;
  if (!applyStits(stt, mm, entry, ua, perm, flags, entryCheckFlag(), pid)) return H_TOO_HARD;
  sttPut(stt, idx, tce, grow);
  return H_SUCCESS;
}

/** H_PUT_TCE_INDIRECT(liobn, ioba, tce_list, npages): the list is big-endian in guest memory. */
int32_t TceEngine::putTceIndirect(uint32_t vm, uint32_t vcpu, uint32_t flags) {
  const uint32_t stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  const uint64_t list = gpr(vcpu, 6);
  const uint64_t npages = gpr(vcpu, 7);
  if (npages > kIndirectMax) return H_PARAMETER;
  if (list & 0xfff) return H_PARAMETER;
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const bool grow = (flags & kOpAlloc) != 0;
  const uint64_t shift = ld32(at(stt, STT_PAGE_SHIFT));
  const uint64_t entry = shr64(ioba, shift);
  const uint64_t idx = entry - ld64(at(stt, STT_OFFSET));
  if (!grow && !sttPagesPresent(stt, idx, npages)) return H_TOO_HARD;
  // The list must translate even when empty (kvmppc_rm_tce_to_ua on tce_list).
  const uint32_t host = gpaToHost(vm, list, npages << 3);
  if (host == 0) return H_TOO_HARD;
  const uint32_t pid = ld32(at(vcpu, VCPU_PID));
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  const uint32_t mm = ld32(at(vm, VM_MM));
  const uint32_t checkPid = entryCheckFlag();
  const uint64_t pageMask = shl64(1, shift) - 1;
  // Validate every TCE before changing anything.
  for (uint64_t i = 0; i < npages; i++) {
    const uint64_t tce = __builtin_bswap64(ld64(static_cast<uint32_t>(host + static_cast<uint32_t>(i << 3))));
    const uint32_t perm = static_cast<uint32_t>(tce & kPerm);
    uint64_t ua = 0;
    if (perm != 0) {
      const uint64_t gpa = tce & ~kPerm;
      if (gpa & pageMask) return misalignedTce(flags, ld32(at(H, HDR_KERNEL)));
      ua = gpaToUa(vm, gpa);
      if (ua == 0) return H_TOO_HARD;
    }
    if (!checkStits(stt, mm, entry + i, ua, perm, grow)) return H_TOO_HARD;
  }
  for (uint64_t i = 0; i < npages; i++) {
    const uint64_t tce = __builtin_bswap64(ld64(static_cast<uint32_t>(host + static_cast<uint32_t>(i << 3))));
    const uint32_t perm = static_cast<uint32_t>(tce & kPerm);
    const uint64_t ua = perm != 0 ? gpaToUa(vm, tce & ~kPerm) : 0;
    if (!applyStits(stt, mm, entry + i, ua, perm, flags, checkPid, pid)) return H_TOO_HARD;
    sttPut(stt, idx + i, tce, grow);
  }
  return H_SUCCESS;
}

/** H_STUFF_TCE(liobn, ioba, value, npages): clears (KVM allows no permission bits) npages entries. */
int32_t TceEngine::stuffTce(uint32_t vm, uint32_t vcpu, uint32_t flags) {
  const uint32_t stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  const uint64_t value = gpr(vcpu, 6);
  const uint64_t npages = gpr(vcpu, 7);
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const bool grow = (flags & kOpAlloc) != 0;
  const uint64_t shift = ld32(at(stt, STT_PAGE_SHIFT));
  const uint64_t entry = shr64(ioba, shift);
  const uint64_t idx = entry - ld64(at(stt, STT_OFFSET));
  // kvmppc_rm_ioba_validate (pages needed unless clearing) comes before the permission check.
  if (!grow && value != 0 && !sttPagesPresent(stt, idx, npages)) return H_TOO_HARD;
  if (value & kPerm) return H_PARAMETER;
  const uint32_t pid = ld32(at(vcpu, VCPU_PID));
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  const uint32_t mm = ld32(at(vm, VM_MM));
  const uint32_t checkPid = entryCheckFlag();
  if (npages != 0 && !checkStits(stt, mm, entry, 0, 0, grow)) return H_TOO_HARD;
  const uint32_t n = ld32(at(stt, STT_STIT_COUNT));
  const uint32_t gshift = ld32(at(stt, STT_PAGE_SHIFT));
  for (uint32_t s = 0; s < n && fault_ == Fault::kNone; s++) {
    const uint32_t tbl = ld32(static_cast<uint32_t>(stt + STT_STITS + (s << 2)));
    const uint64_t sub = shl64(1, static_cast<uint32_t>(gshift - ld32(at(tbl, TBL_PAGE_SHIFT))));
    clearRel(tbl, mm, entry * sub - ld64(at(tbl, TBL_OFFSET)), npages * sub, checkPid, pid);
  }
  for (uint64_t i = 0; i < npages && fault_ == Fault::kNone; i++) sttPut(stt, idx + i, value, grow);
  return H_SUCCESS;
}

/** H_GET_TCE(liobn, ioba) -> r4. */
int32_t TceEngine::getTce(uint32_t vm, uint32_t vcpu) {
  const uint32_t stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const uint64_t idx = shr64(ioba, ld32(at(stt, STT_PAGE_SHIFT))) - ld64(at(stt, STT_OFFSET));
  setGpr(vcpu, 4, sttGet(stt, idx));
  return H_SUCCESS;
}

// --- profile qemu --------------------------------------------------------------

/** QEMU's table lookup: a LIOBN with bits 32..63 set matches nothing. */
uint32_t TceEngine::qemuFind(uint32_t vm, uint64_t liobn) { return liobn >> 32 != 0 ? 0 : findStt(vm, liobn); }

/** put_tce_emu: ioba rounded down to the page; the index computed unsigned; raw value stored. */
int32_t TceEngine::qemuPut(uint32_t stt, uint64_t ioba, uint64_t tce) {
  const uint64_t shift = ld32(at(stt, STT_PAGE_SHIFT));
  const uint64_t bus = shl64(ld64(at(stt, STT_OFFSET)), shift);
  const uint64_t idx = shr64((ioba & ~(shl64(1, shift) - 1)) - bus, shift);
  if (idx >= ld64(at(stt, STT_SIZE))) return H_PARAMETER;
  sttPut(stt, idx, tce, true);
  return H_SUCCESS;
}

int32_t TceEngine::qemuHcall(uint32_t vm, uint32_t vcpu, uint64_t nr) {
  if (nr != kHPut && nr != kHIndirect && nr != kHStuff && nr != kHGet) return H_TOO_HARD;
  const uint32_t stt = qemuFind(vm, gpr(vcpu, 4));
  if (stt == 0) return H_PARAMETER;
  const uint64_t ioba = gpr(vcpu, 5);
  if (nr == kHPut) return qemuPut(stt, ioba, gpr(vcpu, 6));
  const uint64_t shift = ld32(at(stt, STT_PAGE_SHIFT));
  const uint64_t psize = shl64(1, shift);
  if (nr == kHGet) {
    const uint64_t bus = shl64(ld64(at(stt, STT_OFFSET)), shift);
    const uint64_t idx = shr64((ioba & ~(psize - 1)) - bus, shift);
    if (idx >= ld64(at(stt, STT_SIZE))) return H_PARAMETER;
    setGpr(vcpu, 4, sttGet(stt, idx));
    return H_SUCCESS;
  }
  const uint64_t npages = gpr(vcpu, 7);
  if (nr == kHIndirect) {
    const uint64_t list = gpr(vcpu, 6);
    if (npages > kIndirectMax || (list & 0xfff) != 0) return H_PARAMETER;
    // The list must be guest RAM we can read; QEMU's behaviour outside RAM is unspecified (README).
    const uint32_t host = gpaToHost(vm, list, npages << 3);
    if (host == 0) return H_PARAMETER;
    int32_t rc = H_PARAMETER;
    for (uint64_t i = 0; i < npages; i++) {
      rc = qemuPut(stt, ioba + shl64(i, shift),
                   __builtin_bswap64(ld64(static_cast<uint32_t>(host + static_cast<uint32_t>(i << 3)))));
      if (rc != H_SUCCESS) break;
    }
    return rc;
  }
  // H_STUFF_TCE
  if (npages > ld64(at(stt, STT_SIZE))) return H_PARAMETER;
  const uint64_t value = gpr(vcpu, 6);
  int32_t rc = H_PARAMETER;
  for (uint64_t i = 0; i < npages && fault_ == Fault::kNone; i++) {
    rc = qemuPut(stt, ioba + shl64(i, shift), value);
    if (rc != H_SUCCESS) break;
  }
  return rc;
}

}  // namespace spapr
