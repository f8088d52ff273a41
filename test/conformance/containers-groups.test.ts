// Spec: docs/semantics.md §2.2 (take/release ownership), §2.5 (attach/detach/lifecycle), §3.6–§3.7, §7 E33–E37.
import { describe, expect, it } from 'vitest';
import { Host, TceError, regionsOf } from '../../src/index.js';
import { DDW_BASE, GiB, MiB, digest, expectErr, expectProgrammed, regionAt, v1Setup, v2Setup } from './helpers.js';

describe('groups: attach / detach / release', () => {
  it('E33: attaching the same group twice → EBUSY; nothing changes', async () => {
    const { host, ram, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    const before = digest(host, [fd]);
    expectErr(() => fd.attachGroup(g), 'EBUSY');
    expect(digest(host, [fd])).toBe(before);
    expect(fd.container.groups).toEqual([g]);
    host.checkInvariants();
  });

  it('E33: v1 container, a second (legacy) group → EBUSY; the group stays with the host', async () => {
    const { host, g, fd } = await v1Setup('mm');
    const g2 = host.addGroup({ ddw: false, tce32Size: 256n * MiB });
    const before = digest(host, [fd]);
    expectErr(() => fd.attachGroup(g2), 'EBUSY');
    expect(digest(host, [fd])).toBe(before);
    expect(g2.owned).toBe(false);
    expect(g2.container).toBeUndefined();
    expect(g.owned).toBe(true);
    host.checkInvariants();
  });

  it('E33: v1 + a DDW group → EPERM; v2 + a legacy group → EPERM (at SET_IOMMU and at attach)', async () => {
    const host = await Host.create({ ownerCheck: 'mm' });
    const p = host.spawn();
    const ddw = host.addGroup();
    const legacy = host.addGroup({ ddw: false, tce32Size: 256n * MiB });
    const a = p.openContainer();
    a.attachGroup(ddw);
    expectErr(() => a.setIommu('v1'), 'EPERM');
    expect(ddw.owned).toBe(false);
    expect(a.container.v2).toBeUndefined();
    a.setIommu('v2'); // the group was only recorded; v2 takes it
    expect(ddw.owned).toBe(true);
    const b = p.openContainer();
    b.attachGroup(legacy);
    expectErr(() => b.setIommu('v2'), 'EPERM');
    expect(legacy.owned).toBe(false);
    b.setIommu('v1');
    expect(legacy.owned).toBe(true);
    // a DDW group joining a v1 container holding a legacy group: other ops family → EPERM
    const ddw2 = host.addGroup();
    const before = digest(host, [a, b]);
    expectErr(() => b.attachGroup(ddw2), 'EPERM');
    expect(digest(host, [a, b])).toBe(before);
    expect(ddw2.owned).toBe(false);
    host.checkInvariants();
  });

  it('E34: a second group attached to a v2 container gets the existing windows programmed', async () => {
    const { host, p, ram, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1 });
    fd.mapDma({ iova: DDW_BASE, vaddr: ram.ua, size: 0x10000n, read: true });
    const g2 = host.addGroup();
    const locked = p.mm.lockedPages;
    fd.attachGroup(g2);
    expect(g2.owned).toBe(true);
    expect(g2.hostWindow).toBe(false);
    expectProgrammed(fd, [g, g2]);
    expect(g2.slots[0]).toBeDefined();
    expect(g2.slots[1]).toBe(fd.container.windows[1]!.table);
    expect(p.mm.lockedPages).toBe(locked); // tables are shared, not duplicated
    expect(fd.container.windows[1]!.table.getUa(DDW_BASE >> 16n)).toBe(ram.ua);
    host.checkInvariants();
  });

  it('E34: while the default window is pending the second group gets it when it materialises', async () => {
    const { host, ram, g, fd } = await v2Setup('mm');
    const g2 = host.addGroup();
    fd.attachGroup(g2);
    expect(fd.container.defWindowPending).toBe(true);
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    expectProgrammed(fd, [g, g2]);
    expect(g.slots[0]).toBeDefined();
    host.checkInvariants();
  });

  it('E35: detaching one of two groups clears every entry but keeps the windows; the other group sees empty tables', async () => {
    const { host, p, ram, g, fd } = await v2Setup('mm');
    const g2 = host.addGroup();
    fd.attachGroup(g2);
    fd.registerMemory(ram.ua, ram.size);
    fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 2 });
    fd.mapDma({ iova: 0x4000n, vaddr: ram.ua, size: 0x4000n, read: true });
    fd.mapDma({ iova: DDW_BASE, vaddr: ram.ua, size: 0x20000n, write: true });
    const r = regionAt(fd, ram.ua);
    expect(r.mapped).toBe(7n);
    const [w0, w1] = fd.container.windows;
    const locked = p.mm.lockedPages;
    fd.detachGroup(g);
    expect(g.owned).toBe(false);
    expect(g.hostWindow).toBe(true);
    expect(g.slots).toEqual([undefined, undefined]);
    expect(fd.container.windows[0]).toBe(w0);
    expect(fd.container.windows[1]).toBe(w1);
    expectProgrammed(fd, [g2]);
    for (const e of [4n, 5n, 6n, 7n]) expect(w0!.table.get(e)).toBe(0n);
    for (const e of [DDW_BASE >> 16n, (DDW_BASE >> 16n) + 1n]) {
      expect(w1!.table.get(e)).toBe(0n);
      expect(w1!.table.getUa(e)).toBe(0n);
    }
    expect(r.mapped).toBe(1n);
    expect(p.mm.lockedPages).toBe(locked);
    expect(fd.container.enabled).toBe(true);
    host.checkInvariants();
    // the remaining group still works
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    expect(r.mapped).toBe(2n);
    host.checkInvariants();
  });

  it('E36: removing the last group fully releases the container; locked_vm back to baseline; SET_IOMMU needed again', async () => {
    const { host, p, ram, ram2, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.registerMemory(ram2.ua, ram2.size);
    fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 2 });
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x10000n, read: true });
    fd.mapDma({ iova: DDW_BASE, vaddr: ram2.ua, size: ram2.size, read: true });
    expect(p.mm.lockedPages).toBeGreaterThan(32n);
    fd.detachGroup(g);
    const c = fd.container;
    expect(c.windows).toEqual([undefined, undefined]);
    expect(c.regions).toHaveLength(0);
    expect(c.mm).toBeUndefined();
    expect(c.enabled).toBe(false);
    expect(c.v2).toBeUndefined();
    expect(c.defWindowPending).toBe(false);
    expect(p.mm.lockedPages).toBe(0n);
    expect(regionsOf(p.mm)).toHaveLength(0);
    const st = host.stats();
    expect(st.pins).toBe(0);
    expect(st.regions).toBe(0);
    expect(st.tables).toBe(0);
    expect(st.lockedPages).toBe(0n);
    expect(g.owned).toBe(false);
    expect(g.hostWindow).toBe(true);
    host.checkInvariants();
    expect(() => fd.registerMemory(ram.ua, ram.size)).toThrow(TceError);
    expect(fd.checkExtension(7)).toBe(1);
    expectErr(() => fd.setIommu('v2'), 'EINVAL'); // no group
    fd.attachGroup(g);
    fd.setIommu('v2');
    fd.registerMemory(ram.ua, ram.size);
    expect(p.mm.lockedPages).toBe(16n);
    host.checkInvariants();
  });

  it('E36 (v1): removing the last group unpins, clears the legacy table and returns the ENABLE charge', async () => {
    const { host, p, ram, g, fd } = await v1Setup('mm');
    fd.enable();
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x8000n, read: true });
    expect(host.stats().pins).toBe(8);
    fd.detachGroup(g);
    expect(host.stats().pins).toBe(0);
    expect(p.mm.lockedPages).toBe(0n);
    expect(g.legacyTable!.get(0n)).toBe(0n);
    expect(g.owned).toBe(false);
    expect(fd.container.lockedPages).toBe(0n);
    host.checkInvariants();
  });

  it('§3.7: closing every handle (owner and inherited) releases the container; closing one does not', async () => {
    const { host, p, ram, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x10000n, read: true });
    const cfd = p.fork().inherit(fd);
    fd.close();
    expect(fd.container.regions).toHaveLength(1);
    expect(p.mm.lockedPages).toBeGreaterThan(16n);
    cfd.close(); // release from another process uses the stored mm
    expect(p.mm.lockedPages).toBe(0n);
    expect(host.stats().pins).toBe(0);
    expect(host.stats().tables).toBe(0);
    expect(g.owned).toBe(false);
    expect(g.container).toBeUndefined();
    host.checkInvariants();
  });

  it('E37: taking ownership with host DMA mappings outstanding → EBUSY (SET_IOMMU and later attach; DDW and legacy)', async () => {
    const host = await Host.create({ ownerCheck: 'mm' });
    const p = host.spawn();
    const g = host.addGroup();
    g.hostDmaMappings = 3;
    const fd = p.openContainer();
    fd.attachGroup(g);
    expectErr(() => fd.setIommu('v2'), 'EBUSY');
    expect(g.owned).toBe(false);
    expect(g.hostWindow).toBe(true);
    expect(fd.container.v2).toBeUndefined();
    g.hostDmaMappings = 0;
    fd.setIommu('v2');
    expect(g.owned).toBe(true);
    const ram = p.mmap(MiB);
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    const g2 = host.addGroup();
    g2.hostDmaMappings = 1;
    const before = digest(host, [fd]);
    expectErr(() => fd.attachGroup(g2), 'EBUSY');
    expect(digest(host, [fd])).toBe(before);
    expect(g2.owned).toBe(false);
    expect(g2.slots).toEqual([undefined, undefined]);
    expect(fd.container.groups).toEqual([g]);
    host.checkInvariants();

    const legacy = host.addGroup({ ddw: false, tce32Size: 256n * MiB });
    legacy.hostDmaMappings = 2;
    const fd1 = p.openContainer();
    fd1.attachGroup(legacy);
    expectErr(() => fd1.setIommu('v1'), 'EBUSY');
    expect(legacy.owned).toBe(false);
    host.checkInvariants();
  });
});
