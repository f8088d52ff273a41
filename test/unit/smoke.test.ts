import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';

describe('smoke', () => {
  it('registers, maps through the view, and unmaps', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, ram.size >> 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 4n, ram.ua, TCE.READ | TCE.WRITE);
    expect(r.mapped).toBe(5n);
    expect(t.getUa(1n)).toBe(ram.ua + 0x10000n);
    host.checkInvariants();
    t.clearV2(p.mm, 0n, 4n);
    expect(r.mapped).toBe(1n);
    host.checkInvariants();
  });
});
