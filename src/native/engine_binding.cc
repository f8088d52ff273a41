// createEngine(u8): the C++ engine (engine.h) over the bytes of a Uint8Array
// view of the shared linear memory, as an object with the methods of the
// Engine interface (src/engine/engine.ts): u32 arguments and results are
// numbers, u64 ones bigints, i64 results signed bigints, as the WebAssembly
// build's exports are. One more method, benchLoop, is the benchmark's C
// floor (documented at BenchLoop below).
//
// Node-API on Node 20 has no SharedArrayBuffer type, so the memory comes as a
// typed-array view; Uint8Array::Data() points at the same bytes the
// WebAssembly instances use, and a shared memory never moves. The engine
// keeps the view's length from creation: a host's memory never grows
// (initial = maximum); were one grown, the new bytes would trap here until
// a new engine is created over a new view.
//
// Bad input never reaches the engine unchecked and never crashes the
// process: wrong types are TypeError, numbers no u32/u64 can hold are
// RangeError, and an access outside the memory (a bad pointer argument, or a
// corrupt pointer found in memory) makes the engine stop as a trapping
// WebAssembly instruction would; it is thrown as the same
// WebAssembly.RuntimeError the WebAssembly build throws.
#include "engine_binding.h"

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "engine.h"
#include "generated/layout.h"

namespace spapr {
namespace {

/** One engine and the view whose bytes it works on (kept alive as long as any method is). */
struct EngineState {
  EngineState(uint8_t* base, uint64_t length) : engine(base, length) {}
  TceEngine engine;
  Napi::ObjectReference view;
};

using StatePtr = std::shared_ptr<EngineState>;

/**
 * Throws what the WebAssembly build throws for the same fault: a
 * WebAssembly.RuntimeError for a trap (a RangeError if that class is
 * unavailable), a RangeError for a recursion too deep (V8's stack overflow).
 */
void ThrowTrap(Napi::Env env, const char* fn, const TceEngine& e) {
  char detail[160];
  if (e.fault() == Fault::kTooDeep) {
    std::snprintf(detail, sizeof detail, " (native engine, %s: a tree deeper than any table, at node 0x%" PRIx64 ")", fn,
                  e.faultAddress());
    Napi::RangeError::New(env, std::string("Maximum call stack size exceeded") + detail).ThrowAsJavaScriptException();
    return;
  }
  const char* what = "memory access out of bounds";
  if (e.fault() == Fault::kUnaligned) what = "operation does not support unaligned accesses";
  if (e.fault() == Fault::kDivByZero) {
    what = "divide by zero";
    std::snprintf(detail, sizeof detail, " (native engine, %s: a header whose system page holds no TCE, guest table 0x%" PRIx64 ")",
                  fn, e.faultAddress());
  } else {
    std::snprintf(detail, sizeof detail,
                  " (native engine, %s: %u-byte access at 0x%" PRIx64 ", memory of 0x%" PRIx64 " bytes)", fn, e.faultSize(),
                  e.faultAddress(), e.length());
  }
  const std::string msg = std::string(what) + detail;
  Napi::Value wa = env.Global().Get("WebAssembly");
  if (!env.IsExceptionPending() && wa.IsObject()) {
    Napi::Value ctor = wa.As<Napi::Object>().Get("RuntimeError");
    if (!env.IsExceptionPending() && ctor.IsFunction()) {
      Napi::Object err = ctor.As<Napi::Function>().New({Napi::String::New(env, msg)});
      if (!env.IsExceptionPending()) {
        napi_throw(env, err);
        return;
      }
    }
  }
  if (!env.IsExceptionPending()) Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
}

Napi::Value ToJs(Napi::Env env, uint32_t v) { return Napi::Number::New(env, static_cast<double>(v)); }
Napi::Value ToJs(Napi::Env env, int32_t v) { return Napi::Number::New(env, static_cast<double>(v)); }
Napi::Value ToJs(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }
Napi::Value ToJs(Napi::Env env, int64_t v) { return Napi::BigInt::New(env, v); }
Napi::Value ToJs(Napi::Env env, double v) { return Napi::Number::New(env, v); }

/** One method call: argument conversion with checks, the engine call, the trap check. */
class Call {
 public:
  Call(const Napi::CallbackInfo& info, const char* fn)
      : info_(info), env_(info.Env()), fn_(fn), state_(static_cast<StatePtr*>(info.Data())->get()) {}

  Napi::Env env() const { return env_; }

  /** A u32 argument: an integral number in [-2^31, 2^32) (negative ones wrap, as WebAssembly's ToInt32 does). */
  bool u32(size_t i, const char* name, uint32_t* out) {
    if (i >= info_.Length() || !info_[i].IsNumber()) return typeError(name, "a number");
    const double d = info_[i].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::trunc(d) || d < -2147483648.0 || d > 4294967295.0) {
      return rangeError(name, "an integer in [-2^31, 2^32)");
    }
    *out = d < 0 ? static_cast<uint32_t>(static_cast<int32_t>(d)) : static_cast<uint32_t>(d);
    return true;
  }

  /** A u64 argument: a bigint in [-2^63, 2^64) (negative ones wrap, as WebAssembly's ToBigInt64 does). */
  bool u64(size_t i, const char* name, uint64_t* out) {
    if (i >= info_.Length() || !info_[i].IsBigInt()) return typeError(name, "a bigint");
    Napi::BigInt b = info_[i].As<Napi::BigInt>();
    bool lossless = false;
    const uint64_t u = b.Uint64Value(&lossless);
    if (lossless) {
      *out = u;
      return true;
    }
    const int64_t s = b.Int64Value(&lossless);
    if (lossless) {
      *out = static_cast<uint64_t>(s);
      return true;
    }
    return rangeError(name, "a bigint in [-2^63, 2^64)");
  }

  /** An iteration count: an integral number in [0, 2^53]. */
  bool count(size_t i, const char* name, uint64_t* out) {
    if (i >= info_.Length() || !info_[i].IsNumber()) return typeError(name, "a number");
    const double d = info_[i].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::trunc(d) || d < 0 || d > 9007199254740992.0) {
      return rangeError(name, "an integer in [0, 2^53]");
    }
    *out = static_cast<uint64_t>(d);
    return true;
  }

  /** Runs `f` on the engine; its result as JavaScript, or undefined with a RuntimeError thrown on a fault. */
  template <typename F>
  Napi::Value run(F&& f) {
    TceEngine& e = state_->engine;
    e.clearFault();
    if constexpr (std::is_void_v<decltype(f(e))>) {
      f(e);
      if (e.fault() != Fault::kNone) return trapped();
      return env_.Undefined();
    } else {
      const auto r = f(e);
      if (e.fault() != Fault::kNone) return trapped();
      return ToJs(env_, r);
    }
  }

 private:
  bool typeError(const char* name, const char* what) {
    Napi::TypeError::New(env_, std::string("engine.") + fn_ + ": " + name + " must be " + what).ThrowAsJavaScriptException();
    return false;
  }
  bool rangeError(const char* name, const char* what) {
    Napi::RangeError::New(env_, std::string("engine.") + fn_ + ": " + name + " must be " + what).ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value trapped() {
    ThrowTrap(env_, fn_, state_->engine);
    state_->engine.clearFault();
    return env_.Undefined();
  }

  const Napi::CallbackInfo& info_;
  Napi::Env env_;
  const char* fn_;
  EngineState* state_;
};

Napi::Value Init(const Napi::CallbackInfo& info) {
  Call c(info, "init");
  uint32_t memBytes = 0, sysPageShift = 0;
  if (!c.u32(0, "memBytes", &memBytes) || !c.u32(1, "sysPageShift", &sysPageShift)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.init(memBytes, sysPageShift); });
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Call c(info, "alloc");
  uint32_t bytes = 0;
  if (!c.u32(0, "bytes", &bytes)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.alloc(bytes); });
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Call c(info, "free");
  uint32_t ptr = 0, bytes = 0;
  if (!c.u32(0, "ptr", &ptr) || !c.u32(1, "bytes", &bytes)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { e.free(ptr, bytes); });
}

Napi::Value HeapCheck(const Napi::CallbackInfo& info) {
  Call c(info, "heapCheck");
  return c.run([&](TceEngine& e) { return e.heapCheck(); });
}

Napi::Value RegionLookup(const Napi::CallbackInfo& info) {
  Call c(info, "regionLookup");
  uint32_t mm = 0;
  uint64_t ua = 0, size = 0;
  if (!c.u32(0, "mm", &mm) || !c.u64(1, "ua", &ua) || !c.u64(2, "size", &size)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.regionLookup(mm, ua, size); });
}

Napi::Value RegionUaToHpa(const Napi::CallbackInfo& info) {
  Call c(info, "regionUaToHpa");
  uint32_t region = 0, pageShift = 0;
  uint64_t ua = 0;
  if (!c.u32(0, "region", &region) || !c.u64(1, "ua", &ua) || !c.u32(2, "pageShift", &pageShift)) {
    return c.env().Undefined();
  }
  return c.run([&](TceEngine& e) { return e.regionUaToHpa(region, ua, pageShift); });
}

Napi::Value RegionMappedInc(const Napi::CallbackInfo& info) {
  Call c(info, "regionMappedInc");
  uint32_t region = 0;
  if (!c.u32(0, "region", &region)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.regionMappedInc(region); });
}

Napi::Value RegionMappedDec(const Napi::CallbackInfo& info) {
  Call c(info, "regionMappedDec");
  uint32_t region = 0;
  if (!c.u32(0, "region", &region)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { e.regionMappedDec(region); });
}

Napi::Value TableInit(const Napi::CallbackInfo& info) {
  Call c(info, "tableInit");
  uint32_t tbl = 0;
  if (!c.u32(0, "tbl", &tbl)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.tableInit(tbl); });
}

Napi::Value TableUaAlloc(const Napi::CallbackInfo& info) {
  Call c(info, "tableUaAlloc");
  uint32_t tbl = 0;
  if (!c.u32(0, "tbl", &tbl)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.tableUaAlloc(tbl); });
}

Napi::Value TableUaFree(const Napi::CallbackInfo& info) {
  Call c(info, "tableUaFree");
  uint32_t tbl = 0;
  if (!c.u32(0, "tbl", &tbl)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { e.tableUaFree(tbl); });
}

Napi::Value TableFree(const Napi::CallbackInfo& info) {
  Call c(info, "tableFree");
  uint32_t tbl = 0;
  if (!c.u32(0, "tbl", &tbl)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { e.tableFree(tbl); });
}

Napi::Value TableGet(const Napi::CallbackInfo& info) {
  Call c(info, "tableGet");
  uint32_t tbl = 0;
  uint64_t entry = 0;
  if (!c.u32(0, "tbl", &tbl) || !c.u64(1, "entry", &entry)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.tableGet(tbl, entry); });
}

Napi::Value TableUaGet(const Napi::CallbackInfo& info) {
  Call c(info, "tableUaGet");
  uint32_t tbl = 0;
  uint64_t entry = 0;
  if (!c.u32(0, "tbl", &tbl) || !c.u64(1, "entry", &entry)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.tableUaGet(tbl, entry); });
}

Napi::Value TableNextValid(const Napi::CallbackInfo& info) {
  Call c(info, "tableNextValid");
  uint32_t tbl = 0;
  uint64_t entry = 0, end = 0;
  if (!c.u32(0, "tbl", &tbl) || !c.u64(1, "entry", &entry) || !c.u64(2, "end", &end)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.tableNextValid(tbl, entry, end); });
}

Napi::Value TableXchg(const Napi::CallbackInfo& info) {
  Call c(info, "tableXchg");
  uint32_t tbl = 0, flags = 0;
  uint64_t entry = 0, tce = 0;
  if (!c.u32(0, "tbl", &tbl) || !c.u64(1, "entry", &entry) || !c.u64(2, "tce", &tce) || !c.u32(3, "flags", &flags)) {
    return c.env().Undefined();
  }
  return c.run([&](TceEngine& e) { return e.tableXchg(tbl, entry, tce, flags); });
}

Napi::Value TableClearV2(const Napi::CallbackInfo& info) {
  Call c(info, "tableClearV2");
  uint32_t tbl = 0, mm = 0, flags = 0, pid = 0;
  uint64_t entry = 0, n = 0;
  if (!c.u32(0, "tbl", &tbl) || !c.u32(1, "mm", &mm) || !c.u64(2, "entry", &entry) || !c.u64(3, "n", &n) ||
      !c.u32(4, "flags", &flags) || !c.u32(5, "pid", &pid)) {
    return c.env().Undefined();
  }
  return c.run([&](TceEngine& e) { return e.tableClearV2(tbl, mm, entry, n, flags, pid); });
}

Napi::Value TableBuildV2(const Napi::CallbackInfo& info) {
  Call c(info, "tableBuildV2");
  uint32_t tbl = 0, mm = 0, perm = 0, flags = 0, pid = 0;
  uint64_t entry = 0, n = 0, ua = 0;
  if (!c.u32(0, "tbl", &tbl) || !c.u32(1, "mm", &mm) || !c.u64(2, "entry", &entry) || !c.u64(3, "n", &n) ||
      !c.u64(4, "ua", &ua) || !c.u32(5, "perm", &perm) || !c.u32(6, "flags", &flags) || !c.u32(7, "pid", &pid)) {
    return c.env().Undefined();
  }
  return c.run([&](TceEngine& e) { return e.tableBuildV2(tbl, mm, entry, n, ua, perm, flags, pid); });
}

Napi::Value Hcall(const Napi::CallbackInfo& info) {
  Call c(info, "hcall");
  uint32_t vcpu = 0, level = 0;
  if (!c.u32(0, "vcpu", &vcpu) || !c.u32(1, "level", &level)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { return e.hcall(vcpu, level); });
}

Napi::Value SttFreePages(const Napi::CallbackInfo& info) {
  Call c(info, "sttFreePages");
  uint32_t stt = 0;
  if (!c.u32(0, "stt", &stt)) return c.env().Undefined();
  return c.run([&](TceEngine& e) { e.sttFreePages(stt); });
}

/**
 * benchLoop(vcpuDesc: number, level: number, iterations: number): number
 *
 * The benchmark's C floor, not part of the Engine interface: runs
 * hcall(vcpuDesc, level) `iterations` times in a plain C++ loop
 * (TceEngine::hcallLoop) with no JavaScript in between, and returns the
 * elapsed nanoseconds of the whole loop (std::chrono::steady_clock), as a
 * number. Before each call r3 and r4 are put back as they were on entry (a
 * hypercall writes its status to r3 and H_GET_TCE its result to r4), so
 * every iteration runs the same call from the same registers; those two
 * stores are inside the timing, as the VMM's register writes are on the
 * JavaScript path. Afterwards the registers hold the last call's result:
 * r3 = its status, or still the hypercall number if it was H_TOO_HARD;
 * VCPU_LEVEL says which level finished it. The vCPU's stats count every
 * iteration. vcpuDesc and level are u32 as for hcall; iterations is an
 * integer in [0, 2^53]. A fault stops the loop and throws the same
 * WebAssembly.RuntimeError as hcall.
 */
Napi::Value BenchLoop(const Napi::CallbackInfo& info) {
  Call c(info, "benchLoop");
  uint32_t vcpu = 0, level = 0;
  uint64_t iterations = 0;
  if (!c.u32(0, "vcpuDesc", &vcpu) || !c.u32(1, "level", &level) || !c.count(2, "iterations", &iterations)) {
    return c.env().Undefined();
  }
  return c.run([&](TceEngine& e) {
    const auto t0 = std::chrono::steady_clock::now();
    e.hcallLoop(vcpu, level, iterations);
    const auto t1 = std::chrono::steady_clock::now();
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  });
}

struct Method {
  const char* name;
  Napi::Function::Callback cb;
};

constexpr Method kMethods[] = {
    {"init", Init},
    {"alloc", Alloc},
    {"free", Free},
    {"heapCheck", HeapCheck},
    {"regionLookup", RegionLookup},
    {"regionUaToHpa", RegionUaToHpa},
    {"regionMappedInc", RegionMappedInc},
    {"regionMappedDec", RegionMappedDec},
    {"tableInit", TableInit},
    {"tableUaAlloc", TableUaAlloc},
    {"tableUaFree", TableUaFree},
    {"tableFree", TableFree},
    {"tableGet", TableGet},
    {"tableUaGet", TableUaGet},
    {"tableNextValid", TableNextValid},
    {"tableXchg", TableXchg},
    {"tableClearV2", TableClearV2},
    {"tableBuildV2", TableBuildV2},
    {"hcall", Hcall},
    {"sttFreePages", SttFreePages},
    {"benchLoop", BenchLoop},
};

/**
 * createEngine(u8): an engine over the bytes of `u8`, a Uint8Array over the
 * whole shared memory. Each method owns a reference to the engine state, so
 * a method taken off the object keeps working (as the WebAssembly exports do).
 */
Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "createEngine(u8): u8 must be a Uint8Array over the linear memory")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array u8 = info[0].As<Napi::Uint8Array>();
  uint8_t* base = u8.Data();
  const uint64_t length = u8.ByteLength();
  if (length < static_cast<uint64_t>(HEAP_BASE)) {
    Napi::RangeError::New(env, "createEngine(u8): the memory is smaller than its header (" + std::to_string(HEAP_BASE) +
                                   " bytes)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (reinterpret_cast<uintptr_t>(base) % 8 != 0) {
    // Atomics on aligned offsets must be aligned on the host too.
    Napi::RangeError::New(env, "createEngine(u8): the view must start on an 8-byte boundary")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto state = std::make_shared<EngineState>(base, length);
  state->view = Napi::Persistent(u8.As<Napi::Object>());
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("kind", Napi::String::New(env, "native"));
  for (const Method& m : kMethods) {
    auto* data = new StatePtr(state);
    Napi::Function fn = Napi::Function::New(env, m.cb, m.name, data);
    if (env.IsExceptionPending()) {
      delete data;
      return env.Undefined();
    }
    fn.AddFinalizer([](Napi::Env, StatePtr* p) { delete p; }, data);
    obj.Set(m.name, fn);
  }
  return obj;
}

}  // namespace

void InitEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine, "createEngine"));
}

}  // namespace spapr
