// Locked-memory limit (docs/semantics.md §2.1 new, §3.1, §6): registering past RLIMIT_MEMLOCK is ENOMEM and changes nothing; the limit counts the whole mm's locked_vm.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregPut, regionsOf } from '../../src/index.js';
import { digest, expectTce } from '../model/harness.js';

describe('RLIMIT_MEMLOCK', () => {
  it('limit of 8 pages: 8 fit, the 9th → ENOMEM with nothing changed (no pins, no region, locked_vm 8)', async () => {
    const host = await Host.create();
    const p = host.spawn({ memlockLimit: 8n << 16n });
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 8n);
    const before = digest(host);
    expectTce(() => preregNew(p, ram.ua + (8n << 16n), 1n), 'ENOMEM');
    expect(digest(host)).toBe(before);
    expect(p.mm.lockedPages).toBe(8n);
    expect(host.stats().pins).toBe(8);
    expect(regionsOf(p.mm)).toHaveLength(1);
  });

  it('one region larger than the limit → ENOMEM', async () => {
    const host = await Host.create();
    const p = host.spawn({ memlockLimit: (4n << 16n) + 0xffffn }); // 4 pages and a bit: rounded down to 4
    const ram = p.mmap(1n << 20n);
    expectTce(() => preregNew(p, ram.ua, 5n), 'ENOMEM');
    expect(p.mm.lockedPages).toBe(0n);
    expect(host.stats().pins).toBe(0);
    preregNew(p, ram.ua, 4n);
  });

  it('the host-wide default from Host.create applies to spawned processes; spawn can override it', async () => {
    const host = await Host.create({ memlockLimit: 2n << 16n });
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    expectTce(() => preregNew(p, ram.ua, 3n), 'ENOMEM');
    const q = host.spawn({ memlockLimit: 'unlimited' });
    const ram2 = q.mmap(1n << 20n);
    preregNew(q, ram2.ua, 16n);
    expect(q.mm.lockedPages).toBe(16n);
  });

  it('locked_vm is per mm: a thread shares the count, a forked child starts from 0 with the same limit', async () => {
    const host = await Host.create();
    const p = host.spawn({ memlockLimit: 4n << 16n });
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 3n);
    expectTce(() => preregNew(p.thread(), ram.ua + (8n << 16n), 2n), 'ENOMEM');
    const c = p.fork();
    preregNew(c, ram.ua + (8n << 16n), 4n);
    expectTce(() => preregNew(c, ram.ua, 1n), 'ENOMEM');
  });

  it('a freed region returns its pages to the budget', async () => {
    const host = await Host.create();
    const p = host.spawn({ memlockLimit: 4n << 16n });
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, 4n);
    expectTce(() => preregNew(p, ram.ua + (8n << 16n), 1n), 'ENOMEM');
    preregPut(p.mm, r);
    preregNew(p, ram.ua + (8n << 16n), 4n);
    expect(p.mm.lockedPages).toBe(4n);
  });

  it('the limit is checked before pinning: an over-limit range with a hole is ENOMEM, not EFAULT', async () => {
    const host = await Host.create();
    const p = host.spawn({ memlockLimit: 2n << 16n });
    expectTce(() => preregNew(p, 0x1000_0000n, 4n), 'ENOMEM');
  });
});
