// The engine's half of dirty tracking (src/vmm/dirty.ts has the rest): while
// vm.trackDmaWritable(true) holds (VM.dirtyTrack), every guest TCE the write
// phase of a hypercall stores with the WRITE bit marks the system pages of
// its IOMMU page in the dirty log of each memslot it overlaps, so a mapping
// that a vCPU on any thread makes and removes between two reads of the log
// is still reported: a VFIO device may have written the page meanwhile
// (vfio_iommu_type1 reports every pinned page of a device without its own
// dirty tracking: vfio_iommu_populate_bitmap_full). The bits are KVM's
// (mark_page_dirty_in_slot: set_bit_le(rel_gfn, memslot->dirty_bitmap)),
// by atomic OR since vCPUs mark concurrently.
//
// The flag is read once per call, after the call's stores (the hypercall
// pays one load and one branch while tracking is off, nothing per entry).
// Mirrored statement by statement in src/native/engine.cc (dirtyMark,
// dirtyMarkList), so both engines leave the same bytes.
import { VM_DIRTY_TRACK, VM_SLOTS, SLOT_NEXT, SLOT_GPA, SLOT_SIZE, SLOT_DIRTY_LOG, DIRTY_LOG_HEADER, TCE_WRITE } from './generated/layout';
import { sysPageShift } from './region';

/** Whether the write phase marks (VM.dirtyTrack, set by vm.trackDmaWritable): the one load per hypercall. */
@inline export function dirtyOn(vm: u32): bool {
  return load<u32>(vm + VM_DIRTY_TRACK) != 0;
}

/**
 * Marks the system pages of the 2^shift-byte IOMMU page that `tce` points at
 * (its address bits, as spapr_tce_translate_iommu masks them) in the dirty
 * log of every memslot it overlaps. A slot without a log (none was asked
 * for) is skipped; the bits are bounded by the page count the log block
 * carries, so a descriptor reused meanwhile can mislead the mark but never
 * send it outside the block, which a grace period keeps alive.
 */
export function dirtyMark(vm: u32, tce: u64, shift: u32): void {
  const size: u64 = <u64>1 << <u64>shift;
  const gpa = tce & ~(size - 1);
  const last = gpa + (size - 1);
  const sh = <u64>sysPageShift();
  let s = load<u32>(vm + VM_SLOTS);
  while (s != 0) {
    const base = load<u64>(s + SLOT_GPA);
    const bytes = load<u64>(s + SLOT_SIZE);
    const bm = load<u32>(s + SLOT_DIRTY_LOG);
    // Overlap of [gpa, last] with [base, base + bytes): relative pages from..to.
    if (bm != 0 && bytes != 0 && last >= base && (gpa < base || gpa - base < bytes)) {
      const from = gpa > base ? (gpa - base) >> sh : 0;
      const top = last - base < bytes - 1 ? last - base : bytes - 1;
      const pages = <u64>load<u32>(bm);
      let to = top >> sh;
      if (to >= pages) to = pages - 1;
      const bits = bm + <u32>DIRTY_LOG_HEADER;
      let p = from;
      while (p <= to && pages != 0) {
        // One word at a time: bits p..hi of word p >> 5.
        const hi = (p | 31) < to ? p | 31 : to;
        const mask = (<u32>0xffffffff >>> (31 - <u32>(hi & 31))) & (<u32>0xffffffff << <u32>(p & 31));
        atomic.or<u32>(bits + (<u32>(p >> 5) << 2), mask);
        p = hi + 1;
      }
    }
    s = load<u32>(s + SLOT_NEXT);
  }
}

/** dirtyMark for each TCE with the WRITE bit among the `n` at `src` (what the write phase just stored), on 2^shift-byte pages. */
export function dirtyMarkList(vm: u32, src: u32, n: u32, shift: u32): void {
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    if (tce & <u64>TCE_WRITE) dirtyMark(vm, tce, shift);
  }
}
