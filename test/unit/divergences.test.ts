// README "Divergences": the rows no scenario test covers, each checked as the table states it,
// and host.setRealModeCheck(), which the benchmark relies on for its same-host A/B.
import { describe, expect, it } from 'vitest';
import { Host, H, TceError } from '../../src/index.js';

const code = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof TceError ? e.code : String(e);
  }
};

/** A kvm VM linked to a VFIO v2 window (its view made with the table: era 4.19); vCPU 0 on the owner's thread. */
async function linked(ownerCheck: 'pid' | 'mm' | 'none' = 'pid') {
  const host = await Host.create({ ownerCheck });
  const qemu = host.spawn();
  const ram = qemu.mmap(4n << 20n);
  const g = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: 1n, pageShift: 16, offset: 0n, size: 1n << 14n });
  vm.attachGroup(g, 1n);
  return { host, qemu, ram, g, fd, vm };
}

describe('divergences the README lists', () => {
  it('REGISTER_MEMORY of size 0 is EINVAL (the kernel probably answers ENOMEM from vzalloc(0))', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const fd = p.openContainer();
    fd.attachGroup(host.addGroup());
    fd.setIommu('v2');
    expect(code(() => fd.registerMemory(ram.ua, 0n))).toBe('EINVAL');
    expect(fd.container.regions).toEqual([]);
    expect(p.mm.lockedPages).toBe(0n);
  });

  it('an unknown hypercall number is H_TOO_HARD at both levels: an exit to the VMM, registers kept', async () => {
    const { vm } = await linked();
    const c = vm.vcpu(0);
    c.regs[3] = 0x04n; // H_SEND_CRQ-like: not a TCE call
    c.regs[4] = 7n;
    expect(c.hcall()).toBe(H.TOO_HARD);
    expect(c.lastLevel).toBe('exit');
    expect(c.regs[3]).toBe(BigInt(H.TOO_HARD));
    expect(c.regs[4]).toBe(7n);
  });

  it('an overlapping KVM memslot is EINVAL (the kernel says EEXIST)', async () => {
    const { vm, ram } = await linked();
    expect(code(() => vm.addMemslot({ gpa: 0x10000n, size: 0x10000n, ua: ram.ua }))).toBe('EINVAL');
    expect(vm.memslots.length).toBe(1);
  });

  it('a LIOBN links at most 4 hardware tables (ENOSPC); linking one again only counts a reference', async () => {
    const { host, qemu, vm, g } = await linked();
    vm.attachGroup(g, 1n);
    expect(vm.links(1n)).toEqual([expect.objectContaining({ refs: 2 })]);
    for (let i = 0; i < 3; i++) {
      const gi = host.addGroup();
      const fd = qemu.openContainer();
      fd.attachGroup(gi);
      fd.setIommu('v2');
      fd.removeWindow(0n);
      fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
      vm.attachGroup(gi, 1n);
    }
    expect(vm.links(1n).length).toBe(4);
    const g5 = host.addGroup();
    const fd5 = qemu.openContainer();
    fd5.attachGroup(g5);
    fd5.setIommu('v2');
    fd5.removeWindow(0n);
    fd5.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
    expect(code(() => vm.attachGroup(g5, 1n))).toBe('ENOSPC');
    expect(vm.links(1n).length).toBe(4);
  });
});

describe('host.setRealModeCheck (the benchmark\'s A/B on one set of tables)', () => {
  it('switches what real mode checks: a vCPU of another pid is refused under pid-call and pid-entry, not under none or mm', async () => {
    const { host, qemu, vm } = await linked('pid');
    const stranger = vm.vcpu(1, { thread: qemu.clone({ vm: true }) });
    const put = (): number => {
      stranger.regs[3] = BigInt(H.PUT_TCE);
      stranger.regs[4] = 1n;
      stranger.regs[5] = 0x10000n;
      stranger.regs[6] = 0x20000n | 3n;
      return stranger.hcall();
    };
    expect(put()).toBe(H.TOO_HARD); // the host's own mode: pid
    for (const [check, rc] of [['none', H.SUCCESS], ['pid-call', H.TOO_HARD], ['pid-entry', H.TOO_HARD], ['mm', H.SUCCESS]] as const) {
      host.setRealModeCheck(check);
      expect(put(), check).toBe(rc);
    }
    host.checkInvariants();
  });
});
