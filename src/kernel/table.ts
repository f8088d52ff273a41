// TCE tables (struct iommu_table) with their userspace view, as seen from
// TypeScript: geometry and the kernel's size rules here, entry operations in
// the engine (assembly/table.ts, src/native/).
import type { Host } from './host.js';
import { Mm } from './mm.js';
import { fail, errnoError } from './errors.js';
import * as v from './validate.js';
import {
  TBL_BYTES, TBL_OFFSET, TBL_SIZE, TBL_PAGE_SHIFT, TBL_LEVELS, TBL_LEVEL_BITS, TBL_ROOT_BITS,
  TBL_UA_ROOT, TBL_OWNER_PID, TBL_NODE_BYTES, TBL_UA_NODE_BYTES, TBL_ID, TBL_FLAGS, TBL_REFS,
  OP_ALLOC, OP_CHECK_PID, TCE_PERM_MASK, TABLE_F_V2,
} from './generated/layout.js';

/** Most levels a table may have (POWERNV_IOMMU_MAX_LEVELS). */
export const MAX_LEVELS = 5;

/** Geometry of a window, as TCE_CREATE / pnv_pci_ioda2_create_table take it. */
export interface TableGeometry {
  pageShift: number;
  windowSize: bigint;
  levels: number;
  busOffset: bigint;
}

const log2 = (x: bigint): number => x.toString(2).length - 1;
const isPow2 = (x: bigint): boolean => x > 0n && (x & (x - 1n)) === 0n;

/**
 * pnv_pci_ioda2_get_table_size: bytes the kernel allocates (and accounts)
 * for a window, the TCE tree and its userspace copy; 0 for an impossible geometry.
 */
export function getTableSize(pageShift: number, windowSize: bigint, levels: number, sysPageShift: number): bigint {
  v.int('pageShift', pageShift, 0, 63);
  v.u64('windowSize', windowSize);
  v.int('levels', levels, 0, 0xffffffff);
  v.int('sysPageShift', sysPageShift, 12, 16);
  if (levels < 1 || levels > MAX_LEVELS || !isPow2(windowSize)) return 0n;
  const entriesShift = log2(windowSize) - pageShift;
  if (entriesShift < 0) return 0n;
  let tceTableSize = 1n << BigInt(entriesShift + 3);
  if (tceTableSize < 0x1000n) tceTableSize = 0x1000n;
  const perLevel = Math.ceil(entriesShift / levels);
  const directSize = 1n << BigInt(Math.max(perLevel + 3, sysPageShift));
  let bytes = 0n;
  for (let l = levels; l > 0; l--) {
    bytes += ((tceTableSize + directSize - 1n) / directSize) * directSize;
    tceTableSize = (tceTableSize / directSize) << 3n;
    if (tceTableSize < directSize) tceTableSize = directSize;
  }
  return bytes + bytes;
}

/**
 * The kernel's checks of pnv_pci_ioda2_table_alloc_pages for a geometry: EINVAL
 * for levels outside [1, 5], a window that is not a power of two or smaller
 * than one page, or one whose levels would address 2^55 bytes or more.
 */
export function checkGeometry(g: TableGeometry, sysPageShift: number): void {
  v.options<TableGeometry>('geometry', g);
  v.int('pageShift', g.pageShift, 0, 63);
  v.u64('windowSize', g.windowSize);
  v.int('levels', g.levels, 0, 0xffffffff);
  v.int('sysPageShift', sysPageShift, 12, 16);
  if (g.levels < 1 || g.levels > MAX_LEVELS) fail('EINVAL', `levels must be in [1, ${MAX_LEVELS}], got ${g.levels}`);
  if (!isPow2(g.windowSize)) fail('EINVAL', `windowSize must be a power of two, got ${g.windowSize}`);
  const entriesShift = log2(g.windowSize) - g.pageShift;
  if (entriesShift < 0) fail('EINVAL', `windowSize ${g.windowSize} is smaller than one 2^${g.pageShift}-byte page`);
  const levelShift = Math.max(Math.ceil(entriesShift / g.levels) + 3, sysPageShift);
  if ((levelShift - 3) * g.levels + g.pageShift >= 55) {
    fail('EINVAL', `${g.levels} level(s) of 2^${levelShift - 3} entries with 2^${g.pageShift}-byte pages address 2^55 bytes or more`);
  }
}

/** Index bits of the levels below the root, when the window allows: 16 slots, 64–128-byte nodes. */
export const LOW_LEVEL_BITS = 4;
/** Most index bits of the root of a multi-level table: a 16 KiB root. */
export const ROOT_MAX_BITS = 12;

/**
 * How a table of 2^sizeShift entries splits its index over `levels` levels
 * in linear memory: levels below the root take LOW_LEVEL_BITS bits (fewer
 * if an even split gives fewer; more if the root would otherwise exceed
 * ROOT_MAX_BITS), the root the rest. Small lower nodes make a sparse table cost per entry mapped;
 * the kernel's equal split with system-page nodes decides only accounting.
 */
export function levelSplit(sizeShift: number, levels: number): { bits: number; rootBits: number } {
  if (levels === 1) return { bits: sizeShift, rootBits: sizeShift };
  const small = Math.max(1, Math.min(LOW_LEVEL_BITS, Math.ceil(sizeShift / levels), Math.floor((sizeShift - 1) / (levels - 1))));
  // A huge window widens the lower levels instead of growing the root past ROOT_MAX_BITS.
  const bits = Math.max(small, Math.ceil((sizeShift - ROOT_MAX_BITS) / (levels - 1)));
  return { bits, rootBits: sizeShift - bits * (levels - 1) };
}

/** Snapshot form of an IommuTable; the descriptor and trees are in linear memory. */
export interface TableState {
  desc: number;
  busOffset: string;
  kernelBytes: string;
  v2: boolean;
  viewMm: number | null;
}

/** A TCE table in linear memory. */
export class IommuTable {
  readonly host: Host;
  readonly desc: number;
  readonly busOffset: bigint;
  /** The kernel's allocation for this table (HW tree + userspace copy, get_table_size). */
  readonly kernelBytes: bigint;
  /** The mm whose regions the userspace view points into (the owner's), once known. */
  viewMm: Mm | undefined;
  /** Whether entries are built through the userspace view (VFIO v2 / KVM) rather than pinned per page (v1). */
  readonly v2: boolean;

  private constructor(host: Host, desc: number, g: TableGeometry, v2: boolean) {
    this.host = host;
    this.desc = desc;
    this.busOffset = g.busOffset;
    this.kernelBytes = getTableSize(g.pageShift, g.windowSize, g.levels, host.pageShift);
    this.v2 = v2;
  }

  /**
   * Creates a table (pnv_pci_ioda2_create_table): checks the geometry,
   * it_size = max(entries, one system page of TCEs) [the kernel pads tiny
   * windows], index split ceil(log2(it_size)/levels) bits per level, root
   * allocated now, everything else on demand. ENOMEM when memory is full.
   */
  static create(host: Host, g: TableGeometry, v2: boolean): IommuTable {
    v.options<TableGeometry>('geometry', g);
    v.bool('v2', v2, false);
    v.int('pageShift', g.pageShift, 12, 40);
    v.u64('windowSize', g.windowSize);
    v.int('levels', g.levels, 0, 64);
    v.u64('busOffset', g.busOffset);
    checkGeometry(g, host.pageShift);
    if (g.busOffset & ((1n << BigInt(g.pageShift)) - 1n)) fail('EINVAL', `busOffset 0x${g.busOffset.toString(16)} is not aligned to the IOMMU page`);
    const entriesShift = log2(g.windowSize) - g.pageShift;
    const sizeShift = Math.max(entriesShift, host.pageShift - 3);
    const { bits, rootBits } = levelSplit(sizeShift, g.levels);
    const desc = host.alloc(TBL_BYTES, 'table descriptor');
    const mem = host.mem;
    mem.setU64(desc + TBL_OFFSET, g.busOffset >> BigInt(g.pageShift));
    mem.setU64(desc + TBL_SIZE, 1n << BigInt(sizeShift));
    mem.setU32(desc + TBL_PAGE_SHIFT, g.pageShift);
    mem.setU32(desc + TBL_LEVELS, g.levels);
    mem.setU32(desc + TBL_LEVEL_BITS, bits);
    mem.setU32(desc + TBL_ROOT_BITS, rootBits);
    mem.setU32(desc + TBL_ID, host.nextId());
    mem.setU32(desc + TBL_FLAGS, v2 ? TABLE_F_V2 : 0);
    mem.setU32(desc + TBL_REFS, 1);
    const rc = host.engine.tableInit(desc);
    if (rc < 0) {
      host.free(desc, TBL_BYTES);
      throw errnoError(rc, `no linear memory left for a ${g.levels}-level table root`);
    }
    const t = new IommuTable(host, desc, g, v2);
    host.tables.add(t);
    return t;
  }

  /** State for snapshots. */
  save(): TableState {
    return { desc: this.desc, busOffset: '0x' + this.busOffset.toString(16), kernelBytes: '0x' + this.kernelBytes.toString(16), v2: this.v2, viewMm: this.viewMm?.id ?? null };
  }

  /** The table a snapshot describes, over a memory already holding its descriptor and trees. */
  static restore(host: Host, s: TableState, mms: Map<number, Mm>): IommuTable {
    const t = Object.create(IommuTable.prototype) as IommuTable;
    Object.assign(t, { host, desc: s.desc, busOffset: BigInt(s.busOffset), kernelBytes: BigInt(s.kernelBytes), v2: s.v2, viewMm: s.viewMm === null ? undefined : mms.get(s.viewMm), freed: false });
    host.tables.add(t);
    return t;
  }

  get id(): number { return this.host.mem.getU32(this.desc + TBL_ID); }
  /** it_offset: index of the first entry. */
  get offset(): bigint { return this.host.mem.getU64(this.desc + TBL_OFFSET); }
  /** it_size: number of entries. */
  get size(): bigint { return this.host.mem.getU64(this.desc + TBL_SIZE); }
  get pageShift(): number { return this.host.mem.getU32(this.desc + TBL_PAGE_SHIFT); }
  get levels(): number { return this.host.mem.getU32(this.desc + TBL_LEVELS); }
  get levelBits(): number { return this.host.mem.getU32(this.desc + TBL_LEVEL_BITS); }
  get rootBits(): number { return this.host.mem.getU32(this.desc + TBL_ROOT_BITS); }
  private freed = false;

  /** Throws for a freed table: its descriptor may belong to another table by now. */
  private live(): void {
    if (this.freed) throw new TypeError(`table ${this.host.mem.getU32(this.desc + TBL_ID) || ''} has been freed`);
  }

  private checkMm(mm: unknown): Mm {
    v.instance('mm', mm, Mm, 'an Mm');
    if ((mm as Mm).host !== this.host) throw new TypeError('mm belongs to another host');
    return mm as Mm;
  }

  /** Whether the userspace view has been allocated. */
  get hasView(): boolean { return this.host.mem.getU32(this.desc + TBL_UA_ROOT) !== 0; }
  /** Bytes of linear memory held by the TCE tree and the view. */
  get memoryBytes(): bigint {
    return this.host.mem.getU64(this.desc + TBL_NODE_BYTES) + this.host.mem.getU64(this.desc + TBL_UA_NODE_BYTES);
  }
  /** Pid allowed to change the view (pid owner check); 0 while unclaimed. */
  get ownerPid(): number { return this.host.mem.getU32(this.desc + TBL_OWNER_PID); }
  set ownerPid(pid: number) { this.host.mem.setU32(this.desc + TBL_OWNER_PID, pid); }
  /** Bus address just past the window's last entry. */
  get busEnd(): bigint { return (this.offset + this.size) << BigInt(this.pageShift); }

  /** Whether [entry, entry + n) lies inside the table. */
  contains(entry: bigint, n: bigint): boolean {
    return entry >= this.offset && n <= this.size && entry - this.offset <= this.size - n;
  }

  /** The TCE at `entry` (0 when never set or outside). */
  get(entry: bigint): bigint {
    this.live();
    v.u64('entry', entry);
    return this.host.engine.tableGet(this.desc, entry);
  }

  /** The userspace address the entry was mapped from (0 when none). */
  getUa(entry: bigint): bigint {
    this.live();
    v.u64('entry', entry);
    return this.host.engine.tableUaGet(this.desc, entry);
  }

  /** Allocates the userspace view if absent (ENOMEM when memory is full). */
  allocView(): void {
    this.live();
    const rc = this.host.engine.tableUaAlloc(this.desc);
    if (rc < 0) throw errnoError(rc, 'no linear memory left for the userspace view');
  }

  /**
   * v2 build (tce_iommu_build_v2): maps n entries from `entry` to the IOMMU
   * pages at `ua` in `mm`'s regions. Virtual mode (levels allocated) unless
   * realMode. Rolls back this call's entries on failure and throws.
   */
  buildV2(mm: Mm, entry: bigint, n: bigint, ua: bigint, perm: number, opts: { realMode?: boolean; checkPidOf?: number } = {}): void {
    this.live();
    this.checkMm(mm);
    v.options('opts', opts);
    v.bool('opts.realMode', opts.realMode, false);
    if (opts.checkPidOf !== undefined) v.int('opts.checkPidOf', opts.checkPidOf, 1, 0xffffffff);
    v.u64('entry', entry);
    v.u64('n', n);
    v.u64('ua', ua);
    v.int('perm', perm, 1, 3);
    if (!this.contains(entry, n)) fail('EINVAL', `entries [0x${entry.toString(16)}, +${n}) are outside the table`);
    if (ua & ((1n << BigInt(this.pageShift)) - 1n)) fail('EINVAL', `ua 0x${ua.toString(16)} is not aligned to the IOMMU page`);
    if (ua + (n << BigInt(this.pageShift)) > 1n << 64n) fail('EINVAL', 'the userspace range wraps around');
    if (!this.hasView && !opts.realMode && n > 0n) {
      // The view exists once something is mapped; a map refused at its first page must not leave it behind.
      const e = this.host.engine;
      const r = e.regionLookup(mm.desc, ua, 1n << BigInt(this.pageShift));
      if (r === 0 || e.regionUaToHpa(r, ua, this.pageShift) < 0n) {
        fail('EINVAL', `ua 0x${ua.toString(16)} is in no pre-registered region able to back 2^${this.pageShift}-byte pages`);
      }
      this.allocView();
    }
    const flags = (opts.realMode ? 0 : OP_ALLOC) | (opts.checkPidOf !== undefined ? OP_CHECK_PID : 0);
    const rc = this.host.engine.tableBuildV2(this.desc, mm.desc, entry, n, ua, perm & TCE_PERM_MASK, flags, opts.checkPidOf ?? 0);
    if (rc < 0) throw errnoError(rc, `mapping ${n} entr${n === 1n ? 'y' : 'ies'} at index 0x${entry.toString(16)} from ua 0x${ua.toString(16)}`);
  }

  /** v2 clear (tce_iommu_clear): n entries from `entry`; regions looked up in `mm`. */
  clearV2(mm: Mm, entry: bigint, n: bigint, opts: { checkPidOf?: number } = {}): void {
    this.live();
    this.checkMm(mm);
    v.options('opts', opts);
    if (opts.checkPidOf !== undefined) v.int('opts.checkPidOf', opts.checkPidOf, 1, 0xffffffff);
    v.u64('entry', entry);
    v.u64('n', n);
    if (!this.contains(entry, n)) fail('EINVAL', `entries [0x${entry.toString(16)}, +${n}) are outside the table`);
    const rc = this.host.engine.tableClearV2(this.desc, mm.desc, entry, n, opts.checkPidOf !== undefined ? OP_CHECK_PID : 0, opts.checkPidOf ?? 0);
    if (rc < 0) throw errnoError(rc, `clearing ${n} entries at index 0x${entry.toString(16)}`);
  }

  /** Exchanges one TCE without view bookkeeping (v1): returns the old TCE. */
  xchg(entry: bigint, tce: bigint): bigint {
    this.live();
    v.u64('entry', entry);
    v.u64('tce', tce);
    if (!this.contains(entry, 1n)) fail('EINVAL', `entry 0x${entry.toString(16)} is outside the table`);
    const old = this.host.engine.tableXchg(this.desc, entry, tce, OP_ALLOC);
    if (old < 0n) throw errnoError(Number(old), `exchanging the TCE at index 0x${entry.toString(16)}`);
    return old;
  }

  /** The first entry in [entry, end) with a non-zero TCE, or -1n. */
  nextValid(entry: bigint, end: bigint): bigint {
    this.live();
    v.u64('entry', entry);
    v.u64('end', end);
    return this.host.engine.tableNextValid(this.desc, entry, end);
  }

  /** Every non-zero entry, ascending: [entry, tce, ua]. Costs O(allocated levels). */
  *entries(): Generator<[bigint, bigint, bigint]> {
    const end = this.offset + this.size;
    for (let e = this.nextValid(this.offset, end); e >= 0n; e = this.nextValid(e + 1n, end)) {
      yield [e, this.get(e), this.getUa(e)];
    }
  }

  /** References held on the table (its creator's, plus one per KVM link: iommu_tce_table_get). */
  get refs(): number { return this.host.mem.getU32(this.desc + TBL_REFS); }

  /** Takes a reference (iommu_tce_table_get). */
  hold(): void {
    this.live();
    this.host.mem.setU32(this.desc + TBL_REFS, this.refs + 1);
  }

  /** Drops a reference; the last one frees the table (iommu_tce_table_put). */
  release(): void {
    this.live();
    const n = this.refs - 1;
    this.host.mem.setU32(this.desc + TBL_REFS, n);
    if (n === 0) this.free();
  }

  /** Frees the table's trees and descriptor. The caller has cleared it first. */
  free(): void {
    this.live();
    this.freed = true;
    this.host.engine.tableFree(this.desc);
    this.host.free(this.desc, TBL_BYTES);
    this.host.tables.delete(this);
  }
}
