// Finding the first non-zero byte of a range at memory speed (zero_scan.cc).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace spapr {

/** Offset of the first non-zero byte of p[0, n), or n when all are zero (the widest loop this CPU has). */
size_t FirstNonZero(const uint8_t* p, size_t n);

/** Registers firstNonZero on `exports`. */
void InitZeroScan(Napi::Env env, Napi::Object exports);

}  // namespace spapr
