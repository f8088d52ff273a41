// E22 (docs/semantics.md §7 E22, §2.1 pageshift/ua_to_hpa): a 16 MiB IOMMU page over a region of 64 KiB pages is EINVAL; over a 16 MiB-aligned region of 16 MiB huge pages it maps.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';
import { expectTce } from '../model/harness.js';

const M16 = 1n << 24n;

function table(host: Host) {
  return IommuTable.create(host, { pageShift: 24, windowSize: 1n << 34n, levels: 1, busOffset: 0n }, true);
}

describe('E22: 16 MiB IOMMU pages', () => {
  it('region of normal 64 KiB pages: page shift 16, build of a 16 MiB page → EINVAL, nothing mapped', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(3n * M16);
    const r = preregNew(p, ram.ua, (3n * M16) >> 16n);
    expect(r.pageShift).toBe(16);
    const t = table(host);
    t.viewMm = p.mm;
    const ua = (ram.ua + M16 - 1n) & ~(M16 - 1n); // a 16 MiB-aligned page inside the region
    expectTce(() => t.buildV2(p.mm, 0n, 1n, ua, TCE.READ), 'EINVAL');
    expect(r.mapped).toBe(1n);
    expect(t.get(0n)).toBe(0n);
    host.checkInvariants();
  });

  it('region over an mmap with hugePageShift 24: page shift 24, build OK, TCE = the huge page host address | perm', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(2n * M16, { hugePageShift: 24, backed: false });
    const r = preregNew(p, ram.ua, (2n * M16) >> 16n);
    expect(r.pageShift).toBe(24);
    const t = table(host);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 5n, 2n, ram.ua, TCE.READ);
    expect(r.mapped).toBe(3n);
    const hpa = p.mm.translate(ram.ua + M16)!.hpa;
    expect(hpa & (M16 - 1n)).toBe(0n);
    expect(t.get(6n)).toBe(hpa | BigInt(TCE.READ));
    expect(t.getUa(6n)).toBe(ram.ua + M16);
    host.checkInvariants();
  });

  it('huge pages but a registration not aligned to 16 MiB: page shift limited by the alignment → EINVAL', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(2n * M16, { hugePageShift: 24, backed: false });
    const r = preregNew(p, ram.ua + 0x10000n, (2n * M16 - 0x10000n) >> 16n);
    expect(r.pageShift).toBe(16);
    const t = table(host);
    t.viewMm = p.mm;
    expectTce(() => t.buildV2(p.mm, 0n, 1n, ram.ua + M16, TCE.READ), 'EINVAL');
    expect(r.mapped).toBe(1n);
  });

  it('64 KiB IOMMU pages over the huge-page region still work', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(M16, { hugePageShift: 24, backed: false });
    const r = preregNew(p, ram.ua, M16 >> 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 3n, ram.ua + (5n << 16n), TCE.WRITE);
    expect(r.mapped).toBe(4n);
    expect(t.get(2n)).toBe(p.mm.translate(ram.ua + (7n << 16n))!.hpa | 3n);
    host.checkInvariants();
  });
});
