// Checkers of the kernel layer's objects: address spaces with their
// mappings and page frames, pre-registered regions (walked from each mm's
// list in linear memory, as mm_iommu_lookup walks it), tasks, and their
// descriptor tables (files_struct, src/kernel/task.ts).
import { hex } from '../../core/format.js';
import { MmView, RegView } from '../../generated/views.js';
import type { HostState } from '../state.js';
import type { Claims, Mem } from './heap.js';
import type { Graph, MappingInfo, MmInfo, RegionInfo } from './graph.js';
import { refuse } from './read.js';

const U64_END = 1n << 64n;

/** Index of the lowest set bit (__ffs); 64 for 0. */
function lowestSetBit(x: bigint): number {
  if (x === 0n) return 64;
  let n = 0;
  while ((x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/**
 * The mappings of every mm: page aligned, non-empty, not overlapping within
 * their mm, below the mm's next mmap address; their frames aligned, exactly
 * one per page, disjoint across all mappings and below hostmem's next frame
 * (so a later mmap never hands out a frame twice); a backed mapping's bytes a
 * block of its size (guest RAM, read by real mode through memslots).
 */
export function checkMappings(g: Graph, m: Mem, claims: Claims, ramBlocks: Map<number, MmInfo>): void {
  const frames: { lo: bigint; hi: bigint; field: string }[] = [];
  for (const mm of g.mms.values()) {
    const sorted: MappingInfo[] = [];
    mm.s.mappings.forEach((x, i) => {
      const f = `${mm.field}.mappings[${i}]`;
      const page = 1n << BigInt(x.pageShift);
      if (x.pageShift < g.sysShift) refuse(`${f}.pageShift`, `must be at least the system page shift ${g.sysShift}, got ${x.pageShift}`);
      if (x.ua % page !== 0n) refuse(`${f}.ua`, `${hex(x.ua)} is not aligned to its 2^${x.pageShift}-byte pages`);
      if (x.size === 0n || x.size % page !== 0n || x.size > 1n << 46n) refuse(`${f}.size`, `must be a non-zero multiple of 2^${x.pageShift} up to 2^46, got ${hex(x.size)}`);
      // Its page addresses become one BigUint64Array (Mapping.hpas): past 2^27 pages no host could have made it.
      if (x.size / page > 1n << 27n) refuse(`${f}.size`, `${x.size / page} pages of 2^${x.pageShift} bytes are more than one mapping can hold (2^27)`);
      const end = x.ua + x.size;
      if (end > U64_END) refuse(`${f}.size`, 'the mapping wraps around the address space');
      if (end + page > mm.s.nextUa) refuse(`${mm.field}.nextUa`, `${hex(mm.s.nextUa)} is not past mapping ${i} and its guard page (${hex(end + page)})`);
      let n = 0;
      const runStarts: number[] = [];
      x.frames.forEach(([first, count], k) => {
        runStarts.push(n);
        const lo = first - BigInt(count - 1) * page;
        if (first % page !== 0n || lo < 0n || first + page > g.state.hostmem.next) {
          refuse(`${f}.frames[${k}]`, `frames down from ${hex(first)} must be aligned to 2^${x.pageShift} and lie below hostmem.next ${hex(g.state.hostmem.next)}`);
        }
        frames.push({ lo, hi: first + page, field: `${f}.frames[${k}]` });
        n += count;
      });
      if (BigInt(n) !== x.size / page) refuse(`${f}.frames`, `hold ${n} frames for ${x.size / page} pages`);
      if (x.hostOff !== 0) {
        if (x.size > 1n << 31n) refuse(`${f}.hostOff`, 'a backed mapping is at most 2 GiB');
        claims.claim(x.hostOff, Number(x.size), 'backed mapping (guest RAM)', `${f}.hostOff`);
        ramBlocks.set(x.hostOff, mm);
      }
      sorted.push({ s: x, end, runStarts });
    });
    sorted.sort((a, b) => (a.s.ua < b.s.ua ? -1 : a.s.ua > b.s.ua ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.s.ua < sorted[i - 1]!.end) refuse(`${mm.field}.mappings`, `the mappings at ${hex(sorted[i - 1]!.s.ua)} and ${hex(sorted[i]!.s.ua)} overlap`);
    }
    mm.mappings = sorted;
  }
  frames.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  for (let i = 1; i < frames.length; i++) {
    if (frames[i]!.lo < frames[i - 1]!.hi) refuse(frames[i]!.field, `shares host frames with ${frames[i - 1]!.field}`);
  }
}

/** The mapping of `mm` containing `ua`, by binary search over the sorted mappings. */
export function mappingAt(mm: MmInfo, ua: bigint): MappingInfo | undefined {
  let lo = 0;
  let hi = mm.mappings.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = mm.mappings[mid]!;
    if (ua < x.s.ua) hi = mid;
    else if (ua >= x.end) lo = mid + 1;
    else return x;
  }
  return undefined;
}

/** Host address backing `ua` in `mm` (Mm.translate), or undefined: page k of a mapping is in the last run starting at or before k. */
export function translate(mm: MmInfo, ua: bigint): { hpa: bigint; pageShift: number } | undefined {
  const x = mappingAt(mm, ua);
  if (!x) return undefined;
  const off = ua - x.s.ua;
  const sh = BigInt(x.s.pageShift);
  const k = Number(off >> sh);
  let lo = 0;
  let hi = x.runStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (x.runStarts[mid]! <= k) lo = mid;
    else hi = mid - 1;
  }
  const hpa = x.s.frames[lo]![0] - (BigInt(k - x.runStarts[lo]!) << sh);
  return { hpa: hpa + (off & ((1n << sh) - 1n)), pageShift: x.s.pageShift };
}

/** The mms: ids unique, each descriptor an MM block whose id matches and whose padding is zero. */
export function checkMms(g: Graph, m: Mem, claims: Claims, root: string): void {
  g.state.mms.forEach((s, i) => {
    const field = `${root}.mms[${i}]`;
    if (g.mms.has(s.id)) refuse(`${field}.id`, `mm id ${s.id} appears twice`);
    claims.claim(s.desc, MmView.BYTES, 'MM descriptor', `${field}.desc`);
    const d = new MmView(m.mem, s.desc);
    if (d.id !== s.id) refuse(`${field}.desc`, `MM.id at ${hex(s.desc)} is ${d.id}, not the mm's id ${s.id}`);
    m.padding('MM', s.desc, `${field}.desc`);
    g.mms.set(s.id, { s, field, lockedPages: d.lockedPages, regionCount: d.regionCount, mappings: [], regions: [] });
  });
}

/**
 * Checks a region's page array at `hpas` against what `mm` maps at its `count`
 * system pages from `ua` (what mm_iommu_do_alloc pinned and stored), filling
 * `pages` with their page numbers, and returns the page shift registration
 * computes: `shift` (the alignment) lowered to the size of every backing page.
 * Walks mapping by mapping and run by run in doubles, no BigInt per page.
 */
function regionPages(mm: MmInfo, m: Mem, hpas: number, ua: bigint, count: number, sys: number, pages: Float64Array, spans: [number, number][], shift: number, f: string): number {
  const w = m.mem.u32;
  const sh = BigInt(sys);
  const lowMask = 2 ** sys - 1;
  const hiScale = 2 ** (32 - sys);
  for (let i = 0; i < count; ) {
    const at = ua + (BigInt(i) << sh);
    const x = mappingAt(mm, at);
    if (!x) refuse(f, `page ${i} (ua ${hex(at)}) is in no mapping of its mm`);
    shift = Math.min(shift, x.s.pageShift);
    const ratio = 2 ** (x.s.pageShift - sys);
    const first = Number((at - x.s.ua) >> sh);
    const n = Math.min(count - i, Number((x.end - at) >> sh));
    let r = 0;
    for (let j = 0; j < n; j++, i++) {
      const q = first + j;
      const k = Math.floor(q / ratio);
      while (r + 1 < x.runStarts.length && x.runStarts[r + 1]! <= k) r++;
      const want = Number(x.s.frames[r]![0] >> sh) - (k - x.runStarts[r]!) * ratio + (q - k * ratio);
      const lo = w[(hpas >>> 2) + i * 2]!;
      const got = w[(hpas >>> 2) + i * 2 + 1]! * hiScale + Math.floor(lo / 2 ** sys);
      if (got !== want || (lo & lowMask) !== 0) refuse(`${f} (REG.hpas)`, `page ${i} is ${hex(m.u64(hpas + i * 8))}, but the mm maps ${hex(BigInt(want) << sh)} there`);
      pages[i] = got;
      const last = spans[spans.length - 1];
      if (last && got === last[0] - 1) last[0] = got;
      else if (last && got === last[1] + 1) last[1] = got;
      else spans.push([got, got]);
    }
  }
  return shift;
}

/**
 * Each mm's region list (mm_iommu_lookup's walk): every node a region
 * descriptor claimed once (so the list has no cycle and ends), naming its
 * mm; MM.regionCount its length; each region's fields in range, its page
 * array a block of `entries` addresses equal to what the mm's mappings give
 * for its pages, its page shift the one registration computes, no overlap
 * with another region of the mm (mm_iommu_do_alloc's checks).
 */
export function checkRegions(g: Graph, m: Mem, claims: Claims): void {
  const sh = BigInt(g.sysShift);
  for (const mm of g.mms.values()) {
    const listField = `${mm.field}.desc (MM.regions)`;
    let n = 0;
    for (let r = new MmView(m.mem, mm.s.desc).regions; r !== 0; ) {
      const f = `${listField} → region ${n}`;
      claims.claim(r, RegView.BYTES, 'region descriptor', f);
      const d = new RegView(m.mem, r);
      m.padding('REG', r, f);
      if (d.mm !== mm.s.desc) refuse(f, `REG.mm is ${hex(d.mm)}, not its list's mm ${hex(mm.s.desc)}`);
      const ua = d.ua;
      const entries = d.entries;
      if (ua & ((1n << sh) - 1n)) refuse(f, `REG.ua ${hex(ua)} is not aligned to the system page`);
      if (entries === 0n || entries > 0xffff_ffffn) refuse(f, `REG.entries must be in [1, 2^32), got ${entries}`);
      const size = entries << sh;
      if (ua + size >= U64_END) refuse(f, 'the region wraps around the address space');
      if (d.flags !== 0 || d.devHpa !== 0n) refuse(f, `REG.flags ${d.flags} / devHpa ${hex(d.devHpa)}: device regions are not made by this library`);
      if (d.id === 0) refuse(f, 'REG.id is 0 (a dead region left in the list)');
      if (d.used === 0) refuse(f, 'REG.used is 0: a listed region has at least one user');
      if (d.mapped === 0n) refuse(f, 'REG.mapped is 0: the region is dying, its TCEs could never be counted again');
      claims.claim(d.hpas, Number(entries) * 8, 'region page array', `${f} (REG.hpas)`);
      const count = Number(entries);
      const pages = new Float64Array(count);
      const spans: [number, number][] = [];
      const pageShift = regionPages(mm, m, d.hpas, ua, count, g.sysShift, pages, spans, lowestSetBit(ua | size), f);
      if (!m.zero(d.hpas + count * 8, d.hpas + ((count * 8 + 63) & ~63))) refuse(`${f} (REG.hpas)`, 'bytes past the page array are not zero');
      if (d.pageShift !== pageShift) refuse(f, `REG.pageShift is ${d.pageShift}, but its alignment and pages allow ${pageShift} (mm_iommu_do_alloc)`);
      const info: RegionInfo = { desc: r, field: f, mm, id: d.id, ua, entries, size, pageShift: d.pageShift, used: d.used, mapped: d.mapped, isDevice: false, pages, spans };
      mm.regions.push(info);
      g.regions.set(r, info);
      n++;
      r = d.next;
    }
    if (mm.regionCount !== n) refuse(`${mm.field}.desc`, `MM.regionCount is ${mm.regionCount}, but its list holds ${n} region(s)`);
    const sorted = [...mm.regions].sort((a, b) => (a.ua < b.ua ? -1 : a.ua > b.ua ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.ua < sorted[i - 1]!.ua + sorted[i - 1]!.size) refuse(sorted[i]!.field, `overlaps the region at ${hex(sorted[i - 1]!.ua)} of the same mm`);
    }
  }
}

/**
 * Tasks: thread ids unique and issued (≤ counters.lastTid), each on an mm
 * that exists; a pid is its leader's tid, and threads of one pid share its mm.
 */
export function checkProcesses(g: Graph, state: HostState, root: string): void {
  state.processes.forEach((p, i) => {
    const f = `${root}.processes[${i}]`;
    if (p.tid < 1000 || p.tid > state.counters.lastTid) refuse(`${f}.tid`, `${p.tid} was never issued (tids run from 1000 to counters.lastTid ${state.counters.lastTid})`);
    if (g.processes.has(p.tid)) refuse(`${f}.tid`, `tid ${p.tid} appears twice`);
    if (!g.mms.has(p.mm)) refuse(`${f}.mm`, `no mm ${p.mm}`);
    g.processes.set(p.tid, { s: p, field: f });
  });
  for (const { s: p, field } of g.processes.values()) {
    const leader = g.processes.get(p.pid);
    if (!leader || leader.s.pid !== p.pid) refuse(`${field}.pid`, `pid ${p.pid} is no task's own tid (a pid is its leader's tid)`);
    if (leader.s.mm !== p.mm) refuse(`${field}.mm`, `a thread of pid ${p.pid} must share its leader's mm ${leader.s.mm}, got ${p.mm}`);
  }
}

/**
 * Descriptor tables, as thread(), clone() and fork() make them
 * (src/host/process.ts): every task names a table of the list; the threads
 * of a pid share one (CLONE_FILES comes with CLONE_THREAD), and the tasks
 * sharing a table share an mm (clone({vm: true}) is CLONE_VM | CLONE_FILES;
 * nothing shares a table without the mm). A table fork() copied (dup_fd)
 * comes after the table it was copied from, so the ancestry has no cycle
 * and the restore builds it in list order; its tasks are on another mm than
 * that table's (fork copies the address space too). Every table is held by
 * a task or was copied into another (tasks never exit here): the list holds
 * nothing else.
 */
export function checkFdTables(g: Graph, state: HostState, root: string): void {
  const n = state.fdTables.length;
  const holders = new Map<number, { tid: number; mm: number }>();
  const leaders = new Map<number, number>();
  for (const { s: p, field } of g.processes.values()) {
    if (p.files >= n) refuse(`${field}.files`, `descriptor table ${p.files} is not in fdTables (${n} table(s))`);
    const same = leaders.get(p.pid);
    if (same !== undefined && same !== p.files) refuse(`${field}.files`, `the threads of pid ${p.pid} share one descriptor table (${same}), got ${p.files}`);
    leaders.set(p.pid, p.files);
    const h = holders.get(p.files);
    if (h && h.mm !== p.mm) refuse(`${field}.files`, `descriptor table ${p.files} is also tid ${h.tid}'s, on mm ${h.mm}: tasks sharing a table share their mm (threads, clone({vm: true})), got mm ${p.mm}`);
    if (!h) holders.set(p.files, { tid: p.tid, mm: p.mm });
  }
  const copied = new Set<number>();
  state.fdTables.forEach((parent, i) => {
    const f = `${root}.fdTables[${i}]`;
    if (parent === null) return;
    if (parent >= i) refuse(f, `table ${i} was copied from table ${parent}, which does not come before it (fork() copies an existing table)`);
    copied.add(parent);
    const mine = holders.get(i);
    const theirs = holders.get(parent);
    if (mine && theirs && mine.mm === theirs.mm) refuse(f, `table ${i} (tid ${mine.tid}) and table ${parent} it was copied from (tid ${theirs.tid}) are on the same mm ${mine.mm}: fork() gives the child a copy of the address space`);
  });
  for (let i = 0; i < n; i++) {
    if (!holders.has(i) && !copied.has(i)) refuse(`${root}.fdTables[${i}]`, `descriptor table ${i} is held by no task and no table was copied from it`);
  }
}
