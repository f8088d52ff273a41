// PCI host bridges and the guest's dynamic DMA window RTAS calls, as QEMU
// emulates them (hw/ppc/spapr_pci.c, hw/ppc/spapr_rtas_ddw.c; docs/semantics.md
// §8.1 PHB defaults, §8.4). The whole PHB is one PE with two DMA windows, whose
// tables exist from the start at LIOBNs 0x80000000 | index << 8 | win.
// A window is one of the Vm's guest tables: enabled = the geometry QEMU's
// spapr_tce_table_enable gives it. In the qemu profile (QEMU's own table) a
// disabled window (spapr_tce_table_disable) is a table of size 0, bus offset
// 0, page shift 0 and no pages, still found by LIOBN, so every hypercall on
// it answers H_PARAMETER and translate() 'no-window'. In the kvm profile
// (QEMU with KVM) the table an enabled window holds is KVM's
// (spapr_tce_alloc_table → kvmppc_create_spapr_tce: KVM_CREATE_SPAPR_TCE_64,
// charged to locked_vm like vm.createTceTable), and disabling it closes the
// table's fd (spapr_tce_free_table → kvm_spapr_tce_release: the table and its
// VFIO links gone), so a disabled window has no table in vm.tables and a
// hypercall on its LIOBN exits (H_TOO_HARD) as KVM finds nothing; QEMU
// answers it H_PARAMETER. Each change replaces the GuestTable object in
// vm.tables: read the geometry from there, not from an object kept from before. Enabling a window is a
// 'window-add' event; disabling one delivers an unmap for every mapping it
// drops, then 'window-remove' (QEMU's memory_region_del_subregion of the
// IOMMU region, which the VFIO listener answers with one UNMAP over it and
// TCE_REMOVE). Also here: the VIO call ibm,set-tce-bypass (hw/ppc/spapr_vio.c).
import type { Vm } from './vm.js';
import { createTceTable, freeTcePages, type GuestTable } from '../kvm/guest-table.js';
import { droppedMappings, windowEvent } from './events.js';
import { fail, TceError } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { SttView } from '../generated/views.js';

/** The four DDW RTAS calls vm.rtas() serves, by the names QEMU registers them under. */
export const RTAS_DDW_CALLS = Object.freeze([
  'ibm,query-pe-dma-window',
  'ibm,create-pe-dma-window',
  'ibm,remove-pe-dma-window',
  'ibm,reset-pe-dma-window',
] as const);
/** One of RTAS_DDW_CALLS. */
export type RtasDdwCall = (typeof RTAS_DDW_CALLS)[number];

/** Every RTAS call vm.rtas() serves: the DDW calls and the VIO bypass switch (rtas_set_tce_bypass). */
export const RTAS_CALLS = Object.freeze([...RTAS_DDW_CALLS, 'ibm,set-tce-bypass'] as const);
/** One of RTAS_CALLS. */
export type RtasCall = (typeof RTAS_CALLS)[number];

/** RTAS status cells (rets[0]): success, hardware error, parameter error. */
export const RTAS_OUT = Object.freeze({ SUCCESS: 0, HW_ERROR: -1, PARAM_ERROR: -3 });

/**
 * Options of vm.addPhb(): the spapr-pci-host-bridge properties DMA depends on.
 * - buid: the PHB's bus unit id (RTAS passes it as two cells, hi and lo).
 * - index: the PHB index, 0..0x7fffff; it makes the LIOBNs 0x80000000 | index << 8 | win.
 * - dma32: the default window, {addr, size} in bytes (dma_win_addr / dma_win_size), default {0, 1 GiB}, 4K pages.
 * - dma64Addr: where a second window goes (dma64_win_addr), default 1 << 59.
 * - pageSizeMask: the IOMMU page sizes the guest may ask for, bit n = 2^n bytes (pgsz), default 4K|64K|2M|16M; bits 12..34 only.
 * - ddw: whether the DDW calls are enabled (the "ddw" property), default true.
 * Both window addresses must be aligned to the largest page size in the mask (windows here start on a whole IOMMU page).
 */
export interface PhbOptions {
  buid: bigint | number;
  index: number;
  dma32?: { addr: bigint | number; size: bigint | number };
  dma64Addr?: bigint | number;
  pageSizeMask?: bigint | number;
  ddw?: boolean;
}

const PHB_OPTIONS = v.keys<PhbOptions>('vm.addPhb', { buid: true, index: true, dma32: true, dma64Addr: true, pageSizeMask: true, ddw: true });
const DMA32_OPTIONS = v.keys<NonNullable<PhbOptions['dma32']>>('vm.addPhb', { addr: true, size: true });

/** One enabled window of a PHB. */
export interface PhbWindow {
  liobn: bigint;
  busOffset: bigint;
  pageShift: number;
  entries: bigint;
  /** Marked default by the last DMA reset (QEMU's def_win; sticky on window 0, as in QEMU). */
  isDefault: boolean;
}

/** SPAPR_PCI_DMA_MAX_WINDOWS. */
const MAX_WINDOWS = 2;
const SPAPR_TCE_PAGE_SHIFT = 12;
const DEFAULT_PGSZ = (1n << 12n) | (1n << 16n) | (1n << 21n) | (1n << 24n);
/** spapr_page_mask_to_query_mask: page shift → LoPAPR query bit. */
const QUERY_BITS: readonly (readonly [number, number])[] = [
  [12, 0x01], [16, 0x02], [21, 0x100], [24, 0x04], [25, 0x08], [26, 0x10], [27, 0x20], [28, 0x40], [34, 0x80],
];

/** A PCI host bridge: one PE, two DMA windows (create with vm.addPhb()). */
export class Phb {
  readonly vm: Vm;
  readonly buid: bigint;
  readonly index: number;
  readonly dma32Addr: bigint;
  readonly dma32Size: bigint;
  readonly dma64Addr: bigint;
  readonly pageSizeMask: bigint;
  readonly ddw: boolean;
  /** The LIOBNs of window 0 (default) and window 1 (SPAPR_PCI_LIOBN(index, win)). */
  readonly liobns: readonly [bigint, bigint];
  /** @internal QEMU's def_win per window: set on window 0 by the DMA reset and never cleared. */
  readonly defWin = [false, false];

  /**
   * @internal use vm.addPhb(). `others` are the VM's PHBs so far (BUIDs are
   * unique); with `restored`, the PHB is the one a snapshot saved, its
   * windows already among the VM's tables, and nothing is created or reset.
   */
  constructor(vm: Vm, opts: PhbOptions, others: readonly Phb[], restored?: { defWin: readonly boolean[] }) {
    const o = v.options('opts', opts, PHB_OPTIONS);
    this.vm = vm;
    this.buid = v.u64('opts.buid', o.buid);
    this.index = v.int('opts.index', o.index, 0, 0x7fffff);
    const d32 = v.options('opts.dma32', o.dma32, DMA32_OPTIONS);
    this.dma32Addr = o.dma32 === undefined ? 0n : v.u64('opts.dma32.addr', d32.addr);
    this.dma32Size = o.dma32 === undefined ? 1n << 30n : v.u64('opts.dma32.size', d32.size);
    this.dma64Addr = o.dma64Addr === undefined ? 1n << 59n : v.u64('opts.dma64Addr', o.dma64Addr);
    this.pageSizeMask = o.pageSizeMask === undefined ? DEFAULT_PGSZ : v.u64('opts.pageSizeMask', o.pageSizeMask);
    this.ddw = v.bool('opts.ddw', o.ddw, true);
    if (this.pageSizeMask === 0n || this.pageSizeMask & ~(((1n << 35n) - 1n) & ~((1n << 12n) - 1n))) {
      throw new RangeError(`opts.pageSizeMask must be a non-empty set of page sizes 2^12..2^34, got ${hex(this.pageSizeMask)}`);
    }
    // dma_win_size >> SPAPR_TCE_PAGE_SHIFT is a u32 nb_table.
    if (this.dma32Size === 0n || this.dma32Size & 0xfffn || this.dma32Size >> 12n > 0xffff_ffffn) {
      throw new RangeError(`opts.dma32.size must be a non-zero multiple of 4 KiB below 2^44, got ${hex(this.dma32Size)}`);
    }
    if (this.dma32Addr + this.dma32Size > (1n << 64n) - (1n << 12n)) throw new RangeError('opts.dma32 must end below 2^64 − 4 KiB');
    const maxPage = 1n << BigInt(this.pageSizeMask.toString(2).length - 1);
    for (const [name, a] of [['opts.dma32.addr', this.dma32Addr], ['opts.dma64Addr', this.dma64Addr]] as const) {
      if (a & (maxPage - 1n)) throw new RangeError(`${name} must be aligned to the largest page size of the mask (${hex(maxPage)}), got ${hex(a)}`);
    }
    const base = 0x8000_0000n | (BigInt(this.index) << 8n);
    this.liobns = [base, base | 1n];
    if (restored) {
      this.defWin[0] = restored.defWin[0] === true;
      this.defWin[1] = restored.defWin[1] === true;
      return;
    }
    for (const p of others) if (p.buid === this.buid) fail('EBUSY', `addPhb: BUID ${hex(this.buid)} exists`);
    for (const l of this.liobns) if (vm.tables.has(l)) fail('EBUSY', `addPhb: LIOBN ${hex(l)} exists`);
    // spapr_phb_realize creates both tables disabled (spapr_tce_new_table: no window yet, so
    // no event; in the kvm profile no KVM table either); the PHB reset then runs the DMA reset,
    // whose default window is the first event.
    if (vm.profile === 'qemu') {
      for (const l of this.liobns) {
        createTceTable(vm, { liobn: l, pageShift: SPAPR_TCE_PAGE_SHIFT, offset: 0n, size: 1n });
        disableTable(vm, l, false);
      }
    }
    this.dmaReset();
  }

  /** The enabled windows, in window order. */
  windows(): PhbWindow[] {
    const out: PhbWindow[] = [];
    this.liobns.forEach((l, win) => {
      const t = enabledTable(this.vm, l);
      if (t) out.push({ liobn: l, busOffset: t.offset << BigInt(t.pageShift), pageShift: t.pageShift, entries: t.size, isDefault: this.defWin[win]! });
    });
    return out;
  }

  /** spapr_phb_get_active_win_num. */
  private active(): number {
    return this.liobns.filter((l) => enabledTable(this.vm, l)).length;
  }

  /**
   * spapr_phb_dma_reset (also what the PHB reset does): disables every
   * window, then enables window 0 again with 4K pages at dma_win_addr, empty,
   * and marks it default. Events: an unmap for every mapping of every window
   * first, then 'window-remove' for each window that was on, then
   * 'window-add' for the default one.
   */
  dmaReset(): void {
    this.dropMappings();
    this.resetWindows();
  }

  /** @internal the unmap events of every mapping of this PHB's windows (the first half of dmaReset). */
  dropMappings(): void {
    if (!this.vm.events.active) return;
    for (const l of this.liobns) {
      const t = enabledTable(this.vm, l);
      if (t) for (const ev of droppedMappings(this.vm, t)) this.vm.events.emit(ev);
    }
  }

  /** @internal the window half of dmaReset, once the unmaps are out. */
  resetWindows(): void {
    for (const l of this.liobns) disableTable(this.vm, l, true);
    if (!enableTable(this.vm, this.liobns[0], SPAPR_TCE_PAGE_SHIFT, this.dma32Addr, this.dma32Size >> 12n)) {
      // QEMU would abort on the failed allocation (or, in the kvm profile, fall back to a table of its own); the VMM gets the error instead.
      fail('ENOMEM', `the default DMA window of PHB ${hex(this.buid)} does not fit in linear memory${this.vm.profile === 'kvm' ? ' or the locked_vm limit' : ''}; raise maxMemory${this.vm.profile === 'kvm' ? ' or the memlock limit' : ''}`);
    }
    this.defWin[0] = true;
  }

  /** @internal one DDW call for this PHB (the BUID, or for remove the LIOBN, already matched). */
  call(name: RtasDdwCall, args: readonly number[], nret: number): number[] {
    if (!this.ddw) return [RTAS_OUT.PARAM_ERROR];
    switch (name) {
      case 'ibm,query-pe-dma-window': {
        // rtas_ibm_query_pe_dma_window: [status, avail, largest block (a constant), pgmask, migration mask 0]; nret 6 gives the block as hi/lo.
        let pgmask = 0;
        for (const [shift, bit] of QUERY_BITS) if (this.pageSizeMask & (1n << BigInt(shift))) pgmask |= bit;
        const avail = MAX_WINDOWS - this.active();
        return nret === 6 ? [RTAS_OUT.SUCCESS, avail, 0x20, 0, pgmask, 0] : [RTAS_OUT.SUCCESS, avail, 0x8000_0000, pgmask, 0];
      }
      case 'ibm,create-pe-dma-window':
        return this.create(args[3]!, args[4]!);
      case 'ibm,remove-pe-dma-window': {
        // rtas_ibm_remove_pe_dma_window: an inactive window is a parameter error.
        const win = this.liobns.indexOf(BigInt(args[0]!));
        const t = enabledTable(this.vm, this.liobns[win]!);
        if (!t) return [RTAS_OUT.PARAM_ERROR];
        const defRemoved = this.defWin[win]!;
        if (this.vm.events.active) for (const ev of droppedMappings(this.vm, t)) this.vm.events.emit(ev);
        disableTable(this.vm, this.liobns[win]!, true);
        // LoPAPR: removing the last window, when it is not the default one, restores the default window (QEMU ≥ 7.1).
        if (this.active() === 0 && !defRemoved) this.dmaReset();
        return [RTAS_OUT.SUCCESS];
      }
      case 'ibm,reset-pe-dma-window':
        this.dmaReset();
        return [RTAS_OUT.SUCCESS];
    }
  }

  /** rtas_ibm_create_pe_dma_window after its argument-count and BUID checks. */
  private create(pageShift: number, windowShift: number): number[] {
    // The page size and window checks come before the capacity checks: a bad request is -3 even with both windows active.
    if (pageShift > 63 || !(this.pageSizeMask & (1n << BigInt(pageShift))) || windowShift < pageShift) return [RTAS_OUT.PARAM_ERROR];
    // spapr_phb_get_free_liobn keeps the last disabled table it iterates over; here the iteration is in window order.
    const free = [...this.liobns].reverse().find((l) => !enabledTable(this.vm, l));
    const windows = this.active();
    if (free === undefined || windows === MAX_WINDOWS) return [RTAS_OUT.HW_ERROR];
    const bus = windows === 0 ? this.dma32Addr : this.dma64Addr;
    // nb_table is a u32: 2^32 entries or more truncate to 0, which spapr_tce_table_enable leaves disabled → HW error.
    const entriesShift = windowShift - pageShift;
    if (entriesShift >= 32) return [RTAS_OUT.HW_ERROR];
    const entries = 1n << BigInt(entriesShift);
    // A window past the end of the 64-bit bus cannot be placed (QEMU does not check; its memory region would wrap).
    if ((bus >> BigInt(pageShift)) + entries > ((1n << 64n) - 1n) >> BigInt(pageShift)) return [RTAS_OUT.HW_ERROR];
    // The window starts empty, so there is nothing to replay (QEMU's skipping_replay): its only event is 'window-add'.
    if (!enableTable(this.vm, free, pageShift, bus, entries)) return [RTAS_OUT.HW_ERROR];
    return [RTAS_OUT.SUCCESS, Number(free), Number(bus >> 32n), Number(bus & 0xffff_ffffn)];
  }
}

/**
 * vm.rtas(): checks the arguments as QEMU's handlers do (nargs = args.length).
 * The DDW calls find the PHB by BUID = args[1] << 32 | args[2] (the PE
 * config address args[0] is ignored: PE = PHB) or, for remove, by LIOBN;
 * ibm,set-tce-bypass finds the VIO unit args[0]. Returns [status] on an
 * error, else the nret result cells. The events of the call (window-add,
 * window-remove, the unmaps of what a removal or reset drops) are delivered
 * together when it has finished.
 */
export function rtasCall(vm: Vm, name: unknown, args: unknown, nret: unknown): number[] {
  const call = v.oneOf('name', name, RTAS_CALLS);
  const cells = v.array('args', args, 'RTAS cells (u32, number or bigint)').map((a, i) => v.u32(`args[${i}]`, a));
  const nr = v.int('nret', nret, 0, 1024);
  const n = cells.length;
  const phbs = vm.phbs;
  const byBuid = (): Phb | undefined => {
    const buid = (BigInt(cells[1]!) << 32n) | BigInt(cells[2]!);
    return phbs.find((p) => p.buid === buid);
  };
  let phb: Phb | undefined;
  switch (call) {
    case 'ibm,set-tce-bypass':
      // rtas_set_tce_bypass: nargs 2 (nret is not looked at); a unit that is no VIO device with a table → -3.
      if (n !== 2 || !isVioTable(vm, BigInt(cells[0]!))) return [RTAS_OUT.PARAM_ERROR];
      vm.setTceBypass(cells[0]!, cells[1] !== 0);
      return [RTAS_OUT.SUCCESS];
    case 'ibm,query-pe-dma-window':
      if (n !== 3 || (nr !== 5 && nr !== 6)) return [RTAS_OUT.PARAM_ERROR];
      phb = byBuid();
      break;
    case 'ibm,create-pe-dma-window':
      if (n !== 5 || nr !== 4) return [RTAS_OUT.PARAM_ERROR];
      phb = byBuid();
      break;
    case 'ibm,remove-pe-dma-window':
      if (n !== 1 || nr !== 1) return [RTAS_OUT.PARAM_ERROR];
      // spapr_tce_find_by_liobn, then the table's parent must be a PHB: a VIO or other table is a parameter error.
      phb = phbs.find((p) => p.liobns.includes(BigInt(cells[0]!)));
      break;
    case 'ibm,reset-pe-dma-window':
      if (n !== 3 || nr !== 1) return [RTAS_OUT.PARAM_ERROR];
      phb = byBuid();
      break;
  }
  if (!phb) return [RTAS_OUT.PARAM_ERROR];
  const p = phb;
  return vm.events.batch(() => p.call(call, cells, nr));
}

/**
 * Whether `liobn` is a VIO unit's table, the only kind with a bypass
 * (spapr_vio_find_by_reg, then dev->tcet): a table of this VM with a 32-bit
 * LIOBN (the unit address is the LIOBN, SPAPR_VIO_LIOBN) that no PHB owns.
 */
export function isVioTable(vm: Vm, liobn: bigint): boolean {
  return liobn >> 32n === 0n && vm.tables.has(liobn) && !vm.phbs.some((p) => p.liobns.includes(liobn));
}

/** The window's table when it is enabled (a disabled one has size 0, or in the kvm profile no table). */
function enabledTable(vm: Vm, liobn: bigint): GuestTable | undefined {
  const t = vm.tables.get(liobn);
  return t && t.size !== 0n ? t : undefined;
}

/**
 * spapr_tce_table_disable: in the qemu profile the table stays (found by
 * LIOBN) with size 0, its TCE pages and page array freed; in the kvm
 * profile KVM's table is released (its fd closed: vm.releaseTable, links
 * and all). With `notify`, a 'window-remove' event (the caller has sent the
 * unmaps of its mappings before).
 */
function disableTable(vm: Vm, liobn: bigint, notify: boolean): void {
  const t = enabledTable(vm, liobn);
  if (!t) return;
  if (vm.profile === 'kvm') {
    vm.releaseTable(liobn);
    if (notify) vm.events.emit(windowEvent(t, 'window-remove'));
    return;
  }
  const stt = new SttView(vm.host.mem, t.desc);
  // Size first, so every lookup fails before the pages go.
  stt.size = 0n;
  const npages = stt.npages;
  const pages = stt.pages;
  stt.npages = 0;
  stt.pages = 0;
  if (pages !== 0) freeTcePages(vm.host, pages, npages);
  stt.offset = 0n;
  stt.pageShift = 0;
  vm.tables.set(liobn, { ...t, pageShift: 0, offset: 0n, size: 0n } satisfies GuestTable);
  if (notify) vm.events.emit(windowEvent(t, 'window-remove'));
}

/**
 * spapr_tce_table_enable on a disabled table: `entries` empty TCEs of
 * 2^pageShift bytes from bus address `bus`. False when linear memory has no
 * room for the page array (the platform cannot provide the window).
 */
function enableTable(vm: Vm, liobn: bigint, pageShift: number, bus: bigint, entries: bigint): boolean {
  if (vm.profile === 'kvm') {
    // kvmppc_create_spapr_tce: KVM_CREATE_SPAPR_TCE_64 {liobn, page_shift, bus >> page_shift, entries}.
    // Refused (locked_vm, linear memory): QEMU falls back to a table of its own whose hypercalls all
    // exit; that table is not modelled, so the window is not provided (docs/semantics.md §9).
    let t: GuestTable;
    try {
      t = createTceTable(vm, { liobn, pageShift, offset: bus >> BigInt(pageShift), size: entries });
    } catch (e) {
      if (e instanceof TceError) return false;
      throw e;
    }
    vm.events.emit(windowEvent(t, 'window-add'));
    return true;
  }
  const t = vm.tables.get(liobn)!;
  const per = BigInt((1 << vm.host.pageShift) / 8);
  const npages = (entries + per - 1n) / per;
  if (npages > 0x3fff_ffffn) return false;
  const pages = vm.host.tryAlloc(Number(npages) * 4);
  if (pages === 0) return false;
  const stt = new SttView(vm.host.mem, t.desc);
  const offset = bus >> BigInt(pageShift);
  stt.offset = offset;
  stt.pageShift = pageShift;
  stt.npages = Number(npages);
  stt.pages = pages;
  // Size last: the table becomes visible to lookups only once complete.
  stt.size = entries;
  const enabled: GuestTable = { ...t, pageShift, offset, size: entries };
  vm.tables.set(liobn, enabled);
  vm.events.emit(windowEvent(enabled, 'window-add'));
  return true;
}
