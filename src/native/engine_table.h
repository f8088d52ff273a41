// table.ts: TCE tables (struct iommu_table) with the userspace view
// (it_userspace). Two trees of identical shape hang off a descriptor; level
// L indexes bits [L*bits, (L+1)*bits) of the relative entry index, the root
// [(levels-1)*bits, +rootBits); 0 child slots are absent levels. Virtual
// mode (OP_ALLOC) allocates them, real mode answers -ENOMEM (pnv_tce with
// alloc=false). The low 12 bits of a view slot are the entry's lock: bit 0
// held, bits 1..11 the holder's tag (VIEW_LOCK_BITS); no wait is unbounded.
//
// The tree walk (pnv_tce), the view lock and the release of an old entry's
// region, as templates on the kind of access: the VFIO routines of
// engine_table.cc and the hypercall path both use them.
#pragma once

#include "engine_region.h"

namespace spapr {

namespace {
inline uint64_t blockBytes(uint32_t bytes) { return shl64(1, blockShift(bytes)); }

/** Bytes a tree node of 2^bits slots spans, for a range check (too many to fit anywhere when bits is absurd). */
inline uint64_t nodeBytes(bool isLeaf, uint32_t bits) {
  return bits < 32 ? (uint64_t{isLeaf ? 8u : 4u} << bits) : ~uint64_t{0};
}

/** The end of the leaf holding `rel`, or `hi` if that comes first. */
inline uint64_t leafEnd(uint64_t rel, uint64_t leafMask, uint64_t hi) {
  const uint64_t e = (rel | leafMask) + 1;
  return e == 0 || e > hi ? hi : e;
}
}  // namespace

/**
 * The leaf node holding relative index `rel` in the tree whose root is at
 * `tbl + rootField` (pnv_tce's walk); 0 when a level is absent and `grow` is
 * false (absentLevel_ says which), or when allocation fails. The raw kind
 * checks `tbl` and each node it passes through, the leaf included.
 */
template <bool R>
uint32_t TceEngine::leafNodeT(uint32_t tbl, uint32_t rootField, uint32_t bytesField, uint64_t rel, bool grow) {
  if (!need<R>(tbl, TBL_BYTES)) return 0;
  uint32_t node = AL32<R>(at(tbl, rootField));
  const uint32_t levels = L32<R>(at(tbl, TBL_LEVELS));
  if (node == 0) {
    absentLevel_ = levels;
    return 0;
  }
  const uint32_t rootBits = L32<R>(at(tbl, TBL_ROOT_BITS));
  if (levels <= 1) {
    if (!need<R>(node, nodeBytes(true, rootBits))) return 0;
    return node;
  }
  const uint32_t bits = L32<R>(at(tbl, TBL_LEVEL_BITS));
  const uint64_t lowMask = shl64(1, bits) - 1;
  const uint64_t rootMask = shl64(1, rootBits) - 1;
  for (uint32_t lvl = levels - 1; lvl >= 1; lvl--) {
    const bool top = lvl == levels - 1;
    if (!need<R>(node, nodeBytes(false, top ? rootBits : bits))) return 0;
    const uint64_t m = top ? rootMask : lowMask;
    const uint32_t sp = node + (static_cast<uint32_t>(shr64(rel, lvl * bits) & m) << 2);
    uint32_t child = AL32<R>(sp);
    if (child == 0) {
      if (!grow) {
        absentLevel_ = lvl;
        return 0;
      }
      const uint32_t sz = nodeSize(lvl == 1, bits);
      const uint32_t fresh = sz == 0 ? 0 : alloc(sz);
      if (fresh == 0) return 0;
      const uint32_t prev = CAS32<R>(sp, 0, fresh);
      if (prev != 0) {
        free(fresh, sz);
        child = prev;
      } else {
        child = fresh;
        ADD64<R>(at(tbl, bytesField), blockBytes(sz));
      }
    }
    node = child;
    if (!R && fault_ != Fault::kNone) return 0;
  }
  if (!need<R>(node, nodeBytes(true, bits))) return 0;
  return node;
}

/** Index bits of a leaf node: the root's when the table has one level. */
template <bool R>
SPAPR_HOT uint32_t TceEngine::leafBitsT(uint32_t tbl) {
  return L32<R>(at(tbl, TBL_LEVELS)) <= 1 ? L32<R>(at(tbl, TBL_ROOT_BITS)) : L32<R>(at(tbl, TBL_LEVEL_BITS));
}

/** First relative index after the subtree that the last read-only miss found absent. */
template <bool R>
uint64_t TceEngine::skipAbsentT(uint32_t tbl, uint64_t idx) {
  if (absentLevel_ >= L32<R>(at(tbl, TBL_LEVELS))) return ~uint64_t{0};
  const uint64_t span = static_cast<uint64_t>(absentLevel_) * static_cast<uint64_t>(L32<R>(at(tbl, TBL_LEVEL_BITS)));
  return span >= 64 ? ~uint64_t{0} : (idx | ((uint64_t{1} << span) - 1)) + 1;
}

/**
 * Takes the lock of view slot `pua` for the holder whose tag bits are
 * `tagBits`, trying at most `spins` times: the unlocked value it found, or
 * VIEW_LOCK when the lock stayed held (table.ts#lockView). After a fault the
 * checked atomics answer 0, which ends the loop with a "lock" on nothing.
 */
template <bool R>
uint64_t TceEngine::lockViewT(uint32_t pua, uint64_t tagBits, uint32_t spins) {
  for (uint32_t n = 0; n < spins; n++) {
    const uint64_t v = AL64<R>(pua);
    if ((v & kLock) == 0 && CAS64<R>(pua, v, (v & ~kLockBits) | tagBits) == v) return v;
    if (!R && fault_ != Fault::kNone) return 0;
  }
  return kLock;
}

/** Decrements the region an old entry was mapped from, looked up in `mm` (tce_iommu_unuse_page_v2). */
template <bool R>
void TceEngine::unuseUaT(uint32_t mm, uint64_t ua, uint32_t pageShift) {
  if (ua == 0) return;
  const uint32_t r = regionLookupT<R>(mm, ua, shl64(1, pageShift));
  if (r != 0 && regionUaToHpaT<R>(r, ua, pageShift) >= 0) regionMappedDecT<R>(r);
}

}  // namespace spapr
