#include "host_memory.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace spapr {

bool TypedArrayBytes(const Napi::CallbackInfo& info, uint8_t** data, size_t* len) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "expected a typed array").ThrowAsJavaScriptException();
    return false;
  }
  // napi_get_typedarray_info gives the data pointer of any view, SharedArrayBuffer
  // included (ArrayBuffer().Data() refuses a shared buffer: Node-API on Node 20
  // has no SharedArrayBuffer type); the pointer already includes the byte offset.
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  void* p = nullptr;
  if (napi_get_typedarray_info(env, ta, nullptr, nullptr, &p, nullptr, nullptr) != napi_ok) {
    Napi::TypeError::New(env, "expected a typed array").ThrowAsJavaScriptException();
    return false;
  }
  *data = static_cast<uint8_t*>(p);
  *len = ta.ByteLength();
  return true;
}

namespace {

// RLIMIT_MEMLOCK of this process: {soft, hard} in bytes, null for unlimited.
Napi::Value GetMemlockLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct rlimit rl;
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
    Napi::Error::New(env, std::string("getrlimit(RLIMIT_MEMLOCK): ") + std::strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  auto val = [&](rlim_t v) -> Napi::Value {
    if (v == RLIM_INFINITY) return env.Null();
    return Napi::BigInt::New(env, static_cast<uint64_t>(v));
  };
  out.Set("soft", val(rl.rlim_cur));
  out.Set("hard", val(rl.rlim_max));
  return out;
}

Napi::Value GetPageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

// VmLck of this process in bytes, read from /proc/self/status (-1 if absent).
Napi::Value LockedBytes(const Napi::CallbackInfo& info) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmLck:", 0) == 0) {
      long kb = std::strtol(line.c_str() + 6, nullptr, 10);
      return Napi::Number::New(info.Env(), static_cast<double>(kb) * 1024.0);
    }
  }
  return Napi::Number::New(info.Env(), -1);
}

// mlock/munlock of a byte range of a typed array: returns 0 or the errno.
Napi::Value LockRange(const Napi::CallbackInfo& info, bool lock) {
  Napi::Env env = info.Env();
  uint8_t* base = nullptr;
  size_t len = 0;
  if (!TypedArrayBytes(info, &base, &len)) return env.Undefined();
  if (len == 0) return Napi::Number::New(env, 0);
  int rc = lock ? mlock(base, len) : munlock(base, len);
  return Napi::Number::New(env, rc == 0 ? 0 : errno);
}

Napi::Value MlockRange(const Napi::CallbackInfo& info) { return LockRange(info, true); }
Napi::Value MunlockRange(const Napi::CallbackInfo& info) { return LockRange(info, false); }

}  // namespace

void InitHostMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("getMemlockLimit", Napi::Function::New(env, GetMemlockLimit));
  exports.Set("getPageSize", Napi::Function::New(env, GetPageSize));
  exports.Set("lockedBytes", Napi::Function::New(env, LockedBytes));
  exports.Set("mlockRange", Napi::Function::New(env, MlockRange));
  exports.Set("munlockRange", Napi::Function::New(env, MunlockRange));
}

}  // namespace spapr
