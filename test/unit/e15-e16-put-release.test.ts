// E15/E16 (docs/semantics.md §7 E15–E16, §2.1 get/put): only an exact (ua, size) lookup finds a region; the last put after all unmaps frees it: locked_vm − entries, pins released, gone from the list.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregGet, preregPut, regionsOf, IommuTable, TCE } from '../../src/index.js';
import { expectTce } from '../model/harness.js';

describe('E15/E16: exact lookup and release', () => {
  it('a lookup with a different size or start finds nothing (the container answers ENOENT)', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 8n);
    expect(preregGet(p.mm, ram.ua, 16n)).toBeUndefined();
    expect(preregGet(p.mm, ram.ua + 0x10000n, 8n)).toBeUndefined();
    expect(preregGet(p.mm, ram.ua, 8n)).toBeDefined();
  });

  it('the last put of an unmapped region frees it: locked_vm, pins and heap return to their baselines', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const base = host.stats();
    const r = preregNew(p, ram.ua, 16n);
    expect(host.stats().pins).toBe(base.pins + 16);
    expect(p.mm.lockedPages).toBe(16n);
    preregPut(p.mm, r);
    const after = host.stats();
    expect(regionsOf(p.mm)).toHaveLength(0);
    expect(p.mm.lockedPages).toBe(0n);
    expect(after.pins).toBe(base.pins);
    expect(after.regions).toBe(base.regions);
    expect(after.memory.heapUsedBytes).toBe(base.memory.heapUsedBytes);
    host.checkInvariants();
  });

  it('after mapping and then clearing every entry, the put succeeds', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 10n, 16n, ram.ua, TCE.READ);
    expectTce(() => preregPut(p.mm, r), 'EBUSY');
    t.clearV2(p.mm, 10n, 16n);
    expect(r.mapped).toBe(1n);
    preregPut(p.mm, r);
    expect(regionsOf(p.mm)).toHaveLength(0);
    expect(p.mm.lockedPages).toBe(0n);
    expect(host.stats().pins).toBe(0);
    host.checkInvariants();
  });

  it('only the region put is removed; its neighbours keep their accounting', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const a = preregNew(p, ram.ua, 4n);
    const b = preregNew(p, ram.ua + (4n << 16n), 4n);
    const c = preregNew(p, ram.ua + (8n << 16n), 4n);
    preregPut(p.mm, b);
    expect(regionsOf(p.mm).map((r) => r.ua).sort()).toEqual([a.ua, c.ua].sort());
    expect(p.mm.lockedPages).toBe(8n);
    expect(host.stats().pins).toBe(8);
    host.checkInvariants();
  });
});
