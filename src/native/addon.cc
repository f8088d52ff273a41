// The native addon: host memory services (host_memory.cc), the snapshot
// checksum and zero scan (crc32.cc, zero_scan.cc) and the C++
// real-mode engine over the shared linear memory (engine.h and its
// engine_*.cc, wrapped by engine_binding.cc).
#include <napi.h>

#include "crc32.h"
#include "zero_scan.h"
#include "engine_binding.h"
#include "generated/layout.h"
#include "host_memory.h"
#include "huge_pages.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  spapr::InitHostMemory(env, exports);
  spapr::InitHugePages(env, exports);
  spapr::InitCrc32(env, exports);
  spapr::InitZeroScan(env, exports);
  spapr::InitEngine(env, exports);
  exports.Set("layoutVersion", Napi::Number::New(env, spapr::LAYOUT_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(spapr_tce_native, Init)
