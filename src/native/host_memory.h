// Host memory services: what the real machine says about locked memory and
// pages. The library's simulated host uses these when asked ('host' limits,
// pin: 'host') and says so when the process may not do a thing.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace spapr {

/**
 * The bytes of the typed array in info[0] (any view, SharedArrayBuffer
 * included): true with `data` and `len` set, or false with a TypeError thrown.
 */
bool TypedArrayBytes(const Napi::CallbackInfo& info, uint8_t** data, size_t* len);

/** Registers getMemlockLimit, getPageSize, lockedBytes, mlockRange, munlockRange on `exports`. */
void InitHostMemory(Napi::Env env, Napi::Object exports);

}  // namespace spapr
