// region.ts's entry points with checked accesses: mm_iommu_lookup,
// mm_iommu_ua_to_hpa, mm_iommu_mapped_inc and mm_iommu_mapped_dec of
// arch/powerpc/mm/book3s64/iommu_api.c (the templates: engine_region.h).
#include "engine_region.h"

namespace spapr {

/** The host's system page shift (PAGE_SHIFT). */
uint64_t TceEngine::sysPageShift() { return ld32(at(H, HDR_SYS_PAGE_SHIFT)); }

uint32_t TceEngine::regionLookup(uint32_t mm, uint64_t ua, uint64_t size) { return regionLookupT<kChecked>(mm, ua, size); }

int64_t TceEngine::regionUaToHpa(uint32_t r, uint64_t ua, uint32_t pageShift) {
  return regionUaToHpaT<kChecked>(r, ua, pageShift);
}

int32_t TceEngine::regionMappedInc(uint32_t r) { return regionMappedIncT<kChecked>(r); }

void TceEngine::regionMappedDec(uint32_t r) { regionMappedDecT<kChecked>(r); }

}  // namespace spapr
