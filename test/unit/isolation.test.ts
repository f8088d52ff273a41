// Isolation (issue 12 item 5): a vCPU runs only in its VM's mm (kvm_vcpu_ioctl: kvm->mm !=
// current->mm → EIO) under every owner check but 'none', so an unrelated process cannot run
// H_STUFF_TCE on another VM's tables; a guest table of one VM names nothing in another.
import { describe, expect, it } from 'vitest';
import { Host, H, TceError } from '../../src/index.js';

async function vmWithMapping(ownerCheck: 'none' | 'pid' | 'mm' | 'fork-close') {
  const host = await Host.create({ ownerCheck });
  const qemu = host.spawn();
  const ram = qemu.mmap(4n << 20n);
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 12, windowSize: 1n << 30n, levels: 3 });
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  const liobn = 0x80000000n;
  vm.createTceTable({ liobn, pageShift: 12, offset: 0n, size: 1n << 16n });
  vm.attachGroup(group, liobn);
  expect(vm.hcall(H.PUT_TCE, liobn, 0x5000n, 0x7000n | 3n).ret).toBe(H.SUCCESS);
  const table = fd.container.windows[0]!.table;
  return { host, qemu, vm, liobn, table };
}

const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return e instanceof TceError ? e.code : String(e);
  }
  return 'ok';
};

describe('isolation: vCPUs and guest tables', () => {
  for (const mode of ['mm', 'pid', 'fork-close'] as const) {
    it(`${mode}: a thread of another process cannot run a vCPU of the VM (EIO), so it cannot clear the VM's entries`, async () => {
      const { host, qemu, vm, liobn, table } = await vmWithMapping(mode);
      const stranger = host.spawn();
      expect(code(() => vm.vcpu(0, { thread: stranger }))).toBe('EIO');
      expect(code(() => vm.vcpu(0, { thread: stranger.thread() }))).toBe('EIO');
      // A fork of the VM's process has a copy of the mm, not the mm: EIO as well.
      expect(code(() => vm.vcpu(0, { thread: qemu.fork() }))).toBe('EIO');
      expect(vm.vcpus.size).toBe(0);
      expect(table.get(5n)).not.toBe(0n);
      // Threads of the process, and a clone(CLONE_VM) child (same mm, other pid), may.
      const mine = vm.vcpu(1, { thread: qemu.thread() });
      expect(mine.thread.mm).toBe(vm.mm);
      expect(vm.vcpu(2, { thread: qemu.clone({ vm: true }) }).thread.mm).toBe(vm.mm);
      mine.regs[3] = BigInt(H.STUFF_TCE); mine.regs[4] = liobn; mine.regs[5] = 0n; mine.regs[6] = 0n; mine.regs[7] = 16n;
      expect(mine.hcall()).toBe(H.SUCCESS);
      expect(table.get(5n)).toBe(0n);
      host.checkInvariants();
    });
  }

  it("none: the model keeps the old openness (a stranger's vCPU is accepted), as the README's divergence row says", async () => {
    const { host, vm, liobn, table } = await vmWithMapping('none');
    const stranger = vm.vcpu(0, { thread: host.spawn() });
    stranger.regs[3] = BigInt(H.STUFF_TCE); stranger.regs[4] = liobn; stranger.regs[5] = 0n; stranger.regs[6] = 0n; stranger.regs[7] = 16n;
    expect(stranger.hcall()).toBe(H.SUCCESS);
    expect(table.get(5n)).toBe(0n);
  });

  it("a guest table of one VM is not read through another VM's guestEntry (EINVAL); past the table a RangeError", async () => {
    const { qemu, vm, liobn } = await vmWithMapping('mm');
    const other = qemu.createVm();
    const foreign = other.createTceTable({ liobn, pageShift: 12, offset: 0n, size: 512n });
    expect(code(() => vm.guestEntry(foreign, 0n))).toBe('EINVAL');
    const own = vm.tables.get(liobn)!;
    expect(vm.guestEntry(own, 5n)).toBe(0x7000n | 3n);
    expect(() => vm.guestEntry(own, 1n << 40n)).toThrow(RangeError);
    expect(code(() => vm.guestEntry(own, -1n))).not.toBe('ok');
  });
});
