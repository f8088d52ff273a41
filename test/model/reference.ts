// A plain reference model of memory pre-registration (mm_iommu_*) and of v2 TCE
// tables with their userspace view, written from docs/semantics.md
// §2.1, §2.2, §2.4 and §3 only. Simple Maps and arrays, no cleverness: it is the
// oracle the unit and property tests compare the library against.
//
// It knows nothing of linear memory, levels or the allocator. Host addresses
// come from a `translate` callback (the simulated MMU: what the page of an
// address is backed by), captured at registration time as the kernel pins them.

/** An error the model expects, named like the library's TceError codes. */
export class ModelError extends Error {
  constructor(readonly code: 'EINVAL' | 'ENOMEM' | 'EFAULT' | 'ENOENT' | 'EBUSY' | 'ENXIO', message: string) {
    super(`${code}: ${message}`);
  }
}

const U64 = 1n << 64n;
const TCE_READ = 1n;
const TCE_WRITE = 2n;
const PERM = 3n;

export interface Translation {
  hpa: bigint;
  /** page shift of the backing page (huge page shift or the system page shift) */
  pageShift: number;
}

export interface ModelRegion {
  mm: number;
  ua: bigint;
  entries: bigint;
  used: number;
  /** 1 + live TCEs into the region; 0 while dying */
  mapped: bigint;
  pageShift: number;
  /** host address of each system page, captured at registration */
  hpas: bigint[];
}

export interface ModelMm {
  id: number;
  /** list order: newest first, as the kernel (and the library) link at the head */
  regions: ModelRegion[];
  lockedPages: bigint;
}

export interface ModelEntry {
  tce: bigint;
  ua: bigint;
}

export interface ModelTable {
  id: number;
  offset: bigint;
  size: bigint;
  pageShift: number;
  /** entry index (absolute) → TCE and view ua; absent = TCE 0, ua 0 */
  entries: Map<bigint, ModelEntry>;
}

/** Lowest set bit of x (__ffs); 64 for 0. */
export function ffs(x: bigint): number {
  if (x === 0n) return 64;
  let n = 0;
  while ((x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

export function log2(x: bigint): number {
  return x.toString(2).length - 1;
}

export class ReferenceModel {
  readonly sysShift: number;
  readonly mms = new Map<number, ModelMm>();
  readonly tables = new Map<number, ModelTable>();

  constructor(sysShift: number) {
    this.sysShift = sysShift;
  }

  get pageSize(): bigint {
    return 1n << BigInt(this.sysShift);
  }

  mm(id: number): ModelMm {
    let m = this.mms.get(id);
    if (!m) {
      m = { id, regions: [], lockedPages: 0n };
      this.mms.set(id, m);
    }
    return m;
  }

  // ---------------------------------------------------------------- prereg

  /**
   * mm_iommu_new as the library's preregNew exposes it (plus the VFIO alignment
   * and wrap checks): EINVAL for an unaligned ua, 0 pages or a range that wraps
   * (ua + size ≥ 2^64, i.e. vaddr + size < vaddr in 64-bit arithmetic); then
   * account (ENOMEM over the limit), pin every page (EFAULT), reject overlap
   * (EINVAL), link with used = mapped = 1. Any failure changes nothing.
   */
  register(mmId: number, limitPages: bigint | null, ua: bigint, entries: bigint, translate: (ua: bigint) => Translation | undefined): ModelRegion {
    const ps = this.pageSize;
    if (ua % ps !== 0n) throw new ModelError('EINVAL', 'ua not aligned to the system page');
    if (entries === 0n) throw new ModelError('EINVAL', 'size 0');
    if (ua + entries * ps >= U64) throw new ModelError('EINVAL', 'range wraps');
    const mm = this.mm(mmId);
    if (limitPages !== null && mm.lockedPages + entries > limitPages) throw new ModelError('ENOMEM', 'over RLIMIT_MEMLOCK');
    const hpas: bigint[] = [];
    let pageShift = ffs(ua | (entries * ps));
    for (let i = 0n; i < entries; i++) {
      const t = translate(ua + i * ps);
      if (!t) throw new ModelError('EFAULT', 'page not mapped');
      hpas.push(t.hpa);
      pageShift = Math.min(pageShift, t.pageShift);
    }
    const end = ua + entries * ps;
    for (const r of mm.regions) {
      if (ua < r.ua + r.entries * ps && r.ua < end) throw new ModelError('EINVAL', 'overlap');
    }
    const r: ModelRegion = { mm: mmId, ua, entries, used: 1, mapped: 1n, pageShift, hpas };
    mm.regions.unshift(r);
    mm.lockedPages += entries;
    return r;
  }

  /** mm_iommu_get: exact (ua, entries) match → used + 1; undefined otherwise. */
  get(mmId: number, ua: bigint, entries: bigint): ModelRegion | undefined {
    const r = this.mm(mmId).regions.find((x) => x.ua === ua && x.entries === entries);
    if (r) r.used++;
    return r;
  }

  /** Exact lookup without taking a reference. */
  find(mmId: number, ua: bigint, entries: bigint): ModelRegion | undefined {
    return this.mm(mmId).regions.find((x) => x.ua === ua && x.entries === entries);
  }

  /** mm_iommu_put: ENOENT at used 0; used − 1; the last reference frees only if mapped is 1, else EBUSY with used restored. */
  put(mmId: number, r: ModelRegion): void {
    if (r.used === 0) throw new ModelError('ENOENT', 'no users');
    if (r.used > 1) {
      r.used--;
      return;
    }
    if (r.mapped !== 1n) throw new ModelError('EBUSY', 'TCEs still point into the region');
    r.mapped = 0n;
    r.used = 0;
    const mm = this.mm(mmId);
    mm.regions = mm.regions.filter((x) => x !== r);
    mm.lockedPages -= r.entries;
  }

  /** mm_iommu_lookup: the first region of mm containing all of [ua, ua + size). */
  lookup(mmId: number, ua: bigint, size: bigint): ModelRegion | undefined {
    const ps = this.pageSize;
    return this.mm(mmId).regions.find((r) => ua >= r.ua && ua + size <= r.ua + r.entries * ps);
  }

  /** mm_iommu_ua_to_hpa: undefined for EFAULT (outside, or IOMMU page larger than the region can back). */
  uaToHpa(r: ModelRegion, ua: bigint, shift: number): bigint | undefined {
    const ps = this.pageSize;
    if (ua < r.ua) return undefined;
    const idx = (ua - r.ua) / ps;
    if (idx >= r.entries) return undefined;
    if (shift > r.pageShift) return undefined;
    return (r.hpas[Number(idx)]! & ~(ps - 1n)) | (ua & (ps - 1n));
  }

  /** mm_iommu_mapped_inc: fails (ENXIO) when the region is dying. */
  mappedInc(r: ModelRegion): void {
    if (r.mapped === 0n) throw new ModelError('ENXIO', 'region dying');
    r.mapped++;
  }

  /** mm_iommu_mapped_dec: never below 1. */
  mappedDec(r: ModelRegion): void {
    if (r.mapped > 1n) r.mapped--;
  }

  // ---------------------------------------------------------------- tables

  /** A table with the kernel's it_offset and padded it_size (docs/semantics.md §2.2). */
  createTable(id: number, g: { pageShift: number; windowSize: bigint; busOffset: bigint }): ModelTable {
    const e = log2(g.windowSize) - g.pageShift;
    const sizeShift = Math.max(e + 3, this.sysShift) - 3;
    const t: ModelTable = { id, offset: g.busOffset >> BigInt(g.pageShift), size: 1n << BigInt(sizeShift), pageShift: g.pageShift, entries: new Map() };
    this.tables.set(id, t);
    return t;
  }

  table(id: number): ModelTable {
    const t = this.tables.get(id);
    if (!t) throw new Error(`model: no table ${id}`);
    return t;
  }

  tceAt(tableId: number, entry: bigint): bigint {
    return this.table(tableId).entries.get(entry)?.tce ?? 0n;
  }

  uaAt(tableId: number, entry: bigint): bigint {
    return this.table(tableId).entries.get(entry)?.ua ?? 0n;
  }

  private contains(t: ModelTable, entry: bigint, n: bigint): boolean {
    return entry >= t.offset && entry + n <= t.offset + t.size;
  }

  /** Releases the region an old valid entry was mapped from, looked up in `mmId` (tce_iommu_unuse_page_v2). */
  private unuse(t: ModelTable, mmId: number, old: ModelEntry): void {
    const r = this.lookup(mmId, old.ua, 1n << BigInt(t.pageShift));
    if (r && this.uaToHpa(r, old.ua, t.pageShift) !== undefined) this.mappedDec(r);
  }

  /**
   * tce_iommu_build_v2: maps n entries from `entry` to consecutive IOMMU pages
   * from `ua`, regions looked up in `mmId`. Argument checks first (EINVAL:
   * outside the table, ua not IOMMU-page aligned, ua range wrapping); then per
   * page k: region lookup over the whole IOMMU page + translation (EINVAL),
   * mapped_inc (ENXIO), store hpa|perm (+READ with WRITE), old valid entry's
   * region mapped_dec, view = ua. A failure at page k clears [entry, entry+k).
   */
  buildV2(tableId: number, mmId: number, entry: bigint, n: bigint, ua: bigint, perm: number): void {
    const t = this.table(tableId);
    const page = 1n << BigInt(t.pageShift);
    if (!this.contains(t, entry, n)) throw new ModelError('EINVAL', 'outside the table');
    if (ua % page !== 0n) throw new ModelError('EINVAL', 'ua not aligned to the IOMMU page');
    if (ua + n * page > U64) throw new ModelError('EINVAL', 'ua range wraps');
    let bits = BigInt(perm) & PERM;
    if (bits & TCE_WRITE) bits |= TCE_READ;
    for (let k = 0n; k < n; k++) {
      const uak = ua + k * page;
      try {
        const r = this.lookup(mmId, uak, page);
        if (!r) throw new ModelError('EINVAL', `no region for ua 0x${uak.toString(16)}`);
        const hpa = this.uaToHpa(r, uak, t.pageShift);
        if (hpa === undefined) throw new ModelError('EINVAL', `region cannot back ua 0x${uak.toString(16)} with 2^${t.pageShift} pages`);
        this.mappedInc(r);
        const old = t.entries.get(entry + k);
        if (old && (old.tce & PERM) !== 0n) this.unuse(t, mmId, old);
        t.entries.set(entry + k, { tce: hpa | bits, ua: uak });
      } catch (e) {
        this.clearV2(tableId, mmId, entry, k);
        throw e;
      }
    }
  }

  /** tce_iommu_clear (v2): each valid entry becomes 0, its view 0, its region (looked up in mmId) mapped − 1. */
  clearV2(tableId: number, mmId: number, entry: bigint, n: bigint): void {
    const t = this.table(tableId);
    if (!this.contains(t, entry, n)) throw new ModelError('EINVAL', 'outside the table');
    for (const [e, old] of [...t.entries]) {
      if (e < entry || e >= entry + n) continue;
      if ((old.tce & PERM) !== 0n) this.unuse(t, mmId, old);
      t.entries.delete(e);
    }
  }
}
