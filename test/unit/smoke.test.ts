import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE } from '../../src/index.js';

describe('smoke', () => {
  it('registers, maps through the view, and unmaps', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, ram.size >> 16n);
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.buildV2(p.mm, 0n, 4n, ram.ua, TCE.READ | TCE.WRITE);
    expect(r.mapped).toBe(5n);
    expect(t.getUa(1n)).toBe(ram.ua + 0x10000n);
    host.checkInvariants();
    t.clearV2(p.mm, 0n, 4n);
    expect(r.mapped).toBe(1n);
    host.checkInvariants();
  });
});

describe('smoke: containers', () => {
  for (const mode of ['none', 'pid', 'mm'] as const) {
    it(`forked child under ${mode}`, async () => {
      const host = await Host.create({ ownerCheck: mode });
      const qemu = host.spawn();
      const ram = qemu.mmap(1n << 20n);
      const g = host.addGroup();
      const fd = qemu.openContainer();
      fd.attachGroup(g);
      fd.setIommu('v2');
      fd.registerMemory(ram.ua, ram.size);
      fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true, write: true });
      const win = fd.container.windows[0]!;
      expect(win.table.getUa(0n)).toBe(ram.ua);
      const parentRegion = fd.container.regions[0]!;
      expect(parentRegion.mapped).toBe(2n);
      host.checkInvariants();
      const child = qemu.fork();
      const cfd = child.inherit(fd);
      if (mode === 'none') {
        cfd.registerMemory(ram.ua, ram.size);
        cfd.unmapDma({ iova: 0n, size: 0x1000n });
        expect(parentRegion.mapped).toBe(2n);
        expect(() => host.checkInvariants()).toThrow(/mapped − 1 = 1, but 0/);
      } else {
        expect(() => cfd.registerMemory(ram.ua, ram.size)).toThrow(expect.objectContaining({ code: 'EPERM' }));
        expect(() => cfd.unmapDma({ iova: 0n, size: 0x1000n })).toThrow(expect.objectContaining({ code: 'EPERM' }));
        host.checkInvariants();
      }
      fd.close();
      cfd.close();
      if (mode !== 'none') {
        expect(qemu.mm.lockedPages).toBe(0n);
        host.checkInvariants();
      }
    });
  }
});
