// E23 (docs/semantics.md §7 E23, §2.2 xchg): a write-only mapping reads back with READ|WRITE (PowerNV adds READ to WRITE); read-only stays read-only.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';

describe('E23: write-only mapping', () => {
  it('perm WRITE → TCE has READ|WRITE and the page address; READ → only READ', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.WRITE);
    t.buildV2(p.mm, 1n, 1n, ram.ua + 0x10000n, TCE.READ);
    t.buildV2(p.mm, 2n, 1n, ram.ua + 0x20000n, TCE.READ | TCE.WRITE);
    expect(t.get(0n)).toBe(p.mm.translate(ram.ua)!.hpa | 3n);
    expect(t.get(1n)).toBe(p.mm.translate(ram.ua + 0x10000n)!.hpa | 1n);
    expect(t.get(2n)).toBe(p.mm.translate(ram.ua + 0x20000n)!.hpa | 3n);
    host.checkInvariants();
  });

  it('the v1 xchg path does the same', async () => {
    const host = await Host.create();
    const t = IommuTable.create(host, { pageShift: 12, windowSize: 1n << 28n, levels: 1, busOffset: 0n }, false);
    t.xchg(3n, 0x1234_5000n | 2n);
    expect(t.get(3n)).toBe(0x1234_5000n | 3n);
  });
});
