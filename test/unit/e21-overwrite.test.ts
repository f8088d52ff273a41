// E21 (docs/semantics.md §7 E21, §2.4 v2 build: overwriting is allowed): mapping over a live entry succeeds; the old region's mapped − 1, the new one's + 1, TCE and view ua replaced.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';

describe('E21: overwrite', () => {
  it('entry mapped from region A, rebuilt from region B → A.mapped − 1, B.mapped + 1, new TCE and ua', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const a = preregNew(p, ram.ua, 8n);
    const b = preregNew(p, ram.ua + (8n << 16n), 8n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 7n, 2n, ram.ua, TCE.READ);
    expect(a.mapped).toBe(3n);
    const ub = ram.ua + (9n << 16n);
    t.buildV2(p.mm, 7n, 1n, ub, TCE.WRITE);
    expect(a.mapped).toBe(2n);
    expect(b.mapped).toBe(2n);
    expect(t.getUa(7n)).toBe(ub);
    expect(t.get(7n)).toBe(p.mm.translate(ub)!.hpa | BigInt(TCE.READ | TCE.WRITE));
    expect(t.getUa(8n)).toBe(ram.ua + 0x10000n);
    host.checkInvariants();
  });

  it('overwriting with the same ua keeps the count', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const a = preregNew(p, ram.ua, 8n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 1, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ);
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ | TCE.WRITE);
    expect(a.mapped).toBe(2n);
    expect(t.get(0n) & 3n).toBe(3n);
    host.checkInvariants();
  });

  it('overwriting within one region moves the entry to another page without changing the count', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const a = preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 1, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 4n, ram.ua, TCE.READ);
    t.buildV2(p.mm, 0n, 4n, ram.ua + (10n << 16n), TCE.READ);
    expect(a.mapped).toBe(5n);
    expect(t.getUa(3n)).toBe(ram.ua + (13n << 16n));
    host.checkInvariants();
  });
});
