// Spec: docs/semantics.md §2.1 (prereg), §2.3 (REGISTER/UNREGISTER), §3.1–§3.3, §7 E10–E16 and E19 (divergence: EBUSY).
import { describe, expect, it } from 'vitest';
import { regionsOf } from '../../src/index.js';
import { MiB, digest, expectErr, regionAt, v2Setup } from './helpers.js';

describe('v2 pre-registration', () => {
  it('E10: REGISTER with vaddr or size not sys-page aligned, or wrapping → EINVAL, nothing registered', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, 0x10000n); // claim + one region, so "unchanged" is meaningful
    const before = digest(host, [fd]);
    expectErr(() => fd.registerMemory(ram.ua + 0x1000n, 0x10000n), 'EINVAL');
    expectErr(() => fd.registerMemory(ram.ua + 0x10000n, 0x1000n), 'EINVAL');
    expectErr(() => fd.registerMemory(ram.ua + 0x10000n, 0x18000n), 'EINVAL');
    expectErr(() => fd.registerMemory(0xffff_ffff_fff0_0000n, 0x20_0000n), 'EINVAL'); // wraps
    expectErr(() => fd.registerMemory((1n << 64n) - 0x10000n, 0x20000n), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    expect(p.mm.lockedPages).toBe(1n);
    expect(regionsOf(p.mm)).toHaveLength(1);
    expect(() => fd.registerMemory(String(ram.ua) as unknown as bigint, 0x10000n)).toThrow(TypeError);
    host.checkInvariants();
  });

  it('E10 (4 KiB system pages): 4 KiB alignment suffices', async () => {
    const { host, p, ram, fd } = await v2Setup('mm', { pageShift: 12 });
    fd.registerMemory(ram.ua + 0x1000n, 0x3000n);
    expect(p.mm.lockedPages).toBe(3n);
    expectErr(() => fd.registerMemory(ram.ua + 0x8800n, 0x1000n), 'EINVAL');
    host.checkInvariants();
  });

  it('E11: REGISTER the same range twice in one container → EBUSY, used unchanged', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    const r = regionAt(fd, ram.ua);
    expect(r.used).toBe(1);
    expect(r.mapped).toBe(1n);
    expect(r.entries).toBe(16n);
    expect(p.mm.lockedPages).toBe(16n);
    expect(host.stats().pins).toBe(16);
    const before = digest(host, [fd]);
    expectErr(() => fd.registerMemory(ram.ua, ram.size), 'EBUSY');
    expect(digest(host, [fd])).toBe(before);
    expect(r.used).toBe(1);
    expect(p.mm.lockedPages).toBe(16n);
    host.checkInvariants();
  });

  it('E12: the same range in a 2nd container of the same mm → 0, used = 2, accounted once', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    const g2 = host.addGroup();
    const fd2 = p.openContainer();
    fd2.attachGroup(g2);
    fd2.setIommu('v2');
    fd2.registerMemory(ram.ua, ram.size);
    const regions = regionsOf(p.mm);
    expect(regions).toHaveLength(1);
    expect(regions[0]!.used).toBe(2);
    expect(regions[0]!.mapped).toBe(1n);
    expect(fd2.container.regions[0]!.desc).toBe(fd.container.regions[0]!.desc);
    expect(p.mm.lockedPages).toBe(16n);
    expect(host.stats().pins).toBe(16);
    host.checkInvariants();
    // dropping one container's reference keeps the region for the other
    fd.unregisterMemory(ram.ua, ram.size);
    expect(regions[0]!.used).toBe(1);
    expect(p.mm.lockedPages).toBe(16n);
    expect(fd.container.regions).toHaveLength(0);
    host.checkInvariants();
  });

  it('E13: an overlapping, non-identical range → EINVAL, nothing changed', async () => {
    const { host, p, fd } = await v2Setup('mm');
    const big = p.mmap(2n * MiB);
    fd.registerMemory(big.ua, MiB);
    const before = digest(host, [fd]);
    expectErr(() => fd.registerMemory(big.ua + MiB / 2n, MiB), 'EINVAL');
    expectErr(() => fd.registerMemory(big.ua, 2n * MiB), 'EINVAL');
    expectErr(() => fd.registerMemory(big.ua + 0x10000n, 0x10000n), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    expect(p.mm.lockedPages).toBe(16n);
    expect(host.stats().pins).toBe(16);
    // adjacent (not overlapping) is fine
    fd.registerMemory(big.ua + MiB, MiB);
    expect(p.mm.lockedPages).toBe(32n);
    host.checkInvariants();
  });

  it('E14: a range with an unmapped hole → EFAULT, pins and accounting released', async () => {
    const { host, p, ram, ram2, fd } = await v2Setup('mm');
    expect(ram2.ua).toBe(ram.ua + ram.size + 0x10000n); // one-page gap between the mappings
    const third = p.mmap(MiB);
    fd.registerMemory(third.ua, third.size); // claim first, so the digest compares everything
    const before = digest(host, [fd]);
    expectErr(() => fd.registerMemory(ram.ua, ram2.ua + ram2.size - ram.ua), 'EFAULT');
    expectErr(() => fd.registerMemory(ram.ua + ram.size, 0x10000n), 'EFAULT');
    expect(digest(host, [fd])).toBe(before);
    expect(p.mm.lockedPages).toBe(16n);
    expect(host.stats().pins).toBe(16);
    expect(host.stats().regions).toBe(1);
    host.checkInvariants();
  });

  it('E15: UNREGISTER with a different size → ENOENT; a region of another container only → ENOENT', async () => {
    const { host, p, ram, ram2, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    const g2 = host.addGroup();
    const fd2 = p.openContainer();
    fd2.attachGroup(g2);
    fd2.setIommu('v2');
    fd2.registerMemory(ram2.ua, ram2.size);
    const before = digest(host, [fd, fd2]);
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size / 2n), 'ENOENT');
    expectErr(() => fd.unregisterMemory(ram.ua + 0x10000n, ram.size - 0x10000n), 'ENOENT');
    expectErr(() => fd2.unregisterMemory(ram.ua, ram.size), 'ENOENT');
    expectErr(() => fd.unregisterMemory(ram2.ua, ram2.size), 'ENOENT');
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size, 1), 'EINVAL');
    expectErr(() => fd.unregisterMemory(ram.ua + 0x800n, ram.size), 'EINVAL');
    expect(digest(host, [fd, fd2])).toBe(before);
    host.checkInvariants();
  });

  it('E16: UNREGISTER after all unmaps → 0; locked_vm −= entries; region gone and unpinned', async () => {
    const { host, p, ram, ram2, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.registerMemory(ram2.ua, ram2.size);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x4000n, read: true, write: true });
    const r = regionAt(fd, ram.ua);
    expect(r.mapped).toBe(5n);
    const windowPages = p.mm.lockedPages - 32n;
    fd.unmapDma({ iova: 0n, size: 0x4000n });
    expect(r.mapped).toBe(1n);
    fd.unregisterMemory(ram.ua, ram.size);
    expect(p.mm.lockedPages).toBe(16n + windowPages);
    expect(regionsOf(p.mm).map((x) => x.ua)).toEqual([ram2.ua]);
    expect(fd.container.regions.map((x) => x.ua)).toEqual([ram2.ua]);
    expect(host.stats().pins).toBe(16);
    // gone: a second UNREGISTER finds nothing
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size), 'ENOENT');
    // REGISTER stays enabled forever: MAP still reaches the window checks
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EINVAL');
    host.checkInvariants();
  });

  it('E19 (divergence): UNREGISTER of a region still mapped → EBUSY; region stays registered and nothing changes', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0x3000n, vaddr: ram.ua + 0x2000n, size: 0x1000n, read: true });
    const r = regionAt(fd, ram.ua);
    const before = digest(host, [fd]);
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size), 'EBUSY');
    expect(digest(host, [fd])).toBe(before);
    expect(r.used).toBe(1);
    expect(r.mapped).toBe(2n);
    expect(fd.container.regions).toHaveLength(1);
    expect(regionsOf(p.mm)).toHaveLength(1);
    // maps into it still work, and it can be unregistered once unmapped
    fd.mapDma({ iova: 0x4000n, vaddr: ram.ua, size: 0x1000n, write: true });
    expect(r.mapped).toBe(3n);
    host.checkInvariants();
    fd.unmapDma({ iova: 0n, size: 0x10000n });
    expect(r.mapped).toBe(1n);
    fd.unregisterMemory(ram.ua, ram.size);
    expect(regionsOf(p.mm)).toHaveLength(0);
    expect(host.stats().pins).toBe(0);
    host.checkInvariants();
  });
});

