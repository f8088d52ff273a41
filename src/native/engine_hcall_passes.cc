// The general path of H_PUT_TCE and H_PUT_TCE_INDIRECT, hcall.ts#putEntries
// (kvmppc_rm_h_put_tce_indirect: validate every entry, then write): every
// entry checked on its own, then for each linked table checkPass
// (kvmppc_tce_validate, the failures of kvmppc_rm_tce_iommu_do_map) and
// lockPass, and only when all succeeded applyPass (kvmppc_tce_iommu_map,
// tce_iommu_build_v2's order) and the guest table (kvmppc_tce_put);
// otherwise undoPass, and nothing has changed.
#include "engine_hcall.h"

namespace spapr {

namespace {
/** Whether a guest entry's subpages from `rel` all lie in the table: else its clear does nothing there. */
inline bool clearInside(uint64_t rel, uint64_t toff, uint64_t tsize, uint64_t subMask) {
  return rel + toff >= toff && rel < tsize && subMask < tsize - rel;
}
}  // namespace

/** checkPass of hcall.ts: checks, without writing, entries [0, lim) of table `tbl`; lim or the first failing entry. */
uint32_t TceEngine::checkPass(uint32_t tbl, uint32_t lim, uint64_t r0, uint32_t subShift, bool grow) {
  const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lb = leafBitsT<kRaw>(tbl);
  const uint64_t subMask = shl64(1, subShift) - 1;
  const uint64_t total = shl64(lim, subShift);
  uint64_t key = ~uint64_t{0};
  uint64_t perm = 0;
  uint64_t ua = 0;
  regionReset();
  for (uint64_t j = 0; j < total; j++) {
    const uint64_t k = j & subMask;
    if (k == 0) {
      const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(xSrc_ + (static_cast<uint32_t>(shr64(j, subShift)) << 3)));
      perm = tce & kPerm;
      if (perm == 0) {
        j += subMask;
        continue;
      }
      ua = uaOf(tce & ~kPerm);
    }
    const uint64_t rel = r0 + j;
    const uint32_t i = static_cast<uint32_t>(shr64(j, subShift));
    if (rel >= tsize) return i;
    if (grow) {
      if (AL32<kRaw>(at(tbl, TBL_UA_ROOT)) == 0) return i;
    } else if (shr64(rel, lb) != key) {
      if (leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false) == 0) return i;
      if (leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false) == 0) return i;
      key = shr64(rel, lb);
    }
    const uint64_t uak = ua + shl64(k, tshift);
    if (uak - cUa_ > cLast_ && !regionFind(uak, tshift)) return i;
  }
  return lim;
}

/** lockPass of hcall.ts: validates and locks table `tbl`'s share of entries [0, n); n or the first entry that failed. */
uint32_t TceEngine::lockPass(uint32_t tbl, uint32_t n, uint64_t r0, uint32_t subShift, bool grow) {
  const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
  const uint64_t toff = L64<kRaw>(at(tbl, TBL_OFFSET));
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lb = leafBitsT<kRaw>(tbl);
  const uint64_t lmask = shl64(1, lb) - 1;
  const uint64_t subMask = shl64(1, subShift) - 1;
  const uint64_t total = shl64(n, subShift);
  uint64_t key = ~uint64_t{0};
  uint32_t tl = 0;
  uint32_t ul = 0;
  uint64_t perm = 0;
  uint64_t ua = 0;
  regionReset();
  for (uint64_t j = 0; j < total; j++) {
    const uint64_t rel = r0 + j;
    const uint64_t k = j & subMask;
    const uint32_t i = static_cast<uint32_t>(shr64(j, subShift));
    if (k == 0) {
      const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(xSrc_ + (i << 3)));
      perm = tce & kPerm;
      if (perm != 0) {
        ua = uaOf(tce & ~kPerm);
      } else if (!clearInside(rel, toff, tsize, subMask)) {
        j += subMask;
        continue;
      }
    }
    const uint32_t off = static_cast<uint32_t>(rel & lmask) << 3;
    if (perm != 0) {
      if (rel >= tsize) return i;
      const uint64_t uak = ua + shl64(k, tshift);
      if (uak - cUa_ > cLast_ && !regionFind(uak, tshift)) return i;
      if (shr64(rel, lb) != key || tl == 0) {
        // View first, then TCE, as tce_iommu_build_v2 resolves them.
        key = shr64(rel, lb);
        ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, grow);
        tl = ul == 0 ? 0 : leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, grow);
        if (tl == 0) return i;
      }
      if (xPidCheck_ && AL32<kRaw>(at(tbl, TBL_OWNER_PID)) != xPid_) return i;
      const uint64_t v = lockSlot(ul + off, xTag_, xSpins_, xNoLock_);
      if (v & kLock) return i;
      // Under the lock the TCE cannot change: a plain load.
      if (!transfers(P64<kRaw>(tl + off), v & ~kLockBits) && regionMappedIncT<kRaw>(cR_) != 0) {
        REL64<kRaw>(ul + off, v);
        return i;
      }
    } else {
      if (shr64(rel, lb) != key) {
        key = shr64(rel, lb);
        tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
        ul = tl == 0 ? 0 : leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        if (fault_ != Fault::kNone) return i;
      }
      // Already clear, or valid with no view (cleared without accounting): no lock needed.
      if (tl == 0 || P64<kRaw>(tl + off) == 0 || ul == 0) continue;
      if (xPidCheck_ && AL32<kRaw>(at(tbl, TBL_OWNER_PID)) != xPid_) return i;
      // Clears find their locks again by the tag: always locked, ablation or not.
      const uint64_t v = lockViewT<kRaw>(ul + off, xTag_, xSpins_);
      if (v & kLock) return i;
      // Cleared by someone else meanwhile: nothing to do here.
      if (P64<kRaw>(tl + off) == 0) REL64<kRaw>(ul + off, v);
    }
  }
  return n;
}

/** applyPass of hcall.ts: writes table `tbl`'s share of entries [0, n) after every lockPass succeeded. */
void TceEngine::applyPass(uint32_t tbl, uint32_t n, uint64_t r0, uint32_t subShift) {
  const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
  const uint64_t toff = L64<kRaw>(at(tbl, TBL_OFFSET));
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lb = leafBitsT<kRaw>(tbl);
  const uint64_t lmask = shl64(1, lb) - 1;
  const uint64_t subMask = shl64(1, subShift) - 1;
  const uint64_t total = shl64(n, subShift);
  uint64_t key = ~uint64_t{0};
  uint32_t tl = 0;
  uint32_t ul = 0;
  uint64_t word = 0;
  uint64_t ua = 0;
  regionReset();
  for (uint64_t j = 0; j < total; j++) {
    const uint64_t rel = r0 + j;
    const uint64_t k = j & subMask;
    if (k == 0) {
      const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(xSrc_ + (static_cast<uint32_t>(shr64(j, subShift)) << 3)));
      word = tce & kPerm;
      if (word != 0) {
        ua = uaOf(tce & ~kPerm);
        if (word & kWrite) word |= kRead;
      } else if (!clearInside(rel, toff, tsize, subMask)) {
        j += subMask;
        continue;
      }
    }
    const uint32_t off = static_cast<uint32_t>(rel & lmask) << 3;
    if (word != 0) {
      const uint64_t uak = ua + shl64(k, tshift);
      if (uak - cUa_ > cLast_ && !regionFind(uak, tshift)) return;
      if (shr64(rel, lb) != key || tl == 0) {
        key = shr64(rel, lb);
        ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
        if (tl == 0 || ul == 0) return;
      }
      const uint64_t old = XCHG64<kRaw>(tl + off, cachedHpa(uak) | word);
      const uint64_t oldUa = P64<kRaw>(ul + off) & ~kLockBits;
      if ((old & kPerm) != 0 && !transfers(old, oldUa)) unuseUaT<kRaw>(xMm_, oldUa, tshift);
      REL64<kRaw>(ul + off, uak);
    } else {
      if (shr64(rel, lb) != key) {
        key = shr64(rel, lb);
        tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
        ul = tl == 0 ? 0 : leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        if (fault_ != Fault::kNone) return;
      }
      if (tl == 0 || P64<kRaw>(tl + off) == 0) continue;
      if (ul == 0) {
        XCHG64<kRaw>(tl + off, 0);
        continue;
      }
      const uint64_t v = P64<kRaw>(ul + off);
      if ((v & kLockBits) != xTag_) continue;
      const uint64_t old = XCHG64<kRaw>(tl + off, 0);
      if ((old & kPerm) != 0) unuseUaT<kRaw>(xMm_, v & ~kLockBits, tshift);
      REL64<kRaw>(ul + off, 0);
    }
  }
}

/** undoPass of hcall.ts: gives back what lockPass took in table `tbl` for entries [0, end). */
void TceEngine::undoPass(uint32_t tbl, uint32_t end, uint64_t r0, uint32_t subShift) {
  const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  const uint64_t lb = leafBitsT<kRaw>(tbl);
  const uint64_t lmask = shl64(1, lb) - 1;
  const uint64_t subMask = shl64(1, subShift) - 1;
  const uint64_t total = shl64(end, subShift);
  uint64_t key = ~uint64_t{0};
  uint32_t tl = 0;
  uint32_t ul = 0;
  uint64_t ua = 0;
  regionReset();
  for (uint64_t j = 0; j < total; j++) {
    const uint64_t rel = r0 + j;
    const uint64_t k = j & subMask;
    if (k == 0) {
      const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(xSrc_ + (static_cast<uint32_t>(shr64(j, subShift)) << 3)));
      ua = (tce & kPerm) != 0 ? uaOf(tce & ~kPerm) : 0;
    }
    if (rel >= tsize) continue;
    if (shr64(rel, lb) != key) {
      key = shr64(rel, lb);
      tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      ul = tl == 0 ? 0 : leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
    }
    if (ul == 0) continue;
    const uint32_t off = static_cast<uint32_t>(rel & lmask) << 3;
    const uint64_t v = P64<kRaw>(ul + off);
    if ((v & kLockBits) != xTag_) continue;
    if (ua != 0) {
      const uint64_t uak = ua + shl64(k, tshift);
      if (uak - cUa_ > cLast_) regionFind(uak, tshift);
      if (!transfers(P64<kRaw>(tl + off), v & ~kLockBits)) regionMappedDecT<kRaw>(cR_);
    }
    REL64<kRaw>(ul + off, v & ~kLockBits);
  }
}

namespace {
/** Guest entry `entry`'s first entry in a table of offset `toff` (2^subShift per guest entry), relative; wraps as the kernel's. */
inline uint64_t relOf(uint64_t toff, uint64_t entry, uint32_t subShift) { return shl64(entry, subShift) - toff; }
}  // namespace

/** putEntries of hcall.ts: the general body of H_PUT_TCE and H_PUT_TCE_INDIRECT over the TCEs at xSrc_. */
int32_t TceEngine::putEntries(uint32_t vcpu, uint32_t stt, uint64_t entry, uint64_t idx, uint32_t n, bool grow) {
  const uint32_t src = xSrc_;
  const uint32_t gshift = L32<kRaw>(at(stt, STT_PAGE_SHIFT));
  const uint64_t pageMask = shl64(1, gshift) - 1;
  const bool v1 = hasV1(stt);
  if (fault_ != Fault::kNone) return H_TOO_HARD;
  uint32_t lim = n;
  int32_t rc = H_SUCCESS;
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(src + (i << 3)));
    if ((tce & kPerm) != 0) {
      const uint64_t gpa = tce & ~kPerm;
      if (gpa & pageMask) {
        rc = misalignedTce(grow);
      } else if (uaOf(gpa) == 0) {
        rc = H_TOO_HARD;
      }
    }
    if (rc == H_SUCCESS && v1) rc = H_TOO_HARD;
    if (rc != H_SUCCESS) {
      lim = i;
      break;
    }
  }
  if (fault_ != Fault::kNone) return H_TOO_HARD;
  const uint32_t nstits = stitCount(stt);
  if (lim < n || grow) {
    for (uint32_t s = 0; s < nstits; s++) {
      const uint32_t tbl = stit(stt, s);
      if (fault_ != Fault::kNone) return H_TOO_HARD;
      const uint32_t ss = subShiftOf(gshift, tbl);
      const uint32_t j = checkPass(tbl, lim, relOf(L64<kRaw>(at(tbl, TBL_OFFSET)), entry, ss), ss, grow);
      if (fault_ != Fault::kNone) return H_TOO_HARD;
      if (j < lim) {
        lim = j;
        rc = H_TOO_HARD;
      }
    }
    if (lim < n) return rc;
  }
  if (grow && !sttReserveList(stt, idx, n, xSrc_)) return H_TOO_HARD;
  xTag_ = tagBitsOf(vcpu);
  xSpins_ = grow ? static_cast<uint32_t>(LOCK_SPINS_VIRTUAL) : static_cast<uint32_t>(LOCK_SPINS_REAL);
  xPidCheck_ = entryCheck();
  xPid_ = L32<kRaw>(at(vcpu, VCPU_PID));
  xNoLock_ = (ablations() & static_cast<uint32_t>(ABLATE_VIEW_LOCK)) != 0;
  for (uint32_t s = 0; s < nstits; s++) {
    const uint32_t tbl = stit(stt, s);
    // A table outside the memory: give back the tables before it (it took nothing).
    const bool inside = fault_ == Fault::kNone;
    const uint32_t ss = inside ? subShiftOf(gshift, tbl) : 0;
    const uint32_t j = inside ? lockPass(tbl, n, relOf(L64<kRaw>(at(tbl, TBL_OFFSET)), entry, ss), ss, grow) : 0;
    if (j < n) {
      for (uint32_t u = 0; u < s || (u == s && inside); u++) {
        const uint32_t t = stit(stt, u);
        const uint32_t su = subShiftOf(gshift, t);
        undoPass(t, u == s ? j + 1 : n, relOf(L64<kRaw>(at(t, TBL_OFFSET)), entry, su), su);
      }
      return H_TOO_HARD;
    }
  }
  for (uint32_t s = 0; s < nstits; s++) {
    const uint32_t tbl = stit(stt, s);
    const uint32_t ss = subShiftOf(gshift, tbl);
    applyPass(tbl, n, relOf(L64<kRaw>(at(tbl, TBL_OFFSET)), entry, ss), ss);
    if (fault_ != Fault::kNone) return H_TOO_HARD;
  }
  // kvmppc_tce_put for each entry: an absent page is allocated (virtual mode) unless the TCE is 0.
  const uint64_t sh = tceShiftT<kRaw>();
  const uint64_t mask = shl64(1, sh) - 1;
  uint64_t pg = ~uint64_t{0};
  uint32_t page = 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t tce = L64<kRaw>(static_cast<uint32_t>(src + (i << 3)));
    const uint64_t j = idx + i;
    if (shr64(j, sh) != pg || page == 0) {
      pg = shr64(j, sh);
      page = sttPageT<kRaw>(stt, pg, grow && tce != 0);
      if (fault_ != Fault::kNone) return H_TOO_HARD;
    }
    if (page != 0) W64<kRaw>(page + (static_cast<uint32_t>(j & mask) << 3), tce);
  }
  if (dirtyOn(xVm_)) dirtyMarkList(xVm_, src, n, gshift);
  return H_SUCCESS;
}

}  // namespace spapr
