// Table geometry (docs/semantics.md §2.2 get_table_size / create_table, §6, §7 E29–E30): the kernel's size formula, its EINVAL cases, it_offset and the it_size padding of tiny windows.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, getTableSize, checkGeometry, IommuTable, TCE } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

describe('getTableSize (pnv_pci_ioda2_get_table_size)', () => {
  // Each value below is worked out by hand from the formula of pnv_pci_ioda2_get_table_size (docs/semantics.md §2.2):
  // E = log2(win) − sh; node = 2^max(⌈E/L⌉+3, PAGE_SHIFT); tce = max(4 KiB, 2^(E+3));
  // per level: bytes += ALIGN(tce, node); tce = max(tce / node · 8, node); result × 2.
  const cases: [string, number, bigint, number, number, bigint][] = [
    // E=19, tce=4 MiB, node=4 MiB: 4 MiB ×2 (docs/semantics.md §6: the default window is 128 pages at 64K)
    ['VFIO default window: 4K pages, 2 GiB, 1 level', 12, 1n << 31n, 1, 16, 8n << 20n],
    // E=24, tce=2^27, node=2^16: 2^27 + 2^16, ×2
    ['2^40 window, 64K pages, 2 levels', 16, 1n << 40n, 2, 16, 2n * ((1n << 27n) + (1n << 16n))],
    // E=4, tce=4 KiB, node=64 KiB: ALIGN → 64 KiB, ×2
    ['1 MiB window, 64K pages, 1 level', 16, 1n << 20n, 1, 16, 128n << 10n],
    // sys 4K: E=18, tce=2^21, node=2^12: 2^21 + 2^12, ×2
    ['1 GiB window, 4K pages, 2 levels, 4K system pages', 12, 1n << 30n, 2, 12, 2n * ((1n << 21n) + (1n << 12n))],
    // E=10, tce=8 KiB, node=64 KiB: 64 KiB ×2
    ['16 GiB window, 16M pages, 1 level', 24, 1n << 34n, 1, 16, 128n << 10n],
    // E=36, tce=2^39, node=2^16: 2^39 + 2^26 + 2^16, ×2
    ['2^48 window, 4K pages, 3 levels', 12, 1n << 48n, 3, 16, 2n * ((1n << 39n) + (1n << 26n) + (1n << 16n))],
  ];
  for (const [name, sh, win, levels, sys, bytes] of cases) {
    it(`${name} → ${bytes} bytes`, () => {
      expect(getTableSize(sh, win, levels, sys)).toBe(bytes);
    });
  }

  it('0 for levels outside [1, 5] or a window that is not a power of two', () => {
    expect(getTableSize(16, 1n << 30n, 0, 16)).toBe(0n);
    expect(getTableSize(16, 1n << 30n, 6, 16)).toBe(0n);
    expect(getTableSize(16, 3n << 29n, 1, 16)).toBe(0n);
    expect(getTableSize(16, 0n, 1, 16)).toBe(0n);
  });
});

describe('checkGeometry / IommuTable.create EINVAL cases', () => {
  const g = (pageShift: number, windowSize: bigint, levels: number) => ({ pageShift, windowSize, levels, busOffset: 0n });
  const bad: [string, ReturnType<typeof g>, number][] = [
    ['levels 0', g(16, 1n << 30n, 0), 16],
    ['levels 6', g(16, 1n << 30n, 6), 16],
    ['window not a power of two', g(16, 3n << 29n, 1), 16],
    // (16−3)·5 + 16 = 81 ≥ 55
    ['2^40 window, 64K pages, 5 levels on 64K system pages', g(16, 1n << 40n, 5), 16],
    // (16−3)·3 + 16 = 55 ≥ 55: the boundary itself
    ['2^40 window, 64K pages, 3 levels on 64K system pages (exactly 55 bits)', g(16, 1n << 40n, 3), 16],
    // ⌈21/4⌉+3 = 9 → 12: (12−3)·4 + 19 = 55
    ['2^40 window, 2^19 pages, 4 levels on 4K system pages (exactly 55 bits)', g(19, 1n << 40n, 4), 12],
  ];
  for (const [name, geo, sys] of bad) {
    it(`${name} → EINVAL, and create changes nothing`, async () => {
      expectTce(() => checkGeometry(geo, sys), 'EINVAL');
      const host = await Host.create({ pageShift: sys });
      const before = digest(host);
      expectTce(() => IommuTable.create(host, geo, true), 'EINVAL');
      expect(digest(host)).toBe(before);
      expect(host.stats().tables).toBe(0);
    });
  }

  const good: [string, ReturnType<typeof g>, number][] = [
    // (16−3)·2 + 16 = 42
    ['2^40 window, 64K pages, 2 levels on 64K system pages', g(16, 1n << 40n, 2), 16],
    // (12−3)·4 + 18 = 54
    ['2^40 window, 2^18 pages, 4 levels on 4K system pages (54 bits)', g(18, 1n << 40n, 4), 12],
    // (16−3)·3 + 12 = 51
    ['2^48 window, 4K pages, 3 levels on 64K system pages', g(12, 1n << 48n, 3), 16],
  ];
  for (const [name, geo, sys] of good) {
    it(`${name} → accepted`, async () => {
      expect(() => checkGeometry(geo, sys)).not.toThrow();
      const host = await Host.create({ pageShift: sys });
      const t = IommuTable.create(host, geo, true);
      expect(t.levels).toBe(geo.levels);
    });
  }
  it('5 levels are refused whenever the system page is 4 KiB or more ((12−3)·5 + 12 = 57 ≥ 55)', () => {
    expectTce(() => checkGeometry(g(12, 1n << 24n, 5), 12), 'EINVAL');
    expectTce(() => checkGeometry(g(12, 1n << 20n, 5), 12), 'EINVAL');
  });
});

describe('it_offset and it_size', () => {
  it('a 1 MiB window of 64K pages has 8192 entries with 64K system pages (padded to one page of TCEs)', async () => {
    const host = await Host.create();
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 20n, levels: 1, busOffset: 0n }, true);
    expect(t.size).toBe(8192n);
  });

  it('the same window has 512 entries with 4K system pages', async () => {
    const host = await Host.create({ pageShift: 12 });
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 20n, levels: 1, busOffset: 0n }, true);
    expect(t.size).toBe(512n);
  });

  it('windows larger than a page of TCEs are not padded; it_offset = bus offset >> page shift', async () => {
    const host = await Host.create();
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 1n << 59n }, true);
    expect(t.size).toBe(1n << 14n);
    expect(t.offset).toBe(1n << 43n);
    expect(t.busEnd).toBe((1n << 59n) + (1n << 30n));
  });

  it('E30: an entry past the 1 MiB but inside the padding maps; one past it_size is EINVAL', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 20n, levels: 1, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 8191n, 1n, ram.ua, TCE.READ);
    expect(t.getUa(8191n)).toBe(ram.ua);
    expectTce(() => t.buildV2(p.mm, 8192n, 1n, ram.ua, TCE.READ), 'EINVAL');
    expectTce(() => t.buildV2(p.mm, 8191n, 2n, ram.ua, TCE.READ), 'EINVAL');
    host.checkInvariants();
  });

  it('entries below it_offset are outside the table', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 1n << 59n }, true);
    t.viewMm = p.mm;
    expectTce(() => t.buildV2(p.mm, (1n << 43n) - 1n, 1n, ram.ua, TCE.READ), 'EINVAL');
    t.buildV2(p.mm, 1n << 43n, 1n, ram.ua, TCE.READ);
    expect(t.get(1n << 43n)).not.toBe(0n);
    expect(t.get(0n)).toBe(0n);
  });
});
