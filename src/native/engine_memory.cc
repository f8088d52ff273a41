// The engine object and the header of the memory: construction, the fault
// state that the accessors of engine_access.h record and their out-of-line
// fault paths (trap, needFailed), and assembly/index.ts#init, which lays
// out, or checks, the header every instance on the memory shares.
#include "engine_access.h"

namespace spapr {

TceEngine::TceEngine(uint8_t* base, uint64_t length) : base_(base), length_(length), limit_(length) {}

void TceEngine::clearFault() {
  fault_ = Fault::kNone;
  faultAddr_ = 0;
  faultSize_ = 0;
  limit_ = length_;
}

// The fault paths of the checked and raw accessors (engine_access.h): cold, out of line.
SPAPR_COLD void TceEngine::trap(Fault why, uint64_t a, uint32_t size) {
  if (fault_ == Fault::kNone) {
    fault_ = why;
    faultAddr_ = a;
    faultSize_ = size;
  }
  limit_ = 0;
}

SPAPR_COLD void TceEngine::needFailed(uint64_t a, uint64_t len, bool align) {
  if (len <= length_ && a <= length_ - len && align && (a & 7) != 0) {
    trap(Fault::kUnaligned, a, 8);
  } else {
    trap(Fault::kOutOfBounds, a, static_cast<uint32_t>(len > 0xffffffffu ? 0xffffffffu : len));
  }
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

}  // namespace spapr
