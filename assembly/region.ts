// Pre-registered regions as real mode sees them (arch/powerpc/mm/book3s64/
// iommu_api.c: mm_iommu_lookup, mm_iommu_ua_to_hpa, mm_iommu_mapped_inc/dec).
// Registration itself (pinning, accounting, the list insert) is virtual mode
// and lives in src/prereg.ts; these routines only read the list and count.
import {
  HEADER_BASE, HDR_SYS_PAGE_SHIFT, MM_REGIONS, REG_NEXT, REG_UA, REG_ENTRIES,
  REG_MAPPED, REG_PAGE_SHIFT, REG_HPAS, REG_FLAGS, REG_DEV_HPA, REGION_F_DEV,
  EFAULT, ENXIO, EBUSY, COUNTER_RETRIES,
} from './generated/layout';

/** The host's system page shift (PAGE_SHIFT). */
@inline export function sysPageShift(): u64 {
  return <u64>load<u32>(<u32>HEADER_BASE + HDR_SYS_PAGE_SHIFT);
}

/** The first region of `mm` that contains all of [ua, ua + size); 0 if none (mm_iommu_lookup). */
// @inline: the hot path (hcall.ts#putOne, putTceRealRc) calls it once per call, where a call costs more than the walk's first step.
@inline export function regionLookup(mm: u32, ua: u64, size: u64): u32 {
  if (mm == 0) return 0;
  const sh = sysPageShift();
  // A plain walk, as the list is published with plain stores (guest.ts).
  let r = load<u32>(mm + MM_REGIONS);
  while (r != 0) {
    const rua = load<u64>(r + REG_UA);
    const rsize = load<u64>(r + REG_ENTRIES) << sh;
    // Overflow-safe form of rua <= ua && ua + size <= rua + rsize.
    if (ua >= rua && size <= rsize && ua - rua <= rsize - size) return r;
    r = load<u32>(r + REG_NEXT);
  }
  return 0;
}

/**
 * regionLookup with the list's first region tested inline before the walk:
 * the common case without a loop (H_PUT_TCE's fast path, which has `sh` at
 * hand). regionLookup's test, as nested tests with each load inside the one
 * before it, for the reason gpaToUaFirst (guest.ts) gives.
 */
@inline export function regionLookupFirst(mm: u32, ua: u64, size: u64, sh: u64): u32 {
  if (mm == 0) return 0;
  const r = load<u32>(mm + MM_REGIONS);
  if (r != 0) {
    const rua = load<u64>(r + REG_UA);
    if (ua >= rua) {
      const rsize = load<u64>(r + REG_ENTRIES) << sh;
      if (size <= rsize) {
        if (ua - rua <= rsize - size) return r;
      }
    }
  }
  return regionLookup(mm, ua, size);
}

/**
 * Host physical address backing `ua` in region `r` for an IOMMU page of
 * 2^pageShift bytes, or -EFAULT when ua is outside the region or the region's
 * pages are too small for such an IOMMU page (mm_iommu_ua_to_hpa).
 */
export function regionUaToHpa(r: u32, ua: u64, pageShift: u32): i64 {
  const sh = sysPageShift();
  const rua = load<u64>(r + REG_UA);
  if (ua < rua) return -EFAULT;
  const idx = (ua - rua) >> sh;
  if (idx >= load<u64>(r + REG_ENTRIES)) return -EFAULT;
  if (pageShift > load<u32>(r + REG_PAGE_SHIFT)) return -EFAULT;
  if (load<u32>(r + REG_FLAGS) & <u32>REGION_F_DEV) {
    return <i64>(load<u64>(r + REG_DEV_HPA) + (ua - rua));
  }
  const pageMask: u64 = (<u64>1 << sh) - 1;
  const hpa = load<u64>(load<u32>(r + REG_HPAS) + <u32>(idx << 3));
  return <i64>((hpa & ~pageMask) | (ua & pageMask));
}

/**
 * mapped++ unless the region is dying (mapped == 0): 0, -ENXIO, or -EBUSY
 * after COUNTER_RETRIES lost races (mm_iommu_mapped_inc:
 * atomic64_inc_not_zero). The compare-and-swap loop is lock-free: each
 * failed attempt means another vCPU's update of the same counter landed,
 * so it ends unless others complete a million updates meanwhile; the bound
 * only gives it a way out that changes nothing.
 */
export function regionMappedInc(r: u32): i32 {
  const p = r + REG_MAPPED;
  for (let n: u32 = 0; n < <u32>COUNTER_RETRIES; n++) {
    const old = atomic.load<u64>(p);
    if (old == 0) return -ENXIO;
    if (atomic.cmpxchg<u64>(p, old, old + 1) == old) return 0;
  }
  return -EBUSY;
}

/**
 * mapped-- but never below 1 (mm_iommu_mapped_dec: atomic64_add_unless(-1, 1)).
 * Lock-free like regionMappedInc; should COUNTER_RETRIES races all be lost,
 * the count stays one high (the region stays pinned), never low.
 */
export function regionMappedDec(r: u32): void {
  const p = r + REG_MAPPED;
  for (let n: u32 = 0; n < <u32>COUNTER_RETRIES; n++) {
    const old = atomic.load<u64>(p);
    if (old <= 1) return;
    if (atomic.cmpxchg<u64>(p, old, old - 1) == old) return;
  }
}
