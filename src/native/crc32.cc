// CRC-32 (the zlib/IEEE 802.3 polynomial, bit-reflected: the value
// zlib.crc32 gives) by folding with carry-less multiplies, the method of
// Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ":
// four 128-bit lanes each multiplied forward by x^512 per 64 bytes, folded
// into one, then reduced to 64 and 32 bits (Barrett). zlib's portable
// crc32 runs at about 1-4 GB/s on this machine, slower than the copy it
// checks; binary snapshots checksum every byte they save and restore.
// Exported only on x86-64 with PCLMULQDQ and SSE4.1 (checked at run time);
// elsewhere the JavaScript side keeps zlib's.
#include "crc32.h"
#include "host_memory.h"

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SPAPR_CRC32_FOLD 1
#endif

namespace spapr {
namespace {

constexpr uint32_t kPoly = 0xEDB88320u;  // x^32 + x^26 + ... + 1, reflected

struct Table {
  uint32_t t[256];
  constexpr Table() : t() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
      t[i] = c;
    }
  }
};
constexpr Table kTable;

// Byte at a time, on the raw (inverted) register: the head of short inputs and the tail under 16 bytes.
uint32_t Bytewise(uint32_t crc, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) crc = kTable.t[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return crc;
}

#ifdef SPAPR_CRC32_FOLD
// Folding constants for the reflected polynomial: x^(4*128+32) and x^(4*128-32) mod P
// (four lanes), x^(128+32) and x^(128-32) mod P (one lane), x^64 mod P, then P' and
// mu = floor(x^64 / P) for the Barrett step, all bit-reflected.
alignas(16) constexpr uint64_t kFold4[2] = {0x0154442bd4ull, 0x01c6e41596ull};
alignas(16) constexpr uint64_t kFold1[2] = {0x01751997d0ull, 0x00ccaa009eull};
alignas(16) constexpr uint64_t kFold64[2] = {0x0163cd6124ull, 0};
alignas(16) constexpr uint64_t kBarrett[2] = {0x01db710641ull, 0x01f7011641ull};

// One lane multiplied forward by the constants in k, plus the next 128 bits of data.
__attribute__((target("pclmul,sse4.1"))) inline __m128i Fold(__m128i x, __m128i k, __m128i data) {
  __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
  __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(lo, hi), data);
}

// The raw register after n bytes (n >= 64, a multiple of 16).
__attribute__((target("pclmul,sse4.1"))) uint32_t Folded(uint32_t crc, const uint8_t* p, size_t n) {
  const __m128i* v = reinterpret_cast<const __m128i*>(p);
  __m128i a = _mm_xor_si128(_mm_loadu_si128(v), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i b = _mm_loadu_si128(v + 1);
  __m128i c = _mm_loadu_si128(v + 2);
  __m128i d = _mm_loadu_si128(v + 3);
  v += 4;
  n -= 64;
  const __m128i k4 = _mm_load_si128(reinterpret_cast<const __m128i*>(kFold4));
  for (; n >= 64; n -= 64, v += 4) {
    a = Fold(a, k4, _mm_loadu_si128(v));
    b = Fold(b, k4, _mm_loadu_si128(v + 1));
    c = Fold(c, k4, _mm_loadu_si128(v + 2));
    d = Fold(d, k4, _mm_loadu_si128(v + 3));
  }
  const __m128i k1 = _mm_load_si128(reinterpret_cast<const __m128i*>(kFold1));
  a = Fold(a, k1, b);
  a = Fold(a, k1, c);
  a = Fold(a, k1, d);
  for (; n >= 16; n -= 16, v++) a = Fold(a, k1, _mm_loadu_si128(v));
  // 128 → 96 bits: the low half multiplied by x^(128-32)... folded onto the high half.
  const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
  a = _mm_xor_si128(_mm_srli_si128(a, 8), _mm_clmulepi64_si128(a, k1, 0x10));
  // 96 → 64 bits.
  const __m128i k64 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kFold64));
  a = _mm_xor_si128(_mm_srli_si128(a, 4), _mm_clmulepi64_si128(_mm_and_si128(a, low32), k64, 0x00));
  // Barrett reduction to 32 bits.
  const __m128i pk = _mm_load_si128(reinterpret_cast<const __m128i*>(kBarrett));
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(a, low32), pk, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), pk, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(a, t), 1));
}
#endif

// crc32(view, crc = 0): the CRC-32 of the view's bytes continuing from `crc` (zlib.crc32's contract).
Napi::Value Crc32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p = nullptr;
  size_t n = 0;
  if (!TypedArrayBytes(info, &p, &n)) return env.Undefined();
  uint32_t crc = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) {
      Napi::TypeError::New(env, "crc32: the running value must be a number").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    crc = info[1].As<Napi::Number>().Uint32Value();
  }
  uint32_t r = ~crc;
#ifdef SPAPR_CRC32_FOLD
  if (n >= 64) {
    size_t whole = n & ~size_t{15};
    r = Folded(r, p, whole);
    p += whole;
    n -= whole;
  }
#endif
  r = Bytewise(r, p, n);
  return Napi::Number::New(env, ~r);
}

}  // namespace

void InitCrc32(Napi::Env env, Napi::Object exports) {
#ifdef SPAPR_CRC32_FOLD
  if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) exports.Set("crc32", Napi::Function::New(env, Crc32));
#else
  (void)env;
  (void)exports;
#endif
}

}  // namespace spapr
