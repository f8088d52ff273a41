// Real mode (docs/semantics.md §2.2 xchg, §4, §7 E45): buildV2 with realMode never allocates; a missing view or TCE level is ENOMEM (H_TOO_HARD) with nothing changed; after a virtual-mode build allocated the level it succeeds.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

async function setup() {
  const host = await Host.create();
  const p = host.spawn();
  const ram = p.mmap(1n << 20n);
  const r = preregNew(p, ram.ua, 16n);
  // 2^14 entries over 2 levels: each leaf covers 2^7 entries
  const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
  t.viewMm = p.mm;
  return { host, p, ram, r, t, leaf: 1n << BigInt(t.levelBits) };
}

describe('real-mode build', () => {
  it('no userspace view yet → ENOMEM, nothing changed (no view allocated)', async () => {
    const { host, p, ram, r, t } = await setup();
    const before = digest(host);
    expectTce(() => t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ, { realMode: true }), 'ENOMEM');
    expect(digest(host)).toBe(before);
    expect(t.hasView).toBe(false);
    expect(r.mapped).toBe(1n);
  });

  it('leaf level absent → ENOMEM, nothing changed; a virtual-mode build there allocates it, then real mode succeeds', async () => {
    const { host, p, ram, r, t, leaf } = await setup();
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ); // allocates the view root and the first leaf
    const far = 3n * leaf + 5n;
    const before = digest(host);
    const mem = t.memoryBytes;
    expectTce(() => t.buildV2(p.mm, far, 1n, ram.ua + 0x10000n, TCE.READ, { realMode: true }), 'ENOMEM');
    expect(digest(host)).toBe(before);
    expect(t.memoryBytes).toBe(mem);
    expect(r.mapped).toBe(2n);
    // in the present leaf, real mode works
    t.buildV2(p.mm, 1n, 1n, ram.ua + 0x20000n, TCE.READ, { realMode: true });
    expect(r.mapped).toBe(3n);
    // virtual mode allocates far's level; clearing keeps the level; real mode now succeeds
    t.buildV2(p.mm, far, 1n, ram.ua + 0x10000n, TCE.READ);
    expect(t.memoryBytes).toBeGreaterThan(mem);
    t.clearV2(p.mm, far, 1n);
    t.buildV2(p.mm, far + 1n, 1n, ram.ua + 0x30000n, TCE.WRITE, { realMode: true });
    expect(t.getUa(far + 1n)).toBe(ram.ua + 0x30000n);
    expect(t.get(far + 1n)).toBe(p.mm.translate(ram.ua + 0x30000n)!.hpa | 3n);
    host.checkInvariants();
  });

  it('a real-mode build running from a present leaf into an absent one → ENOMEM, the entries it wrote are cleared again', async () => {
    const { host, p, ram, r, t, leaf } = await setup();
    t.buildV2(p.mm, 0n, 1n, ram.ua, TCE.READ);
    const before = digest(host);
    expectTce(() => t.buildV2(p.mm, leaf - 2n, 4n, ram.ua + 0x10000n, TCE.READ, { realMode: true }), 'ENOMEM');
    expect(t.get(leaf - 2n)).toBe(0n);
    expect(t.get(leaf - 1n)).toBe(0n);
    expect(r.mapped).toBe(2n);
    expect(digest(host)).toBe(before);
    host.checkInvariants();
  });

  it('real-mode clear of entries in absent levels succeeds and allocates nothing', async () => {
    const { host, p, t } = await setup();
    const before = digest(host);
    t.clearV2(p.mm, 0n, t.size);
    expect(digest(host)).toBe(before);
  });
});
