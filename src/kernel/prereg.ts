// Memory pre-registration (arch/powerpc/mm/book3s64/iommu_api.c): regions of
// an mm, pinned and accounted, each counting the containers that use it
// (`used`) and the TCEs that point into it (`mapped`, 1 + live entries).
// Regions live in linear memory so real mode can look them up; creating and
// dropping them is virtual mode and happens here.
import type { Host } from './host.js';
import { Mm } from './mm.js';
import { Process } from './process.js';
import { fail } from './errors.js';
import * as v from './validate.js';
import {
  REG_BYTES, REG_NEXT, REG_MM, REG_UA, REG_ENTRIES, REG_MAPPED, REG_PAGE_SHIFT,
  REG_USED, REG_HPAS, REG_FLAGS, REG_ID, MM_REGIONS, MM_REGION_COUNT, REGION_F_DEV,
} from './generated/layout.js';

/** A handle on a pre-registered region descriptor in linear memory. */
export class Region {
  readonly host: Host;
  /** Offset of the descriptor. */
  readonly desc: number;
  /** The region's id; a descriptor reused by a later region has another. */
  readonly id: number;
  constructor(host: Host, desc: number) {
    this.host = host;
    this.desc = desc;
    this.id = host.mem.getU32(desc + REG_ID);
  }
  /** Whether the region still exists (a handle outlives the region it named). */
  get alive(): boolean { return this.id !== 0 && this.host.mem.getU32(this.desc + REG_ID) === this.id; }
  get ua(): bigint { return this.host.mem.getU64(this.desc + REG_UA); }
  /** Size in system pages. */
  get entries(): bigint { return this.host.mem.getU64(this.desc + REG_ENTRIES); }
  get size(): bigint { return this.entries << BigInt(this.host.pageShift); }
  get used(): number { return this.host.mem.getU32(this.desc + REG_USED); }
  /** 1 + the number of TCEs pointing into the region; 0 while it is being freed. */
  get mapped(): bigint { return this.host.mem.getU64(this.desc + REG_MAPPED); }
  /** Largest IOMMU page shift the region can back. */
  get pageShift(): number { return this.host.mem.getU32(this.desc + REG_PAGE_SHIFT); }
  get isDevice(): boolean { return (this.host.mem.getU32(this.desc + REG_FLAGS) & REGION_F_DEV) !== 0; }
  /** Host address of system page `i`. */
  hpa(i: number): bigint { return this.host.mem.getU64(this.host.mem.getU32(this.desc + REG_HPAS) + i * 8); }
}

/** The regions of `mm`, in list order. */
export function regionsOf(mm: Mm): Region[] {
  v.instance('mm', mm, Mm, 'an Mm');
  const out: Region[] = [];
  for (let r = mm.host.mem.getU32(mm.desc + MM_REGIONS); r !== 0; r = mm.host.mem.getU32(r + REG_NEXT)) {
    out.push(new Region(mm.host, r));
  }
  return out;
}

/** The region registered at exactly (ua, entries), without taking a reference. */
export function findExact(mm: Mm, ua: bigint, entries: bigint): Region | undefined {
  return regionsOf(mm).find((r) => r.ua === ua && r.entries === entries);
}

/** mm_iommu_get: the region at exactly (ua, entries) with used + 1, or undefined. */
export function preregGet(mm: Mm, ua: bigint, entries: bigint): Region | undefined {
  v.instance('mm', mm, Mm, 'an Mm');
  v.u64('ua', ua);
  v.u64('entries', entries);
  const r = findExact(mm, ua, entries);
  if (r) mm.host.mem.setU32(r.desc + REG_USED, r.used + 1);
  return r;
}

/**
 * mm_iommu_new: accounts `entries` pages to the caller's mm against its
 * RLIMIT_MEMLOCK (ENOMEM), pins every system page (EFAULT if one is not
 * mapped; pins taken so far are released), rejects an overlap with any region
 * of the mm (EINVAL), computes the page shift and links the region with
 * used = 1, mapped = 1. Any failure leaves nothing changed.
 */
export function preregNew(proc: Process, ua: bigint, entries: bigint): Region {
  v.instance('proc', proc, Process, 'a Process');
  const { host, mm } = proc;
  v.u64('ua', ua);
  v.u64('entries', entries);
  const sh = BigInt(host.pageShift);
  if (ua & ((1n << sh) - 1n)) fail('EINVAL', `registerMemory: ua 0x${ua.toString(16)} is not aligned to the 2^${sh} system page`);
  if (entries === 0n) fail('EINVAL', 'registerMemory: size must not be 0');
  if (ua + (entries << sh) >= 1n << 64n) fail('EINVAL', 'registerMemory: the range wraps around the address space');
  if (entries > 0xffff_ffffn) fail('ENOMEM', `registerMemory: ${entries} pages is more than a region can hold`);
  const n = Number(entries);
  mm.account(`region@${ua.toString(16)}`, entries, proc.memlockLimitPages);
  const hpas: bigint[] = [];
  let pageShift = lowestSetBit(ua | (entries << sh));
  let ok = false;
  try {
    for (let i = 0; i < n; i++) {
      const t = mm.translate(ua + (BigInt(i) << sh));
      if (!t) fail('EFAULT', `registerMemory: address 0x${(ua + (BigInt(i) << sh)).toString(16)} is not mapped`);
      host.pin(t.hpa);
      hpas.push(t.hpa);
      // Lower the candidate to the size of every page that backs the range;
      // a normal page lowers it to PAGE_SHIFT (the kernel's ≤4.20 rule; see README).
      pageShift = Math.min(pageShift, t.pageShift);
    }
    const end = ua + (entries << sh);
    for (const r of regionsOf(mm)) {
      if (ua < r.ua + r.size && r.ua < end) fail('EINVAL', `registerMemory: [0x${ua.toString(16)}, 0x${end.toString(16)}) overlaps the region at 0x${r.ua.toString(16)}`);
    }
    const desc = host.alloc(REG_BYTES, 'region descriptor');
    let hpaArr = 0;
    try {
      hpaArr = host.alloc(n * 8, 'region page array');
    } catch (e) {
      host.free(desc, REG_BYTES);
      throw e;
    }
    const mem = host.mem;
    for (let i = 0; i < n; i++) mem.setU64(hpaArr + i * 8, hpas[i]!);
    mem.setU32(desc + REG_MM, mm.desc);
    mem.setU64(desc + REG_UA, ua);
    mem.setU64(desc + REG_ENTRIES, entries);
    mem.setU64(desc + REG_MAPPED, 1n);
    mem.setU32(desc + REG_PAGE_SHIFT, pageShift);
    mem.setU32(desc + REG_USED, 1);
    mem.setU32(desc + REG_HPAS, hpaArr);
    mem.setU32(desc + REG_ID, host.nextId());
    // Link at the head: real-mode walkers see either the old or the new list.
    mem.setU32(desc + REG_NEXT, mem.getU32(mm.desc + MM_REGIONS));
    mem.setU32(mm.desc + MM_REGIONS, desc);
    mem.setU32(mm.desc + MM_REGION_COUNT, mem.getU32(mm.desc + MM_REGION_COUNT) + 1);
    ok = true;
    host.lockBytes(mm, ua, entries << sh, true);
    return new Region(host, desc);
  } finally {
    if (!ok) {
      for (const h of hpas) host.unpin(h);
      mm.unaccount(`region@${ua.toString(16)}`, entries);
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
  v.instance('region', region, Region, 'a Region');
  const { host } = mm;
  const mem = host.mem;
  if (region.host !== host) throw new TypeError('region belongs to another host');
  // A stale handle, or a region of another mm, names no region of this mm (mm_iommu_put's list).
  if (!region.alive || mem.getU32(region.desc + REG_MM) !== mm.desc) fail('ENOENT', `no region ${region.id} in mm ${mm.id}`);
  const used = region.used;
  if (used === 0) fail('ENOENT', 'region has no users');
  if (used > 1) {
    mem.setU32(region.desc + REG_USED, used - 1);
    return;
  }
  if (Atomics.compareExchange(mem.u64, (region.desc + REG_MAPPED) >>> 3, 1n, 0n) !== 1n) {
    fail('EBUSY', `region at 0x${region.ua.toString(16)} still has ${region.mapped - 1n} TCE(s) pointing into it`);
  }
  mem.setU32(region.desc + REG_USED, 0);
  mem.setU32(region.desc + REG_ID, 0);
  unlink(mm, region.desc);
  const n = Number(region.entries);
  for (let i = 0; i < n; i++) host.unpin(region.hpa(i));
  host.lockBytes(mm, region.ua, region.size, false);
  mm.unaccount(`region@${region.ua.toString(16)}`, region.entries);
  host.free(mem.getU32(region.desc + REG_HPAS), n * 8);
  host.free(region.desc, REG_BYTES);
}

function unlink(mm: Mm, desc: number): void {
  const mem = mm.host.mem;
  let prev = mm.desc + MM_REGIONS;
  for (let r = mem.getU32(prev); r !== 0; prev = r + REG_NEXT, r = mem.getU32(prev)) {
    if (r === desc) {
      mem.setU32(prev, mem.getU32(r + REG_NEXT));
      mem.setU32(mm.desc + MM_REGION_COUNT, mem.getU32(mm.desc + MM_REGION_COUNT) - 1);
      return;
    }
  }
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
