// H_STUFF_TCE of profile kvm (kvmppc_rm_h_stuff_tce, kvmppc_h_stuff_tce;
// hcall.ts#stuffTce): npages entries set to one value, which clears them in
// every linked table (tce_iommu_clear's walk over present leaves): stuffLock
// takes the view locks of the valid entries, stuffUndo gives them back when
// one fails, stuffApply clears; then the guest table (kvmppc_tce_put).
#include "engine_hcall.h"

namespace spapr {

/** stuffLock of hcall.ts: locks every valid entry of [lo, hi) with a view; entries to clear, or -1 with none held. */
int64_t TceEngine::stuffLock(uint32_t tbl, uint64_t lo, uint64_t hi) {
  const uint64_t lmask = shl64(1, leafBitsT<kRaw>(tbl)) - 1;
  int64_t pending = 0;
  uint64_t rel = lo;
  while (rel < hi) {
    const uint32_t tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
    if (tl == 0) {
      if (fault_ != Fault::kNone) {
        stuffUndo(tbl, lo, rel);
        return -1;
      }
      rel = skipAbsentT<kRaw>(tbl, rel);
      continue;
    }
    uint32_t ul = 0;
    bool looked = false;
    for (const uint64_t e = leafEnd(rel, lmask, hi); rel < e; rel++) {
      const uint32_t off = static_cast<uint32_t>(rel & lmask) << 3;
      // Four clear entries at a time, as hcall.ts does.
      if (rel + 4 <= e && (P64<kRaw>(tl + off) | P64<kRaw>(tl + off + 8) | P64<kRaw>(tl + off + 16) |
                           P64<kRaw>(tl + off + 24)) == 0) {
        rel += 3;
        continue;
      }
      if (P64<kRaw>(tl + off) == 0) continue;
      if (!looked) {
        ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        looked = true;
        if (fault_ != Fault::kNone) {
          stuffUndo(tbl, lo, rel);
          return -1;
        }
      }
      pending++;
      if (ul == 0) continue;
      if (xPidCheck_ && AL32<kRaw>(at(tbl, TBL_OWNER_PID)) != xPid_) {
        stuffUndo(tbl, lo, rel);
        return -1;
      }
      const uint64_t v = lockViewT<kRaw>(ul + off, xTag_, xSpins_);
      if (v & kLock) {
        stuffUndo(tbl, lo, rel);
        return -1;
      }
      if (P64<kRaw>(tl + off) == 0) {
        REL64<kRaw>(ul + off, v);
        pending--;
      }
    }
  }
  return pending;
}

/** stuffUndo of hcall.ts: lets go of this vCPU's view locks in [lo, hi) of `tbl`. */
void TceEngine::stuffUndo(uint32_t tbl, uint64_t lo, uint64_t hi) {
  const uint64_t lmask = shl64(1, leafBitsT<kRaw>(tbl)) - 1;
  uint64_t rel = lo;
  while (rel < hi) {
    const uint32_t tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
    if (tl == 0) {
      const uint64_t next = skipAbsentT<kRaw>(tbl, rel);
      rel = next > rel ? next : hi;
      continue;
    }
    const uint32_t ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
    const uint64_t e = leafEnd(rel, lmask, hi);
    if (ul == 0) {
      rel = e;
      continue;
    }
    for (; rel < e; rel++) {
      const uint32_t p = ul + (static_cast<uint32_t>(rel & lmask) << 3);
      const uint64_t v = P64<kRaw>(p);
      if ((v & kLockBits) == xTag_) REL64<kRaw>(p, v & ~kLockBits);
    }
  }
}

/** stuffApply of hcall.ts: clears the entries stuffLock locked in [lo, hi) of `tbl`, and valid ones without a view. */
void TceEngine::stuffApply(uint32_t tbl, uint64_t lo, uint64_t hi) {
  const uint64_t lmask = shl64(1, leafBitsT<kRaw>(tbl)) - 1;
  const uint32_t tshift = L32<kRaw>(at(tbl, TBL_PAGE_SHIFT));
  uint64_t rel = lo;
  while (rel < hi) {
    const uint32_t tl = leafNodeT<kRaw>(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
    if (tl == 0) {
      if (fault_ != Fault::kNone) return;
      rel = skipAbsentT<kRaw>(tbl, rel);
      continue;
    }
    uint32_t ul = 0;
    bool looked = false;
    for (const uint64_t e = leafEnd(rel, lmask, hi); rel < e; rel++) {
      const uint32_t off = static_cast<uint32_t>(rel & lmask) << 3;
      if (P64<kRaw>(tl + off) == 0) continue;
      if (!looked) {
        ul = leafNodeT<kRaw>(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        looked = true;
        if (fault_ != Fault::kNone) return;
      }
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

/** H_STUFF_TCE(liobn, ioba, value, npages): clears npages entries in every linked table, walking what exists. */
int32_t TceEngine::stuffTce(uint32_t vm, uint32_t vcpu, bool grow) {
  const uint32_t stt = findSttT<kRaw>(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const uint64_t ioba = gpr(vcpu, 5);
  const uint64_t value = gpr(vcpu, 6);
  const uint64_t npages = gpr(vcpu, 7);
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const uint32_t gshift = L32<kRaw>(at(stt, STT_PAGE_SHIFT));
  const uint64_t entry = shr64(ioba, gshift);
  const uint64_t idx = entry - L64<kRaw>(at(stt, STT_OFFSET));
  // kvmppc_rm_ioba_validate (pages needed unless clearing) comes before the permission check.
  if (!grow && value != 0 && !sttPagesPresentT<kRaw>(stt, idx, npages)) return H_TOO_HARD;
  if (value & kPerm) return H_PARAMETER;
  const uint32_t pid = L32<kRaw>(at(vcpu, VCPU_PID));
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  if (npages != 0 && hasV1(stt)) return H_TOO_HARD;
  if (grow && value != 0 && !sttReserveRange(stt, idx, npages)) return H_TOO_HARD;
  if (fault_ != Fault::kNone) return H_TOO_HARD;
  xMm_ = L32<kRaw>(at(vm, VM_MM));
  xTag_ = tagBitsOf(vcpu);
  xSpins_ = grow ? static_cast<uint32_t>(LOCK_SPINS_VIRTUAL) : static_cast<uint32_t>(LOCK_SPINS_REAL);
  xPidCheck_ = entryCheck();
  xPid_ = pid;
  const uint32_t n = stitCount(stt);
  // Bit s: table s has entries to clear.
  uint32_t todo = 0;
  for (uint32_t s = 0; s < n; s++) {
    const uint32_t tbl = stit(stt, s);
    if (fault_ != Fault::kNone) return H_TOO_HARD;
    const uint32_t ss = subShiftOf(gshift, tbl);
    const uint64_t toff = L64<kRaw>(at(tbl, TBL_OFFSET));
    const uint64_t tsize = L64<kRaw>(at(tbl, TBL_SIZE));
    const uint64_t first = shl64(entry, ss);
    const uint64_t count = shl64(npages, ss);
    // tce_iommu_clear's range check (clearRel): a range leaving the table clears nothing there.
    if (count == 0 || first < toff || first - toff >= tsize || count > tsize - (first - toff)) continue;
    const int64_t pending = stuffLock(tbl, first - toff, first - toff + count);
    if (pending < 0) {
      for (uint32_t u = 0; u < s; u++) {
        if ((todo & (1u << u)) == 0) continue;
        const uint32_t t = stit(stt, u);
        const uint32_t su = subShiftOf(gshift, t);
        const uint64_t lo = shl64(entry, su) - L64<kRaw>(at(t, TBL_OFFSET));
        stuffUndo(t, lo, lo + shl64(npages, su));
      }
      return H_TOO_HARD;
    }
    if (pending > 0) todo |= 1u << s;
  }
  for (uint32_t s = 0; s < n; s++) {
    if ((todo & (1u << s)) == 0) continue;
    const uint32_t tbl = stit(stt, s);
    const uint32_t ss = subShiftOf(gshift, tbl);
    const uint64_t lo = shl64(entry, ss) - L64<kRaw>(at(tbl, TBL_OFFSET));
    stuffApply(tbl, lo, lo + shl64(npages, ss));
    if (fault_ != Fault::kNone) return H_TOO_HARD;
  }
  sttFillT<kRaw>(stt, idx, npages, value, grow);
  return H_SUCCESS;
}

}  // namespace spapr
