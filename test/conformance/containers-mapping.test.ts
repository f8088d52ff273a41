// Spec: docs/semantics.md §2.3 (MAP_DMA/UNMAP_DMA), §2.4 (v2 build/clear), §3.2/§3.4, §7 E17–E25 (E18/E25 per the documented divergences).
import { describe, expect, it } from 'vitest';
import { DDW_BASE, GiB, MiB, digest, expectErr, regionAt, v1Setup, v2Setup } from './helpers.js';

const PERM = 3n;

describe('v2 MAP_DMA / UNMAP_DMA', () => {
  it('MAP stores translate(ua)|perm in the HW table and ua in the userspace view; UNMAP clears both', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0x100000n, vaddr: ram.ua + 0x8000n, size: 0x20000n, read: true, write: true });
    const t = fd.container.windows[0]!.table;
    for (let i = 0n; i < 32n; i++) {
      const ua = ram.ua + 0x8000n + i * 0x1000n;
      expect(t.get(0x100n + i)).toBe(p.mm.translate(ua)!.hpa | PERM);
      expect(t.getUa(0x100n + i)).toBe(ua);
    }
    expect(t.get(0xffn)).toBe(0n);
    expect(t.get(0x120n)).toBe(0n);
    expect(regionAt(fd, ram.ua).mapped).toBe(33n);
    host.checkInvariants();
    fd.unmapDma({ iova: 0x108000n, size: 0x8000n });
    expect(t.get(0x108n)).toBe(0n);
    expect(t.getUa(0x108n)).toBe(0n);
    expect(t.get(0x107n)).not.toBe(0n);
    expect(regionAt(fd, ram.ua).mapped).toBe(25n);
    host.checkInvariants();
  });

  it('E17: MAP iova outside every window → ENXIO; vaddr/size unaligned → EINVAL; flags 0 or 4 → EINVAL', async () => {
    const { host, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    // flags are checked before the pending default window is created
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, flags: 4 }), 'EINVAL');
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, flags: 5 }), 'EINVAL');
    expect(fd.container.defWindowPending).toBe(true);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    const before = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 4n * GiB, vaddr: ram.ua, size: 0x1000n, read: true }), 'ENXIO');
    expectErr(() => fd.mapDma({ iova: DDW_BASE, vaddr: ram.ua, size: 0x1000n, read: true }), 'ENXIO');
    expectErr(() => fd.unmapDma({ iova: 4n * GiB, size: 0x1000n }), 'ENXIO');
    expectErr(() => fd.mapDma({ iova: 0x1000n, vaddr: ram.ua + 0x800n, size: 0x1000n, read: true }), 'EINVAL');
    expectErr(() => fd.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x800n, read: true }), 'EINVAL');
    expectErr(() => fd.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x1000n }), 'EINVAL');
    expectErr(() => fd.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x1000n, flags: 0 }), 'EINVAL');
    expectErr(() => fd.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x1000n, flags: 4 }), 'EINVAL');
    expectErr(() => fd.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x1000n, read: false, write: false }), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    expect(() => fd.mapDma({ iova: '0x1000', vaddr: ram.ua, size: 0x1000n, read: true } as never)).toThrow(TypeError);
    host.checkInvariants();
  });

  it('E18 (divergence): MAP/UNMAP with an iova misaligned to the IOMMU page → EINVAL (kernel: +1)', async () => {
    const { host, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0x2000n, vaddr: ram.ua, size: 0x1000n, read: true });
    const before = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 0x1800n, vaddr: ram.ua, size: 0x1000n, read: true }), 'EINVAL');
    expectErr(() => fd.unmapDma({ iova: 0x2800n, size: 0x1000n }), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    host.checkInvariants();
  });

  it('E20: MAP where page k is not registered → EINVAL; entries [0,k) invalid afterwards even if mapped before', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, 0x10000n); // 16 IOMMU pages of 4 KiB
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x10000n, read: true, write: true });
    const r = regionAt(fd, ram.ua);
    expect(r.mapped).toBe(17n);
    const t = fd.container.windows[0]!.table;
    expect(t.getUa(15n)).toBe(ram.ua + 0xf000n);
    const locked = p.mm.lockedPages;
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x11000n, read: true }), 'EINVAL');
    for (let i = 0n; i < 17n; i++) {
      expect(t.get(i)).toBe(0n);
      expect(t.getUa(i)).toBe(0n);
    }
    expect(r.mapped).toBe(1n);
    expect(p.mm.lockedPages).toBe(locked);
    host.checkInvariants();
    fd.unregisterMemory(ram.ua, 0x10000n);
    host.checkInvariants();
  });

  it('E21: MAP over an existing mapping → 0; old region mapped − 1, new region mapped + 1', async () => {
    const { host, p, ram, ram2, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.registerMemory(ram2.ua, ram2.size);
    fd.mapDma({ iova: 0x5000n, vaddr: ram.ua, size: 0x1000n, read: true });
    const a = regionAt(fd, ram.ua);
    const b = regionAt(fd, ram2.ua);
    expect([a.mapped, b.mapped]).toEqual([2n, 1n]);
    fd.mapDma({ iova: 0x5000n, vaddr: ram2.ua + 0x3000n, size: 0x1000n, write: true });
    expect([a.mapped, b.mapped]).toEqual([1n, 2n]);
    const t = fd.container.windows[0]!.table;
    expect(t.getUa(5n)).toBe(ram2.ua + 0x3000n);
    expect(t.get(5n)).toBe(p.mm.translate(ram2.ua + 0x3000n)!.hpa | PERM);
    host.checkInvariants();
    fd.unregisterMemory(ram.ua, ram.size);
    host.checkInvariants();
  });

  it('E22: a 16 MiB IOMMU page over a non-hugetlb region → EINVAL; over a 16 MiB hugetlb region → 0', async () => {
    const { host, p, fd } = await v2Setup('mm');
    const { startAddr } = fd.createWindow({ pageShift: 24, windowSize: GiB, levels: 1 });
    expect(startAddr).toBe(DDW_BASE);
    const normal = p.mmap(32n * MiB, { backed: false });
    fd.registerMemory(normal.ua, normal.size);
    const aligned = (normal.ua + (16n * MiB - 1n)) & ~(16n * MiB - 1n);
    expect(regionAt(fd, normal.ua).pageShift).toBe(16);
    const before = digest(host, [fd]);
    const locked = p.mm.lockedPages;
    expectErr(() => fd.mapDma({ iova: DDW_BASE, vaddr: aligned, size: 16n * MiB, read: true }), 'EINVAL');
    expect(p.mm.lockedPages, '§3.1: a failed MAP leaves locked_vm unchanged').toBe(locked);
    expect(regionAt(fd, normal.ua).mapped).toBe(1n);
    expect(digest(host, [fd])).toBe(before);
    const huge = p.mmap(16n * MiB, { hugePageShift: 24, backed: false });
    fd.registerMemory(huge.ua, huge.size);
    const hr = regionAt(fd, huge.ua);
    expect(hr.pageShift).toBe(24);
    fd.mapDma({ iova: DDW_BASE + 16n * MiB, vaddr: huge.ua, size: 16n * MiB, read: true, write: true });
    const t = fd.container.windows[1]!.table;
    const entry = (DDW_BASE + 16n * MiB) >> 24n;
    expect(t.get(entry)).toBe(p.mm.translate(huge.ua)!.hpa | PERM);
    expect(t.getUa(entry)).toBe(huge.ua);
    expect(hr.mapped).toBe(2n);
    host.checkInvariants();
  });

  it('E23: MAP write-only → the HW TCE has R|W (v2 and v1); read-only → R', async () => {
    const { host, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0x1000n, vaddr: ram.ua, size: 0x1000n, write: true });
    fd.mapDma({ iova: 0x2000n, vaddr: ram.ua, size: 0x1000n, flags: 2 });
    fd.mapDma({ iova: 0x3000n, vaddr: ram.ua, size: 0x1000n, read: true });
    const t = fd.container.windows[0]!.table;
    expect(t.get(1n) & PERM).toBe(3n);
    expect(t.get(2n) & PERM).toBe(3n);
    expect(t.get(3n) & PERM).toBe(1n);
    host.checkInvariants();
    const v1 = await v1Setup('mm');
    v1.fd.enable();
    v1.fd.mapDma({ iova: 0x1000n, vaddr: v1.ram.ua, size: 0x1000n, write: true });
    expect(v1.fd.container.windows[0]!.table.get(1n) & PERM).toBe(3n);
    v1.host.checkInvariants();
  });

  it('E24: UNMAP of a never-mapped range → 0 and nothing changes; UNMAP flags ≠ 0 → EINVAL', async () => {
    const { host, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    const before = digest(host, [fd]);
    fd.unmapDma({ iova: 0x100000n, size: 0x100000n });
    fd.unmapDma({ iova: 0x1000n, size: 0n });
    expect(digest(host, [fd])).toBe(before);
    expectErr(() => fd.unmapDma({ iova: 0n, size: 0x1000n, flags: 1 }), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    expect(regionAt(fd, ram.ua).mapped).toBe(2n);
    host.checkInvariants();
  });

  it('E25 (divergence): MAP/UNMAP running past the window end → EINVAL, nothing written', async () => {
    const { host, ram, fd } = await v2Setup('mm', { tce32Size: 256n * MiB });
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 256n * MiB - 0x1000n, vaddr: ram.ua, size: 0x1000n, read: true }); // last entry: fine
    const before = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 256n * MiB - 0x1000n, vaddr: ram.ua, size: 0x2000n, read: true }), 'EINVAL');
    expectErr(() => fd.unmapDma({ iova: 256n * MiB - 0x1000n, size: 0x2000n }), 'EINVAL');
    expectErr(() => fd.unmapDma({ iova: 0n, size: 1n << 63n }), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    const w = fd.createWindow({ pageShift: 16, windowSize: 256n * MiB, levels: 2 });
    const big = fd.container.windows[1]!.table;
    const end = w.startAddr + big.size * 0x10000n;
    fd.mapDma({ iova: end - 0x10000n, vaddr: ram.ua, size: 0x10000n, read: true });
    const b2 = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: end - 0x10000n, vaddr: ram.ua, size: 0x20000n, read: true }), 'EINVAL');
    expect(digest(host, [fd])).toBe(b2);
    host.checkInvariants();
    void MiB;
  });
});
