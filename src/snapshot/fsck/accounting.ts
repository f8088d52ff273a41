// The accounting invariants (docs/semantics.md §3) over a checked graph:
// what checkInvariants() reports for a live host and what a restore refuses.
// Each problem names the field it is about (for the restore) and says what
// was expected and found (for InvariantError). Linear memory has already
// been walked by the structural checkers; nothing here follows a pointer.
import { hex } from '../../core/format.js';
import { TCE_PERM_MASK, TCE_READ, TCE_WRITE } from '../../generated/layout.js';
import type { Graph, MmInfo, RegionInfo } from './graph.js';
import { translate } from './kernel.js';
import { chargeKey } from '../../kernel/mm.js';

/** One broken invariant: the field it concerns and what is wrong. */
export interface Problem {
  field: string;
  message: string;
}

const PERM = BigInt(TCE_PERM_MASK);


/** Every broken accounting invariant of `g`. */
export function accountingProblems(g: Graph): Problem[] {
  const problems: Problem[] = [];
  const add = (field: string, message: string): void => void problems.push({ field, message });

  // The charges each live object makes, by mm: its regions, the container
  // tables and v1 ENABLE charged to it, its VMs' guest tables (§3.1).
  const expected = new Map<MmInfo, Map<string, bigint>>();
  for (const mm of g.mms.values()) expected.set(mm, new Map());
  const charge = (mmId: number | null, key: string, pages: bigint): void => {
    const mm = mmId === null ? undefined : g.mms.get(mmId);
    if (mm && pages > 0n) expected.get(mm)!.set(key, (expected.get(mm)!.get(key) ?? 0n) + pages);
  };
  for (const mm of g.mms.values()) for (const r of mm.regions) if (!r.isDevice) charge(mm.s.id, chargeKey.region(r.ua), r.entries);
  for (const { s: c } of g.containers.values()) {
    c.windows.forEach((w, slot) => w && charge(w.chargedMm, chargeKey.window(c.id, slot), w.tablePages));
    if (c.enabled && c.v2 === false) charge(c.v1ChargedMm, chargeKey.v1(c.id), c.lockedPages);
  }
  for (const vm of g.vms.values()) for (const t of vm.s.tables) charge(vm.s.mm, chargeKey.stt(vm.s.desc, t.liobn), t.chargedPages);

  for (const [mm, want] of expected) {
    // 1. locked_vm equals what the live objects charged to it, and each named charge is one of them.
    let sum = 0n;
    for (const p of want.values()) sum += p;
    if (mm.lockedPages !== sum) add(`${mm.field}.desc`, `mm ${mm.s.id}: locked_vm is ${mm.lockedPages} pages, but its regions, tables and windows account for ${sum}`);
    const have = new Map(mm.s.charges);
    for (const [key, pages] of have) {
      if (want.get(key) !== pages) add(`${mm.field}.charges`, `mm ${mm.s.id}: charge '${key}' of ${pages} pages is ${want.has(key) ? `not the ${want.get(key)} its object charges` : 'made by no live object'}`);
    }
    for (const [key, pages] of want) if (!have.has(key) && !key.startsWith('region@')) add(`${mm.field}.charges`, `mm ${mm.s.id}: '${key}' charges ${pages} pages that mm.charges does not record`);
  }

  // 2. Regions: no overlap, page shift within the alignment, used and mapped ≥ 1, charged, pinned.
  const usedBy = new Map<number, number>();
  for (const { s: c } of g.containers.values()) for (const p of c.prereg) usedBy.set(p.region, (usedBy.get(p.region) ?? 0) + 1);
  // Page numbers (hpa >> PAGE_SHIFT < 2^52) are exact as doubles: number keys, no BigInt per page.
  const sh = BigInt(g.sysShift);
  const v1Pins = new Map<number, number>();
  const pins = new Map<number, number>();
  for (const [page, n] of g.state.hostmem.pins) pins.set(Number(page), n);
  const pointing = new Map<number, bigint>();
  for (const mm of g.mms.values()) {
    const charges = new Map(mm.s.charges);
    const sorted = [...mm.regions].sort((a, b) => (a.ua < b.ua ? -1 : a.ua > b.ua ? 1 : 0));
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!;
      const next = sorted[i + 1];
      if (next && r.ua + r.size > next.ua) add(r.field, `mm ${mm.s.id}: regions at ${hex(r.ua)} and ${hex(next.ua)} overlap`);
      const align = lowestSetBit(r.ua | r.size);
      if (r.pageShift > align) add(r.field, `region ${hex(r.ua)}: page shift ${r.pageShift} exceeds its alignment 2^${align}`);
      if (r.used < 1) add(r.field, `region ${hex(r.ua)} of mm ${mm.s.id} is listed with used = ${r.used}`);
      if (r.mapped < 1n) add(r.field, `region ${hex(r.ua)} of mm ${mm.s.id} is listed with mapped = ${r.mapped}`);
      // Fewer uses than containers listing it would let one container's unregister free it under another
      // (mm_iommu_put); more are references held through the kernel-layer API (preregGet) and only keep it.
      const users = usedBy.get(r.desc) ?? 0;
      if (r.used < users) add(r.field, `region ${hex(r.ua)} (mm ${mm.s.id}): used = ${r.used}, but ${users} container(s) list it`);
      if (!r.isDevice && charges.get(chargeKey.region(r.ua)) !== r.entries) add(`${mm.field}.charges`, `region ${hex(r.ua)} of mm ${mm.s.id}: ${r.entries} pages are not accounted to locked_vm`);
      for (let p = 0; p < r.pages.length; p++) {
        if ((pins.get(r.pages[p]!) ?? 0) < 1) {
          add(r.field, `region ${hex(r.ua)}: page ${p} (hpa ${hex(BigInt(r.pages[p]!) << sh)}) is not pinned`);
          break;
        }
      }
      pointing.set(r.desc, 0n);
    }
  }

  // 3. Every valid v2 entry: its host page belongs to a live region, whose
  // userspace range holds the view's ua, in the mm the table maps for. The
  // region is found from the TCE's host address, not from the view, so an
  // entry whose view names the wrong region (the 2015 hazard) is caught.
  // Regions by page number: their spans sorted (frames are disjoint, so spans never overlap), searched per TCE.
  const spans: { lo: number; hi: number; r: RegionInfo }[] = [];
  for (const mm of g.mms.values()) for (const r of mm.regions) if (!r.isDevice) for (const [lo, hi] of r.spans) spans.push({ lo, hi, r });
  spans.sort((a, b) => a.lo - b.lo);
  const regionOf = (page: number): RegionInfo | undefined => {
    let lo = 0;
    let hi = spans.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = spans[mid]!;
      if (page < s.lo) hi = mid - 1;
      else if (page > s.hi) lo = mid + 1;
      else return s.r;
    }
    return undefined;
  };
  // v1 tables a container maps through pin each page they point at (tce_iommu_build); tables driven
  // through the kernel-layer API directly (IommuTable.xchg) pin nothing.
  const v1Windows = new Set<number>();
  for (const { s: c } of g.containers.values()) if (c.v2 === false) for (const w of c.windows) if (w) v1Windows.add(w.table);
  for (const t of g.tables.values()) {
    const pageSize = 1n << BigInt(t.pageShift);
    const viewMm = t.s.viewMm === null ? undefined : g.mms.get(t.s.viewMm);
    if (t.s.viewMm !== null && !viewMm) add(`${t.field}.viewMm`, `table ${t.id}: no mm ${t.s.viewMm}`);
    for (const [idx, tce] of [...t.tces].sort((a, b) => a[0] - b[0])) {
      const entry = t.offset + BigInt(idx);
      const where = `table ${t.id} entry ${hex(entry)}`;
      if ((tce & PERM) === 0n) {
        add(t.field, `${where}: TCE ${hex(tce)} has an address but no permission`);
        continue;
      }
      if (tce & BigInt(TCE_WRITE) && !(tce & BigInt(TCE_READ))) add(t.field, `${where}: write-only TCE ${hex(tce)} (WRITE implies READ)`);
      const hpa = tce & ~PERM;
      if (!t.s.v2) {
        if (v1Windows.has(t.s.desc)) v1Pins.set(Number(hpa >> sh), (v1Pins.get(Number(hpa >> sh)) ?? 0) + 1);
        continue;
      }
      const region = regionOf(Number(hpa >> sh));
      if (!region) {
        add(t.field, `${where}: TCE ${hex(tce)} points at a host page of no live pre-registered region`);
        continue;
      }
      pointing.set(region.desc, (pointing.get(region.desc) ?? 0n) + 1n);
      const ua = t.uas.get(idx) ?? 0n;
      if (ua === 0n) {
        add(t.field, `${where}: valid TCE ${hex(tce)} with no userspace address in the view`);
        continue;
      }
      const mm = region.mm;
      if (viewMm && mm !== viewMm) add(t.field, `${where}: maps a page of mm ${mm.s.id}'s region at ${hex(region.ua)}, but the table belongs to mm ${viewMm.s.id}`);
      if (ua < region.ua || ua + pageSize > region.ua + region.size) {
        add(t.field, `${where}: view ua ${hex(ua)} lies outside the region at ${hex(region.ua)} that backs its TCE`);
      } else if (translate(mm, ua)?.hpa !== hpa) {
        add(t.field, `${where}: TCE address ${hex(hpa)} is not the host page of view ua ${hex(ua)} in mm ${mm.s.id}`);
      }
    }
  }

  // 4. mapped − 1 equals the entries pointing into each region.
  for (const mm of g.mms.values()) {
    for (const r of mm.regions) {
      const n = pointing.get(r.desc) ?? 0n;
      if (r.mapped - 1n !== n) add(r.field, `region ${hex(r.ua)} (mm ${mm.s.id}): mapped − 1 = ${r.mapped - 1n}, but ${n} TCE(s) point into it`);
    }
  }

  // 5. Pins: at least one per region page and one per valid entry of a v1 container's window
  // (mm_iommu_do_alloc, tce_iommu_build): fewer, and a later unpin would drop a pin another holds.
  // More are pins taken through the kernel-layer API (host.pin) and only keep the page pinned.
  // Every region page was checked above; a page under v1 TCEs needs one pin per TCE, plus the region's.
  for (const [page, v1] of v1Pins) {
    const want = v1 + (regionOf(page) ? 1 : 0);
    const n = pins.get(page) ?? 0;
    if (n < want) add(`${g.root}.hostmem.pins`, `system page ${hex(BigInt(page))}: ${n} pin(s), but regions and v1 TCEs hold ${want}`);
  }

  // 6. Table references (it_kref: iommu_tce_table_get/put) equal their holders: a container window that
  // created it (tce_iommu_create_table's reference; the groups' slots that window programmed take none of
  // their own here, set_window's per-group get folded into it), or its legacy group; one per KVM link
  // (kvm_spapr_tce_attach_iommu_group's get, whatever the link's own count); and the references taken
  // through the kernel-layer API (callerRefs). A link dropped in a grace period holds nothing: its put
  // is done at the unlink, only the free waits (IommuTable.releaseLink). Fewer would free the table under
  // a holder; more is a leak (the table outlives its last holder); a live table with none was never freed.
  const holders = new Map<number, { vfio: number; links: number }>();
  const holderOf = (desc: number): { vfio: number; links: number } => {
    let h = holders.get(desc);
    if (!h) holders.set(desc, (h = { vfio: 0, links: 0 }));
    return h;
  };
  for (const { s: c } of g.containers.values()) for (const w of c.windows) if (w?.chargedMm != null) holderOf(w.table).vfio++;
  for (const { s: gr } of g.groups.values()) if (gr.legacyTable) holderOf(gr.legacyTable).vfio++;
  for (const vm of g.vms.values()) for (const stt of vm.stts) for (const l of stt.stits) holderOf(l.table).links++;
  for (const t of g.tables.values()) {
    const h = holders.get(t.s.desc) ?? { vfio: 0, links: 0 };
    const n = h.vfio + h.links + t.s.callerRefs;
    if (t.refs === 0) add(`${t.field}.desc`, `table ${t.id}: refs = 0, but it is live (the last put frees it)`);
    else if (t.refs !== n) add(`${t.field}.desc`, `table ${t.id}: refs = ${t.refs}, but ${n} hold it (window or legacy group ${h.vfio}, KVM links ${h.links}, kernel-layer API ${t.s.callerRefs})`);
  }
  return problems;
}

function lowestSetBit(x: bigint): number {
  let n = 0;
  while ((x & 1n) === 0n && n < 64) {
    x >>= 1n;
    n++;
  }
  return n;
}
