// E48 (docs/semantics.md §7 E48, §2.1 put and mapped_dec): put of a region with used 0 is ENOENT and changes nothing; mapped_dec never takes mapped below 1.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregPut, regionsOf, IommuTable, TCE } from '../../src/index.js';
import { REG_MAPPED, ENXIO } from '../../src/generated/layout.js';
import { digest, expectTce } from '../model/harness.js';

describe('E48: put with used 0, mapped floor', () => {
  it('a second put of a freed region → ENOENT, nothing changed', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 4n);
    preregNew(p, ram.ua + (8n << 16n), 4n);
    preregPut(p.mm, r);
    expect(r.used).toBe(0);
    const before = digest(host);
    expectTce(() => preregPut(p.mm, r), 'ENOENT');
    expect(digest(host)).toBe(before);
    expect(p.mm.lockedPages).toBe(4n);
  });

  it('a handle on a freed region stays dead after its descriptor memory is reused: put → ENOENT, the new region untouched', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const stale = preregNew(p, ram.ua, 1n);
    preregPut(p.mm, stale);
    const fresh = preregNew(p, ram.ua + (8n << 16n), 1n);
    const before = digest(host);
    expectTce(() => preregPut(p.mm, stale), 'ENOENT');
    expect(digest(host)).toBe(before);
    expect(regionsOf(p.mm).map((x) => x.ua)).toEqual([fresh.ua]);
    expect(p.mm.lockedPages).toBe(1n);
    host.checkInvariants();
  });

  it('mapped_dec at 1 stays 1 (engine routine)', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 4n);
    host.engine.regionMappedDec(r.desc);
    host.engine.regionMappedDec(r.desc);
    expect(r.mapped).toBe(1n);
    expect(host.engine.regionMappedInc(r.desc)).toBe(0);
    expect(r.mapped).toBe(2n);
    host.engine.regionMappedDec(r.desc);
    host.engine.regionMappedDec(r.desc);
    expect(r.mapped).toBe(1n);
  });

  it('clearing through another mm whose region at the same ua has mapped 1 leaves it at 1 (and the parent region keeps its count: the fork hazard)', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const rp = preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 2n, ram.ua, TCE.READ);
    const child = p.fork();
    const rc = preregNew(child, ram.ua, 16n);
    t.clearV2(child.mm, 0n, 2n);
    expect(rc.mapped).toBe(1n);
    expect(rp.mapped).toBe(3n);
    expect(t.get(0n)).toBe(0n);
    expect(t.getUa(0n)).toBe(0n);
  });

  it('mapped_inc on a dying region (mapped 0) fails with ENXIO and leaves it at 0', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 4n);
    host.mem.setU64(r.desc + REG_MAPPED, 0n); // REG.mapped, as put's 1 → 0 exchange leaves it
    expect(r.mapped).toBe(0n);
    expect(host.engine.regionMappedInc(r.desc)).toBe(-ENXIO);
    expect(r.mapped).toBe(0n);
  });
});
