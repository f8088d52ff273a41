// region.ts: pre-registered regions as real mode sees them
// (arch/powerpc/mm/book3s64/iommu_api.c).
// The lookups as templates on the kind of access, here so that they inline
// into the table routines and the hypercall path; engine_region.cc has the
// checked entry points the VMM calls.
#pragma once

#include "engine_access.h"

namespace spapr {

/** The first region of `mm` that contains all of [ua, ua + size); 0 if none (mm_iommu_lookup). Inlined, as region.ts's. */
template <bool R>
SPAPR_HOT uint32_t TceEngine::regionLookupT(uint32_t mm, uint64_t ua, uint64_t size) {
  if (mm == 0) return 0;
  if (!need<R>(mm, MM_BYTES)) return 0;
  const uint64_t sh = L32<R>(at(H, HDR_SYS_PAGE_SHIFT));
  uint32_t r = L32<R>(at(mm, MM_REGIONS));
  while (r != 0) {
    if (!need<R>(r, REG_BYTES)) return 0;
    const uint64_t rua = L64<R>(at(r, REG_UA));
    const uint64_t rsize = shl64(L64<R>(at(r, REG_ENTRIES)), sh);
    // Overflow-safe form of rua <= ua && ua + size <= rua + rsize.
    if (ua >= rua && size <= rsize && ua - rua <= rsize - size) return r;
    r = L32<R>(at(r, REG_NEXT));
    if (!R && fault_ != Fault::kNone) return 0;
  }
  return 0;
}

/**
 * Host physical address backing `ua` in region `r` for an IOMMU page of
 * 2^pageShift bytes, or -EFAULT when ua is outside the region or the
 * region's pages are too small for such an IOMMU page (mm_iommu_ua_to_hpa).
 * The raw kind expects `r` checked by the lookup that found it.
 */
template <bool R>
int64_t TceEngine::regionUaToHpaT(uint32_t r, uint64_t ua, uint32_t pageShift) {
  const uint64_t sh = L32<R>(at(H, HDR_SYS_PAGE_SHIFT));
  const uint64_t rua = L64<R>(at(r, REG_UA));
  if (ua < rua) return -ERRNO_EFAULT;
  const uint64_t idx = shr64(ua - rua, sh);
  if (idx >= L64<R>(at(r, REG_ENTRIES))) return -ERRNO_EFAULT;
  if (pageShift > L32<R>(at(r, REG_PAGE_SHIFT))) return -ERRNO_EFAULT;
  if (L32<R>(at(r, REG_FLAGS)) & static_cast<uint32_t>(REGION_F_DEV)) {
    return static_cast<int64_t>(L64<R>(at(r, REG_DEV_HPA)) + (ua - rua));
  }
  const uint64_t pageMask = shl64(1, sh) - 1;
  const uint32_t p = static_cast<uint32_t>(L32<R>(at(r, REG_HPAS)) + static_cast<uint32_t>(idx << 3));
  if (!need<R>(p, 8, false)) return -ERRNO_EFAULT;
  const uint64_t hpa = L64<R>(p);
  return static_cast<int64_t>((hpa & ~pageMask) | (ua & pageMask));
}

/**
 * mapped++ unless the region is dying (mapped == 0): 0, -ENXIO, or -EBUSY
 * after COUNTER_RETRIES lost races (mm_iommu_mapped_inc). Lock-free: each
 * failed attempt is another vCPU's update landing; the bound is only a way
 * out that changes nothing.
 */
template <bool R>
int32_t TceEngine::regionMappedIncT(uint32_t r) {
  const uint64_t p = at(r, REG_MAPPED);
  for (uint32_t n = 0; n < static_cast<uint32_t>(COUNTER_RETRIES); n++) {
    const uint64_t old = AL64<R>(p);
    if (old == 0) return -ERRNO_ENXIO;
    if (CAS64<R>(p, old, old + 1) == old) return 0;
  }
  return -ERRNO_EBUSY;
}

/** mapped-- but never below 1 (mm_iommu_mapped_dec: atomic64_add_unless(-1, 1)); stays high if every retry lost. */
template <bool R>
void TceEngine::regionMappedDecT(uint32_t r) {
  const uint64_t p = at(r, REG_MAPPED);
  for (uint32_t n = 0; n < static_cast<uint32_t>(COUNTER_RETRIES); n++) {
    const uint64_t old = AL64<R>(p);
    if (old <= 1) return;
    if (CAS64<R>(p, old, old - 1) == old) return;
  }
}

}  // namespace spapr
