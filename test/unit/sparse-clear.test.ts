// Sparse clearing (docs/semantics.md §2.4 clear: skip the rest of a node; "KVM: PPC: Optimize clearing TCEs for sparse tables"): clearing a huge, sparsely mapped window skips absent levels, so it is fast, and it releases every mapping.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';
import { mulberry32 } from '../model/harness.js';

describe('sparse clear', () => {
  it('a whole 2^24-entry window with 1,000 scattered entries clears in well under a second; every region back to mapped 1', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1000n << 16n, { backed: false });
    const r = preregNew(p, ram.ua, 1000n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 40n, levels: 2, busOffset: 1n << 59n }, true);
    t.viewMm = p.mm;
    expect(t.size).toBe(1n << 24n);
    const rnd = mulberry32(0x5eed);
    const picked = new Set<bigint>();
    while (picked.size < 1000) picked.add(t.offset + BigInt(Math.floor(rnd() * 2 ** 24)));
    let i = 0n;
    for (const e of picked) t.buildV2(p.mm, e, 1n, ram.ua + (i++ << 16n), TCE.READ);
    expect(r.mapped).toBe(1001n);
    const t0 = performance.now();
    t.clearV2(p.mm, t.offset, t.size);
    const ms = performance.now() - t0;
    expect(r.mapped).toBe(1n);
    for (const e of picked) {
      expect(t.get(e)).toBe(0n);
      expect(t.getUa(e)).toBe(0n);
    }
    expect(ms).toBeLessThan(1000);
    host.checkInvariants();
  });

  it('a 2^36-entry window (2^48 bytes of 4K pages, 3 levels) with 3 entries clears in well under a second', async () => {
    // A walk over every entry would take minutes; only skipping absent levels can finish.
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 12, windowSize: 1n << 48n, levels: 3, busOffset: 0n }, true);
    t.viewMm = p.mm;
    expect(t.size).toBe(1n << 36n);
    const at = [5n, 1n << 30n, (1n << 36n) - 1n];
    at.forEach((e, k) => t.buildV2(p.mm, e, 1n, ram.ua + (BigInt(k) << 12n), TCE.READ));
    expect(r.mapped).toBe(4n);
    const t0 = performance.now();
    t.clearV2(p.mm, 0n, t.size);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.mapped).toBe(1n);
    for (const e of at) expect(t.get(e)).toBe(0n);
    expect(t.nextValid(0n, t.size)).toBe(-1n);
    host.checkInvariants();
  });

  it('a partial clear releases exactly the entries inside its range', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 40n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    const at = [10n, 5000n, 4096n * 7n, 4096n * 7n + 1n, (1n << 24n) - 1n];
    at.forEach((e, k) => t.buildV2(p.mm, e, 1n, ram.ua + (BigInt(k) << 16n), TCE.READ));
    t.clearV2(p.mm, 11n, 4096n * 7n + 1n - 11n); // [11, 4096·7 + 1): 5000 and 4096·7
    expect(r.mapped).toBe(4n);
    expect([...t.entries()].map(([e]) => e)).toEqual([10n, 4096n * 7n + 1n, (1n << 24n) - 1n]);
    host.checkInvariants();
  });
});
