// Spec: docs/semantics.md §5 (forked child / another process; the owner check, modes none/pid/mm), §3.2 (mapped − 1 = live entries).
import { describe, expect, it } from 'vitest';
import { Host, InvariantError, TceError, type OwnerCheck } from '../../src/index.js';
import { MiB, digest, expectErr, regionAt } from './helpers.js';

const PAGE = 0x1000n;
const PARENT_IOVA = 0n;
const CHILD_IOVA = MiB;

/** Parent registers RAM and maps one page; the forked child holds the same container. */
async function setup(mode: OwnerCheck) {
  const host = await Host.create({ ownerCheck: mode });
  const parent = host.spawn();
  const ram = parent.mmap(MiB);
  const g = host.addGroup();
  const fd = parent.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.mapDma({ iova: PARENT_IOVA, vaddr: ram.ua, size: PAGE, read: true, write: true });
  const parentRegion = regionAt(fd, ram.ua);
  expect(parentRegion.mapped).toBe(2n);
  host.checkInvariants();
  const child = parent.fork();
  const cfd = child.inherit(fd);
  return { host, parent, child, ram, g, fd, cfd, parentRegion };
}

describe('the 2015 forked-child scenario', () => {
  it('none: the child succeeds, the CHILD\'s region is decremented, the parent\'s region leaks a count forever', async () => {
    const { host, parent, child, ram, fd, cfd, parentRegion } = await setup('none');
    cfd.registerMemory(ram.ua, ram.size); // a region of the child's mm at the same address
    const childRegion = fd.container.regions.find((r) => r.desc !== parentRegion.desc)!;
    expect(childRegion).toBeDefined();
    expect(childRegion.ua).toBe(ram.ua);
    expect(child.mm.lockedPages).toBe(16n);
    cfd.mapDma({ iova: CHILD_IOVA, vaddr: ram.ua, size: PAGE, read: true });
    expect(childRegion.mapped).toBe(2n);
    const t = fd.container.windows[0]!.table;
    expect(t.get(CHILD_IOVA >> 12n)).toBe(child.mm.translate(ram.ua)!.hpa | 1n);
    cfd.unmapDma({ iova: PARENT_IOVA, size: PAGE }); // the parent's mapping
    expect(t.get(0n)).toBe(0n);
    expect(t.getUa(0n)).toBe(0n);
    expect(childRegion.mapped, 'the wrong region (the child\'s) was decremented').toBe(1n);
    expect(parentRegion.mapped, 'the parent\'s region keeps mapped − 1 = 1 with nothing mapped').toBe(2n);
    // the parent can never unregister it
    fd.unmapDma({ iova: PARENT_IOVA, size: PAGE });
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size), 'EBUSY');
    expect(parentRegion.mapped).toBe(2n);
    let err: unknown;
    try {
      host.checkInvariants();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvariantError);
    const problems = (err as InvariantError).problems;
    const hexUa = '0x' + ram.ua.toString(16);
    // the broken counts are named: the parent's region (mapped − 1 = 1, no entry of its own)
    // and the child's (mapped − 1 = 0, one entry backed by its page)
    expect(problems.some((m) => m.includes(hexUa) && /mapped − 1 = 1\b/.test(m) && /\b0 TCE/.test(m)), problems.join('\n')).toBe(true);
    expect(problems.some((m) => m.includes(hexUa) && /mapped − 1 = 0\b/.test(m) && /\b1 TCE/.test(m)), problems.join('\n')).toBe(true);
    void parent;
  });

  it('none: the invariant break is the one the unmap made (only the parent\'s leak, without the child\'s own map)', async () => {
    const { host, ram, fd, cfd, parentRegion } = await setup('none');
    cfd.registerMemory(ram.ua, ram.size);
    cfd.unmapDma({ iova: PARENT_IOVA, size: PAGE });
    expect(parentRegion.mapped).toBe(2n);
    expect(() => host.checkInvariants()).toThrow(/mapped − 1 = 1, but 0 TCE/);
    expectErr(() => fd.unregisterMemory(ram.ua, ram.size), 'EBUSY');
  });

  for (const mode of ['pid', 'mm'] as const) {
    it(`${mode}: every change the child attempts → EPERM, and the state is byte-for-byte unchanged`, async () => {
      const { host, parent, child, ram, fd, cfd, parentRegion } = await setup(mode);
      const before = digest(host, [fd], [parent, child]);
      const statsBefore = JSON.stringify(host.stats(), (_k, v) => (typeof v === 'bigint' ? String(v) : v));
      expectErr(() => cfd.registerMemory(ram.ua, ram.size), 'EPERM');
      expectErr(() => cfd.mapDma({ iova: CHILD_IOVA, vaddr: ram.ua, size: PAGE, read: true }), 'EPERM');
      expectErr(() => cfd.unmapDma({ iova: PARENT_IOVA, size: PAGE }), 'EPERM');
      expectErr(() => cfd.unregisterMemory(ram.ua, ram.size), 'EPERM');
      expectErr(() => cfd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 1 }), 'EPERM');
      expectErr(() => cfd.removeWindow(0n), 'EPERM');
      expect(digest(host, [fd], [parent, child])).toBe(before);
      expect(JSON.stringify(host.stats(), (_k, v) => (typeof v === 'bigint' ? String(v) : v))).toBe(statsBefore);
      expect(child.mm.lockedPages).toBe(0n);
      expect(parentRegion.mapped).toBe(2n);
      host.checkInvariants();
      // the parent is unaffected: unmap and unregister succeed
      fd.unmapDma({ iova: PARENT_IOVA, size: PAGE });
      fd.unregisterMemory(ram.ua, ram.size);
      expect(fd.container.regions).toHaveLength(0);
      host.checkInvariants();
    });
  }

  it('clone({vm: true}) child (new pid, same mm): refused under pid, accepted under mm and none', async () => {
    for (const mode of ['pid', 'mm', 'none'] as const) {
      const { host, parent, ram, fd, parentRegion } = await setup(mode);
      const vfd = parent.clone({ vm: true }).inherit(fd);
      const before = digest(host, [fd]);
      if (mode === 'pid') {
        expectErr(() => vfd.mapDma({ iova: CHILD_IOVA, vaddr: ram.ua, size: PAGE, read: true }), 'EPERM');
        expectErr(() => vfd.unmapDma({ iova: PARENT_IOVA, size: PAGE }), 'EPERM');
        expect(digest(host, [fd])).toBe(before);
        expect(parentRegion.mapped).toBe(2n);
      } else {
        vfd.mapDma({ iova: CHILD_IOVA, vaddr: ram.ua, size: PAGE, read: true });
        expect(parentRegion.mapped, mode).toBe(3n);
        vfd.unmapDma({ iova: PARENT_IOVA, size: PAGE });
        expect(parentRegion.mapped, mode).toBe(2n);
      }
      host.checkInvariants();
    }
  });

  it('a thread of the owner is accepted in every mode', async () => {
    for (const mode of ['none', 'pid', 'mm'] as const) {
      const { host, parent, ram, fd, parentRegion } = await setup(mode);
      const tfd = parent.thread().inherit(fd);
      tfd.mapDma({ iova: CHILD_IOVA, vaddr: ram.ua, size: PAGE, read: true });
      expect(parentRegion.mapped).toBe(3n);
      expect(() => tfd.unmapDma({ iova: CHILD_IOVA, size: PAGE })).not.toThrow(TceError);
      host.checkInvariants();
    }
  });
});
