// TCE tables (struct iommu_table) with their userspace view, as seen from
// TypeScript: the descriptor here, the geometry rules in geometry.ts, entry
// operations in the engine (assembly/table.ts, src/native/).
import type { HostContext } from '../core/context.js';
import { Mm } from './mm.js';
import { fail, errnoError } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { TblView } from '../generated/views.js';
import { OP_ALLOC, OP_CHECK_PID, TCE_PERM_MASK, TABLE_F_V2 } from '../generated/layout.js';
import { retryWhileBusy } from './busy-retry.js';
import { checkGeometry, geometryOf, getTableSize, indexShape, type TableGeometry } from './geometry.js';

/** Options of IommuTable.buildV2(). */
export interface BuildOptions {
  /** Real mode: nothing is allocated (kvmppc_rm_tce_iommu_map: a missing level is a failure). */
  realMode?: boolean;
  /** The pid owner check at every view write, against this pid. */
  checkPidOf?: number;
}
const BUILD_OPTIONS = v.keys<BuildOptions>('table.buildV2', { realMode: true, checkPidOf: true });
const CLEAR_OPTIONS = v.keys<Omit<BuildOptions, 'realMode'>>('table.clearV2', { checkPidOf: true });

/** Live tables (created and not yet freed) per host: the kernel's list, read by stats, invariants and snapshots. */
const live = new WeakMap<HostContext, Set<IommuTable>>();

/** The live tables of `host`, in creation order. */
export function liveTables(host: HostContext): Set<IommuTable> {
  let set = live.get(host);
  if (!set) {
    set = new Set();
    live.set(host, set);
  }
  return set;
}

/** A TCE table in linear memory. */
export class IommuTable {
  readonly host: HostContext;
  readonly desc: number;
  readonly busOffset: bigint;
  /** The kernel's allocation for this table (HW tree + userspace copy, get_table_size). */
  readonly kernelBytes: bigint;
  /** The mm whose regions the userspace view points into (the owner's), once known. */
  viewMm: Mm | undefined;
  /** Whether entries are built through the userspace view (VFIO v2 / KVM) rather than pinned per page (v1). */
  readonly v2: boolean;

  private readonly d: TblView;
  private freed = false;
  private held: number;

  /** @internal the table of descriptor `desc`, as create() made it (or a snapshot saved it), `callerRefs` of its references the caller's. */
  constructor(host: HostContext, desc: number, busOffset: bigint, kernelBytes: bigint, v2: boolean, viewMm?: Mm, callerRefs = 0) {
    this.host = host;
    this.held = callerRefs;
    this.desc = desc;
    this.busOffset = busOffset;
    this.kernelBytes = kernelBytes;
    this.v2 = v2;
    this.viewMm = viewMm;
    this.d = new TblView(host.mem, desc);
  }

  /**
   * Creates a table (pnv_pci_ioda2_create_table): checks the geometry,
   * it_size = max(entries, one system page of TCEs) [the kernel pads tiny
   * windows], index split ceil(log2(it_size)/levels) bits per level, root
   * allocated now, everything else on demand. ENOMEM when memory is full.
   * The first reference (kref_init) is the caller's: release() drops it.
   */
  static create(host: HostContext, geometry: TableGeometry, v2: boolean): IommuTable {
    const t = IommuTable.createHeld(host, geometry, v2);
    t.held = 1;
    return t;
  }

  /**
   * @internal create() for VFIO: the first reference belongs to the holder
   * that stores the table (tce_iommu_create_table's, kept in the
   * container's tables[]; a legacy group's own table), not to the caller.
   */
  static createHeld(host: HostContext, geometry: TableGeometry, v2: boolean): IommuTable {
    const g = geometryOf(geometry, 12, 40, 64);
    v.bool('v2', v2, false);
    checkGeometry(g, host.pageShift);
    if (g.busOffset & ((1n << BigInt(g.pageShift)) - 1n)) fail('EINVAL', `busOffset ${hex(g.busOffset)} is not aligned to the IOMMU page`);
    const { sizeShift, bits, rootBits } = indexShape(g, host.pageShift);
    const desc = host.alloc(TblView.BYTES, 'table descriptor');
    const d = new TblView(host.mem, desc);
    d.offset = g.busOffset >> BigInt(g.pageShift);
    d.size = 1n << BigInt(sizeShift);
    d.pageShift = g.pageShift;
    d.levels = g.levels;
    d.levelBits = bits;
    d.rootBits = rootBits;
    d.id = host.nextId();
    d.flags = v2 ? TABLE_F_V2 : 0;
    d.refs = 1;
    const rc = host.engine.tableInit(desc);
    if (rc < 0) {
      host.free(desc, TblView.BYTES);
      throw errnoError(rc, `no linear memory left for a ${g.levels}-level table root`);
    }
    const t = new IommuTable(host, desc, g.busOffset, getTableSize(g.pageShift, g.windowSize, g.levels, host.pageShift), v2);
    liveTables(host).add(t);
    return t;
  }

  get id(): number { return this.d.id; }
  /** it_offset: index of the first entry. */
  get offset(): bigint { return this.d.offset; }
  /** it_size: number of entries. */
  get size(): bigint { return this.d.size; }
  get pageShift(): number { return this.d.pageShift; }
  get levels(): number { return this.d.levels; }
  get levelBits(): number { return this.d.levelBits; }
  get rootBits(): number { return this.d.rootBits; }

  /** Throws for a freed table: its descriptor may belong to another table by now. */
  private live(): void {
    if (this.freed) throw new TypeError(`table ${this.d.id || ''} has been freed`);
  }

  private checkMm(mm: unknown): Mm {
    return v.owned('mm', mm, Mm, 'an Mm', this.host);
  }

  /** Whether the userspace view has been allocated. */
  get hasView(): boolean { return this.d.uaRoot !== 0; }
  /** Bytes of linear memory held by the TCE tree and the view. */
  get memoryBytes(): bigint {
    return this.d.nodeBytes + this.d.uaNodeBytes;
  }
  /** Pid allowed to change the view (pid owner check); 0 while unclaimed. */
  get ownerPid(): number { return this.d.ownerPid; }
  set ownerPid(pid: number) { this.d.ownerPid = pid; }
  /** Bus address just past the window's last entry. */
  get busEnd(): bigint { return (this.offset + this.size) << BigInt(this.pageShift); }

  /** Whether [entry, entry + n) lies inside the table. */
  contains(entry: bigint, n: bigint): boolean {
    return entry >= this.offset && n <= this.size && entry - this.offset <= this.size - n;
  }

  /** The TCE at `entry` (0 when never set or outside). */
  get(entry: bigint | number): bigint {
    this.live();
    entry = v.u64('entry', entry);
    return this.host.engine.tableGet(this.desc, entry);
  }

  /** The userspace address the entry was mapped from (0 when none). */
  getUa(entry: bigint | number): bigint {
    this.live();
    entry = v.u64('entry', entry);
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
  buildV2(mm: Mm, entry: bigint | number, n: bigint | number, ua: bigint | number, perm: number, opts: BuildOptions = {}): void {
    this.live();
    this.checkMm(mm);
    v.options('opts', opts, BUILD_OPTIONS);
    v.bool('opts.realMode', opts.realMode, false);
    if (opts.checkPidOf !== undefined) v.int('opts.checkPidOf', opts.checkPidOf, 1, 0xffffffff);
    const first = v.u64('entry', entry);
    const count = v.u64('n', n);
    const at = v.u64('ua', ua);
    v.int('perm', perm, 1, 3);
    if (!this.contains(first, count)) fail('EINVAL', `entries [${hex(first)}, +${count}) are outside the table`);
    if (at & ((1n << BigInt(this.pageShift)) - 1n)) fail('EINVAL', `ua ${hex(at)} is not aligned to the IOMMU page`);
    if (at + (count << BigInt(this.pageShift)) > 1n << 64n) fail('EINVAL', 'the userspace range wraps around');
    const e = this.host.engine;
    if (!this.hasView && !opts.realMode && count > 0n) {
      // The view exists once something is mapped; a map refused at its first page must not leave it behind.
      const r = e.regionLookup(mm.desc, at, 1n << BigInt(this.pageShift));
      if (r === 0 || e.regionUaToHpa(r, at, this.pageShift) < 0n) {
        fail('EINVAL', `ua ${hex(at)} is in no pre-registered region able to back 2^${this.pageShift}-byte pages`);
      }
      this.allocView();
    }
    const flags = (opts.realMode ? 0 : OP_ALLOC) | (opts.checkPidOf !== undefined ? OP_CHECK_PID : 0);
    const rc = retryWhileBusy(() => e.tableBuildV2(this.desc, mm.desc, first, count, at, perm & TCE_PERM_MASK, flags, opts.checkPidOf ?? 0));
    if (rc < 0) throw errnoError(rc, `mapping ${count} entr${count === 1n ? 'y' : 'ies'} at index ${hex(first)} from ua ${hex(at)}`);
  }

  /** v2 clear (tce_iommu_clear): n entries from `entry`; regions looked up in `mm`. */
  clearV2(mm: Mm, entry: bigint | number, n: bigint | number, opts: { checkPidOf?: number } = {}): void {
    this.live();
    this.checkMm(mm);
    v.options('opts', opts, CLEAR_OPTIONS);
    if (opts.checkPidOf !== undefined) v.int('opts.checkPidOf', opts.checkPidOf, 1, 0xffffffff);
    const first = v.u64('entry', entry);
    const count = v.u64('n', n);
    if (!this.contains(first, count)) fail('EINVAL', `entries [${hex(first)}, +${count}) are outside the table`);
    const e = this.host.engine;
    const rc = retryWhileBusy(() => e.tableClearV2(this.desc, mm.desc, first, count, opts.checkPidOf !== undefined ? OP_CHECK_PID : 0, opts.checkPidOf ?? 0));
    if (rc < 0) throw errnoError(rc, `clearing ${count} entries at index ${hex(first)}`);
  }

  /** Exchanges one TCE without view bookkeeping (v1): returns the old TCE. */
  xchg(entry: bigint | number, tce: bigint | number): bigint {
    this.live();
    entry = v.u64('entry', entry);
    tce = v.u64('tce', tce);
    if (!this.contains(entry, 1n)) fail('EINVAL', `entry ${hex(entry)} is outside the table`);
    const old = this.host.engine.tableXchg(this.desc, entry, tce, OP_ALLOC);
    if (old < 0n) throw errnoError(Number(old), `exchanging the TCE at index ${hex(entry)}`);
    return old;
  }

  /** The first entry in [entry, end) with a non-zero TCE, or -1n. */
  nextValid(entry: bigint | number, end: bigint | number): bigint {
    this.live();
    entry = v.u64('entry', entry);
    end = v.u64('end', end);
    return this.host.engine.tableNextValid(this.desc, entry, end);
  }

  /** Every non-zero entry, ascending: [entry, tce, ua]. Costs O(allocated levels). */
  *entries(): Generator<[bigint, bigint, bigint]> {
    const end = this.offset + this.size;
    for (let e = this.nextValid(this.offset, end); e >= 0n; e = this.nextValid(e + 1n, end)) {
      yield [e, this.get(e), this.getUa(e)];
    }
  }

  /** References held on the table (it_kref): its window's or legacy group's, one per KVM link, and the callerRefs. */
  get refs(): number { return this.d.refs; }

  /** Of refs, those taken through this API (create, hold) and not yet released: the invariants count them as holders. */
  get callerRefs(): number { return this.held; }

  /** Takes a reference for the caller (iommu_tce_table_get). */
  hold(): void {
    this.live();
    this.held++;
    this.d.refs = this.refs + 1;
  }

  /**
   * Drops one of the caller's references (iommu_tce_table_put); the last
   * reference frees the table. EINVAL when the caller holds none: the
   * others belong to a window, a legacy group or a KVM link, which would be
   * left holding a freed table.
   */
  release(): void {
    this.live();
    if (this.held === 0) fail('EINVAL', `table ${this.id}: release() without a reference taken by create() or hold()`);
    this.held--;
    this.put();
  }

  /** @internal drops a VFIO holder's reference (its window's: tce_iommu_free_table → iommu_tce_table_put). */
  releaseHolder(): void {
    this.live();
    this.put();
  }

  /** @internal takes a KVM link's reference (kvm_spapr_tce_attach_iommu_group → iommu_tce_table_get). */
  holdLink(): void {
    this.live();
    this.d.refs = this.refs + 1;
  }

  private put(): void {
    const n = this.refs - 1;
    this.d.refs = n;
    if (n === 0) this.free();
  }

  /**
   * Drops the reference of a KVM link the caller has unlinked
   * (kvm_spapr_tce_iommu_table_free, which runs after a grace period). When
   * it was the last one, VFIO has let the table go and cleared it, but a
   * vCPU may have mapped entries since: after the grace period, when none
   * can reach the table any more, they are cleared through the view (their
   * regions lose the counts) and the table is freed. The kernel frees the
   * table without clearing it, leaving those regions counted forever.
   */
  releaseLink(): void {
    this.live();
    const n = this.refs - 1;
    this.d.refs = n;
    if (n > 0) return;
    this.freed = true;
    liveTables(this.host).delete(this);
    const { host, desc } = this;
    const mm = this.viewMm?.desc ?? 0;
    const offset = this.offset;
    const size = this.size;
    host.deferFree(() => {
      if (mm !== 0) host.engine.tableClearV2(desc, mm, offset, size, 0, 0);
      host.engine.tableFree(desc);
      host.engine.free(desc, TblView.BYTES);
    });
  }

  /**
   * Frees the table's trees and descriptor after a grace period (the kernel
   * frees a table a KVM link held through call_rcu, in
   * kvm_spapr_tce_iommu_table_free): a vCPU that read the link before it
   * went may still walk the trees. The caller has cleared and unlinked it.
   */
  free(): void {
    this.live();
    this.freed = true;
    const { host, desc } = this;
    host.deferFree(() => {
      host.engine.tableFree(desc);
      host.engine.free(desc, TblView.BYTES);
    });
    liveTables(this.host).delete(this);
  }
}
