// H_PUT_TCE_INDIRECT of profile kvm (kvmppc_rm_h_put_tce_indirect,
// kvmppc_h_put_tce_indirect; hcall.ts#putTceIndirect): the TCE list copied
// once from guest memory, and the real-mode fast path for one linked v2
// table of the guest's page size, every entry a map: lockFast validates and
// locks every entry, applyFast writes the table and the guest table
// (kvmppc_tce_put); putFused is the benchmark's ablation of the two. An entry
// outside that case sends the call to putEntries (engine_hcall_passes.cc)
// with nothing changed.
#include "engine_hcall.h"

namespace spapr {

// The fast loops keep the caches in locals: every raw store goes through a
// uint8_t pointer, which may alias anything, so members would be reloaded
// after each one. A refill (rare) goes through the members and is read back.
namespace {
struct RegionCache {
  uint64_t ua, last, devHpa;
  uint32_t hpas;
  bool dev;
};
struct SlotCache {
  uint64_t base, last, ua;
};
}  // namespace

/** lockFast of hcall.ts: validates and locks entries [0, n) of the fast case; n, or where it stopped with xRc_ saying why. */
uint32_t TceEngine::lockFast(uint32_t tbl, uint32_t n, uint64_t r0, uint64_t pageMask) {
  const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lmask = shl64(1, leafBitsT<kRaw>(tbl)) - 1;
  const uint32_t src = xSrc_;
  const uint64_t tag = xTag_;
  const bool pidCheck = xPidCheck_;
  const bool noLock = xNoLock_;
  uint8_t* const b = base_;
  uint64_t leafLo = r0 - lmask - 1;
  uint32_t tl = 0;
  uint32_t ul = 0;
  // What applyFast needs again (not in linear memory: the WebAssembly build recomputes it).
  uint32_t nleaves = 0;
  regionReset();
  RegionCache rc{cUa_, cLast_, 0, 0, false};
  SlotCache sc{mBase_, mLast_, mUa_};
  auto load64 = [b](uint32_t a) {
    uint64_t v;
    std::memcpy(&v, b + a, 8);
    return v;
  };
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t tce = load64(src + (i << 3));
    if ((tce & kPerm) == 0) {
      xRc_ = kFastBail;
      return i;
    }
    const uint64_t gpa = tce & ~kPerm;
    if (gpa & pageMask) {
      xRc_ = misalignedTce(false);
      return i;
    }
    xRc_ = H_TOO_HARD;
    if (gpa - sc.base > sc.last) {
      if (uaOf(gpa) == 0) return i;
      sc = {mBase_, mLast_, mUa_};
    }
    const uint64_t ua = sc.ua + (gpa - sc.base);
    if (ua == 0) return i;
    const uint64_t rel = r0 + i;
    if (rel >= tsize) return i;
    if (ua - rc.ua > rc.last) {
      if (!regionFind(ua, tshift)) return i;
      rc = {cUa_, cLast_, 0, 0, false};
    }
    if (rel - leafLo > lmask) {
      ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      if (ul == 0) return i;
      tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      if (tl == 0) return i;
      leafLo = rel & ~lmask;
      leaves_[nleaves] = {ul, tl};
      nleaves++;
    }
    uas_[i] = ua;
    if (pidCheck && AL32<kRaw>(at(tbl, TBL_OWNER_PID)) != xPid_) return i;
    const uint32_t off = static_cast<uint32_t>(rel - leafLo) << 3;
    uint64_t* const pua = reinterpret_cast<uint64_t*>(b + ul + off);
    const uint64_t v = lockSlot(ul + off, tag, xSpins_, noLock);
    if (v & kLock) return i;
    // transfers(): the old entry was valid and mapped from this region.
    const uint64_t oldUa = v & ~kLockBits;
    const bool keep = (__atomic_load_n(reinterpret_cast<uint64_t*>(b + tl + off), __ATOMIC_RELAXED) & kPerm) != 0 &&
                      oldUa != 0 && oldUa - rc.ua <= rc.last;
    if (!keep && regionMappedIncT<kRaw>(cR_) != 0) {
      __atomic_store_n(pua, v, __ATOMIC_RELEASE);
      return i;
    }
  }
  return n;
}

/** applyFast of hcall.ts: writes what lockFast validated, the table's entries and the guest's. */
void TceEngine::applyFast(uint32_t tbl, uint32_t stt, uint32_t n, uint64_t r0, uint64_t idx) {
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lmask = shl64(1, leafBitsT<kRaw>(tbl)) - 1;
  const uint32_t src = xSrc_;
  const uint64_t sysShift = gSysShift_;
  const uint64_t sysMask = gSysMask_;
  const uint64_t tceShift = gTceShift_;
  const uint64_t tceMask = gTceMask_;
  uint8_t* const b = base_;
  uint64_t leafLo = r0 - lmask - 1;
  uint32_t tl = 0;
  uint32_t ul = 0;
  uint32_t nleaves = 0;
  uint64_t pageLo = idx - tceMask - 1;
  uint32_t page = 0;
  RegionCache rc{cUa_, cLast_, cDevHpa_, cHpas_, cDev_};
  (void)tbl;
  auto load64 = [b](uint32_t a) {
    uint64_t v;
    std::memcpy(&v, b + a, 8);
    return v;
  };
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t tce = load64(src + (i << 3));
    const uint64_t ua = uas_[i];
    uint64_t word = tce & kPerm;
    if (word & kWrite) word = kRead | kWrite;
    const uint64_t rel = r0 + i;
    if (ua - rc.ua > rc.last) {
      if (!regionFind(ua, tshift)) return;
      rc = {cUa_, cLast_, cDevHpa_, cHpas_, cDev_};
    }
    if (rel - leafLo > lmask) {
      ul = leaves_[nleaves].ua;
      tl = leaves_[nleaves].tce;
      nleaves++;
      leafLo = rel & ~lmask;
    }
    const uint32_t off = static_cast<uint32_t>(rel - leafLo) << 3;
    const uint64_t d = ua - rc.ua;
    const uint64_t hpa = rc.dev ? rc.devHpa + d
                                : (load64(static_cast<uint32_t>(rc.hpas + static_cast<uint32_t>((d >> sysShift) << 3))) &
                                   ~sysMask) | (ua & sysMask);
    const uint64_t old = __atomic_exchange_n(reinterpret_cast<uint64_t*>(b + tl + off), hpa | word, __ATOMIC_SEQ_CST);
    uint64_t* const pua = reinterpret_cast<uint64_t*>(b + ul + off);
    if ((old & kPerm) != 0) {
      const uint64_t oldUa = __atomic_load_n(pua, __ATOMIC_RELAXED) & ~kLockBits;
      if (!(oldUa != 0 && oldUa - rc.ua <= rc.last)) unuseUaT<kRaw>(xMm_, oldUa, tshift);
    }
    __atomic_store_n(pua, ua, __ATOMIC_RELEASE);
    const uint64_t j = idx + i;
    if (j - pageLo > tceMask) {
      page = sttPageT<kRaw>(stt, j >> tceShift, false);
      if (fault_ != Fault::kNone) return;
      pageLo = j & ~tceMask;
    }
    if (page != 0) __atomic_store_n(reinterpret_cast<uint64_t*>(b + page + (static_cast<uint32_t>(j - pageLo) << 3)), tce,
                                    __ATOMIC_RELAXED);
  }
}

/** putFused of hcall.ts (ABLATE_VALIDATE, the benchmark only): lockFast's checks and applyFast's writes entry by entry. */
int32_t TceEngine::putFused(uint32_t tbl, uint32_t stt, uint32_t n, uint64_t r0, uint64_t idx, uint64_t pageMask) {
  const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lmask = shl64(1, leafBitsT<kRaw>(tbl)) - 1;
  const uint32_t src = xSrc_;
  uint64_t leafLo = r0 - lmask - 1;
  uint32_t tl = 0;
  uint32_t ul = 0;
  uint64_t pageLo = idx - gTceMask_ - 1;
  uint32_t page = 0;
  regionReset();
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(src + (i << 3)));
    if ((tce & kPerm) == 0) return i == 0 ? kFastBail : H_TOO_HARD;
    const uint64_t gpa = tce & ~kPerm;
    if (gpa & pageMask) return misalignedTce(false);
    const uint64_t ua = uaOf(gpa);
    if (ua == 0) return H_TOO_HARD;
    const uint64_t rel = r0 + i;
    if (rel >= tsize) return H_TOO_HARD;
    if (ua - cUa_ > cLast_ && !regionFind(ua, tshift)) return H_TOO_HARD;
    if (rel - leafLo > lmask) {
      ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      if (ul == 0) return H_TOO_HARD;
      tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      if (tl == 0) return H_TOO_HARD;
      leafLo = rel & ~lmask;
    }
    if (xPidCheck_ && AL32<kRaw>(at(tbl, TBL_OWNER_PID)) != xPid_) return H_TOO_HARD;
    const uint32_t off = static_cast<uint32_t>(rel - leafLo) << 3;
    const uint64_t v = lockSlot(ul + off, xTag_, xSpins_, xNoLock_);
    if (v & kLock) return H_TOO_HARD;
    const uint64_t oldUa = v & ~kLockBits;
    if (!transfers(P64<kRaw>(tl + off), oldUa) && regionMappedIncT<kRaw>(cR_) != 0) {
      REL64<kRaw>(ul + off, v);
      return H_TOO_HARD;
    }
    uint64_t word = tce & kPerm;
    if (word & kWrite) word = kRead | kWrite;
    const uint64_t old = XCHG64<kRaw>(tl + off, cachedHpa(ua) | word);
    if ((old & kPerm) != 0 && !transfers(old, oldUa)) unuseUaT<kRaw>(xMm_, oldUa, tshift);
    REL64<kRaw>(ul + off, ua);
    const uint64_t j = idx + i;
    if (j - pageLo > gTceMask_) {
      page = sttPageT<kRaw>(stt, j >> gTceShift_, false);
      if (fault_ != Fault::kNone) return H_TOO_HARD;
      pageLo = j & ~gTceMask_;
    }
    if (page != 0) W64<kRaw>(page + (static_cast<uint32_t>(j - pageLo) << 3), tce);
  }
  return H_SUCCESS;
}

/** putFast of hcall.ts: the fast path when it applies, or kFastBail with nothing changed. */
int32_t TceEngine::putFast(uint32_t vcpu, uint32_t stt, uint64_t entry, uint64_t idx, uint32_t n) {
  if (L32<kRaw>(at(stt, STT_STIT_COUNT)) != 1) return kFastBail;
  const uint32_t tbl = stit(stt, 0);
  if (fault_ != Fault::kNone) return H_TOO_HARD;
  const uint32_t gshift = L32<kRaw>(at(stt, STT_PAGE_SHIFT));
  if (L32<kRaw>(at(tbl, TBL_PAGE_SHIFT)) != gshift || (L32<kRaw>(at(tbl, TBL_FLAGS)) & kTableV2) == 0) return kFastBail;
  xTag_ = tagBitsOf(vcpu);
  xSpins_ = static_cast<uint32_t>(LOCK_SPINS_REAL);
  xPidCheck_ = entryCheck();
  xPid_ = L32<kRaw>(at(vcpu, VCPU_PID));
  const uint32_t ablate = ablations();
  xNoLock_ = (ablate & static_cast<uint32_t>(ABLATE_VIEW_LOCK)) != 0;
  const uint64_t r0 = entry - L64<kRaw>(at(tbl, TBL_OFFSET));
  if (ablate & static_cast<uint32_t>(ABLATE_VALIDATE)) {
    const int32_t rc = putFused(tbl, stt, n, r0, idx, shl64(1, gshift) - 1);
    // Stopped part-way or not, every writable TCE of the list may have been stored: all count.
    if (rc != kFastBail && dirtyOn(xVm_)) dirtyMarkList(xVm_, xSrc_, n, gshift);
    return rc;
  }
  const uint32_t j = lockFast(tbl, n, r0, shl64(1, gshift) - 1);
  if (j < n) {
    undoPass(tbl, j, r0, 0);
    return xRc_;
  }
  applyFast(tbl, stt, n, r0, idx);
  if (dirtyOn(xVm_)) dirtyMarkList(xVm_, xSrc_, n, gshift);
  return H_SUCCESS;
}

/** H_PUT_TCE_INDIRECT(liobn, ioba, tce_list, npages): the list is big-endian in guest memory, copied once. */
int32_t TceEngine::putTceIndirect(uint32_t vm, uint32_t vcpu, bool grow) {
  const uint32_t stt = findSttT<kRaw>(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  const uint64_t list = gpr(vcpu, 6);
  const uint64_t npages = gpr(vcpu, 7);
  if (npages > kIndirectMax) return H_PARAMETER;
  if (list & 0xfff) return H_PARAMETER;
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const uint64_t entry = shr64(ioba, L32<kRaw>(at(stt, STT_PAGE_SHIFT)));
  const uint64_t idx = entry - L64<kRaw>(at(stt, STT_OFFSET));
  if (!grow && !sttPagesPresentT<kRaw>(stt, idx, npages)) return H_TOO_HARD;
  // The list must translate even when empty (kvmppc_rm_tce_to_ua on tce_list).
  const uint32_t host = gpaToHostT<kRaw>(vm, list, npages << 3);
  if (host == 0) return H_TOO_HARD;
  if (callCheckFails(stt, L32<kRaw>(at(vcpu, VCPU_PID)))) return H_TOO_HARD;
  const uint32_t n = static_cast<uint32_t>(npages);
  if (!need<kRaw>(host, npages << 3, false)) return H_TOO_HARD;
  const uint32_t tces = vcpu + VCPU_TCES;
  for (uint32_t i = 0; i < n; i++) {
    S64<kRaw>(tces + (i << 3), __builtin_bswap64(L64<kRaw>(static_cast<uint32_t>(host + (i << 3)))));
  }
  begin(vm, tces);
  if (!grow) {
    const int32_t rc = putFast(vcpu, stt, entry, idx, n);
    if (rc != kFastBail) return rc;
  }
  return putEntries(vcpu, stt, entry, idx, n, grow);
}

}  // namespace spapr
