// H_PUT_TCE of profile kvm (kvmppc_rm_h_put_tce in real mode,
// kvmppc_h_put_tce in virtual mode; hcall.ts#putTce): the real-mode entry
// with its cached LIOBN lookup (kvmppc_find_table), and putOne, one valid
// TCE straight through when a single v2 table of the guest's page size is
// linked. Every other case runs putEntries (engine_hcall_passes.cc).
#include "engine_hcall.h"

namespace spapr {

/**
 * putTceReal of hcall.ts: H_PUT_TCE at LEVEL_REAL of the kvm profile through the cached LIOBN
 * lookup, with complete()'s r3, level and counter; kFastBail for the QEMU profile, nothing written.
 */
int32_t TceEngine::putTceReal(uint32_t vcpu) {
  const uint32_t vm = L32<kRaw>(at(vcpu, VCPU_VM));
  if (!need<kRaw>(vm, VM_BYTES)) return kFastBail;
  if (L32<kRaw>(at(vm, VM_PROFILE)) == static_cast<uint32_t>(PROFILE_QEMU)) return kFastBail;
  return complete(vcpu, kLevelReal, kLevelReal, KIND_PUT, putTce(vm, vcpu, false, true));
}

/** findSttCached of hcall.ts: the last hit again while HDR.gracePeriods is unchanged, else findStt. */
uint32_t TceEngine::findSttCached(uint32_t vm, uint64_t liobn) {
  const uint32_t gp = AL32<kRaw>(at(H, HDR_GRACE_PERIODS));
  if (vm == cVm_ && liobn == cLiobn_ && gp == cGp_ && cStt_ != 0) return cStt_;
  const uint32_t stt = findSttT<kRaw>(vm, liobn);
  if (stt != 0) {
    cVm_ = vm;
    cLiobn_ = liobn;
    cGp_ = gp;
    cStt_ = stt;
  }
  return stt;
}

/** putOne of hcall.ts: one valid TCE of H_PUT_TCE in the fast case, straight through; kFastBail when it does not apply. */
int32_t TceEngine::putOne(uint32_t vm, uint32_t vcpu, uint32_t stt, uint64_t entry, uint32_t page, uint32_t slot,
                          uint64_t tce) {
  if (L32<kRaw>(at(stt, STT_STIT_COUNT)) != 1) return kFastBail;
  const uint32_t tbl = stit(stt, 0);
  if (fault_ != Fault::kNone) return H_TOO_HARD;
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  if (tshift != L32<kRaw>(at(stt, STT_PAGE_SHIFT)) || (L32<kRaw>(at(tbl, TBL_FLAGS)) & kTableV2) == 0) return kFastBail;
  const uint64_t gpa = tce & ~kPerm;
  const uint64_t psize = shl64(1, tshift);
  if (gpa & (psize - 1)) return misalignedTce(false);
  const uint32_t ms = findSlotT<kRaw>(vm, gpa);
  if (ms == 0) return H_TOO_HARD;
  const uint64_t ua = L64<kRaw>(at(ms, SLOT_UA)) + (gpa - L64<kRaw>(at(ms, SLOT_GPA)));
  if (ua == 0) return H_TOO_HARD;
  const uint64_t rel = entry - L64<kRaw>(at(tbl, TBL_OFFSET));
  if (rel >= L64<kRaw>(at(tbl, TBL_SIZE))) return H_TOO_HARD;
  // mm_iommu_lookup and the checks of mm_iommu_ua_to_hpa, as regionFind does them.
  const uint32_t mm = L32<kRaw>(at(vm, VM_MM));
  const uint64_t sh = L32<kRaw>(at(H, HDR_SYS_PAGE_SHIFT));
  const uint32_t r = regionLookupT<kRaw>(mm, ua, psize);
  if (r == 0) return H_TOO_HARD;
  const uint64_t rua = L64<kRaw>(at(r, REG_UA));
  const uint64_t last = shl64(L64<kRaw>(at(r, REG_ENTRIES)), sh) - psize;
  if (tshift > L32<kRaw>(at(r, REG_PAGE_SHIFT))) return H_TOO_HARD;
  const uint32_t ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
  if (ul == 0) return H_TOO_HARD;
  const uint32_t tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
  if (tl == 0) return H_TOO_HARD;
  if (entryCheck() && AL32<kRaw>(at(tbl, TBL_OWNER_PID)) != L32<kRaw>(at(vcpu, VCPU_PID))) return H_TOO_HARD;
  const uint32_t off = static_cast<uint32_t>(rel & (shl64(1, leafBitsT<kRaw>(tbl)) - 1)) << 3;
  const uint64_t v = lockSlot(ul + off, tagBitsOf(vcpu), static_cast<uint32_t>(LOCK_SPINS_REAL),
                              (ablations() & static_cast<uint32_t>(ABLATE_VIEW_LOCK)) != 0);
  if (v & kLock) return H_TOO_HARD;
  const uint64_t oldUa = v & ~kLockBits;
  // transfers(), on this region: the old entry was valid and mapped from it.
  const bool inRegion = oldUa != 0 && oldUa - rua <= last;
  if ((P64<kRaw>(tl + off) & kPerm) == 0 || !inRegion) {
    if (regionMappedIncT<kRaw>(r) != 0) {
      REL64<kRaw>(ul + off, v);
      return H_TOO_HARD;
    }
  }
  uint64_t hpa;
  if (L32<kRaw>(at(r, REG_FLAGS)) & static_cast<uint32_t>(REGION_F_DEV)) {
    hpa = L64<kRaw>(at(r, REG_DEV_HPA)) + (ua - rua);
  } else {
    const uint64_t mask = shl64(1, sh) - 1;
    const uint32_t p = L32<kRaw>(at(r, REG_HPAS)) + (static_cast<uint32_t>(shr64(ua - rua, sh)) << 3);
    // The one entry of the region's page array this call reads.
    if (!need<kRaw>(p, 8, false)) {
      REL64<kRaw>(ul + off, v);
      return H_TOO_HARD;
    }
    hpa = (L64<kRaw>(p) & ~mask) | (ua & mask);
  }
  uint64_t word = tce & kPerm;
  if (word & kWrite) word = kRead | kWrite;
  const uint64_t old = XCHG64<kRaw>(tl + off, hpa | word);
  if ((old & kPerm) != 0 && !inRegion) unuseUaT<kRaw>(mm, oldUa, tshift);
  REL64<kRaw>(ul + off, ua);
  // Present: putTce answered H_TOO_HARD for a valid TCE without its guest-table page.
  W64<kRaw>(page + slot, tce);
  if (dirtyOn(vm) && (tce & kWrite) != 0) dirtyMark(vm, tce, tshift);
  return H_SUCCESS;
}

/**
 * H_PUT_TCE(liobn, ioba, tce) (kvmppc_rm_h_put_tce, kvmppc_h_put_tce): a valid TCE in real mode
 * tries putOne first, and what it does not cover runs through putEntries with the lookups already
 * made; `lean` (putTceReal): the LIOBN through findSttCached. hcall.ts's putTceReal hands those
 * cases back to hcallInside instead, which runs this same putEntries from the same registers (the
 * same answer and bytes): inlining that fallback into WebAssembly's hcall cost instructions there.
 */
int32_t TceEngine::putTce(uint32_t vm, uint32_t vcpu, bool grow, bool lean) {
  const uint32_t stt = lean ? findSttCached(vm, gpr(vcpu, 4)) : findSttT<kRaw>(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  const uint64_t tce = gpr(vcpu, 6);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const uint64_t entry = shr64(ioba, L32<kRaw>(at(stt, STT_PAGE_SHIFT)));
  const uint64_t idx = entry - L64<kRaw>(at(stt, STT_OFFSET));
  // kvmppc_rm_ioba_validate's page check, keeping the page for the store.
  const uint64_t gsh = tceShiftT<kRaw>();
  uint32_t page = 0;
  if (shr64(idx, gsh) < L32<kRaw>(at(stt, STT_NPAGES))) {
    const uint32_t pp = L32<kRaw>(at(stt, STT_PAGES)) + (static_cast<uint32_t>(shr64(idx, gsh)) << 2);
    if (!need<kRaw>(pp, 4, false)) return H_TOO_HARD;
    page = L32<kRaw>(pp);
    if (page != 0 && !need<kRaw>(page, gsh < 32 ? uint64_t{8} << gsh : ~uint64_t{0})) return H_TOO_HARD;
  }
  if (!grow && tce != 0 && page == 0) return H_TOO_HARD;
  if (callCheckFails(stt, L32<kRaw>(at(vcpu, VCPU_PID)))) return H_TOO_HARD;
  if (!grow && (tce & kPerm) != 0) {
    const int32_t rc = putOne(vm, vcpu, stt, entry, page, static_cast<uint32_t>(idx & (shl64(1, gsh) - 1)) << 3, tce);
    if (rc != kFastBail) return rc;
  }
  begin(vm, vcpu + VCPU_GPR + (6 << 3));
  return putEntries(vcpu, stt, entry, idx, 1, grow);
}
}  // namespace spapr
