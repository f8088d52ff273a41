// Spec: docs/semantics.md §2.2 (get_table_size, create_table), §2.3 (TCE_CREATE/TCE_REMOVE, default window), §3.1, §3.6, §7 E26–E32.
import { describe, expect, it } from 'vitest';
import { getTableSize } from '../../src/index.js';
import { DDW_BASE, GiB, MiB, digest, expectErr, expectProgrammed, regionAt, specTablePages, specTableSize, v2Setup } from './helpers.js';

describe('get_table_size (§2.2), computed independently', () => {
  it('hand-computed values agree with the formula and with src getTableSize', () => {
    // 2 GiB of 4 KiB pages, 1 level: 2^19 TCEs = 4 MiB, one 4 MiB node, ×2 → 8 MiB = 128 pages of 64 KiB (docs/semantics.md §6)
    expect(specTableSize(12, 2n * GiB, 1, 16)).toBe(8n * MiB);
    expect(specTablePages(12, 2n * GiB, 1)).toBe(128n);
    // 1 MiB of 64 KiB pages: 16 TCEs, leaf padded to 4 KiB, rounded to one 64 KiB node, ×2 → 2 pages
    expect(specTablePages(16, MiB, 1)).toBe(2n);
    // 1 GiB of 64 KiB pages, 2 levels: 2^14 TCEs = 128 KiB leaf in 64 KiB nodes + one 64 KiB root, ×2 → 384 KiB = 6 pages
    expect(specTablePages(16, GiB, 2)).toBe(6n);
    expect(specTableSize(12, 3n * GiB, 1, 16)).toBe(0n);
    expect(specTableSize(12, GiB, 0, 16)).toBe(0n);
    expect(specTableSize(12, GiB, 6, 16)).toBe(0n);
    for (const [sh, win, l] of [[12, 2n * GiB, 1], [16, GiB, 2], [16, MiB, 1], [24, 1n << 40n, 3], [12, 1n << 36n, 4], [16, 64n * GiB, 5]] as const) {
      for (const ps of [12, 16]) expect(getTableSize(sh, win, l, ps)).toBe(specTableSize(sh, win, l, ps));
    }
  });
});

describe('DMA windows', () => {
  it('E26: the first MAP after attach creates the default window: locked_vm += get_table_size(12, tce32_size, 1) >> PAGE_SHIFT; GET_INFO unaffected', async () => {
    const { host, p, ram, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    expect(fd.container.defWindowPending).toBe(true);
    expect(fd.container.windows).toEqual([undefined, undefined]);
    const info = fd.getInfo();
    expect(p.mm.lockedPages).toBe(16n);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    const w = fd.container.windows[0]!;
    expect(w).toMatchObject({ startAddr: 0n, windowSize: 2n * GiB, pageShift: 12, levels: 1 });
    expect(w.table.offset).toBe(0n);
    expect(w.table.size).toBe(1n << 19n);
    expect(fd.container.defWindowPending).toBe(false);
    expect(p.mm.lockedPages).toBe(16n + 128n);
    expect(p.mm.lockedPages).toBe(16n + specTablePages(12, 2n * GiB, 1));
    expect(fd.getInfo()).toEqual(info);
    expectProgrammed(fd, [g]);
    host.checkInvariants();
  });

  it('E26 (256 MiB 32-bit window, 4 KiB system pages): the default window costs get_table_size >> 12', async () => {
    const { host, p, ram, fd } = await v2Setup('mm', { tce32Size: 256n * MiB, pageShift: 12 });
    fd.registerMemory(ram.ua, ram.size);
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    // 2^16 TCEs = 512 KiB, node 2^max(19, 12) = 512 KiB, ×2 = 1 MiB = 256 pages of 4 KiB
    expect(p.mm.lockedPages).toBe(256n + 256n);
    expect(p.mm.lockedPages).toBe(256n + specTablePages(12, 256n * MiB, 1, 12));
    host.checkInvariants();
  });

  it('E27: REMOVE(0) while pending → 0; MAP at iova 0 → ENXIO; the next CREATE lands in slot 0 at bus 0', async () => {
    const { host, p, ram, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.removeWindow(0n);
    expect(fd.container.defWindowPending).toBe(false);
    expect(fd.container.windows).toEqual([undefined, undefined]);
    expect(p.mm.lockedPages).toBe(16n);
    const before = digest(host, [fd]);
    expectErr(() => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true }), 'ENXIO');
    expectErr(() => fd.removeWindow(0n), 'EINVAL'); // nothing pending any more, no window
    expect(digest(host, [fd])).toBe(before);
    const { startAddr } = fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 2 });
    expect(startAddr).toBe(0n);
    expect(fd.container.windows[1]).toBeUndefined();
    expect(fd.container.windows[0]).toMatchObject({ startAddr: 0n, windowSize: GiB, pageShift: 16, levels: 2 });
    expect(p.mm.lockedPages).toBe(16n + specTablePages(16, GiB, 2));
    expect(p.mm.lockedPages).toBe(16n + 6n);
    expectProgrammed(fd, [g]);
    fd.mapDma({ iova: 0x30000n, vaddr: ram.ua, size: 0x10000n, read: true });
    expect(fd.container.windows[0]!.table.getUa(3n)).toBe(ram.ua);
    host.checkInvariants();
  });

  it('E28: CREATE while pending → default window made first, the new one at 1<<59; a third CREATE → ENOSPC', async () => {
    const { host, p, g, fd } = await v2Setup('mm');
    const { startAddr } = fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1 });
    expect(startAddr).toBe(DDW_BASE);
    expect(fd.container.defWindowPending).toBe(false);
    expect(fd.container.windows[0]).toMatchObject({ startAddr: 0n, windowSize: 2n * GiB, pageShift: 12, levels: 1 });
    expect(fd.container.windows[1]).toMatchObject({ startAddr: DDW_BASE, windowSize: GiB, pageShift: 16, levels: 1 });
    expect(fd.container.windows[1]!.table.offset).toBe(DDW_BASE >> 16n);
    expectProgrammed(fd, [g]);
    expect(fd.container.mm).toBe(p.mm);
    // §3.1: each v2 table costs get_table_size (HW tree + userspace view) from the moment it exists
    const expected = specTablePages(12, 2n * GiB, 1) + specTablePages(16, GiB, 1);
    expect(expected).toBe(128n + 4n);
    const before = digest(host, [fd]);
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1 }), 'ENOSPC');
    expect(digest(host, [fd])).toBe(before);
    expect(p.mm.lockedPages, 'locked_vm after CREATE (docs/semantics.md §2.3 account get_table_size, §3.1)').toBe(expected);
    host.checkInvariants();
  });

  it('E29: CREATE with an unsupported page shift, levels 0 or 6, non-power-of-2 or 0 size, flags ≠ 0, or ≥ 2^55 bits → EINVAL', async () => {
    const { host, fd } = await v2Setup('mm');
    // flags are checked before the pending default window is created
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1, flags: 1 }), 'EINVAL');
    expect(fd.container.defWindowPending).toBe(true);
    expect(fd.container.windows[0]).toBeUndefined();
    expectErr(() => fd.createWindow({ pageShift: 13, windowSize: GiB, levels: 1 }), 'EINVAL');
    expect(fd.container.windows[0]).toBeDefined(); // the default window was materialised first
    const before = digest(host, [fd]);
    expectErr(() => fd.createWindow({ pageShift: 20, windowSize: GiB, levels: 1 }), 'EINVAL');
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 0 }), 'EINVAL');
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 6 }), 'EINVAL');
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: 3n * GiB, levels: 1 }), 'EINVAL');
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: 0n, levels: 1 }), 'EINVAL');
    expectErr(() => fd.createWindow({ pageShift: 24, windowSize: 1n << 62n, levels: 1 }), 'EINVAL'); // (41−3)·1 + 24 ≥ 55
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1, flags: 2 }), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    expect(fd.container.windows[1]).toBeUndefined();
    expect(() => fd.createWindow({ pageShift: '16', windowSize: GiB, levels: 1 } as never)).toThrow(TypeError);
    host.checkInvariants();
  });

  it('E29: levels beyond the group\'s max_levels → EINVAL', async () => {
    const { Host } = await import('../../src/index.js');
    const host = await Host.create({ ownerCheck: 'mm' });
    const p = host.spawn();
    const g = host.addGroup({ maxLevels: 2 });
    const fd = p.openContainer();
    fd.attachGroup(g);
    fd.setIommu('v2');
    expect(fd.getInfo().ddw!.levels).toBe(2);
    fd.removeWindow(0n);
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 3 }), 'EINVAL');
    expect(fd.container.windows).toEqual([undefined, undefined]);
    expect(p.mm.lockedPages).toBe(0n);
    host.checkInvariants();
  });

  it('E30: a tiny window (1 MiB, 64 KiB pages) has it_size = PAGE_SIZE/8 entries; MAP beyond 1 MiB inside the padding succeeds', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.removeWindow(0n);
    const { startAddr } = fd.createWindow({ pageShift: 16, windowSize: MiB, levels: 1 });
    expect(startAddr).toBe(0n);
    const t = fd.container.windows[0]!.table;
    expect(t.size).toBe(8192n);
    expect(p.mm.lockedPages).toBe(16n + specTablePages(16, MiB, 1));
    expect(p.mm.lockedPages).toBe(18n);
    fd.mapDma({ iova: MiB, vaddr: ram.ua, size: 0x10000n, read: true });
    fd.mapDma({ iova: 8191n << 16n, vaddr: ram.ua + 0x10000n, size: 0x10000n, read: true });
    expect(t.getUa(16n)).toBe(ram.ua);
    expect(t.getUa(8191n)).toBe(ram.ua + 0x10000n);
    expect(regionAt(fd, ram.ua).mapped).toBe(3n);
    expect(p.mm.lockedPages, 'the view is part of get_table_size: no extra charge at MAP').toBe(18n);
    expectErr(() => fd.mapDma({ iova: 8192n << 16n, vaddr: ram.ua, size: 0x10000n, read: true }), 'ENXIO');
    host.checkInvariants();
  });

  it('E31: REMOVE with an address inside (not at the start of) a window removes it; REMOVE of an unknown address → EINVAL', async () => {
    const { host, p, ram, g, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 2 });
    fd.mapDma({ iova: DDW_BASE + 0x20000n, vaddr: ram.ua, size: 0x30000n, read: true, write: true });
    const r = regionAt(fd, ram.ua);
    expect(r.mapped).toBe(4n);
    const t1 = fd.container.windows[1]!.table;
    const tablesBefore = host.stats().tables;
    const before = digest(host, [fd]);
    expectErr(() => fd.removeWindow(1n << 58n), 'EINVAL');
    expectErr(() => fd.removeWindow(DDW_BASE + GiB), 'EINVAL');
    expectErr(() => fd.removeWindow(DDW_BASE, 1), 'EINVAL');
    expect(digest(host, [fd])).toBe(before);
    fd.removeWindow(DDW_BASE + 0x10000n);
    expect(fd.container.windows[1]).toBeUndefined();
    expect(g.slots[1]).toBeUndefined();
    expect(r.mapped).toBe(1n);
    expect(host.stats().tables).toBe(tablesBefore - 1);
    expect(host.tables.has(t1)).toBe(false);
    // slot 0 (the default window, made by CREATE) stays: 16 region pages + its 128
    expect(p.mm.lockedPages).toBe(16n + specTablePages(12, 2n * GiB, 1));
    host.checkInvariants();
  });

  it('E32: CREATE exceeding RLIMIT_MEMLOCK → ENOMEM, no slot used; the pending default window was created first', async () => {
    const defPages = specTablePages(12, 2n * GiB, 1); // 128
    const bigPages = specTablePages(16, 16n * GiB, 1); // 2^18 TCEs = 2 MiB, ×2 = 64 pages
    expect(bigPages).toBe(64n);
    const limit = (16n + defPages + 10n) << 16n;
    const { host, p, ram, fd } = await v2Setup('mm', { memlockLimit: limit });
    fd.registerMemory(ram.ua, ram.size);
    expectErr(() => fd.createWindow({ pageShift: 16, windowSize: 16n * GiB, levels: 1 }), 'ENOMEM');
    expect(fd.container.windows[1]).toBeUndefined();
    expect(fd.container.windows[0]).toMatchObject({ startAddr: 0n, pageShift: 12 });
    expect(fd.container.defWindowPending).toBe(false);
    expect(p.mm.lockedPages).toBe(16n + defPages);
    host.checkInvariants();
    // a window that fits (4 pages) still can be created in slot 1
    fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 1 });
    expect(p.mm.lockedPages).toBe(16n + defPages + 4n);
    host.checkInvariants();
  });
});
