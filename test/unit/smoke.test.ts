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

describe('smoke: hypercalls', () => {
  it('H_PUT_TCE through a VFIO table: real → virtual → real', async () => {
    const { H } = await import('../../src/index.js');
    const host = await Host.create({ ownerCheck: 'mm' });
    const qemu = host.spawn();
    const ram = qemu.mmap(16n << 20n);
    const g = host.addGroup();
    const fd = qemu.openContainer();
    fd.attachGroup(g);
    fd.setIommu('v2');
    fd.registerMemory(ram.ua, ram.size);
    fd.removeWindow(0n); // cancel the pending default window, as QEMU does
    const { startAddr } = fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
    expect(startAddr).toBe(0n);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x10000n, read: true, write: true });
    const vm = qemu.createVm();
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    const liobn = 0x80000000n;
    vm.createTceTable({ liobn, pageShift: 16, offset: 0n, size: 1n << 14n });
    vm.attachGroup(g, liobn);
    const hw = fd.container.windows[0]!.table;
    // Entry 1 shares a leaf with entry 0 in the HW table, but the guest page is absent: virtual mode.
    let r = vm.hcall(H.PUT_TCE, liobn, 0x10000n, 0x20000n | 3n);
    expect(r).toMatchObject({ ret: 0, level: 'virtual' });
    expect(hw.get(1n) & ~3n).not.toBe(0n);
    expect(hw.getUa(1n)).toBe(ram.ua + 0x20000n);
    r = vm.hcall(H.PUT_TCE, liobn, 0x20000n, 0x30000n | 1n);
    expect(r).toMatchObject({ ret: 0, level: 'real' });
    r = vm.hcall(H.GET_TCE, liobn, 0x20000n);
    expect(r.out[0]).toBe(0x30000n | 1n);
    host.checkInvariants();
    r = vm.hcall(H.STUFF_TCE, liobn, 0x10000n, 0n, 2n);
    expect(r).toMatchObject({ ret: 0, level: 'real' });
    expect(hw.get(1n)).toBe(0n);
    host.checkInvariants();
    expect(fd.container.regions[0]!.mapped).toBe(2n);
    // INDIRECT reads a big-endian list from guest memory.
    const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset);
    for (let i = 0; i < 4; i++) dv.setBigUint64(0x100000 + i * 8, BigInt(0x400000 + i * 0x10000) | 3n, false);
    r = vm.hcall(H.PUT_TCE_INDIRECT, liobn, 0x100000n, 0x100000n, 4n);
    expect(r.ret).toBe(0);
    expect(hw.getUa(0x13n)).toBe(ram.ua + 0x430000n);
    host.checkInvariants();
    expect(vm.stats().H_PUT_TCE).toEqual({ real: 1, virtual: 1, exit: 0 });
  });

  it('qemu profile: partial INDIRECT and rounding', async () => {
    const { H } = await import('../../src/index.js');
    const host = await Host.create();
    const qemu = host.spawn();
    const ram = qemu.mmap(1n << 20n);
    const vm = qemu.createVm({ profile: 'qemu' });
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: 0x80000000n, pageShift: 12, offset: 0n, size: 262144n });
    expect(vm.hcall(H.PUT_TCE, 0x80000000n, 0x1234n, 0x5000n | 3n).ret).toBe(0);
    expect(vm.hcall(H.GET_TCE, 0x80000000n, 0x1000n).out[0]).toBe(0x5003n);
    expect(vm.hcall(H.PUT_TCE, 0x180000000n, 0x1000n, 3n).ret).toBe(H.PARAMETER);
    expect(vm.hcall(H.STUFF_TCE, 0x80000000n, 0n, 0n, 0n).ret).toBe(H.PARAMETER);
  });
});
