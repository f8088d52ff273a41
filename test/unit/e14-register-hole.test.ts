// E14 (docs/semantics.md §7 E14, §2.1 new): a range with an unmapped page is EFAULT; pins taken so far are released and locked_vm is unchanged.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, regionsOf } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

describe('E14: register over an unmapped hole', () => {
  it('two mappings with a hole between them → EFAULT, pins and locked_vm unchanged', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const a = p.mmap(4n << 16n);
    const b = p.mmap(4n << 16n);
    expect(b.ua).toBeGreaterThan(a.ua + a.size); // there is a hole
    preregNew(p, b.ua, 1n); // an unrelated region, so the counters are not all zero
    const before = digest(host);
    const pins = host.stats().pins;
    const locked = p.mm.lockedPages;
    expectTce(() => preregNew(p, a.ua, (b.ua + b.size - a.ua) >> 16n), 'EFAULT');
    expect(host.stats().pins).toBe(pins);
    expect(p.mm.lockedPages).toBe(locked);
    expect(regionsOf(p.mm)).toHaveLength(1);
    expect(digest(host)).toBe(before);
    host.checkInvariants();
  });

  it('a range starting inside a mapping and running past its end → EFAULT', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const a = p.mmap(4n << 16n);
    const before = digest(host);
    expectTce(() => preregNew(p, a.ua + (2n << 16n), 4n), 'EFAULT');
    expect(digest(host)).toBe(before);
    expect(host.stats().pins).toBe(0);
  });

  it('an address never mapped → EFAULT', async () => {
    const host = await Host.create();
    const p = host.spawn();
    expectTce(() => preregNew(p, 0x1000_0000n, 1n), 'EFAULT');
    expect(host.stats().pins).toBe(0);
    expect(p.mm.lockedPages).toBe(0n);
  });

  it('after the failure the whole mapping can still be registered', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const a = p.mmap(4n << 16n);
    expectTce(() => preregNew(p, a.ua, 5n), 'EFAULT');
    const r = preregNew(p, a.ua, 4n);
    expect(r.entries).toBe(4n);
    expect(host.stats().pins).toBe(4);
    host.checkInvariants();
  });
});
