// Setups several test files repeat word for word: a VFIO sPAPR v2 container
// with one dynamic window over pre-registered RAM (what QEMU's
// vfio_spapr_container_setup does for a DDW guest), a kvm-profile VM whose
// guest table is linked to it (KVM_CREATE_SPAPR_TCE_64 +
// KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), and the rich host the snapshot tests
// take apart. Each only calls the public API and asserts what it relies on,
// so a test built on it fails where a setup step stops working.
import { expect } from 'vitest';
import { Host, H, DmaFault, type Group, type Process, type OwnerCheck, type CreateWindow } from '../src/index.js';

/** Guest RAM as mmap() returns it: where, and how long. */
interface Ram {
  ua: bigint;
  size: bigint;
}

/**
 * A fresh group in a v2 container of `task`: `ram` pre-registered, the
 * default 32-bit window removed and `window` created in its place.
 */
export function v2Container(host: Host, task: Process, ram: Ram, window: CreateWindow) {
  const g = host.addGroup();
  const fd = task.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow(window);
  return { g, fd };
}

/** A kvm-profile VM of `task`: `ram` as memslot 0 and a guest table at `table.liobn` (offset 0) linked to group `g`. */
export function linkedVm(task: Process, ram: Ram, g: Group, table: { liobn: bigint; pageShift: number; size: bigint }) {
  const vm = task.createVm({ profile: 'kvm' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: table.liobn, pageShift: table.pageShift, offset: 0n, size: table.size });
  vm.attachGroup(g, table.liobn);
  return vm;
}

/** The kvm VM's LIOBN and the qemu VM's VIO LIOBN of richHost(). */
export const RICH_LIOBN = 0x80000000n;
export const RICH_QLIOBN = 0x71000002n;

/**
 * The host the snapshot tests take apart: 8 MiB of RAM in a v2 container
 * (a 1 GiB window of 64 KiB pages, a read-write mapping), a v1 container of
 * another process on a legacy group (a read-only mapping), a kvm VM linked
 * to the window with one TCE written, and a qemu-profile VM with one VIO TCE.
 */
export async function richHost(opts: { ownerCheck: OwnerCheck; maxMemory: number }) {
  const host = await Host.create(opts);
  const qemu: Process = host.spawn();
  const ram = qemu.mmap(8n << 20n);
  const { g, fd } = v2Container(host, qemu, ram, { pageShift: 16, windowSize: 1n << 30n, levels: 2 });
  fd.mapDma({ iova: 0x30000n, vaddr: ram.ua + 0x50000n, size: 0x20000n, read: true, write: true });
  const legacy = host.addGroup({ ddw: false, tce32Size: 1n << 28n });
  const other: Process = host.spawn();
  const ram2 = other.mmap(1n << 20n);
  const fd1 = other.openContainer();
  fd1.attachGroup(legacy);
  fd1.setIommu('v1');
  fd1.enable();
  fd1.mapDma({ iova: 0x2000n, vaddr: ram2.ua + 0x1000n, size: 0x2000n, read: true });
  const vm = linkedVm(qemu, ram, g, { liobn: RICH_LIOBN, pageShift: 16, size: 1n << 14n });
  expect(vm.hcall(H.PUT_TCE, RICH_LIOBN, 0x10000n, 0x20000n | 3n).ret).toBe(0);
  const qvm = qemu.createVm({ profile: 'qemu' });
  qvm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  qvm.createTceTable({ liobn: RICH_QLIOBN, pageShift: 12, offset: 0n, size: 65536n });
  expect(qvm.hcall(H.PUT_TCE, RICH_QLIOBN, 0x5000n, 0x123000n | 3n).ret).toBe(0);
  return { host, qemu, other, ram, ram2, g, fd, fd1, vm, qvm };
}

/** The DmaFault `fn` throws; fails the test when it throws something else or nothing. */
export function fault(fn: () => unknown): DmaFault {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DmaFault);
    return e as DmaFault;
  }
  return expect.fail('expected a DmaFault, nothing was thrown');
}

/** The copies a DMA makes: Uint8Array.prototype.set calls while `fn` runs (the method is put back after, whatever fn does). */
export function countSets(fn: () => void): number {
  const realSet = Uint8Array.prototype.set;
  let calls = 0;
  Uint8Array.prototype.set = function (this: Uint8Array, ...args: Parameters<Uint8Array['set']>) {
    calls++;
    return realSet.apply(this, args);
  };
  try {
    fn();
  } finally {
    Uint8Array.prototype.set = realSet;
  }
  return calls;
}
