// Spec: docs/semantics.md §2.3 (common owner check), §5 (ownership / mm rules), §7 E1–E5.
import { describe, expect, it } from 'vitest';
import { SPAPR_TCE_IOMMU, SPAPR_TCE_V2_IOMMU } from '../../src/index.js';
import { MiB, digest, expectErr, v2Setup } from './helpers.js';

describe('ownership (mm mode, Linux ≥ 4.10)', () => {
  it('E01: parent REGISTERs; forked child GET_INFO → EPERM; CHECK_EXTENSION → 1', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    expect(fd.container.mm).toBe(p.mm);
    const child = p.fork();
    const cfd = child.inherit(fd);
    const before = digest(host, [fd]);
    expectErr(() => cfd.getInfo(), 'EPERM');
    expect(cfd.checkExtension(SPAPR_TCE_IOMMU)).toBe(1);
    expect(cfd.checkExtension(SPAPR_TCE_V2_IOMMU)).toBe(1);
    expect(cfd.checkExtension(3)).toBe(0);
    expect(cfd.checkExtension(1)).toBe(0);
    expect(digest(host, [fd])).toBe(before);
    // the owner itself and its threads are unaffected
    expect(fd.getInfo().dma32WindowSize).toBe(2n << 30n);
    expect(p.thread().inherit(fd).getInfo().flags).toBe(1);
    host.checkInvariants();
  });

  it('E02: fresh v2 container: child GET_INFO works (no claim); child REGISTERs → child owns; parent now EPERM', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    const child = p.fork();
    const cfd = child.inherit(fd);
    const info = cfd.getInfo();
    expect(info.flags).toBe(1);
    expect(info.dma32WindowStart).toBe(0n);
    expect(info.dma32WindowSize).toBe(2n << 30n);
    expect(info.ddw).toEqual({ pgSizes: (1n << 12n) | (1n << 16n) | (1n << 24n), maxDynamicWindowsSupported: 2, levels: 5 });
    expect(fd.container.mm).toBeUndefined();
    cfd.registerMemory(ram.ua, ram.size); // the child has a copy of the mapping at the same ua
    expect(fd.container.mm).toBe(child.mm);
    expect(child.mm.lockedPages).toBe(16n);
    expect(p.mm.lockedPages).toBe(0n);
    const before = digest(host, [fd]);
    expectErr(() => fd.getInfo(), 'EPERM');
    expectErr(() => fd.registerMemory(ram.ua, ram.size), 'EPERM');
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EPERM');
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 1 }), 'EPERM');
    expect(fd.checkExtension(SPAPR_TCE_V2_IOMMU)).toBe(1);
    expect(digest(host, [fd])).toBe(before);
    host.checkInvariants();
  });

  it('E03: REGISTER with flags=1 → EINVAL, but the mm is claimed', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    expectErr(() => fd.registerMemory(ram.ua, ram.size, 1), 'EINVAL');
    expect(fd.container.mm).toBe(p.mm);
    expect(fd.container.regions).toHaveLength(0);
    expect(fd.container.enabled).toBe(false);
    expect(p.mm.lockedPages).toBe(0n);
    expect(host.stats().pins).toBe(0);
    const child = p.fork();
    expectErr(() => child.inherit(fd).registerMemory(ram.ua, ram.size), 'EPERM');
    expectErr(() => child.inherit(fd).getInfo(), 'EPERM');
    host.checkInvariants();
  });

  it('E04: v2 UNREGISTER before any claim → EPERM (and claims nothing)', async () => {
    const { host, ram, fd } = await v2Setup('mm');
    const before = digest(host, [fd]);
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size), 'EPERM');
    expect(fd.container.mm).toBeUndefined();
    expect(digest(host, [fd])).toBe(before);
    host.checkInvariants();
  });

  it('E05: v2 MAP_DMA before any successful REGISTER → EPERM (also after a failed one)', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    const before = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true, write: true }), 'EPERM');
    expectErr(() => fd.unmapDma({ iova: 0n, size: 0x1000n }), 'EPERM');
    expect(digest(host, [fd])).toBe(before);
    expect(fd.container.defWindowPending).toBe(true);
    // a failing REGISTER claims but does not enable
    expectErr(() => fd.registerMemory(ram.ua + 0x1000n, ram.size), 'EINVAL');
    expect(fd.container.mm).toBe(p.mm);
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EPERM');
    expect(fd.container.windows[0]).toBeUndefined();
    host.checkInvariants();
  });

  it('threads and clone({vm:true}) children share the mm and pass; a second process with the fd is refused', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, 512n * 1024n);
    const t = p.thread().inherit(fd);
    const v = p.clone({ vm: true }).inherit(fd);
    t.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    v.mapDma({ iova: 0x1000n, vaddr: ram.ua + 0x1000n, size: 0x1000n, write: true });
    v.registerMemory(ram.ua + 512n * 1024n, 512n * 1024n);
    expect(fd.container.regions.map((r) => r.mapped)).toEqual([3n, 1n]);
    const other = host.spawn();
    const ofd = other.inherit(fd); // fd passing to an unrelated process
    expectErr(() => ofd.unmapDma({ iova: 0n, size: 0x1000n }), 'EPERM');
    // Group attach/detach are group-fd ioctls: tce_iommu_attach_group / detach_group make no mm check.
    const g2 = host.addGroup();
    ofd.attachGroup(g2);
    expect(fd.container.groups).toContain(g2);
    ofd.detachGroup(g2);
    expect(fd.container.groups).not.toContain(g2);
    host.checkInvariants();
  });
});

describe('ownership (pid mode)', () => {
  it('pid: a forked child may GET_INFO but every state-changing call → EPERM', async () => {
    const { host, p, ram, fd } = await v2Setup('pid');
    fd.registerMemory(ram.ua, ram.size);
    expect(fd.container.ownerPid).toBe(p.pid);
    const cfd = p.fork().inherit(fd);
    expect(cfd.getInfo().flags).toBe(1);
    const before = digest(host, [fd]);
    expectErr(() => cfd.registerMemory(ram.ua, ram.size), 'EPERM');
    expectErr(() => cfd.unregisterMemory(ram.ua, ram.size), 'EPERM');
    expectErr(() => cfd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EPERM');
    expectErr(() => cfd.unmapDma({ iova: 0n, size: 0x1000n }), 'EPERM');
    expectErr(() => cfd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 1 }), 'EPERM');
    expectErr(() => cfd.removeWindow(0n), 'EPERM');
    expect(digest(host, [fd])).toBe(before);
    host.checkInvariants();
  });

  it('pid: the owner\'s thread passes, a clone({vm:true}) child (new pid, same mm) is refused', async () => {
    const { host, p, ram, fd } = await v2Setup('pid');
    fd.registerMemory(ram.ua, ram.size);
    p.thread().inherit(fd).mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    expect(fd.container.regions[0]!.mapped).toBe(2n);
    const v = p.clone({ vm: true }).inherit(fd);
    const before = digest(host, [fd]);
    expectErr(() => v.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EPERM');
    expectErr(() => v.unmapDma({ iova: 0n, size: 0x1000n }), 'EPERM');
    expect(digest(host, [fd])).toBe(before);
    expect(v.getInfo().dma32WindowSize).toBe(2n * 1024n * MiB);
    host.checkInvariants();
  });

  it('pid: the first claimer wins (a child that registers first owns the container)', async () => {
    const { host, p, ram, fd } = await v2Setup('pid');
    const child = p.fork();
    child.inherit(fd).registerMemory(ram.ua, ram.size);
    expect(fd.container.ownerPid).toBe(child.pid);
    expectErr(() => fd.registerMemory(ram.ua, ram.size), 'EPERM');
    host.checkInvariants();
  });
});
