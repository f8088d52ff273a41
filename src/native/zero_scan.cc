// The first non-zero byte of a range of memory, at the speed memory is read:
// what a full binary snapshot asks of everything up to the allocator's top
// so that it skips zero pages without copying them (src/snapshot/scan.ts).
// The kernel's memchr_inv(p, 0, n) answers the same question, and QEMU's RAM
// migration sends a zero page as a flag after buffer_is_zero
// (util/bufferiszero.c) says so, choosing SSE2 or AVX2 at run time as this
// does. A memcmp against a zero buffer (Buffer#compare) reads two streams
// and compares; here one stream is OR-reduced, 128 bytes (AVX2) or 64
// (SSE2, every x86-64 CPU) per test, and the exact byte is looked for only
// in the block that is not zero. Measured side by side in one process
// (bench/results/zero-scan-ab-2026-12-01.md): the AVX2 loop reads at 93-107 %
// of a plain one-stream read of the same memory, the memcmp at 82-88 %.
#include "zero_scan.h"
#include "host_memory.h"

#include <pthread.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SPAPR_ZERO_SCAN_X86 1
#endif

namespace spapr {
namespace {

// Byte at a time: heads before the first aligned vector, tails after the last.
inline size_t Bytes(const uint8_t* p, size_t i, size_t n) {
  for (; i < n; i++) {
    if (p[i]) return i;
  }
  return n;
}

// Eight bytes at a time (any CPU): the first non-zero word, then its first non-zero byte.
size_t Words(const uint8_t* p, size_t n) {
  size_t head = (0 - reinterpret_cast<uintptr_t>(p)) & 7;
  size_t i = Bytes(p, 0, head < n ? head : n);
  if (i < head || head >= n) return i;
  for (; n - i >= 8; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w) return Bytes(p, i, i + 8);
  }
  return Bytes(p, i, n);
}

#ifdef SPAPR_ZERO_SCAN_X86
// The first non-zero byte of the 16-byte vector at p (one that is not all zero), as an offset from p.
inline size_t InVector16(const uint8_t* p) {
  __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(p));
  unsigned nz = ~static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128()))) & 0xFFFFu;
  return nz ? static_cast<size_t>(__builtin_ctz(nz)) : 16;
}

// SSE2 (the x86-64 baseline): 16-byte aligned, four vectors OR-ed per test.
size_t Sse2(const uint8_t* p, size_t n) {
  size_t head = (0 - reinterpret_cast<uintptr_t>(p)) & 15;
  if (head >= n) return Bytes(p, 0, n);
  size_t i = Bytes(p, 0, head);
  if (i < head) return i;
  for (; n - i >= 64; i += 64) {
    const __m128i* v = reinterpret_cast<const __m128i*>(p + i);
    __m128i o = _mm_or_si128(_mm_or_si128(_mm_load_si128(v), _mm_load_si128(v + 1)), _mm_or_si128(_mm_load_si128(v + 2), _mm_load_si128(v + 3)));
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(o, _mm_setzero_si128())) != 0xFFFF) break;
  }
  for (; n - i >= 16; i += 16) {
    size_t k = InVector16(p + i);
    if (k < 16) return i + k;
  }
  return Bytes(p, i, n);
}

// AVX2: 32-byte aligned, four vectors OR-ed per test (128 bytes, two cache lines).
__attribute__((target("avx2"))) size_t Avx2(const uint8_t* p, size_t n) {
  size_t head = (0 - reinterpret_cast<uintptr_t>(p)) & 31;
  if (head >= n) return Bytes(p, 0, n);
  size_t i = Bytes(p, 0, head);
  if (i < head) return i;
  for (; n - i >= 128; i += 128) {
    const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
    __m256i o = _mm256_or_si256(_mm256_or_si256(_mm256_load_si256(v), _mm256_load_si256(v + 1)), _mm256_or_si256(_mm256_load_si256(v + 2), _mm256_load_si256(v + 3)));
    if (!_mm256_testz_si256(o, o)) break;
  }
  for (; n - i >= 32; i += 32) {
    __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i));
    unsigned nz = ~static_cast<unsigned>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256())));
    if (nz) return i + static_cast<size_t>(__builtin_ctz(nz));
  }
  return Bytes(p, i, n);
}

// Whether the CPU has AVX2 (asked once; the libgcc model may not be set up yet when an addon loads).
bool HasAvx2() {
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return avx2;
}
#endif

using Loop = size_t (*)(const uint8_t*, size_t);

// The widest loop this CPU has.
Loop Widest() {
#ifdef SPAPR_ZERO_SCAN_X86
  return HasAvx2() ? Avx2 : Sse2;
#else
  return Words;
#endif
}

// One core reads memory slower than the machine can deliver it (the A/B's
// controls, with the second core free: 10.3 GB/s on one, 14.7 on both), so
// a long zero range is scanned by several threads, as QEMU (since 9.0,
// zero-page-detection=multifd) finds zero pages on its multifd sender
// threads (multifd_send_zero_page_detect) rather than the migration thread
// alone. With every core busy the threads give what one does. They claim
// 1 MiB blocks in ascending order from one counter and stop claiming once a
// non-zero byte is known below the next block, so a non-zero byte near the
// start costs little more than a scan by one thread; the answer is the
// lowest byte found, and every block below it was scanned whole. A range
// starts on the calling thread alone (kAlone) so the short scans between
// the data runs of a busy memory never pay for a thread.
constexpr size_t kBlock = size_t{1} << 20;
constexpr size_t kAlone = size_t{4} << 20;
constexpr size_t kParallel = size_t{64} << 20;
constexpr unsigned kMaxThreads = 4;

// A long scan's range, loop and shared state: the next block to claim, the lowest non-zero byte found (n: none yet).
struct Scan {
  const uint8_t* p = nullptr;
  size_t n = 0;
  Loop loop = nullptr;
  std::atomic<size_t> next{0};
  std::atomic<size_t> found{0};
};

// Claims blocks until none is left or a non-zero byte is known below the next one.
void* ScanBlocks(void* arg) {
  Scan* s = static_cast<Scan*>(arg);
  for (;;) {
    size_t at = s->next.fetch_add(kBlock, std::memory_order_relaxed);
    if (at >= s->n || at >= s->found.load(std::memory_order_relaxed)) return nullptr;
    size_t len = s->n - at < kBlock ? s->n - at : kBlock;
    size_t k = s->loop(s->p + at, len);
    if (k < len) {
      size_t x = at + k;
      size_t cur = s->found.load(std::memory_order_relaxed);
      while (x < cur && !s->found.compare_exchange_weak(cur, x, std::memory_order_relaxed)) {
      }
      return nullptr;
    }
  }
}

// How many threads a long scan uses: the CPUs the machine has online (std::thread::hardware_concurrency), at most kMaxThreads.
unsigned ScanThreads() {
  static const unsigned t = [] {
    unsigned c = std::thread::hardware_concurrency();
    return c == 0 ? 1u : c < kMaxThreads ? c : kMaxThreads;
  }();
  return t;
}

// FirstNonZero over a long range: the calling thread and up to kMaxThreads - 1 helpers (fewer if a thread cannot be made).
size_t Parallel(const uint8_t* p, size_t n, Loop loop) {
  Scan s;
  s.p = p;
  s.n = n;
  s.loop = loop;
  s.found.store(n, std::memory_order_relaxed);
  pthread_t helpers[kMaxThreads];
  unsigned made = 0;
  for (unsigned i = 1; i < ScanThreads(); i++) {
    if (pthread_create(&helpers[made], nullptr, ScanBlocks, &s) != 0) break;
    made++;
  }
  ScanBlocks(&s);
  for (unsigned i = 0; i < made; i++) pthread_join(helpers[i], nullptr);
  return s.found.load(std::memory_order_relaxed);
}

// A Number argument that is an integer in [0, max], or false with a RangeError/TypeError thrown.
bool Offset(const Napi::CallbackInfo& info, size_t arg, size_t max, size_t* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= arg || !info[arg].IsNumber()) {
    Napi::TypeError::New(env, "firstNonZero: from and to must be numbers").ThrowAsJavaScriptException();
    return false;
  }
  double d = info[arg].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > static_cast<double>(max) || std::floor(d) != d) {
    Napi::RangeError::New(env, "firstNonZero: from and to must be integers with 0 <= from <= to <= the view's length").ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<size_t>(d);
  return true;
}

// The loop a fourth argument names ('avx2', 'sse2', 'words': the tests and the A/B run each, on the calling thread alone), or null with a TypeError thrown.
Loop NamedLoop(const Napi::CallbackInfo& info) {
  std::string name = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : std::string();
  if (name == "words") return Words;
#ifdef SPAPR_ZERO_SCAN_X86
  if (name == "sse2") return Sse2;
  if (name == "avx2" && HasAvx2()) return Avx2;
#endif
  Napi::TypeError::New(info.Env(), "firstNonZero: the loop must be one of firstNonZeroLoops").ThrowAsJavaScriptException();
  return nullptr;
}

// firstNonZero(view, from, to, loop?): the index in the view of its first non-zero byte in [from, to), or `to`.
// Without `loop`, the widest loop, on several threads over a long range.
Napi::Value FirstNonZeroJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p = nullptr;
  size_t n = 0;
  size_t from = 0;
  size_t to = 0;
  if (!TypedArrayBytes(info, &p, &n) || !Offset(info, 1, n, &from) || !Offset(info, 2, n, &to)) return env.Undefined();
  if (from > to) {
    Napi::RangeError::New(env, "firstNonZero: from and to must be integers with 0 <= from <= to <= the view's length").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    Loop loop = NamedLoop(info);
    if (!loop) return env.Undefined();
    return Napi::Number::New(env, static_cast<double>(from + loop(p + from, to - from)));
  }
  return Napi::Number::New(env, static_cast<double>(from + FirstNonZero(p + from, to - from)));
}

}  // namespace

size_t FirstNonZero(const uint8_t* p, size_t n) {
  Loop loop = Widest();
  if (n < kParallel || ScanThreads() < 2) return loop(p, n);
  size_t head = loop(p, kAlone);
  return head < kAlone ? head : kAlone + Parallel(p + kAlone, n - kAlone, loop);
}

void InitZeroScan(Napi::Env env, Napi::Object exports) {
  exports.Set("firstNonZero", Napi::Function::New(env, FirstNonZeroJs));
  Napi::Array loops = Napi::Array::New(env);
#ifdef SPAPR_ZERO_SCAN_X86
  if (HasAvx2()) loops.Set(loops.Length(), "avx2");
  loops.Set(loops.Length(), "sse2");
#endif
  loops.Set(loops.Length(), "words");
  exports.Set("firstNonZeroLoops", loops);
}

}  // namespace spapr
