// Transparent huge pages for the fresh memory snapshots write (huge_pages.cc).
#pragma once
#include <napi.h>

namespace spapr {

/** Registers adviseHugePages on `exports`. */
void InitHugePages(Napi::Env env, Napi::Object exports);

}  // namespace spapr
