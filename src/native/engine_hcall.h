// hcall.ts: the TCE hypercalls on a vCPU register block (r3 = number, r4.. =
// args), with raw accesses after one range check per structure (see
// "Two ways to reach memory" in engine_access.h). Profile kvm (book3s_64_vio_hv.c, the
// real-mode handlers of <=v5.18, and book3s_64_vio.c): one routine serves
// both modes; real mode never allocates; every call checks everything it
// needs and locks every entry it changes before it writes, so H_TOO_HARD
// and H_PARAMETER leave the tables as they were. Profile qemu
// (hw/ppc/spapr_iommu.c): H_SUCCESS or H_PARAMETER, may stop part-way.
//
// Memory ordering (hcall.ts has the whole argument): a view lock is taken by
// compare-and-swap and released by the release store of the entry's new
// ua; the TCE is exchanged (iommu_tce_xchg); `mapped` moves by
// compare-and-swap loops, taken while validating; guest-table stores are
// plain (relaxed) as in kvmppc_tce_put. On x86-64 that is four locked
// instructions per mapped entry, two when the old entry's reference
// transfers, the same count as the WebAssembly build.
//
// The hypercall files: engine_hcall.cc (the entry, H_GET_TCE and the shared
// out-of-line helpers), engine_hcall_put.cc (H_PUT_TCE),
// engine_hcall_indirect.cc (H_PUT_TCE_INDIRECT and its real-mode fast path),
// engine_hcall_passes.cc (the general path of both puts),
// engine_hcall_stuff.cc (H_STUFF_TCE), engine_hcall_qemu.cc (profile qemu),
// engine_dirty.cc (the dirty marks). This header has what they share and
// must inline: the register, check and cache helpers, complete and begin.
#pragma once

#include "engine_guest.h"
#include "engine_table.h"

namespace spapr {

namespace {
constexpr int32_t kFastBail = -0x7fffffff;
}  // namespace

// `n` is a constant at every call site: the field offset folds (no wrap-around), as in the WebAssembly build.
inline uint64_t TceEngine::gpr(uint32_t vcpu, uint32_t n) { return L64<kRaw>(at(vcpu, VCPU_GPR + (n << 3))); }

inline void TceEngine::setGpr(uint32_t vcpu, uint32_t n, uint64_t v) { S64<kRaw>(at(vcpu, VCPU_GPR + (n << 3)), v); }

/**
 * hcall.ts#complete, the end of every hypercall at `level`: r3 unless H_TOO_HARD (deferred:
 * LEVEL_NONE from real mode, the exit from virtual mode), VCPU.level, the completion counter.
 */
SPAPR_HOT int32_t TceEngine::complete(uint32_t vcpu, uint32_t level, uint32_t done, int32_t kind, int32_t rc) {
  // A fault stops the call where the WebAssembly build traps: nothing more is written.
  if (fault_ != Fault::kNone) return rc;
  if (rc != H_TOO_HARD) {
    setGpr(vcpu, 3, static_cast<uint64_t>(static_cast<int64_t>(rc)));
  } else if (level == kLevelVirtual) {
    done = kLevelExit;
  } else {
    done = kLevelNone;
  }
  S32<kRaw>(at(vcpu, VCPU_LEVEL), done);
  // LEVEL_NONE (real mode deferred) is no completion; the other three have counters.
  if (kind >= 0 && done != kLevelNone) {
    const uint32_t c = vcpu + VCPU_STATS + ((static_cast<uint32_t>(kind) * 4 + done) << 2);
    S32<kRaw>(c, L32<kRaw>(c) + 1);
  }
  return rc;
}

/** kvmppc_ioba_validate: aligned to the guest page and [ioba, +npages) inside the table. */
inline bool TceEngine::iobaOk(uint32_t stt, uint64_t ioba, uint64_t npages) {
  const uint64_t shift = L32<kRaw>(at(stt, STT_PAGE_SHIFT));
  if (ioba & (shl64(1, shift) - 1)) return false;
  const uint64_t idx = shr64(ioba, shift);
  const uint64_t off = L64<kRaw>(at(stt, STT_OFFSET));
  if (idx < off) return false;
  const uint64_t size = L64<kRaw>(at(stt, STT_SIZE));
  return npages <= size && idx - off <= size - npages;
}

/** The hardware table of link `s` (s < MAX_STITS), range-checked: a fault when it is not inside the memory. */
inline uint32_t TceEngine::stit(uint32_t stt, uint32_t s) {
  const uint32_t tbl = L32<kRaw>(at(stt, STT_STITS + (s << 2)));
  need<kRaw>(tbl, TBL_BYTES);
  return tbl;
}

/** Hardware tables linked to `stt`: its count, never more than the descriptor holds (hcall.ts#stitCount). */
inline uint32_t TceEngine::stitCount(uint32_t stt) {
  const uint32_t n = L32<kRaw>(at(stt, STT_STIT_COUNT));
  return n < static_cast<uint32_t>(MAX_STITS) ? n : static_cast<uint32_t>(MAX_STITS);
}

/** The pid check once per hypercall: every linked table must belong to the vCPU's process. */
inline bool TceEngine::pidCallCheck(uint32_t stt, uint32_t pid) {
  const uint32_t n = stitCount(stt);
  for (uint32_t i = 0; i < n; i++) {
    const uint32_t tbl = stit(stt, i);
    if (fault_ != Fault::kNone || L32<kRaw>(at(tbl, TBL_OWNER_PID)) != pid) return false;
  }
  return true;
}

/** Whether the host compares the pid at every view write (the placement the 2015 review proposed). */
inline bool TceEngine::entryCheck() {
  return L32<kRaw>(at(H, HDR_OWNER_CHECK)) == static_cast<uint32_t>(OWNER_CHECK_PID) &&
         L32<kRaw>(at(H, HDR_PID_PLACEMENT)) == static_cast<uint32_t>(PID_CHECK_ENTRY);
}

/** The pid check at hypercall entry, for both placements (a refused call changes nothing). */
inline bool TceEngine::callCheckFails(uint32_t stt, uint32_t pid) {
  return L32<kRaw>(at(H, HDR_OWNER_CHECK)) == static_cast<uint32_t>(OWNER_CHECK_PID) && !pidCallCheck(stt, pid);
}

/** Userspace address of `gpa`, 0 outside every memslot (kvmppc_tce_to_ua), through the memslot cache. */
SPAPR_HOT uint64_t TceEngine::uaOf(uint64_t gpa) {
  if (gpa - mBase_ > mLast_) {
    const uint32_t s = findSlotT<kRaw>(xVm_, gpa);
    if (s == 0) return 0;
    mBase_ = L64<kRaw>(at(s, SLOT_GPA));
    mLast_ = L64<kRaw>(at(s, SLOT_SIZE)) - 1;
    mUa_ = L64<kRaw>(at(s, SLOT_UA));
  }
  return mUa_ + (gpa - mBase_);
}

/** The host address of `ua` in the cached region (mm_iommu_ua_to_hpa), which holds it. */
SPAPR_HOT uint64_t TceEngine::cachedHpa(uint64_t ua) {
  const uint64_t d = ua - cUa_;
  if (cDev_) return cDevHpa_ + d;
  return (L64<kRaw>(static_cast<uint32_t>(cHpas_ + static_cast<uint32_t>(shr64(d, gSysShift_) << 3))) & ~gSysMask_) |
         (ua & gSysMask_);
}

/** Whether the old entry's reference passes to the new one (both in the cached region); see hcall.ts#transfers. */
SPAPR_HOT bool TceEngine::transfers(uint64_t oldTce, uint64_t oldUa) {
  if ((oldTce & kPerm) == 0) return false;
  if (oldUa == 0) return false;
  return oldUa - cUa_ <= cLast_;
}

/**
 * hcall.ts#lockSlot: takes the lock of view slot `pua` with the bits `tag`, one attempt inline and
 * the bounded wait of `spins` tries out of line; `noLock` (ABLATE_VIEW_LOCK) reads the slot instead.
 */
SPAPR_HOT uint64_t TceEngine::lockSlot(uint32_t pua, uint64_t tag, uint32_t spins, bool noLock) {
  const uint64_t v = P64<kRaw>(pua);
  if (noLock) return v & ~kLockBits;
  if ((v & kLock) == 0 && CAS64<kRaw>(pua, v, (v & ~kLockBits) | tag) == v) return v;
  return lockWait(pua, tag, spins);
}

/** The benchmark ablations in force (HDR.ablate; 0 outside bench/). */
inline uint32_t TceEngine::ablations() { return L32<kRaw>(at(H, HDR_ABLATE)); }

/**
 * The answer to a TCE whose address is misaligned to the guest page
 * (hcall.ts#misalignedTce): real mode (kvmppc_rm_tce_validate) and the 4.12
 * virtual mode say H_PARAMETER; from 4.19 the virtual-mode
 * kvmppc_tce_validate (42de7b9e2167) says H_TOO_HARD, which exits to the
 * VMM. HDR.kernel (the header was range-checked by hcall) is read only on
 * that error path, and only in virtual mode.
 */
inline int32_t TceEngine::misalignedTce(bool grow) {
  return grow && L32<kRaw>(at(H, HDR_KERNEL)) >= static_cast<uint32_t>(KERNEL_4_19) ? H_TOO_HARD : H_PARAMETER;
}

/** log2 of the table entries per guest entry of table `tbl`. */
inline uint32_t TceEngine::subShiftOf(uint32_t gshift, uint32_t tbl) { return gshift - L32<kRaw>(at(tbl, TBL_PAGE_SHIFT)); }

/** The bits this vCPU's view locks carry. */
inline uint64_t TceEngine::tagBitsOf(uint32_t vcpu) {
  return shl64(L32<kRaw>(at(vcpu, VCPU_LOCK_TAG)), static_cast<uint64_t>(VIEW_TAG_SHIFT)) | kLock;
}

/** Sets up the passes for a hypercall on `vm`, its TCEs at `src` (hcall.ts#begin). */
inline void TceEngine::begin(uint32_t vm, uint32_t src) {
  xVm_ = vm;
  xMm_ = L32<kRaw>(at(vm, VM_MM));
  xSrc_ = src;
  mBase_ = 1;
  mLast_ = 0;
  gSysShift_ = L32<kRaw>(at(H, HDR_SYS_PAGE_SHIFT));
  gSysMask_ = shl64(1, gSysShift_) - 1;
  gTceShift_ = gSysShift_ - 3;
  gTceMask_ = shl64(1, gTceShift_) - 1;
}

// dirty.ts (engine_dirty.cc has the marks).
/** Whether the write phase marks (VM.dirtyTrack): the one load per hypercall. */
inline bool TceEngine::dirtyOn(uint32_t vm) {
  return need<kRaw>(vm, VM_BYTES) && L32<kRaw>(at(vm, VM_DIRTY_TRACK)) != 0;
}

}  // namespace spapr
