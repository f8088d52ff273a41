// Spec: docs/semantics.md §2.3 (ENABLE/DISABLE, type checks), §2.4 (v1 build/clear), §3.1/§3.5, §7 E6–E9.
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/index.js';
import { GiB, MiB, digest, expectErr, v1Setup, v2Setup } from './helpers.js';

describe('v1 containers', () => {
  it('E06: v2 ENABLE/DISABLE → ENOTTY; v1 REGISTER/UNREGISTER/CREATE/REMOVE → ENOTTY', async () => {
    const a = await v2Setup('mm');
    const beforeA = digest(a.host, [a.fd]);
    expectErr(() => a.fd.enable(), 'ENOTTY');
    expectErr(() => a.fd.disable(), 'ENOTTY');
    expect(digest(a.host, [a.fd])).toBe(beforeA);
    expect(a.fd.container.mm).toBeUndefined();

    const b = await v1Setup('mm');
    const beforeB = digest(b.host, [b.fd]);
    expectErr(() => b.fd.registerMemory(b.ram.ua, b.ram.size), 'ENOTTY');
    expectErr(() => b.fd.unregisterMemory(b.ram.ua, b.ram.size), 'ENOTTY');
    expectErr(() => b.fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1 }), 'ENOTTY');
    expectErr(() => b.fd.removeWindow(0n), 'ENOTTY');
    expect(digest(b.host, [b.fd])).toBe(beforeB);
    expect(b.fd.container.mm).toBeUndefined();
    a.host.checkInvariants();
    b.host.checkInvariants();
  });

  it('E07: v1 ENABLE twice → 0 then EBUSY; locked_vm charged tce32_size >> PAGE_SHIFT once', async () => {
    const host = await Host.create({ ownerCheck: 'mm' });
    const p = host.spawn();
    const g = host.addGroup({ ddw: false }); // default tce32_size 2 GiB
    const fd = p.openContainer();
    fd.attachGroup(g);
    fd.setIommu('v1');
    expect(g.owned).toBe(true);
    const info = fd.getInfo();
    expect(info).toMatchObject({ dma32WindowStart: 0n, dma32WindowSize: 2n * GiB, flags: 0 });
    expect(info.ddw).toBeUndefined();
    fd.enable();
    expect(p.mm.lockedPages).toBe(32768n); // 2 GiB / 64 KiB, by hand
    expect(fd.container.lockedPages).toBe(32768n);
    expect(fd.container.enabled).toBe(true);
    expect(fd.container.mm).toBe(p.mm);
    const before = digest(host, [fd]);
    expectErr(() => fd.enable(), 'EBUSY');
    expect(digest(host, [fd])).toBe(before);
    expect(p.mm.lockedPages).toBe(32768n);
    host.checkInvariants();
    fd.disable();
    expect(p.mm.lockedPages).toBe(0n);
    expect(fd.container.lockedPages).toBe(0n);
    host.checkInvariants();
  });

  it('E07 (4 KiB system pages): ENABLE charges tce32_size >> 12', async () => {
    const host = await Host.create({ ownerCheck: 'mm', pageShift: 12 });
    const p = host.spawn();
    const g = host.addGroup({ ddw: false, tce32Size: 256n * MiB });
    const fd = p.openContainer();
    fd.attachGroup(g);
    fd.setIommu(2);
    fd.enable();
    expect(p.mm.lockedPages).toBe(65536n);
    host.checkInvariants();
  });

  it('E08: v1 ENABLE over RLIMIT_MEMLOCK → ENOMEM, not enabled, mm claimed', async () => {
    // limit 4095 pages of 64 KiB; enable needs 256 MiB / 64 KiB = 4096
    const { host, p, fd } = await v1Setup('mm', { memlockLimit: 4095n << 16n });
    expectErr(() => fd.enable(), 'ENOMEM');
    expect(fd.container.enabled).toBe(false);
    expect(fd.container.lockedPages).toBe(0n);
    expect(p.mm.lockedPages).toBe(0n);
    expect(fd.container.mm).toBe(p.mm);
    expectErr(() => p.fork().inherit(fd).enable(), 'EPERM');
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: 0n, size: 0x1000n, read: true }), 'EPERM');
    host.checkInvariants();
    // exactly at the limit succeeds
    const ok = await v1Setup('mm', { memlockLimit: 4096n << 16n });
    ok.fd.enable();
    expect(ok.p.mm.lockedPages).toBe(4096n);
    ok.host.checkInvariants();
  });

  it('E09: v1 DISABLE when disabled → 0; MAP/UNMAP after DISABLE → EPERM', async () => {
    const { host, p, ram, fd } = await v1Setup('mm');
    const before = digest(host, [fd]);
    fd.disable();
    expect(digest(host, [fd])).toBe(before);
    fd.enable();
    fd.mapDma({ iova: 0x2000n, vaddr: ram.ua, size: 0x2000n, read: true, write: true });
    const t = fd.container.windows[0]!.table;
    expect(t.get(2n) & 3n).toBe(3n);
    expect(host.stats().pins).toBe(2); // both 4 KiB IOMMU pages lie in one 64 KiB system page, pinned once each
    fd.disable();
    expect(fd.container.enabled).toBe(false);
    expect(p.mm.lockedPages).toBe(0n);
    const b2 = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EPERM');
    expectErr(() => fd.unmapDma({ iova: 0x2000n, size: 0x2000n }), 'EPERM');
    expect(digest(host, [fd])).toBe(b2);
    fd.disable();
    expect(digest(host, [fd])).toBe(b2);
    host.checkInvariants();
  });

  it('v1 MAP pins each page and stores hpa|perm; UNMAP clears and unpins (§2.4, §3.5)', async () => {
    const { host, p, ram, fd } = await v1Setup('mm');
    fd.enable();
    fd.mapDma({ iova: 0x10000n, vaddr: ram.ua + 0x10000n, size: 0x20000n, read: true }); // 32 IOMMU pages over 2 system pages
    const t = fd.container.windows[0]!.table;
    expect(t.pageShift).toBe(12);
    for (let i = 0n; i < 32n; i++) {
      const hpa = p.mm.translate(ram.ua + 0x10000n + i * 0x1000n)!.hpa;
      expect(t.get(0x10n + i)).toBe(hpa | 1n);
      expect(host.hostmem.pinCount(hpa)).toBe(16); // one pin per valid entry on the page
    }
    expect(host.stats().pins).toBe(32);
    fd.unmapDma({ iova: 0x10000n, size: 0x20000n });
    expect(t.get(0x10n)).toBe(0n);
    expect(host.stats().pins).toBe(0);
    // an unmapped vaddr → EFAULT, nothing left pinned or mapped
    const before = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua + ram.size - 0x1000n, size: 0x2000n, read: true }), 'EFAULT');
    expect(digest(host, [fd])).toBe(before);
    host.checkInvariants();
  });
});
