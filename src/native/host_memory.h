// Host memory services: what the real machine says about locked memory and
// pages. The library's simulated host uses these when asked ('host' limits,
// pin: 'host') and says so when the process may not do a thing.
#pragma once
#include <napi.h>

namespace spapr {

/** Registers getMemlockLimit, getPageSize, lockedBytes, mlockRange, munlockRange on `exports`. */
void InitHostMemory(Napi::Env env, Napi::Object exports);

}  // namespace spapr
