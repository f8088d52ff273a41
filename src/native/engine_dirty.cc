// dirty.ts: the write phase's dirty marks while vm.trackDmaWritable(true)
// holds (see assembly/dirty.ts for why and for KVM's and VFIO's functions).
//
// dirty.ts's marks, statement by statement (markBegin, orBits, markEnd,
// markPages, markSlots, markTce, dirtyMark, dirtyMarkList); dirtyOn, the one
// load per hypercall, is in engine_hcall.h.
#include "engine_access.h"

namespace spapr {

/** dirty.ts#markBegin: nothing cached, nothing pending. */
void TceEngine::markBegin() {
  kBase_ = 1;
  kSpan_ = 0;
  kShift_ = L32<kRaw>(at(H, HDR_SYS_PAGE_SHIFT));
  dWord_ = 0;
  dMask_ = 0;
}

/** dirty.ts#orBits: `mask` into the word at `word`, through the pending word. */
void TceEngine::orBits(uint32_t word, uint32_t mask) {
  if (word == dWord_) {
    dMask_ |= mask;
    return;
  }
  if (dWord_ != 0) __atomic_fetch_or(reinterpret_cast<uint32_t*>(base_ + dWord_), dMask_, __ATOMIC_SEQ_CST);
  dWord_ = word;
  dMask_ = mask;
}

/** dirty.ts#markEnd: writes the pending word. */
void TceEngine::markEnd() {
  if (dWord_ != 0) __atomic_fetch_or(reinterpret_cast<uint32_t*>(base_ + dWord_), dMask_, __ATOMIC_SEQ_CST);
  dWord_ = 0;
}

/** dirty.ts#markPages: bits from..to of the `pages` bits at `bits` (checked by markSlots), none past the last page. */
void TceEngine::markPages(uint32_t bits, uint64_t pages, uint64_t from, uint64_t to) {
  if (pages == 0) return;
  if (to >= pages) to = pages - 1;
  uint64_t p = from;
  while (p <= to) {
    const uint64_t hi = (p | 31) < to ? p | 31 : to;
    const uint32_t mask = (0xffffffffu >> (31 - static_cast<uint32_t>(hi & 31))) &
                          (0xffffffffu << static_cast<uint32_t>(p & 31));
    orBits(bits + (static_cast<uint32_t>(p >> 5) << 2), mask);
    p = hi + 1;
  }
}

/** dirty.ts#markSlots: the page at `gpa` in every overlapping memslot's log; caches a slot that holds all of it. */
void TceEngine::markSlots(uint32_t vm, uint64_t gpa, uint64_t size) {
  const uint64_t last = gpa + (size - 1);
  uint32_t s = L32<kRaw>(at(vm, VM_SLOTS));
  while (s != 0) {
    if (!need<kRaw>(s, SLOT_BYTES)) return;
    const uint64_t base = L64<kRaw>(at(s, SLOT_GPA));
    const uint64_t bytes = L64<kRaw>(at(s, SLOT_SIZE));
    const uint32_t bm = L32<kRaw>(at(s, SLOT_DIRTY_LOG));
    if (bm != 0 && bytes != 0 && last >= base && (gpa < base || gpa - base < bytes)) {
      const uint64_t from = gpa > base ? shr64(gpa - base, kShift_) : 0;
      const uint64_t top = last - base < bytes - 1 ? last - base : bytes - 1;
      if (!need<kRaw>(bm, DIRTY_LOG_HEADER)) return;
      const uint64_t pages = L32<kRaw>(bm);
      const uint32_t bits = bm + DIRTY_LOG_HEADER;
      if (pages != 0 && !need<kRaw>(bits, ((pages + 63) >> 6) << 3)) return;
      markPages(bits, pages, from, shr64(top, kShift_));
      if (gpa >= base && last - base < bytes) {
        kBase_ = base;
        kSpan_ = bytes - size;
        kBits_ = bits;
        kPages_ = pages;
      }
    }
    s = L32<kRaw>(at(s, SLOT_NEXT));
  }
}

/** dirty.ts#markTce: the IOMMU page of 2^shift bytes that `tce` points at. */
void TceEngine::markTce(uint32_t vm, uint64_t tce, uint32_t shift) {
  const uint64_t size = shl64(1, shift);
  const uint64_t gpa = tce & ~(size - 1);
  const uint64_t rel = gpa - kBase_;
  if (rel > kSpan_) {
    markSlots(vm, gpa, size);
  } else if (shift <= kShift_) {
    const uint64_t p = shr64(rel, kShift_);
    if (p < kPages_) orBits(kBits_ + (static_cast<uint32_t>(p >> 5) << 2), uint32_t{1} << static_cast<uint32_t>(p & 31));
  } else {
    markPages(kBits_, kPages_, shr64(rel, kShift_), shr64(rel + (size - 1), kShift_));
  }
}

/** dirty.ts#dirtyMark: the system pages of the 2^shift-byte page `tce` points at, in each overlapping memslot's log. */
void TceEngine::dirtyMark(uint32_t vm, uint64_t tce, uint32_t shift) {
  markBegin();
  markTce(vm, tce, shift);
  markEnd();
}

/** dirty.ts#dirtyMarkList: dirtyMark for each writable TCE among the `n` at `src`. */
void TceEngine::dirtyMarkList(uint32_t vm, uint32_t src, uint32_t n, uint32_t shift) {
  markBegin();
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(src + (i << 3)));
    if (tce & kWrite) markTce(vm, tce, shift);
  }
  markEnd();
}

}  // namespace spapr
