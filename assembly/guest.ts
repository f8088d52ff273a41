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

/** The guest TCE table of `vm` with this LIOBN, or 0 (kvmppc_find_table). */
export function findStt(vm: u32, liobn: u64): u32 {
  let s = atomic.load<u32>(vm + VM_STTS);
  while (s != 0) {
    if (load<u64>(s + STT_LIOBN) == liobn) return s;
    s = atomic.load<u32>(s + STT_NEXT);
  }
  return 0;
}

/** The memslot holding `gpa`, or 0. */
@inline function findSlot(vm: u32, gpa: u64): u32 {
  let s = atomic.load<u32>(vm + VM_SLOTS);
  while (s != 0) {
    const base = load<u64>(s + SLOT_GPA);
    if (gpa >= base && gpa - base < load<u64>(s + SLOT_SIZE)) return s;
    s = atomic.load<u32>(s + SLOT_NEXT);
  }
  return 0;
}

/** Userspace address of a guest physical address, 0 outside every memslot (kvmppc_tce_to_ua). */
export function gpaToUa(vm: u32, gpa: u64): u64 {
  const s = findSlot(vm, gpa);
  return s == 0 ? 0 : load<u64>(s + SLOT_UA) + (gpa - load<u64>(s + SLOT_GPA));
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

/** TCEs per page of a guest table (one system page of u64s: TCES_PER_PAGE). */
@inline export function tcesPerPage(): u64 {
  return (<u64>1 << sysPageShift()) >> 3;
}

/** Pointer to the guest TCE of relative index `idx`; 0 if its page is absent and `grow` is false or allocation fails. */
export function sttSlot(stt: u32, idx: u64, grow: bool): u32 {
  const per = tcesPerPage();
  const pg = <u32>(idx / per);
  if (pg >= load<u32>(stt + STT_NPAGES)) return 0;
  const pp = load<u32>(stt + STT_PAGES) + (pg << 2);
  let page = atomic.load<u32>(pp);
  if (page == 0) {
    if (!grow) return 0;
    const bytes = <u32>(per << 3);
    const fresh = alloc(bytes);
    if (fresh == 0) return 0;
    page = atomic.cmpxchg<u32>(pp, 0, fresh);
    if (page != 0) free(fresh, bytes);
    else page = fresh;
  }
  return page + (<u32>(idx % per) << 3);
}

/** Whether every guest-table page of relative entries [idx, idx + n) exists (kvmppc_rm_ioba_validate). */
export function sttPagesPresent(stt: u32, idx: u64, n: u64): bool {
  if (n == 0) return true;
  const per = tcesPerPage();
  const pages = load<u32>(stt + STT_PAGES);
  const last = (idx + n - 1) / per;
  for (let pg = idx / per; pg <= last; pg++) {
    if (atomic.load<u32>(pages + (<u32>pg << 2)) == 0) return false;
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
  const bytes = <u32>(tcesPerPage() << 3);
  for (let i: u32 = 0; i < n; i++) {
    const p = load<u32>(pages + (i << 2));
    if (p != 0) free(p, bytes);
    store<u32>(pages + (i << 2), 0);
  }
}
