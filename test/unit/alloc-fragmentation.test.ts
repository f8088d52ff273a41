// Issue 12's fragmentation scenario, through containers and windows: fill a
// 4 MiB host with windows, free everything, and a window whose 512 KiB root
// fits a fresh host must fit again. Power-of-two free lists that never merge
// (the allocator before the TLSF) answered ENOMEM here with 3.6 MiB free.
import { describe, expect, it } from 'vitest';
import { Host, TceError, type ContainerFd } from '../../src/index.js';
import { ENGINES } from './alloc-heap.js';

const MiB = 1 << 20;
/** 2^16 entries of 64 KiB pages in one level: a 512 KiB root. */
const BIG = { pageShift: 16, windowSize: 1n << 32n, levels: 1 };

async function fourMiBHost(engine: 'wasm' | 'native') {
  // '4.12': a window's userspace view waits for its first map, so the fill is of TCE roots alone (as written for).
  const host = await Host.create({ engine, kernel: '4.12', maxMemory: 4 * MiB, memlockLimit: 'unlimited' });
  const p = host.spawn();
  const container = (): ContainerFd => {
    const fd = p.openContainer();
    fd.attachGroup(host.addGroup());
    fd.setIommu('v2');
    fd.removeWindow(0n);
    return fd;
  };
  return { host, container };
}

describe('fragmentation: windows of a 4 MiB host', () => {
  for (const { engine, skip, name } of ENGINES) {
    it.skipIf(skip !== undefined)(`${name}: after filling the host with windows and freeing them all, a 512 KiB-root window fits again`, async () => {
      // A fresh host has room for it.
      const fresh = await fourMiBHost(engine);
      fresh.container().createWindow(BIG);

      const { host, container } = await fourMiBHost(engine);
      const before = host.stats().memory;
      // Fill with windows of 4 to 64 KiB roots (2^9 to 2^13 entries), two per container, until memory runs out.
      const fds: ContainerFd[] = [];
      let windows = 0;
      let full: unknown;
      for (let i = 0; full === undefined; i++) {
        const fd = container();
        fds.push(fd);
        for (const entries of i % 2 ? [12, 10] : [13, 9]) {
          try {
            fd.createWindow({ pageShift: 16, windowSize: 1n << BigInt(16 + entries), levels: 1 });
            windows++;
          } catch (e) {
            full = e;
            break;
          }
        }
      }
      expect(full).toBeInstanceOf(TceError);
      expect((full as TceError).code).toBe('ENOMEM');
      expect(windows).toBeGreaterThan(40);
      expect(host.stats().memory.heapUsedBytes).toBeGreaterThan(3.5 * MiB);
      for (const fd of fds) fd.close();
      // Everything the fill took is back, and merged: the big window fits.
      expect(host.stats().memory.heapUsedBytes).toBe(before.heapUsedBytes);
      const fd = container();
      expect(() => fd.createWindow(BIG)).not.toThrow();
      host.checkInvariants();
      // The heap is whole: a descriptor or two, the new window, and one free block after them.
      expect(host.engine.heapCheck()).toBe(1);
    });
  }
});
