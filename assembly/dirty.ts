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
// Mirrored statement by statement in src/native/engine_dirty.cc (dirtyMark,
// dirtyMarkList), so both engines leave the same bytes.
import { VM_DIRTY_TRACK, VM_SLOTS, SLOT_NEXT, SLOT_GPA, SLOT_SIZE, SLOT_DIRTY_LOG, DIRTY_LOG_HEADER, TCE_WRITE } from './generated/layout';
import { sysPageShift } from './region';

/** Whether the write phase marks (VM.dirtyTrack, set by vm.trackDmaWritable): the one load per hypercall. */
@inline export function dirtyOn(vm: u32): bool {
  return load<u32>(vm + VM_DIRTY_TRACK) != 0;
}

// One hypercall's marks: the memslot the last one found (its entries mostly
// map one memslot; a hit is gpa − kBase ≤ kSpan, the whole IOMMU page then
// inside it, kBits and kPages its log's bits and their count), and the
// pending OR (bits dMask of the 32-bit word at dWord; 0: none), so that
// contiguous entries cost one atomic per word rather than one per entry.
// Module globals, so per instance, i.e. per thread.
let kBase: u64 = 1;
let kSpan: u64 = 0;
let kBits: u32 = 0;
let kPages: u64 = 0;
let kShift: u64 = 0;
let dWord: u32 = 0;
let dMask: u32 = 0;

/** Starts a call's marks: nothing cached, nothing pending. */
@inline function markBegin(): void {
  kBase = 1;
  kSpan = 0;
  kShift = <u64>sysPageShift();
  dWord = 0;
  dMask = 0;
}

/** ORs `mask` into the word at `word`, through the pending word. */
@inline function orBits(word: u32, mask: u32): void {
  if (word == dWord) {
    dMask |= mask;
    return;
  }
  if (dWord != 0) atomic.or<u32>(dWord, dMask);
  dWord = word;
  dMask = mask;
}

/** Writes the pending word (the end of a call's marks). */
@inline function markEnd(): void {
  if (dWord != 0) atomic.or<u32>(dWord, dMask);
  dWord = 0;
}

/** Sets bits from..to of the `pages` bits at `bits`, the ones past the last page left alone. */
function markPages(bits: u32, pages: u64, from: u64, to: u64): void {
  if (pages == 0) return;
  if (to >= pages) to = pages - 1;
  let p = from;
  while (p <= to) {
    // Bits p..hi of word p >> 5.
    const hi = (p | 31) < to ? p | 31 : to;
    const mask = (<u32>0xffffffff >>> (31 - <u32>(hi & 31))) & (<u32>0xffffffff << <u32>(p & 31));
    orBits(bits + (<u32>(p >> 5) << 2), mask);
    p = hi + 1;
  }
}

/**
 * Marks the 2^shift-byte IOMMU page at `gpa` in the log of every memslot it
 * overlaps (a slot without a log is skipped), and caches a slot that holds
 * all of it. The bits are bounded by the page count the log block carries,
 * so a descriptor reused meanwhile can mislead the mark but never send it
 * outside the block, which a grace period keeps alive.
 */
function markSlots(vm: u32, gpa: u64, size: u64): void {
  const last = gpa + (size - 1);
  let s = load<u32>(vm + VM_SLOTS);
  while (s != 0) {
    const base = load<u64>(s + SLOT_GPA);
    const bytes = load<u64>(s + SLOT_SIZE);
    const bm = load<u32>(s + SLOT_DIRTY_LOG);
    // Overlap of [gpa, last] with [base, base + bytes).
    if (bm != 0 && bytes != 0 && last >= base && (gpa < base || gpa - base < bytes)) {
      const from = gpa > base ? (gpa - base) >> kShift : 0;
      const top = last - base < bytes - 1 ? last - base : bytes - 1;
      const pages = <u64>load<u32>(bm);
      const bits = bm + <u32>DIRTY_LOG_HEADER;
      markPages(bits, pages, from, top >> kShift);
      if (gpa >= base && last - base < bytes) {
        kBase = base;
        kSpan = bytes - size;
        kBits = bits;
        kPages = pages;
      }
    }
    s = load<u32>(s + SLOT_NEXT);
  }
}

/** Marks the IOMMU page of 2^shift bytes that `tce` points at (its address bits, as spapr_tce_translate_iommu masks them). */
@inline function markTce(vm: u32, tce: u64, shift: u32): void {
  const size: u64 = <u64>1 << <u64>shift;
  const gpa = tce & ~(size - 1);
  const rel = gpa - kBase;
  if (rel > kSpan) {
    markSlots(vm, gpa, size);
  } else if (shift <= <u32>kShift) {
    // At most a system page: one bit.
    const p = rel >> kShift;
    if (p < kPages) orBits(kBits + (<u32>(p >> 5) << 2), <u32>1 << <u32>(p & 31));
  } else {
    markPages(kBits, kPages, rel >> kShift, (rel + (size - 1)) >> kShift);
  }
}

/** Marks, in every memslot's log it overlaps, the system pages of the 2^shift-byte page that `tce` points at. */
export function dirtyMark(vm: u32, tce: u64, shift: u32): void {
  markBegin();
  markTce(vm, tce, shift);
  markEnd();
}

/** dirtyMark for each TCE with the WRITE bit among the `n` at `src` (what the write phase just stored), on 2^shift-byte pages. */
export function dirtyMarkList(vm: u32, src: u32, n: u32, shift: u32): void {
  markBegin();
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    if (tce & <u64>TCE_WRITE) markTce(vm, tce, shift);
  }
  markEnd();
}
