// E20 (docs/semantics.md §7 E20, §2.4 v2 build): a build where IOMMU page k is not pre-registered is EINVAL and clears the entries [0, k) this call wrote, even ones mapped before.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';
import { ReferenceModel } from '../model/reference.js';
import { expectTce, libEntries, modelEntries, modelRegions, libRegions, translator } from '../model/harness.js';

async function setup() {
  const host = await Host.create();
  const p = host.spawn();
  const ram = p.mmap(1n << 20n); // 16 pages of 64 KiB
  const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
  t.viewMm = p.mm;
  const model = new ReferenceModel(16);
  model.createTable(t.id, { pageShift: 16, windowSize: 1n << 30n, busOffset: 0n });
  const reg = (off: bigint, n: bigint) => {
    model.register(p.mm.id, null, ram.ua + (off << 16n), n, translator(p));
    return preregNew(p, ram.ua + (off << 16n), n);
  };
  return { host, p, ram, t, model, reg };
}

describe('E20: build rolls back on an unregistered page', () => {
  it('pages 0..3 registered, build of 8 → EINVAL; entries 0..3 are clear again, view 0, mapped back to 1', async () => {
    const { host, p, ram, t, reg } = await setup();
    const r = reg(0n, 4n);
    expectTce(() => t.buildV2(p.mm, 100n, 8n, ram.ua, TCE.READ), 'EINVAL');
    for (let e = 100n; e < 108n; e++) {
      expect(t.get(e)).toBe(0n);
      expect(t.getUa(e)).toBe(0n);
    }
    expect(r.mapped).toBe(1n);
    host.checkInvariants();
  });

  it('entries [0, k) that were mapped before the call are lost too; entries at and after k keep their old mapping', async () => {
    const { host, p, ram, t, model, reg } = await setup();
    const a = reg(0n, 4n); // pages 0..3: the new build's source, page 4 unregistered
    const b = reg(8n, 8n); // pages 8..15: what was mapped before
    t.buildV2(p.mm, 200n, 8n, ram.ua + (8n << 16n), TCE.READ | TCE.WRITE);
    model.buildV2(t.id, p.mm.id, 200n, 8n, ram.ua + (8n << 16n), 3);
    expect(b.mapped).toBe(9n);
    expectTce(() => t.buildV2(p.mm, 200n, 6n, ram.ua, TCE.READ), 'EINVAL');
    expect(() => model.buildV2(t.id, p.mm.id, 200n, 6n, ram.ua, 1)).toThrow(/EINVAL/);
    // k = 4: entries 200..203 now invalid, 204..207 still b's pages 12..15
    for (let e = 200n; e < 204n; e++) expect(t.get(e)).toBe(0n);
    for (let e = 204n; e < 208n; e++) expect(t.getUa(e)).toBe(ram.ua + ((8n + e - 200n) << 16n));
    expect(a.mapped).toBe(1n);
    expect(b.mapped).toBe(5n);
    expect(libEntries(t)).toEqual(modelEntries(model, t.id));
    expect(libRegions(p.mm)).toEqual(modelRegions(model, p.mm.id));
    host.checkInvariants();
  });

  it('failure at page 0 changes no entry and no count', async () => {
    const { host, p, ram, t, reg } = await setup();
    const b = reg(8n, 8n);
    t.buildV2(p.mm, 0n, 2n, ram.ua + (8n << 16n), TCE.READ);
    const before = libEntries(t);
    expectTce(() => t.buildV2(p.mm, 0n, 2n, ram.ua + (4n << 16n), TCE.READ), 'EINVAL');
    expect(libEntries(t)).toEqual(before);
    expect(b.mapped).toBe(3n);
    host.checkInvariants();
  });

  it('an IOMMU page that straddles the end of a region → EINVAL (lookup needs the whole page inside one region)', async () => {
    const host = await Host.create({ pageShift: 12 });
    const p = host.spawn();
    const ram = p.mmap(1n << 20n, { hugePageShift: 16 });
    const r = preregNew(p, ram.ua, 8n); // 32 KiB: half an IOMMU page
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    expectTce(() => t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ), 'EINVAL');
    expect(r.mapped).toBe(1n);
    expect(t.get(0n)).toBe(0n);
  });
});
