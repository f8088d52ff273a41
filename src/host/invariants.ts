// The accounting invariants of docs/semantics.md §3, checked over the whole
// host. Each broken one is reported with what was expected and found.
import type { HostContext } from '../core/context.js';
import type { Mm } from '../kernel/mm.js';
import type { IommuTable } from '../kernel/table.js';
import type { Container } from '../vfio/container.js';
import type { KvmVm } from '../kvm/vm.js';
import { regionsOf, regionCharge, lowestSetBit, type Region } from '../kernel/prereg.js';
import { InvariantError } from '../core/errors.js';
import { hex } from '../core/format.js';
import { TCE_PERM_MASK, TCE_READ, TCE_WRITE } from '../generated/layout.js';

/** What the invariants are checked over: a host's context and its live objects (Host is one). */
export interface InvariantSubject extends HostContext {
  readonly mms: Iterable<Mm>;
  readonly tables: Iterable<IommuTable>;
  readonly containers: Iterable<Container>;
  readonly vms: Iterable<KvmVm>;
}

/** Throws InvariantError listing every broken invariant of `host`. */
export function checkInvariants(host: InvariantSubject): void {
  const problems: string[] = [];
  const pointing = new Map<number, bigint>();
  const regionsByMm = new Map<Mm, Region[]>();
  for (const mm of host.mms) regionsByMm.set(mm, regionsOf(mm));

  for (const [mm, regions] of regionsByMm) {
    // 1. locked_vm equals what the live objects charged to it (§3.1): its
    // regions, the container tables and v1 windows charged to it, its VMs' guest tables.
    let expected = 0n;
    for (const r of regions) if (!r.isDevice) expected += r.entries;
    for (const c of host.containers) for (const ch of c.charges()) if (ch.mm === mm) expected += ch.pages;
    for (const vm of host.vms) if (vm.mm === mm) for (const t of vm.tables.values()) expected += t.chargedPages;
    if (mm.lockedPages !== expected) problems.push(`mm ${mm.id}: locked_vm is ${mm.lockedPages} pages, but its regions, tables and windows account for ${expected}`);
    const sorted = [...regions].sort((a, b) => (a.ua < b.ua ? -1 : a.ua > b.ua ? 1 : 0));
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!;
      // 3. no overlap; page shift within the natural alignment.
      const next = sorted[i + 1];
      if (next && r.ua + r.size > next.ua) problems.push(`mm ${mm.id}: regions at ${hex(r.ua)} and ${hex(next.ua)} overlap`);
      const align = lowestSetBit(r.ua | r.size);
      if (r.pageShift > align) problems.push(`region ${hex(r.ua)}: page shift ${r.pageShift} exceeds its alignment 2^${align}`);
      // 2. alive ⇔ listed ⇔ used ≥ 1; mapped ≥ 1 while alive.
      if (r.used < 1) problems.push(`region ${hex(r.ua)} of mm ${mm.id} is listed with used = ${r.used}`);
      if (r.mapped < 1n) problems.push(`region ${hex(r.ua)} of mm ${mm.id} is listed with mapped = ${r.mapped}`);
      if (!r.isDevice && mm.charges.get(regionCharge(r.ua)) !== r.entries) {
        problems.push(`region ${hex(r.ua)} of mm ${mm.id}: ${r.entries} pages are not accounted to locked_vm`);
      }
      for (let p = 0; p < Number(r.entries); p++) {
        if (host.hostmem.pinCount(r.hpa(p)) < 1) {
          problems.push(`region ${hex(r.ua)}: page ${p} (hpa ${hex(r.hpa(p))}) is not pinned`);
          break;
        }
      }
      pointing.set(r.desc, 0n);
    }
  }

  // 4. every valid v2 entry: its host page belongs to a live region, whose
  // userspace range holds the view's ua, in the mm the table maps for. The
  // region is found from the TCE's host address, not from the view, so an
  // entry whose view names the wrong region (the 2015 hazard) is caught.
  const bySysPage = new Map<bigint, { region: Region; mm: Mm }>();
  const sysShift = BigInt(host.pageShift);
  for (const [mm, regions] of regionsByMm) {
    for (const r of regions) {
      if (r.isDevice) continue;
      for (let p = 0; p < Number(r.entries); p++) bySysPage.set(r.hpa(p) >> sysShift, { region: r, mm });
    }
  }
  for (const t of host.tables) {
    if (!t.v2) continue;
    const pageSize = 1n << BigInt(t.pageShift);
    for (const [entry, tce, ua] of t.entries()) {
      const where = `table ${t.id} entry ${hex(entry)}`;
      if ((tce & BigInt(TCE_PERM_MASK)) === 0n) {
        problems.push(`${where}: TCE ${hex(tce)} has an address but no permission`);
        continue;
      }
      if (tce & BigInt(TCE_WRITE) && !(tce & BigInt(TCE_READ))) problems.push(`${where}: write-only TCE ${hex(tce)} (WRITE implies READ)`);
      const hpa = tce & ~BigInt(TCE_PERM_MASK);
      const owner = bySysPage.get(hpa >> sysShift);
      if (!owner) {
        problems.push(`${where}: TCE ${hex(tce)} points at a host page of no live pre-registered region`);
        continue;
      }
      pointing.set(owner.region.desc, (pointing.get(owner.region.desc) ?? 0n) + 1n);
      if (ua === 0n) {
        problems.push(`${where}: valid TCE ${hex(tce)} with no userspace address in the view`);
        continue;
      }
      const { region, mm } = owner;
      if (t.viewMm && mm !== t.viewMm) problems.push(`${where}: maps a page of mm ${mm.id}'s region at ${hex(region.ua)}, but the table belongs to mm ${t.viewMm.id}`);
      if (ua < region.ua || ua + pageSize > region.ua + region.size) {
        problems.push(`${where}: view ua ${hex(ua)} lies outside the region at ${hex(region.ua)} that backs its TCE`);
      } else if (mm.translate(ua)?.hpa !== hpa) {
        problems.push(`${where}: TCE address ${hex(hpa)} is not the host page of view ua ${hex(ua)} in mm ${mm.id}`);
      }
    }
  }

  // 2. mapped − 1 equals the entries pointing into each region.
  for (const [mm, regions] of regionsByMm) {
    for (const r of regions) {
      const n = pointing.get(r.desc) ?? 0n;
      if (r.mapped - 1n !== n) problems.push(`region ${hex(r.ua)} (mm ${mm.id}): mapped − 1 = ${r.mapped - 1n}, but ${n} TCE(s) point into it`);
    }
  }

  if (problems.length) throw new InvariantError(problems);
}
