// CRC-32 of snapshot data at memory speed (crc32.cc).
#pragma once
#include <napi.h>

namespace spapr {

/** Registers crc32 on `exports` (only where the CPU can fold with carry-less multiplies). */
void InitCrc32(Napi::Env env, Napi::Object exports);

}  // namespace spapr
