// The native addon: host memory services now; the C++ real-mode engine over
// the shared linear memory joins it (see src/native/generated/layout.h).
#include <napi.h>

#include "generated/layout.h"
#include "host_memory.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  spapr::InitHostMemory(env, exports);
  exports.Set("layoutVersion", Napi::Number::New(env, spapr::LAYOUT_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(spapr_tce_native, Init)
