// E13 (docs/semantics.md §7 E13, §2.1 new): registering a range that overlaps a region of the same mm without matching it is EINVAL and changes nothing.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, regionsOf } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

describe('E13: overlapping registration', () => {
  const cases: [string, bigint, bigint][] = [
    ['same start, longer', 4n, 10n],
    ['same start, shorter', 4n, 4n],
    ['identical range (new, not get)', 4n, 8n],
    ['inside', 5n, 2n],
    ['covering', 2n, 12n],
    ['straddling the start', 2n, 4n],
    ['straddling the end', 10n, 4n],
  ];
  for (const [name, off, n] of cases) {
    it(`${name} → EINVAL, nothing changed (pins, locked_vm, memory)`, async () => {
      const host = await Host.create();
      const p = host.spawn();
      const ram = p.mmap(1n << 20n);
      const r = preregNew(p, ram.ua + (4n << 16n), 8n);
      const before = digest(host);
      const pins = host.stats().pins;
      expectTce(() => preregNew(p, ram.ua + (off << 16n), n), 'EINVAL');
      expect(digest(host)).toBe(before);
      expect(host.stats().pins).toBe(pins);
      expect(p.mm.lockedPages).toBe(8n);
      expect(r.used).toBe(1);
      expect(regionsOf(p.mm)).toHaveLength(1);
      host.checkInvariants();
    });
  }

  it('adjacent ranges do not overlap', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua + (4n << 16n), 8n);
    preregNew(p, ram.ua, 4n);
    preregNew(p, ram.ua + (12n << 16n), 4n);
    expect(regionsOf(p.mm)).toHaveLength(3);
    expect(p.mm.lockedPages).toBe(16n);
    host.checkInvariants();
  });

  it('the same range in another mm is not an overlap', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 16n);
    const c = p.fork();
    preregNew(c, ram.ua + 0x10000n, 4n);
    expect(regionsOf(c.mm)).toHaveLength(1);
  });
});
