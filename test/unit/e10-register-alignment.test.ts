// E10 (docs/semantics.md §7 E10, §2.1): registering an unaligned, empty or wrapping range is EINVAL and changes nothing.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, regionsOf } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

describe('E10: register alignment and wrap checks', () => {
  it('ua not aligned to the 64 KiB system page → EINVAL, nothing changed', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const before = digest(host);
    for (const off of [1n, 0x1000n, 0x8000n, 0xffffn]) expectTce(() => preregNew(p, ram.ua + off, 1n), 'EINVAL');
    expect(digest(host)).toBe(before);
    expect(p.mm.lockedPages).toBe(0n);
    expect(regionsOf(p.mm)).toHaveLength(0);
  });

  it('ua aligned to 4 KiB but not 64 KiB is fine on a 4 KiB-page host and refused on a 64 KiB one', async () => {
    const h4 = await Host.create({ pageShift: 12 });
    const p4 = h4.spawn();
    const r4 = p4.mmap(1n << 20n);
    expect(preregNew(p4, r4.ua + 0x1000n, 1n).ua).toBe(r4.ua + 0x1000n);
    const h16 = await Host.create();
    const p16 = h16.spawn();
    const r16 = p16.mmap(1n << 20n);
    expectTce(() => preregNew(p16, r16.ua + 0x1000n, 1n), 'EINVAL');
  });

  it('zero pages → EINVAL, nothing changed', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const before = digest(host);
    expectTce(() => preregNew(p, ram.ua, 0n), 'EINVAL');
    expect(digest(host)).toBe(before);
  });

  it('a range running past 2^64 → EINVAL (not EFAULT), nothing changed', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const before = digest(host);
    const top = 1n << 64n;
    expectTce(() => preregNew(p, top - (1n << 16n), 2n), 'EINVAL');
    expectTce(() => preregNew(p, 1n << 63n, 1n << 48n), 'EINVAL');
    expect(digest(host)).toBe(before);
  });

  it('a range ending exactly at 2^64 wraps (vaddr + size == 0 in 64 bits, so < vaddr) → EINVAL', async () => {
    // tce_iommu_register_pages: ((vaddr + size) < vaddr) in u64 arithmetic.
    const host = await Host.create();
    const p = host.spawn();
    const before = digest(host);
    expectTce(() => preregNew(p, (1n << 64n) - (1n << 16n), 1n), 'EINVAL');
    expect(digest(host)).toBe(before);
  });
});
