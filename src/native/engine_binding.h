// The N-API face of the C++ engine (engine.h): createEngine(u8) on the
// addon's exports.
#pragma once
#include <napi.h>

namespace spapr {

/** Registers createEngine on `exports`. */
void InitEngine(Napi::Env env, Napi::Object exports);

}  // namespace spapr
