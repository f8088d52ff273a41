// The guest side of a VM in linear memory: memslots (guest physical →
// userspace address, and the linear-memory bytes behind it) and the
// guest-visible TCE tables (kvmppc_spapr_tce_table.pages[], QEMU's table),
// whose pages of TCEs are allocated on demand.
import {
  VM_SLOTS, VM_STTS, SLOT_NEXT, SLOT_GPA, SLOT_SIZE, SLOT_UA, SLOT_HOST_OFF,
  STT_NEXT, STT_LIOBN, STT_PAGES, STT_NPAGES,
} from './generated/layout';
import { alloc, free } from './alloc';
import { sysPageShift } from './region';

// The lists of memslots, guest tables and regions are published by the VMM
// thread with plain stores (src/vm.ts, src/prereg.ts; the kernel uses RCU
// lists), so they are walked with plain loads: an atomic load would order
// nothing the writer ordered.

/** The guest TCE table of `vm` with this LIOBN, or 0 (kvmppc_find_table). */
export function findStt(vm: u32, liobn: u64): u32 {
  let s = load<u32>(vm + VM_STTS);
  while (s != 0) {
    if (load<u64>(s + STT_LIOBN) == liobn) return s;
    s = load<u32>(s + STT_NEXT);
  }
  return 0;
}

/** The memslot holding `gpa`, or 0. */
export function findSlot(vm: u32, gpa: u64): u32 {
  let s = load<u32>(vm + VM_SLOTS);
  while (s != 0) {
    const base = load<u64>(s + SLOT_GPA);
    if (gpa >= base && gpa - base < load<u64>(s + SLOT_SIZE)) return s;
    s = load<u32>(s + SLOT_NEXT);
  }
  return 0;
}

/** Userspace address of a guest physical address, 0 outside every memslot (kvmppc_tce_to_ua); inlined: the H_PUT_TCE fast path calls it. */
@inline export function gpaToUa(vm: u32, gpa: u64): u64 {
  const s = findSlot(vm, gpa);
  return s == 0 ? 0 : load<u64>(s + SLOT_UA) + (gpa - load<u64>(s + SLOT_GPA));
}

/**
 * gpaToUa with the list's first memslot tested inline before the walk: the
 * common case without a call or a loop (H_PUT_TCE's fast path). findSlot's
 * test, written as nested tests with each load inside the one before it:
 * joined by && (findSlot's form) the loaded values' tests became flags
 * ANDed together on that path, +13 instructions per H_PUT_TCE (callgrind);
 * the shared nested form in findSlot's loop costs INDIRECT(512) ~470 per call.
 */
@inline export function gpaToUaFirst(vm: u32, gpa: u64): u64 {
  const s = load<u32>(vm + VM_SLOTS);
  if (s != 0) {
    const base = load<u64>(s + SLOT_GPA);
    if (gpa >= base) {
      if (gpa - base < load<u64>(s + SLOT_SIZE)) return load<u64>(s + SLOT_UA) + (gpa - base);
    }
  }
  return gpaToUa(vm, gpa);
}

/** Linear-memory offset of `len` guest bytes at `gpa`, 0 when not all backed by one memslot. */
export function gpaToHost(vm: u32, gpa: u64, len: u64): u32 {
  const s = findSlot(vm, gpa);
  if (s == 0) return 0;
  const host = load<u32>(s + SLOT_HOST_OFF);
  const off = gpa - load<u64>(s + SLOT_GPA);
  if (host == 0 || len > load<u64>(s + SLOT_SIZE) - off) return 0;
  return host + <u32>off;
}

/**
 * log2 of the TCEs per page of a guest table (a page is one system page of
 * u64s: TCES_PER_PAGE), so that entry i lives in page i >> shift at slot
 * i & mask: shifts, not the kernel's division.
 */
@inline export function tceShift(): u64 {
  return sysPageShift() - 3;
}

/** The page of guest TCEs number `pg`, 0 if absent (allocated when `grow`; 0 if that fails) or past the table. */
export function sttPage(stt: u32, pg: u64, grow: bool): u32 {
  if (pg >= <u64>load<u32>(stt + STT_NPAGES)) return 0;
  const pp = load<u32>(stt + STT_PAGES) + (<u32>pg << 2);
  let page = atomic.load<u32>(pp);
  if (page == 0 && grow) {
    const bytes = <u32>(<u64>8 << tceShift());
    const fresh = alloc(bytes);
    if (fresh == 0) return 0;
    page = atomic.cmpxchg<u32>(pp, 0, fresh);
    if (page != 0) free(fresh, bytes);
    else page = fresh;
  }
  return page;
}

/** Pointer to the guest TCE of relative index `idx`; 0 if its page is absent and `grow` is false or allocation fails. */
export function sttSlot(stt: u32, idx: u64, grow: bool): u32 {
  const sh = tceShift();
  const page = sttPage(stt, idx >> sh, grow);
  return page == 0 ? 0 : page + (<u32>(idx & ((<u64>1 << sh) - 1)) << 3);
}

/** Whether every guest-table page of relative entries [idx, idx + n) exists (kvmppc_rm_ioba_validate). */
export function sttPagesPresent(stt: u32, idx: u64, n: u64): bool {
  if (n == 0) return true;
  const sh = tceShift();
  const pages = load<u32>(stt + STT_PAGES);
  const last = (idx + n - 1) >> sh;
  for (let pg = idx >> sh; pg <= last; pg++) {
    if (atomic.load<u32>(pages + (<u32>pg << 2)) == 0) return false;
  }
  return true;
}

/**
 * Stores `value` in guest entries [idx, idx + n) (kvmppc_tce_put for each),
 * page by page: a page that is absent stays so when `value` is 0 (as a
 * clear of it would), and is allocated otherwise when `grow`; so clearing a
 * sparse table costs its present pages, not its entries. The stores are
 * plain: the kernel's are, and a reader (H_GET_TCE, the VMM) sees the old or
 * the new value of each aligned 8-byte entry.
 */
export function sttFill(stt: u32, idx: u64, n: u64, value: u64, grow: bool): bool {
  const sh = tceShift();
  const mask: u64 = (<u64>1 << sh) - 1;
  let j = idx;
  const end = idx + n;
  while (j < end) {
    let stop = (j | mask) + 1;
    if (stop == 0 || stop > end) stop = end;
    const page = sttPage(stt, j >> sh, grow && value != 0);
    // A non-zero value with no page: nothing stored from here (the heap is exhausted, or !grow).
    if (page == 0 && value != 0) return false;
    if (page != 0) {
      if (value == 0) {
        memory.fill(page + (<u32>(j & mask) << 3), 0, <u32>(stop - j) << 3);
      } else {
        for (let k = j; k < stop; k++) store<u64>(page + (<u32>(k & mask) << 3), value);
      }
    }
    j = stop;
  }
  return true;
}

/** The guest TCE at relative index `idx` (0 when its page is absent). */
export function sttGet(stt: u32, idx: u64): u64 {
  const p = sttSlot(stt, idx, false);
  return p == 0 ? 0 : atomic.load<u64>(p);
}

/** Frees every allocated page of a guest table. */
export function sttFreePages(stt: u32): void {
  const n = load<u32>(stt + STT_NPAGES);
  const pages = load<u32>(stt + STT_PAGES);
  const bytes = <u32>(<u64>8 << tceShift());
  for (let i: u32 = 0; i < n; i++) {
    const p = load<u32>(pages + (i << 2));
    if (p != 0) free(p, bytes);
    store<u32>(pages + (i << 2), 0);
  }
}
