// Spec: docs/semantics.md §2.3 (tce_iommu_ioctl: the mm check comes before the v1/v2 type test), §5 (the owner check).
// The repros of issue 15 item 4a: a v1 ioctl on a v2 container (and the reverse) from another mm is EPERM, not ENOTTY.
import { describe, expect, it } from 'vitest';
import { digest, expectErr, v1Setup, v2Setup } from './helpers.js';

const K64 = 0x10000n;

describe('the owner check comes before the type test (tce_iommu_ioctl)', () => {
  it('mm: ENABLE on a v2 container from a forked child → EPERM (the owner gets ENOTTY); nothing changes', async () => {
    const { host, p, ram, fd } = await v2Setup('mm');
    fd.registerMemory(ram.ua, ram.size);
    const child = p.fork();
    const cfd = child.inherit(fd);
    const before = digest(host, [fd], [p, child]);
    expectErr(() => cfd.enable(), 'EPERM');
    expectErr(() => cfd.disable(), 'EPERM');
    expect(digest(host, [fd], [p, child])).toBe(before);
    // the owner's mm passes the check and reaches the type test
    expectErr(() => fd.enable(), 'ENOTTY');
    expectErr(() => fd.disable(), 'ENOTTY');
    host.checkInvariants();
  });

  it('mm: REGISTER_MEMORY (and the other v2 ioctls) on a v1 container from a forked child → EPERM (the owner gets ENOTTY)', async () => {
    const { host, p, ram, fd } = await v1Setup('mm');
    fd.enable();
    const cfd = p.fork().inherit(fd);
    const before = digest(host, [fd], [p]);
    expectErr(() => cfd.registerMemory(ram.ua, K64), 'EPERM');
    expectErr(() => cfd.unregisterMemory(ram.ua, K64), 'EPERM');
    expectErr(() => cfd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 }), 'EPERM');
    expectErr(() => cfd.removeWindow(0n), 'EPERM');
    expect(digest(host, [fd], [p])).toBe(before);
    expectErr(() => fd.registerMemory(ram.ua, K64), 'ENOTTY');
    expectErr(() => fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 }), 'ENOTTY');
    host.checkInvariants();
  });

  it('pid: the same order for another pid (the check sits where the mm check does)', async () => {
    const { host, p, ram, fd } = await v2Setup('pid');
    fd.registerMemory(ram.ua, ram.size);
    expectErr(() => p.clone({ vm: true }).inherit(fd).enable(), 'EPERM');
    expectErr(() => p.thread().inherit(fd).enable(), 'ENOTTY');
    host.checkInvariants();
  });

  it('before any claim, and under none, the type test answers: ENOTTY for everyone', async () => {
    for (const mode of ['mm', 'none'] as const) {
      const { p, fd } = await v2Setup(mode);
      expectErr(() => p.fork().inherit(fd).enable(), 'ENOTTY');
      const v1 = await v1Setup(mode);
      v1.fd.enable();
      if (mode === 'none') expectErr(() => v1.p.fork().inherit(v1.fd).registerMemory(v1.ram.ua, K64), 'ENOTTY');
    }
  });

  it('no IOMMU type set: EINVAL comes first, from any mm (vfio_fops_unl_ioctl)', async () => {
    const { Host } = await import('../../src/index.js');
    const host = await Host.create({ ownerCheck: 'mm' });
    const p = host.spawn();
    const fd = p.openContainer();
    expectErr(() => p.fork().inherit(fd).enable(), 'EINVAL');
    expectErr(() => fd.registerMemory(0n, K64), 'EINVAL');
  });
});
