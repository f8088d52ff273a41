// Host memory services (issue 5): with pin: 'host' a registered region's bytes are mlock()ed, and
// munlock()ed when it goes; VmLck in /proc/self/status shows it. Unbacked memory is a noted fallback.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregPut } from '../../src/index.js';
import { loadNative } from '../../src/engine/native.js';

const addon = loadNative();

describe.skipIf(!addon)("pin: 'host'", () => {
  it('registering locks the region\'s bytes and unregistering unlocks them', async () => {
    const host = await Host.create({ pin: 'host' });
    const p = host.spawn();
    const ram = p.mmap(4n << 20n);
    const before = addon!.lockedBytes();
    const r = preregNew(p, ram.ua, ram.size >> 16n);
    const locked = addon!.lockedBytes();
    if (host.stats().fallbacks.length > 0) {
      // Without CAP_IPC_LOCK and a small RLIMIT_MEMLOCK the kernel refuses: that must be said, not hidden.
      expect(host.stats().fallbacks[0]).toMatch(/the kernel refused/);
      return;
    }
    expect(locked - before).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    preregPut(p.mm, r);
    expect(addon!.lockedBytes()).toBe(before);
  });

  it('a region without bytes behind it is pinned in simulation only, and stats() says so', async () => {
    const host = await Host.create({ pin: 'host' });
    const p = host.spawn();
    const ram = p.mmap(1n << 20n, { backed: false });
    preregNew(p, ram.ua, ram.size >> 16n);
    expect(host.stats().fallbacks).toEqual([expect.stringMatching(/not backed by bytes.*simulation only/)]);
  });

  it('the default (simulated) pins touch no real memory lock', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const before = addon!.lockedBytes();
    preregNew(p, ram.ua, ram.size >> 16n);
    expect(addon!.lockedBytes()).toBe(before);
    expect(host.stats().fallbacks).toEqual([]);
  });
});
