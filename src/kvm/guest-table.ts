// Guest-visible TCE tables (kvmppc_spapr_tce_table; QEMU's SpaprTceTable in
// the qemu profile): KVM_CREATE_SPAPR_TCE_64, the links to VFIO hardware
// tables (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), and reading an entry back as a
// device model's translation (spapr_tce_translate_iommu).
import type { KvmVm, CreateTceTable } from './vm.js';
import type { IommuTable } from '../kernel/table.js';
import { chargeKey } from '../kernel/mm.js';
import type { HostContext } from '../core/context.js';
import { Group } from '../vfio/group.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { SttView, VmView } from '../generated/views.js';
import { MAX_STITS } from '../generated/layout.js';

/** A guest-visible TCE table (one LIOBN). */
export interface GuestTable {
  readonly liobn: bigint;
  readonly desc: number;
  readonly pageShift: number;
  /** First entry index (bus offset >> pageShift). */
  readonly offset: bigint;
  /** Entries. */
  readonly size: bigint;
  /** Pages charged to locked_vm (kvm profile). */
  readonly chargedPages: bigint;
}

/** What translate() returns: the guest page behind an IOVA, or why there is none. */
export type Translation =
  | { ok: true; gpa: bigint; pageIova: bigint; pageSize: bigint; perm: number }
  | { ok: false; fault: 'no-window' | 'out-of-range' | 'no-permission' };

const CREATE_TCE_TABLE = v.keys<CreateTceTable>('vm.createTceTable', { liobn: true, pageShift: true, offset: true, size: true });

/**
 * KVM_CREATE_SPAPR_TCE_64 {liobn, page_shift, offset, size} (offset and size
 * in IOMMU pages): size 0, page shift outside [12, 34] or an end past 2^64
 * → EINVAL; pages charged to the creator (ENOMEM); duplicate LIOBN → EBUSY.
 * In the qemu profile this is QEMU's table: nothing is charged. `held`
 * refuses a LIOBN the VMM holds otherwise (it throws), checked with the
 * duplicate one.
 */
export function createTceTable(vm: KvmVm, args: CreateTceTable, held?: (liobn: bigint) => void): GuestTable {
  const o = v.options('args', args, CREATE_TCE_TABLE);
  const liobn = v.liobn('liobn', o.liobn);
  const pageShift = v.int('pageShift', o.pageShift, 0, 63);
  const offset = v.u64('offset', o.offset);
  const size = v.u64('size', o.size);
  if (size === 0n) fail('EINVAL', 'createTceTable: size must not be 0');
  if (pageShift < 12 || pageShift > 34) fail('EINVAL', `createTceTable: page shift ${pageShift} is outside [12, 34]`);
  if (offset + size > ((1n << 64n) - 1n) >> BigInt(pageShift)) fail('EINVAL', 'createTceTable: offset + size overflows the 64-bit bus');
  const host = vm.host;
  const sh = BigInt(host.pageShift);
  const perPage = (1n << sh) / 8n;
  const npages = (size + perPage - 1n) / perPage;
  if (npages > 0x3fff_ffffn) fail('ENOMEM', `createTceTable: ${size} entries is more than this host can hold`);
  // kvmppc_stt_pages: the pages of TCEs plus the pages of the descriptor and its page array.
  const charged = vm.profile === 'kvm' ? npages + ((BigInt(SttView.BYTES) + npages * 8n + (1n << sh) - 1n) >> sh) : 0n;
  const key = chargeKey.stt(vm.desc, liobn);
  vm.mm.account(key, charged, vm.process.memlockLimitPages);
  let d = 0;
  let pages = 0;
  try {
    if (vm.tables.has(liobn)) fail('EBUSY', `createTceTable: LIOBN ${hex(liobn)} exists`);
    held?.(liobn);
    d = host.alloc(SttView.BYTES, 'guest TCE table');
    pages = host.alloc(Number(npages) * 4, 'guest TCE page array');
  } catch (e) {
    if (d) host.free(d, SttView.BYTES);
    vm.mm.unaccount(key, charged);
    throw e;
  }
  const stt = new SttView(host.mem, d);
  const vmd = new VmView(host.mem, vm.desc);
  stt.vm = vm.desc;
  stt.liobn = liobn;
  stt.offset = offset;
  stt.size = size;
  stt.pageShift = pageShift;
  stt.npages = Number(npages);
  stt.pages = pages;
  stt.id = host.nextId();
  stt.next = vmd.stts;
  vmd.stts = d;
  const t: GuestTable = { liobn, desc: d, pageShift, offset, size, chargedPages: charged };
  vm.tables.set(liobn, t);
  return t;
}

/**
 * KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: links a hardware table of the group
 * (page ≤ guest page, same bus start, window at least the guest's; else
 * EINVAL) to the LIOBN; linking it again only counts a reference. With the
 * mm owner check, the group's container must belong to the VM's mm (EPERM):
 * the one check that mode needs, paid here rather than per hypercall.
 */
export function attachGroup(vm: KvmVm, group: Group, liobn: bigint | number): void {
  v.owned('group', group, Group, 'a Group', vm.host);
  liobn = v.liobn('liobn', liobn);
  if (vm.profile !== 'kvm') fail('ENODEV', 'attachGroup: the qemu profile has no in-kernel acceleration');
  const t = vm.tables.get(liobn);
  if (!t) fail('EINVAL', `attachGroup: no guest table with LIOBN ${hex(liobn)}`);
  const c = group.container;
  if (vm.host.ownerCheck === 'mm' && c?.mm && c.mm !== vm.mm) {
    fail('EPERM', `attachGroup: the group's container belongs to mm ${c.mm.id}, the VM to mm ${vm.mm.id}`);
  }
  const bus = t.offset << BigInt(t.pageShift);
  const span = t.size << BigInt(t.pageShift);
  // Any table of the group qualifies: a DDW group's windows or a legacy group's own table.
  const hw = [...group.slots, group.legacyTable].find((tb): tb is IommuTable => !!tb && tb.pageShift <= t.pageShift && tb.offset << BigInt(tb.pageShift) === bus && tb.size << BigInt(tb.pageShift) >= span);
  if (!hw) fail('EINVAL', `attachGroup: group ${group.id} has no hardware table compatible with LIOBN ${hex(liobn)}`);
  const stt = new SttView(vm.host.mem, t.desc);
  const n = stt.stitCount;
  for (let i = 0; i < n; i++) {
    if (stt.stitsAt(i) === hw.desc) {
      stt.setStitRefsAt(i, stt.stitRefsAt(i) + 1);
      return;
    }
  }
  if (n >= MAX_STITS) fail('ENOSPC', `attachGroup: LIOBN ${hex(liobn)} already links ${MAX_STITS} hardware tables`);
  hw.holdLink();
  stt.setStitsAt(n, hw.desc);
  stt.setStitRefsAt(n, 1);
  stt.stitCount = n + 1;
}

/**
 * Drops one reference of the link between LIOBN `liobn` and the hardware
 * table `tableDesc` that attachGroup took (kref_put on the
 * kvmppc_spapr_tce_iommu_table, as kvm_spapr_tce_release_iommu_group does
 * for each link of a group leaving the KVM VFIO device). The last one
 * removes the link (list_del_rcu) and the table's reference goes after a
 * grace period (kvm_spapr_tce_iommu_table_free). The link's slot is
 * refilled with the last one before the count shrinks, and the last slot
 * emptied only after a grace period, so a vCPU on another thread walking
 * the links never misses a live one nor reads an empty slot (it may see the
 * removed table, still alive until the grace period ends, or the last one
 * twice: a map or clear repeated on the same entry changes nothing).
 * False when there is no such link.
 */
export function unlinkTable(vm: KvmVm, liobn: bigint, tableDesc: number, tableOf: (desc: number) => IommuTable | undefined): boolean {
  const t = vm.tables.get(liobn);
  if (!t) return false;
  const stt = new SttView(vm.host.mem, t.desc);
  const n = stt.stitCount;
  for (let i = 0; i < n; i++) {
    if (stt.stitsAt(i) !== tableDesc) continue;
    const refs = stt.stitRefsAt(i);
    if (refs > 1) {
      stt.setStitRefsAt(i, refs - 1);
      return true;
    }
    stt.setStitsAt(i, stt.stitsAt(n - 1));
    stt.setStitRefsAt(i, stt.stitRefsAt(n - 1));
    stt.stitCount = n - 1;
    // The vacated last slot is emptied once no vCPU can still hold the old count; unless a
    // link made since has taken it, or the table itself has gone.
    const desc = t.desc;
    vm.host.deferFree(() => {
      if (vm.tables.get(liobn)?.desc !== desc || stt.stitCount >= n) return;
      stt.setStitsAt(n - 1, 0);
      stt.setStitRefsAt(n - 1, 0);
    });
    tableOf(tableDesc)?.releaseLink();
    return true;
  }
  return false;
}

/** The hardware tables linked to a LIOBN, with their reference counts. */
export function links(vm: KvmVm, liobn: bigint | number): { tableDesc: number; refs: number }[] {
  const t = vm.tables.get(v.liobn('liobn', liobn));
  if (!t) return [];
  const stt = new SttView(vm.host.mem, t.desc);
  const out: { tableDesc: number; refs: number }[] = [];
  const n = stt.stitCount;
  for (let i = 0; i < n; i++) out.push({ tableDesc: stt.stitsAt(i), refs: stt.stitRefsAt(i) });
  return out;
}

/** The guest TCE at relative index `idx` of a table (0 when its page was never allocated). */
export function guestEntry(vm: KvmVm, t: GuestTable, idx: bigint | number): bigint {
  if (typeof t !== 'object' || t === null) throw new TypeError('t must be a guest table of this VM (vm.tables)');
  // Only this VM's own tables: a GuestTable of another VM names no table here.
  if (vm.tables.get(t.liobn)?.desc !== t.desc) fail('EINVAL', 'guestEntry: not a guest table of this VM');
  // The current geometry: a PHB window's GuestTable object is replaced when it changes.
  const size = vm.tables.get(t.liobn)!.size;
  if (size === 0n) throw new RangeError(`idx: LIOBN ${hex(t.liobn)} has no entries (its window is disabled)`);
  idx = v.u64('idx', idx, 0n, size - 1n);
  return entryAt(vm, t, idx);
}

/** The guest TCE at relative index `idx`, inside the table (0 when its page was never allocated). */
function entryAt(vm: KvmVm, t: GuestTable, idx: bigint): bigint {
  const mem = vm.host.mem;
  const stt = new SttView(mem, t.desc);
  const per = (1n << BigInt(vm.host.pageShift)) / 8n;
  // Past the page array (or a disabled table, which has none) nothing was ever stored.
  if (idx / per >= BigInt(stt.npages)) return 0n;
  const page = mem.getU32At(stt.pages, Number(idx / per));
  return page === 0 ? 0n : mem.getU64At(page, Number(idx % per));
}

/**
 * The translation a device model gets for a DMA at `iova` through LIOBN
 * `liobn` (spapr_tce_translate_iommu): the guest physical address and its
 * page, or a fault. `access` 'read' needs the READ bit, 'write' the WRITE
 * bit; without `access` only the window is checked.
 */
export function translate(vm: KvmVm, liobn: bigint | number, iova: bigint | number, access?: 'read' | 'write'): Translation {
  liobn = v.liobn('liobn', liobn);
  iova = v.u64('iova', iova);
  if (access !== undefined) v.oneOf('access', access, ['read', 'write'] as const, 'read');
  const t = vm.tables.get(liobn);
  if (!t || t.size === 0n) return { ok: false, fault: 'no-window' };
  const shift = BigInt(t.pageShift);
  const bus = t.offset << shift;
  const idx = iova >= bus ? (iova - bus) >> shift : t.size;
  if (idx >= t.size) return { ok: false, fault: 'out-of-range' };
  const tce = entryAt(vm, t, idx);
  const perm = Number(tce & 3n);
  if ((access === 'read' && !(perm & 1)) || (access === 'write' && !(perm & 2)) || (access !== undefined && perm === 0)) {
    return { ok: false, fault: 'no-permission' };
  }
  const mask = (1n << shift) - 1n;
  return { ok: true, gpa: (tce & ~mask) | (iova & mask), pageIova: iova & ~mask, pageSize: 1n << shift, perm };
}

/**
 * Frees a guest table's pages of TCEs and their page array after a grace
 * period (release_spapr_tce_table frees them through call_rcu): the caller
 * has unlinked them (the table's pages field, or the table itself). The
 * array is read when the grace period ends, so a page a vCPU installed in
 * the meantime (virtual mode, sttSlot) is freed too.
 */
export function freeTcePages(host: HostContext, pages: number, npages: number): void {
  const pageBytes = 1 << host.pageShift >>> 3 << 3;
  host.deferFree(() => {
    for (let i = 0; i < npages; i++) {
      const p = host.mem.getU32At(pages, i);
      if (p !== 0) host.engine.free(p, pageBytes);
    }
    host.engine.free(pages, npages * 4);
  });
}

/**
 * Closing one guest table's fd (kvm_spapr_tce_release, what QEMU's
 * spapr_tce_table_disable does to a kvm-profile window: munmap and close):
 * the table leaves the VM's list (list_del_rcu), so a hypercall on its
 * LIOBN finds nothing from then on and exits; every link drops all its
 * references at once (the kref_put loop: a hardware table VFIO has already
 * let go is cleared and freed), the charge goes back, and the pages, page
 * array and descriptor are freed after a grace period (call_rcu →
 * release_spapr_tce_table). The hardware entries stay: clearing them is
 * VFIO's (the listener's UNMAP and TCE_REMOVE). False when there is no
 * such table.
 */
export function releaseTable(vm: KvmVm, liobn: bigint, tableOf: (desc: number) => IommuTable | undefined): boolean {
  const t = vm.tables.get(liobn);
  if (!t) return false;
  const mem = vm.host.mem;
  const vmd = new VmView(mem, vm.desc);
  const stt = new SttView(mem, t.desc);
  // Unlinked from the list first; a vCPU already past the predecessor still follows `next`, intact until the grace period ends.
  if (vmd.stts === t.desc) vmd.stts = stt.next;
  else {
    for (let at = vmd.stts; at !== 0; ) {
      const d = new SttView(mem, at);
      if (d.next === t.desc) {
        d.next = stt.next;
        break;
      }
      at = d.next;
    }
  }
  vm.tables.delete(liobn);
  dropUnlisted(vm, t, tableOf);
  return true;
}

/**
 * The guest-table half of closing a VM (kvm_vm_release → the stt fds and
 * the KVM VFIO device going): every table leaves the VM's list first, so no
 * vCPU finds one after that; then the links drop their references
 * (kvm_spapr_tce_release_iommu_group: a hardware table whose last reference
 * this was is freed), the charges go back, and the pages, page arrays and
 * descriptors are freed after a grace period.
 */
export function releaseTables(vm: KvmVm, tableOf: (desc: number) => IommuTable | undefined): void {
  const host = vm.host;
  new VmView(host.mem, vm.desc).stts = 0;
  for (const t of vm.tables.values()) dropUnlisted(vm, t, tableOf);
  vm.tables.clear();
}

/**
 * What release_spapr_tce_table and the kref_put loop do to a guest table
 * already off the VM's list: each link drops its one reference (attachGroup's
 * hold, whatever its KVM-side count), the charge goes back, and the pages,
 * page array and descriptor go through free(), which waits for a grace period.
 */
function dropUnlisted(vm: KvmVm, t: GuestTable, tableOf: (desc: number) => IommuTable | undefined): void {
  const host = vm.host;
  const stt = new SttView(host.mem, t.desc);
  const n = stt.stitCount;
  for (let i = 0; i < n; i++) tableOf(stt.stitsAt(i))?.releaseLink();
  if (stt.pages !== 0) freeTcePages(host, stt.pages, stt.npages);
  host.free(t.desc, SttView.BYTES);
  vm.mm.unaccount(chargeKey.stt(vm.desc, t.liobn), t.chargedPages);
}
