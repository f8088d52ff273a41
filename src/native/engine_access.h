// The engine's memory accessors: WebAssembly's loads, stores and atomics on
// the shared linear memory, checked (one bounds check per access, a fault
// where WebAssembly traps) or raw (the hypercall path, after one range check
// per structure), chosen per routine by a template argument. They run for
// every access of every routine, so they are defined here, inline, for each
// area file to include (engine.h lists the files); their fault paths are out
// of line in engine_memory.cc.
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
#pragma once

#include "engine.h"

#include <bit>
#include <cstring>

#include "generated/layout.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the linear memory is little-endian (WebAssembly) and its u64 fields are updated with host atomics "
              "(atomic add included), which a big-endian host cannot do without a different layout");

namespace spapr {
namespace {

constexpr uint32_t H = static_cast<uint32_t>(HEADER_BASE);
constexpr uint64_t kPerm = static_cast<uint64_t>(TCE_PERM_MASK);
constexpr uint64_t kLock = static_cast<uint64_t>(VIEW_LOCK);
constexpr uint64_t kLockBits = static_cast<uint64_t>(VIEW_LOCK_BITS);
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

// ---------------------------------------------------------------------------
// Checked accesses.

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
inline void TceEngine::fill0(uint64_t a, uint32_t size) {
  if (ok(a, size)) std::memset(base_ + a, 0, size);
}

// ---------------------------------------------------------------------------
// Two ways to reach memory, chosen per routine at compile time.
//
// kChecked (R = false): the accessors above, one check per access, exactly
// the WebAssembly build's traps; the cold routines (the allocator, the VFIO
// path, table set-up and teardown) use them.
//
// kRaw (R = true): the hypercall path. Each descriptor, tree node, page
// array, guest-table page and TCE list is range-checked once, by need(),
// where the routine first reaches it, and then read and written with plain
// pointer accesses. need() compares against the memory's length (not the
// fault limit), so that after a fault a routine can still give back the
// locks it took in memory that was in range. A failing need() records the
// fault and the routine stops before using that memory.
//
// Both kinds see the same bytes and do the same atomics: where the
// AssemblyScript code uses atomic.*, R uses a host atomic on the same
// address; its plain loads and stores are plain (see the ordering argument
// above putFast in hcall.ts, and engine_hcall.h).
constexpr bool kRaw = true;
constexpr bool kChecked = false;

template <bool R>
SPAPR_HOT uint32_t TceEngine::L32(uint64_t a) {
  if constexpr (R) {
    uint32_t v;
    std::memcpy(&v, base_ + a, 4);
    return v;
  } else {
    return ld32(a);
  }
}

template <bool R>
SPAPR_HOT uint64_t TceEngine::L64(uint64_t a) {
  if constexpr (R) {
    uint64_t v;
    std::memcpy(&v, base_ + a, 8);
    return v;
  } else {
    return ld64(a);
  }
}

template <bool R>
SPAPR_HOT void TceEngine::S32(uint64_t a, uint32_t v) {
  if constexpr (R) {
    std::memcpy(base_ + a, &v, 4);
  } else {
    st32(a, v);
  }
}

template <bool R>
SPAPR_HOT void TceEngine::S64(uint64_t a, uint64_t v) {
  if constexpr (R) {
    std::memcpy(base_ + a, &v, 8);
  } else {
    st64(a, v);
  }
}

// A plain load of a word others change atomically (a lock word, a TCE): an
// 8-byte aligned load is whole on the hosts we build for; relaxed says so.
template <bool R>
SPAPR_HOT uint64_t TceEngine::P64(uint64_t a) {
  if constexpr (R) {
    return __atomic_load_n(reinterpret_cast<uint64_t*>(base_ + a), __ATOMIC_RELAXED);
  } else {
    return ld64(a);
  }
}

// The store that releases a view lock (it writes the entry's ua): a release.
template <bool R>
SPAPR_HOT void TceEngine::REL64(uint64_t a, uint64_t v) {
  if constexpr (R) {
    __atomic_store_n(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_RELEASE);
  } else {
    st64(a, v);
  }
}

// A plain store others read atomically (a guest TCE): relaxed, whole.
template <bool R>
SPAPR_HOT void TceEngine::W64(uint64_t a, uint64_t v) {
  if constexpr (R) {
    __atomic_store_n(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_RELAXED);
  } else {
    st64(a, v);
  }
}

template <bool R>
SPAPR_HOT uint32_t TceEngine::AL32(uint64_t a) {
  if constexpr (R) {
    return __atomic_load_n(reinterpret_cast<uint32_t*>(base_ + a), __ATOMIC_ACQUIRE);
  } else {
    return ald32(a);
  }
}

template <bool R>
SPAPR_HOT uint64_t TceEngine::AL64(uint64_t a) {
  if constexpr (R) {
    return __atomic_load_n(reinterpret_cast<uint64_t*>(base_ + a), __ATOMIC_ACQUIRE);
  } else {
    return ald64(a);
  }
}

template <bool R>
SPAPR_HOT uint32_t TceEngine::CAS32(uint64_t a, uint32_t expected, uint32_t desired) {
  if constexpr (R) {
    __atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(base_ + a), &expected, desired, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return expected;
  } else {
    return acas32(a, expected, desired);
  }
}

template <bool R>
SPAPR_HOT uint64_t TceEngine::CAS64(uint64_t a, uint64_t expected, uint64_t desired) {
  if constexpr (R) {
    __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(base_ + a), &expected, desired, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return expected;
  } else {
    return acas64(a, expected, desired);
  }
}

template <bool R>
SPAPR_HOT uint64_t TceEngine::XCHG64(uint64_t a, uint64_t v) {
  if constexpr (R) {
    return __atomic_exchange_n(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_SEQ_CST);
  } else {
    return axchg64(a, v);
  }
}

template <bool R>
SPAPR_HOT void TceEngine::ADD64(uint64_t a, uint64_t v) {
  if constexpr (R) {
    __atomic_fetch_add(reinterpret_cast<uint64_t*>(base_ + a), v, __ATOMIC_SEQ_CST);
  } else {
    aadd64(a, v);
  }
}

// memory.fill of `size` bytes (checked: nothing written unless all fit).
template <bool R>
SPAPR_HOT void TceEngine::FILL0(uint64_t a, uint64_t size) {
  if constexpr (R) {
    std::memset(base_ + a, 0, size);
  } else {
    fill0(a, static_cast<uint32_t>(size));
  }
}

// The one range check of a structure of `len` bytes at `a` before raw
// accesses (8-aligned unless `align` is false, as its atomics need); always
// true for the checked accessors, which check every access themselves.
template <bool R>
SPAPR_HOT bool TceEngine::need(uint64_t a, uint64_t len, bool align) {
  if constexpr (R) {
    if (len <= length_ && a <= length_ - len && (!align || (a & 7) == 0)) return true;
    needFailed(a, len, align);
    return false;
  } else {
    return true;
  }
}

}  // namespace spapr
