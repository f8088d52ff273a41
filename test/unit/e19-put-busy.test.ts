// E19 as EBUSY (our documented divergence, docs/semantics.md §1; §2.1 put): the last put of a region with live TCEs is EBUSY; the region stays, used is restored.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregGet, preregPut, regionsOf, IommuTable, TCE } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

async function setup() {
  const host = await Host.create();
  const p = host.spawn();
  const ram = p.mmap(1n << 20n);
  const r = preregNew(p, ram.ua, 16n);
  const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
  t.viewMm = p.mm;
  return { host, p, ram, r, t };
}

describe('E19: put of a region still mapped', () => {
  it('→ EBUSY; used back to 1, mapped unchanged, still listed, pinned and accounted; state byte-identical', async () => {
    const { host, p, ram, r, t } = await setup();
    t.buildV2(p.mm, 0n, 3n, ram.ua, TCE.READ | TCE.WRITE);
    const before = digest(host);
    expectTce(() => preregPut(p.mm, r), 'EBUSY');
    expect(r.used).toBe(1);
    expect(r.mapped).toBe(4n);
    expect(regionsOf(p.mm).map((x) => x.desc)).toEqual([r.desc]);
    expect(p.mm.lockedPages).toBe(16n);
    expect(host.stats().pins).toBe(16);
    expect(digest(host)).toBe(before);
    host.checkInvariants();
  });

  it('the region keeps working after the refused put: more entries map into it, and clearing them all lets the put succeed', async () => {
    const { host, p, ram, r, t } = await setup();
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ);
    expectTce(() => preregPut(p.mm, r), 'EBUSY');
    t.buildV2(p.mm, 1n, 1n, ram.ua + 0x10000n, TCE.READ);
    expect(r.mapped).toBe(3n);
    t.clearV2(p.mm, 0n, 2n);
    preregPut(p.mm, r);
    expect(regionsOf(p.mm)).toHaveLength(0);
    expect(p.mm.lockedPages).toBe(0n);
    host.checkInvariants();
  });

  it('with two users the first put only drops used, even while mapped', async () => {
    const { host, p, ram, r, t } = await setup();
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ);
    preregGet(p.mm, ram.ua, 16n);
    expect(r.used).toBe(2);
    preregPut(p.mm, r);
    expect(r.used).toBe(1);
    expect(r.mapped).toBe(2n);
    expectTce(() => preregPut(p.mm, r), 'EBUSY');
    expect(r.used).toBe(1);
    host.checkInvariants();
  });
});
