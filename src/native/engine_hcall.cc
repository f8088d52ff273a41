// The hypercall entry, hcall.ts#hcall: the reclamation read side around
// every call, the dispatch by profile and number (hcallInside) and the
// completion counters, H_GET_TCE (kvmppc_h_get_tce), the benchmark's C loop,
// and the out-of-line helpers the hypercall files share: the region cache's
// refill (mm_iommu_lookup, mm_iommu_ua_to_hpa), the view lock's bounded
// wait, the v1 test and virtual mode's guest-page reservations.
#include "engine_hcall.h"

namespace spapr {

namespace {
/** Counter index of a hypercall number (KIND_*), or -1. */
inline int32_t kindOf(uint64_t nr) {
  if (nr == kHPut) return KIND_PUT;
  if (nr == kHIndirect) return KIND_INDIRECT;
  if (nr == kHStuff) return KIND_STUFF;
  if (nr == kHGet) return KIND_GET;
  return -1;
}
}  // namespace

/**
 * Runs the hypercall in the vCPU's registers at `level` (LEVEL_REAL: real
 * mode, never allocates; LEVEL_VIRTUAL: may allocate). Returns the H_*
 * status; r3 receives it unless it is H_TOO_HARD. Unknown hypercall numbers
 * are H_TOO_HARD. The QEMU profile runs at either level, as LEVEL_EXIT.
 * Counts the completion in the vCPU's stats[kind][level]. Any other level is
 * H_PARAMETER, with nothing written.
 */
int32_t TceEngine::hcall(uint32_t vcpu, uint32_t level) {
  // Only the chain's two levels run; any other is refused and changes nothing (hcall.ts#hcall).
  if (level - kLevelReal > kLevelVirtual - kLevelReal) return H_PARAMETER;
  if (!need<kRaw>(H, HDR_BYTES) || !need<kRaw>(vcpu, VCPU_BYTES)) return H_TOO_HARD;
  // The reclamation read side, as in assembly/hcall.ts: a seq_cst store at
  // entry (ordered before the call's loads of shared descriptors), a release
  // store at exit (ordered after them; a plain mov on x86). After a fault the
  // exit store is skipped, as the WebAssembly build traps before it.
  const bool smr = (ablations() & static_cast<uint32_t>(ABLATE_SMR_READ)) == 0;
  uint32_t* const seq = reinterpret_cast<uint32_t*>(base_ + at(vcpu, VCPU_RCU_SEQ));
  uint32_t inside = 0;
  if (smr) {
    inside = (__atomic_load_n(seq, __ATOMIC_RELAXED) + 1) | 1;
    __atomic_store_n(seq, inside, __ATOMIC_SEQ_CST);
  }
  // The H_PUT_TCE in real mode straight through (hcall.ts#putTceReal); the rest, and the QEMU
  // profile it leaves with nothing written, through hcallInside.
  int32_t rc = kFastBail;
  if (level == kLevelReal && gpr(vcpu, 3) == kHPut) rc = putTceReal(vcpu);
  if (rc == kFastBail) rc = fault_ == Fault::kNone ? hcallInside(vcpu, level) : H_TOO_HARD;
  if (smr && fault_ == Fault::kNone) __atomic_store_n(seq, inside + 1, __ATOMIC_RELEASE);
  return rc;
}

/** hcall() between the read-side entry and exit (the vCPU block and the header are in range). */
int32_t TceEngine::hcallInside(uint32_t vcpu, uint32_t level) {
  const uint32_t vm = L32<kRaw>(at(vcpu, VCPU_VM));
  const uint64_t nr = gpr(vcpu, 3);
  const bool grow = level != kLevelReal;
  if (!need<kRaw>(vm, VM_BYTES)) return H_TOO_HARD;
  int32_t rc;
  uint32_t done = level;
  int32_t kind = -1;
  if (L32<kRaw>(at(vm, VM_PROFILE)) == static_cast<uint32_t>(PROFILE_QEMU)) {
    rc = qemuHcall(vm, vcpu, nr);
    done = kLevelExit;
    kind = kindOf(nr);
  } else if (nr == kHPut) {
    rc = putTce(vm, vcpu, grow);
    kind = KIND_PUT;
  } else if (nr == kHIndirect) {
    rc = putTceIndirect(vm, vcpu, grow);
    kind = KIND_INDIRECT;
  } else if (nr == kHStuff) {
    rc = stuffTce(vm, vcpu, grow);
    kind = KIND_STUFF;
  } else if (nr == kHGet) {
    rc = getTce(vm, vcpu);
    kind = KIND_GET;
  } else {
    rc = H_TOO_HARD;
  }
  return complete(vcpu, level, done, kind, rc);
}

int32_t TceEngine::hcallLoop(uint32_t vcpu, uint32_t level, uint64_t iterations) {
  if (!need<kRaw>(vcpu, VCPU_BYTES)) return 0;
  const uint64_t r3 = gpr(vcpu, 3);
  const uint64_t r4 = gpr(vcpu, 4);
  int32_t rc = 0;
  for (uint64_t i = 0; i < iterations && fault_ == Fault::kNone; i++) {
    setGpr(vcpu, 3, r3);
    setGpr(vcpu, 4, r4);
    rc = hcall(vcpu, level);
  }
  return rc;
}

/** Whether a hardware table linked to `stt` is v1 (pinned per entry, which only the VMM can do). */
bool TceEngine::hasV1(uint32_t stt) {
  const uint32_t n = stitCount(stt);
  for (uint32_t i = 0; i < n; i++) {
    const uint32_t tbl = stit(stt, i);
    if (fault_ != Fault::kNone || (L32<kRaw>(at(tbl, TBL_FLAGS)) & kTableV2) == 0) return true;
  }
  return false;
}

/**
 * Caches the region of `mm` that backs the IOMMU page of 2^tshift bytes at
 * `ua` (mm_iommu_lookup, then the checks of mm_iommu_ua_to_hpa); false when
 * none can. Checks the region's page array once, for cachedHpa.
 */
bool TceEngine::regionFind(uint64_t ua, uint32_t tshift) {
  const uint32_t r = regionLookupT<kRaw>(xMm_, ua, shl64(1, tshift));
  if (r == 0 || regionUaToHpaT<kRaw>(r, ua, tshift) < 0) return false;
  const uint64_t entries = L64<kRaw>(at(r, REG_ENTRIES));
  const bool dev = (L32<kRaw>(at(r, REG_FLAGS)) & static_cast<uint32_t>(REGION_F_DEV)) != 0;
  const uint32_t hpas = L32<kRaw>(at(r, REG_HPAS));
  if (!dev && (entries > (length_ >> 3) || !need<kRaw>(hpas, entries << 3))) return false;
  cR_ = r;
  cUa_ = L64<kRaw>(at(r, REG_UA));
  cLast_ = shl64(entries, gSysShift_) - shl64(1, tshift);
  cHpas_ = hpas;
  cDev_ = dev;
  cDevHpa_ = L64<kRaw>(at(r, REG_DEV_HPA));
  return true;
}

/** hcall.ts#lockWait: lockView out of line, reached only when the lock was held. */
SPAPR_COLD uint64_t TceEngine::lockWait(uint32_t pua, uint64_t tag, uint32_t spins) { return lockViewT<kRaw>(pua, tag, spins); }

/** hcall.ts#sttReserveList: virtual mode allocates the guest pages of the list's non-zero TCEs before any write. */
bool TceEngine::sttReserveList(uint32_t stt, uint64_t idx, uint32_t n, uint32_t src) {
  const uint64_t sh = tceShiftT<kRaw>();
  uint64_t pg = ~uint64_t{0};
  for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    if (L64<kRaw>(static_cast<uint32_t>(src + (i << 3))) == 0) continue;
    const uint64_t p = shr64(idx + i, static_cast<uint32_t>(sh));
    if (p == pg) continue;
    pg = p;
    if (sttPageT<kRaw>(stt, p, true) == 0) return false;
  }
  return fault_ == Fault::kNone;
}

/** hcall.ts#sttReserveRange: every guest page of [idx, idx + n). */
bool TceEngine::sttReserveRange(uint32_t stt, uint64_t idx, uint64_t n) {
  if (n == 0) return true;
  const uint32_t sh = static_cast<uint32_t>(tceShiftT<kRaw>());
  const uint64_t last = shr64(idx + n - 1, sh);
  for (uint64_t p = shr64(idx, sh); p <= last && fault_ == Fault::kNone; p++) {
    if (sttPageT<kRaw>(stt, p, true) == 0) return false;
  }
  return fault_ == Fault::kNone;
}

/** H_GET_TCE(liobn, ioba) -> r4. */
int32_t TceEngine::getTce(uint32_t vm, uint32_t vcpu) {
  const uint32_t stt = findSttT<kRaw>(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const uint64_t idx = shr64(ioba, L32<kRaw>(at(stt, STT_PAGE_SHIFT))) - L64<kRaw>(at(stt, STT_OFFSET));
  const uint64_t v = sttGetT<kRaw>(stt, idx);
  if (fault_ != Fault::kNone) return H_TOO_HARD;
  setGpr(vcpu, 4, v);
  return H_SUCCESS;
}

}  // namespace spapr
