// E11/E12 at the prereg layer (docs/semantics.md §7 E11–E12, §2.1 get): an exact re-registration in the same mm shares the region: used + 1, accounted once.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregGet, preregPut, regionsOf } from '../../src/index.js';
import { digest } from '../model/harness.js';

describe('E11/E12: preregGet shares an exactly matching region', () => {
  it('exact (ua, entries) → the same region, used 2, locked_vm and pins counted once', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 16n);
    const pins = host.stats().pins;
    expect(p.mm.lockedPages).toBe(16n);
    const again = preregGet(p.mm, ram.ua, 16n);
    expect(again?.desc).toBe(r.desc);
    expect(r.used).toBe(2);
    expect(r.mapped).toBe(1n);
    expect(p.mm.lockedPages).toBe(16n);
    expect(host.stats().pins).toBe(pins);
    expect(regionsOf(p.mm)).toHaveLength(1);
    host.checkInvariants();
  });

  it('a thread (same mm) shares it; the second put keeps it until the last one', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const t = p.thread();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 16n);
    expect(preregGet(t.mm, ram.ua, 16n)?.desc).toBe(r.desc);
    preregPut(t.mm, r);
    expect(r.used).toBe(1);
    expect(regionsOf(p.mm)).toHaveLength(1);
    expect(p.mm.lockedPages).toBe(16n);
    preregPut(p.mm, r);
    expect(regionsOf(p.mm)).toHaveLength(0);
    expect(p.mm.lockedPages).toBe(0n);
  });

  it('not exact (other size, other start, sub-range) → undefined, nothing changed', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 8n);
    const before = digest(host);
    expect(preregGet(p.mm, ram.ua, 4n)).toBeUndefined();
    expect(preregGet(p.mm, ram.ua, 9n)).toBeUndefined();
    expect(preregGet(p.mm, ram.ua + 0x10000n, 7n)).toBeUndefined();
    expect(r.used).toBe(1);
    expect(digest(host)).toBe(before);
  });

  it('regions are per mm: a forked child at the same addresses does not see the parent region', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 16n);
    const child = p.fork();
    expect(preregGet(child.mm, ram.ua, 16n)).toBeUndefined();
    expect(r.used).toBe(1);
    const rc = preregNew(child, ram.ua, 16n);
    expect(rc.desc).not.toBe(r.desc);
    expect(child.mm.lockedPages).toBe(16n);
    expect(p.mm.lockedPages).toBe(16n);
    host.checkInvariants();
  });
});
