// Memory pre-registration (arch/powerpc/mm/book3s64/iommu_api.c): regions of
// an mm, pinned and accounted, each counting the containers that use it
// (`used`) and the TCEs that point into it (`mapped`, 1 + live entries).
// Regions live in linear memory so real mode can look them up; creating and
// dropping them is virtual mode and happens here.
import type { HostContext } from '../core/context.js';
import { Mm, chargeKey } from './mm.js';
import { Task } from './task.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { loadNative } from '../engine/native.js';
import { MmView, RegView } from '../generated/views.js';
import { REGION_F_DEV } from '../generated/layout.js';

/** A handle on a pre-registered region descriptor in linear memory. */
export class Region {
  readonly host: HostContext;
  /** Offset of the descriptor. */
  readonly desc: number;
  /** The region's id; a descriptor reused by a later region has another. */
  readonly id: number;
  private readonly d: RegView;
  constructor(host: HostContext, desc: number) {
    this.host = host;
    this.desc = desc;
    this.d = new RegView(host.mem, desc);
    this.id = this.d.id;
  }
  /** Whether the region still exists (a handle outlives the region it named). */
  get alive(): boolean { return this.id !== 0 && this.d.id === this.id; }
  get ua(): bigint { return this.d.ua; }
  /** Size in system pages. */
  get entries(): bigint { return this.d.entries; }
  get size(): bigint { return this.entries << BigInt(this.host.pageShift); }
  get used(): number { return this.d.used; }
  /** 1 + the number of TCEs pointing into the region; 0 while it is being freed. */
  get mapped(): bigint { return this.d.mapped; }
  /** Largest IOMMU page shift the region can back. */
  get pageShift(): number { return this.d.pageShift; }
  get isDevice(): boolean { return (this.d.flags & REGION_F_DEV) !== 0; }
  /** Host address of system page `i`. */
  hpa(i: number): bigint { return this.host.mem.getU64At(this.d.hpas, i); }
  /** @internal the descriptor's view. */
  get view(): RegView { return this.d; }
}


/** The regions of `mm`, in list order. */
export function regionsOf(mm: Mm): Region[] {
  v.instance('mm', mm, Mm, 'an Mm');
  const out: Region[] = [];
  const mem = mm.host.mem;
  for (let r = new MmView(mem, mm.desc).regions; r !== 0; r = new RegView(mem, r).next) out.push(new Region(mm.host, r));
  return out;
}

/** The region registered at exactly (ua, entries), without taking a reference. */
export function findExact(mm: Mm, ua: bigint, entries: bigint): Region | undefined {
  return regionsOf(mm).find((r) => r.ua === ua && r.entries === entries);
}

/** mm_iommu_get: the region at exactly (ua, entries) with used + 1, or undefined. */
export function preregGet(mm: Mm, ua: bigint | number, entries: bigint | number): Region | undefined {
  v.instance('mm', mm, Mm, 'an Mm');
  ua = v.u64('ua', ua);
  entries = v.u64('entries', entries);
  const r = findExact(mm, ua, entries);
  if (r) r.view.used = r.used + 1;
  return r;
}

/**
 * mm_iommu_new: accounts `entries` pages to the caller's mm against its
 * RLIMIT_MEMLOCK (ENOMEM), pins every system page (EFAULT if one is not
 * mapped; pins taken so far are released), rejects an overlap with any region
 * of the mm (EINVAL), computes the page shift and links the region with
 * used = 1, mapped = 1. Any failure leaves nothing changed.
 */
export function preregNew(proc: Task, ua: bigint | number, entries: bigint | number): Region {
  v.instance('proc', proc, Task, 'a Process');
  const { host, mm } = proc;
  ua = v.u64('ua', ua);
  entries = v.u64('entries', entries);
  const sh = BigInt(host.pageShift);
  if (ua & ((1n << sh) - 1n)) fail('EINVAL', `registerMemory: ua ${hex(ua)} is not aligned to the 2^${sh} system page`);
  if (entries === 0n) fail('EINVAL', 'registerMemory: size must not be 0');
  if (ua + (entries << sh) >= 1n << 64n) fail('EINVAL', 'registerMemory: the range wraps around the address space');
  if (entries > 0xffff_ffffn) fail('ENOMEM', `registerMemory: ${entries} pages is more than a region can hold`);
  const n = Number(entries);
  mm.account(chargeKey.region(ua), entries, proc.memlockLimitPages);
  const hpas: bigint[] = [];
  let pageShift = lowestSetBit(ua | (entries << sh));
  let ok = false;
  try {
    for (let i = 0; i < n; i++) {
      const t = mm.translate(ua + (BigInt(i) << sh));
      if (!t) fail('EFAULT', `registerMemory: address ${hex(ua + (BigInt(i) << sh))} is not mapped`);
      host.pin(t.hpa);
      hpas.push(t.hpa);
      // Lower the candidate to the size of every page that backs the range;
      // a normal page lowers it to PAGE_SHIFT (the kernel's ≤4.20 rule; see README).
      pageShift = Math.min(pageShift, t.pageShift);
    }
    const end = ua + (entries << sh);
    for (const r of regionsOf(mm)) {
      if (ua < r.ua + r.size && r.ua < end) fail('EINVAL', `registerMemory: [${hex(ua)}, ${hex(end)}) overlaps the region at ${hex(r.ua)}`);
    }
    const desc = host.alloc(RegView.BYTES, 'region descriptor');
    let hpaArr = 0;
    try {
      hpaArr = host.alloc(n * 8, 'region page array');
    } catch (e) {
      host.free(desc, RegView.BYTES);
      throw e;
    }
    const mem = host.mem;
    for (let i = 0; i < n; i++) mem.setU64At(hpaArr, i, hpas[i]!);
    const d = new RegView(mem, desc);
    const m = new MmView(mem, mm.desc);
    d.mm = mm.desc;
    d.ua = ua;
    d.entries = entries;
    d.mapped = 1n;
    d.pageShift = pageShift;
    d.used = 1;
    d.hpas = hpaArr;
    d.id = host.nextId();
    // Link at the head: real-mode walkers see either the old or the new list.
    d.next = m.regions;
    m.regions = desc;
    m.regionCount = m.regionCount + 1;
    ok = true;
    lockBytes(host, mm, ua, entries << sh, true);
    return new Region(host, desc);
  } finally {
    if (!ok) {
      for (const h of hpas) host.unpin(h);
      mm.unaccount(chargeKey.region(ua), entries);
    }
  }
}

/**
 * mm_iommu_put: drops one `used` reference (ENOENT if there is none); the
 * last one frees the region only if no TCE points into it (mapped 1 → 0),
 * else the reference is restored and EBUSY returned.
 */
export function preregPut(mm: Mm, region: Region): void {
  v.instance('mm', mm, Mm, 'an Mm');
  v.owned('region', region, Region, 'a Region', mm.host);
  const { host } = mm;
  const d = region.view;
  // A stale handle, or a region of another mm, names no region of this mm (mm_iommu_put's list).
  if (!region.alive || d.mm !== mm.desc) fail('ENOENT', `no region ${region.id} in mm ${mm.id}`);
  const used = region.used;
  if (used === 0) fail('ENOENT', 'region has no users');
  if (used > 1) {
    d.used = used - 1;
    return;
  }
  if (d.casMapped(1n, 0n) !== 1n) {
    fail('EBUSY', `region at ${hex(region.ua)} still has ${region.mapped - 1n} TCE(s) pointing into it`);
  }
  d.used = 0;
  d.id = 0;
  unlink(mm, region.desc);
  const n = Number(region.entries);
  for (let i = 0; i < n; i++) host.unpin(region.hpa(i));
  lockBytes(host, mm, region.ua, region.size, false);
  mm.unaccount(chargeKey.region(region.ua), region.entries);
  host.free(d.hpas, n * 8);
  host.free(region.desc, RegView.BYTES);
}

function unlink(mm: Mm, desc: number): void {
  const mem = mm.host.mem;
  const m = new MmView(mem, mm.desc);
  let prev: RegView | undefined;
  for (let r = m.regions; r !== 0; ) {
    const d = new RegView(mem, r);
    if (r === desc) {
      if (prev) prev.next = d.next;
      else m.regions = d.next;
      m.regionCount = m.regionCount - 1;
      return;
    }
    prev = d;
    r = d.next;
  }
}

/**
 * With pin: 'host', mlock()s the bytes behind [ua, ua + size) of `mm`; where
 * that is impossible (no bytes, or the kernel refuses) the simulated pin
 * stands alone and the reason is noted in stats().fallbacks.
 */
function lockBytes(host: HostContext, mm: Mm, ua: bigint, size: bigint, lock: boolean): void {
  if (host.pinMode !== 'host') return;
  const m = mm.findMapping(ua);
  const what = `${lock ? 'mlock' : 'munlock'} of ${size} bytes at ${hex(ua)}`;
  if (!m?.bytes || ua + size > m.ua + m.size) {
    host.noteFallback(`${what}: the range is not backed by bytes (mmap backed: false); pinned in simulation only`);
    return;
  }
  const off = Number(ua - m.ua);
  const view = m.bytes.subarray(off, off + Number(size));
  const addon = loadNative()!;
  const rc = lock ? addon.mlockRange(view) : addon.munlockRange(view);
  if (rc !== 0) host.noteFallback(`${what}: the kernel refused (errno ${rc}); pinned in simulation only`);
}

/** Index of the lowest set bit (__ffs); 64 for 0. */
export function lowestSetBit(x: bigint): number {
  let n = 0;
  while ((x & 1n) === 0n && n < 64) {
    x >>= 1n;
    n++;
  }
  return n;
}
