// The accounting invariants of kernel-behaviour.md §3, checked over the whole
// host. Each broken one is reported with what was expected and found.
import type { Host } from './host.js';
import type { Mm } from './mm.js';
import { regionsOf, lowestSetBit, type Region } from './prereg.js';
import { InvariantError } from './errors.js';
import { TCE_PERM_MASK, TCE_READ, TCE_WRITE } from './generated/layout.js';

const hex = (x: bigint): string => '0x' + x.toString(16);

/** Throws InvariantError listing every broken invariant of `host`. */
export function checkInvariants(host: Host): void {
  const problems: string[] = [];
  const pointing = new Map<number, bigint>();
  const regionsByMm = new Map<Mm, Region[]>();
  for (const mm of host.mms) regionsByMm.set(mm, regionsOf(mm));

  for (const [mm, regions] of regionsByMm) {
    // 1. locked_vm equals the sum of what was charged to it.
    let charged = 0n;
    for (const c of mm.charges.values()) charged += c;
    if (mm.lockedPages !== charged) problems.push(`mm ${mm.id}: locked_vm is ${mm.lockedPages} pages, but its charges add up to ${charged}`);
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
      if (!r.isDevice && mm.charges.get(`region@${r.ua.toString(16)}`) !== r.entries) {
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

  // 4. every valid v2 entry has a view entry inside a live region of its mm, and the right hpa.
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
      if (ua === 0n) {
        problems.push(`${where}: valid TCE ${hex(tce)} with no userspace address in the view`);
        continue;
      }
      const mm = t.viewMm;
      const region = mm && regionsByMm.get(mm)?.find((r) => ua >= r.ua && ua + pageSize <= r.ua + r.size);
      if (!region) {
        problems.push(`${where}: view ua ${hex(ua)} lies in no live region of ${mm ? `mm ${mm.id}` : 'any mm (the table has no owner)'}`);
        continue;
      }
      pointing.set(region.desc, (pointing.get(region.desc) ?? 0n) + 1n);
      const t2 = mm.translate(ua);
      const expect = t2 ? t2.hpa & ~BigInt(TCE_PERM_MASK) : undefined;
      if (expect === undefined || (tce & ~BigInt(TCE_PERM_MASK)) !== expect) {
        problems.push(`${where}: TCE address ${hex(tce & ~3n)} is not the host page of ua ${hex(ua)} (${expect === undefined ? 'unmapped' : hex(expect)})`);
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
