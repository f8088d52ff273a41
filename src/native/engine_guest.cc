// guest.ts's routine with checked accesses: freeing the pages of TCEs of a
// guest TCE table (kvmppc_spapr_tce_table.pages[]) when the VMM drops it.
#include "engine_guest.h"

namespace spapr {

/** Frees every allocated page of a guest table. */
void TceEngine::sttFreePages(uint32_t stt) {
  const uint32_t n = ld32(at(stt, STT_NPAGES));
  const uint32_t pages = ld32(at(stt, STT_PAGES));
  const uint32_t bytes = static_cast<uint32_t>(shl64(8, tceShiftT<kChecked>()));
  for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const uint32_t p = ld32(static_cast<uint32_t>(pages + (i << 2)));
    if (p != 0) free(p, bytes);
    st32(static_cast<uint32_t>(pages + (i << 2)), 0);
  }
}

}  // namespace spapr
