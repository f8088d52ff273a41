// Profile qemu (hw/ppc/spapr_iommu.c: h_put_tce, h_put_tce_indirect,
// h_stuff_tce, h_get_tce over put_tce_emu): the guest table only, no
// hardware table; H_SUCCESS or H_PARAMETER, and a call may stop part-way.
#include "engine_hcall.h"

namespace spapr {

/** QEMU's table lookup: a LIOBN with bits 32..63 set matches nothing. */
uint32_t TceEngine::qemuFind(uint32_t vm, uint64_t liobn) { return liobn >> 32 != 0 ? 0 : findSttT<kRaw>(vm, liobn); }

/** put_tce_emu: ioba rounded down to the page; the index computed unsigned; raw value stored. */
int32_t TceEngine::qemuPut(uint32_t vm, uint32_t stt, uint64_t ioba, uint64_t tce) {
  const uint64_t shift = L32<kRaw>(at(stt, STT_PAGE_SHIFT));
  const uint64_t bus = shl64(L64<kRaw>(at(stt, STT_OFFSET)), shift);
  const uint64_t idx = shr64((ioba & ~(shl64(1, shift) - 1)) - bus, shift);
  if (idx >= L64<kRaw>(at(stt, STT_SIZE))) return H_PARAMETER;
  const uint32_t p = sttSlotT<kRaw>(stt, idx, tce != 0);
  // hcall.ts#qemuPut: a guest-table page the heap cannot give is H_HARDWARE, never a lost TCE.
  if (p == 0) return tce != 0 ? H_HARDWARE : H_SUCCESS;
  W64<kRaw>(p, tce);
  if ((tce & kWrite) != 0 && dirtyOn(vm)) dirtyMark(vm, tce, static_cast<uint32_t>(shift));
  return H_SUCCESS;
}

int32_t TceEngine::qemuHcall(uint32_t vm, uint32_t vcpu, uint64_t nr) {
  if (nr != kHPut && nr != kHIndirect && nr != kHStuff && nr != kHGet) return H_TOO_HARD;
  const uint32_t stt = qemuFind(vm, gpr(vcpu, 4));
  if (stt == 0) return H_PARAMETER;
  const uint64_t ioba = gpr(vcpu, 5);
  if (nr == kHPut) return qemuPut(vm, stt, ioba, gpr(vcpu, 6));
  const uint64_t shift = L32<kRaw>(at(stt, STT_PAGE_SHIFT));
  const uint64_t psize = shl64(1, shift);
  if (nr == kHGet) {
    const uint64_t bus = shl64(L64<kRaw>(at(stt, STT_OFFSET)), shift);
    const uint64_t idx = shr64((ioba & ~(psize - 1)) - bus, shift);
    if (idx >= L64<kRaw>(at(stt, STT_SIZE))) return H_PARAMETER;
    const uint64_t v = sttGetT<kRaw>(stt, idx);
    if (fault_ != Fault::kNone) return H_PARAMETER;
    setGpr(vcpu, 4, v);
    return H_SUCCESS;
  }
  const uint64_t npages = gpr(vcpu, 7);
  if (nr == kHIndirect) {
    const uint64_t list = gpr(vcpu, 6);
    if (npages > kIndirectMax || (list & 0xfff) != 0) return H_PARAMETER;
    // The list must be guest RAM we can read; QEMU's behaviour outside RAM is unspecified (README).
    const uint32_t host = gpaToHostT<kRaw>(vm, list, npages << 3);
    if (host == 0) return H_PARAMETER;
    if (!need<kRaw>(host, npages << 3, false)) return H_PARAMETER;
    int32_t rc = H_PARAMETER;
    for (uint32_t i = 0; i < static_cast<uint32_t>(npages) && fault_ == Fault::kNone; i++) {
      rc = qemuPut(vm, stt, ioba + shl64(i, shift),
                   __builtin_bswap64(L64<kRaw>(static_cast<uint32_t>(host + (i << 3)))));
      if (rc != H_SUCCESS) break;
    }
    return rc;
  }
  // H_STUFF_TCE: put_tce_emu for i in [0, npages), stopping at the first index past the table.
  const uint64_t size = L64<kRaw>(at(stt, STT_SIZE));
  if (npages > size) return H_PARAMETER;
  if (npages == 0) return H_PARAMETER;
  const uint64_t value = gpr(vcpu, 6);
  const uint64_t a0 = ioba & ~(psize - 1);
  const uint64_t idx0 = shr64(a0 - shl64(L64<kRaw>(at(stt, STT_OFFSET)), shift), shift);
  if (idx0 >= size) return H_PARAMETER;
  const uint64_t count = npages < size - idx0 ? npages : size - idx0;
  // Entry i goes to idx0 + i while ioba + i·psize does not wrap around; past that, one by one.
  if (count - 1 <= shr64(~a0, shift)) {
    const bool full = sttFillT<kRaw>(stt, idx0, count, value, true);
    if ((value & kWrite) != 0 && dirtyOn(vm)) dirtyMark(vm, value, static_cast<uint32_t>(shift));
    if (!full) return H_HARDWARE;
    return count < npages ? H_PARAMETER : H_SUCCESS;
  }
  int32_t rc = H_PARAMETER;
  for (uint64_t i = 0; i < npages && fault_ == Fault::kNone; i++) {
    rc = qemuPut(vm, stt, ioba + shl64(i, shift), value);
    if (rc != H_SUCCESS) break;
  }
  return rc;
}

}  // namespace spapr
