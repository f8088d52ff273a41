// Spec: docs/semantics.md §8.5 (host VFIO kept in sync in the kvm profile), §9 V46–V48: QEMU with in-kernel
// TCE acceleration runs the same prereg and VFIO listeners (vfio_prereg_listener_region_add,
// vfio_spapr_create_window) and links each host window to the guest table
// (vfio_spapr_kvm_attach_tce: KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE); the kernel then updates the
// host window itself (kvmppc_h_put_tce → kvmppc_tce_iommu_map), so no MAP_DMA is made for the
// hypercalls it completes. Both engines, kernel eras 4.19 (real mode) and 5.19 (virtual mode only).
import { describe, expect, it } from 'vitest';
import { Host, H, VfioSyncError, type VfioCall, type KernelEra } from '../../src/index.js';
import { WorkerVcpu } from '../../src/worker.js';
import { MiB, GiB, expectErr, hostEntries, expectedEntries } from './helpers.js';

const L = 0x80000000n;
const L2 = 0x80000001n;
const DDW = 1n << 59n;
const G = 0x400000n; // guest RAM at 4 MiB
const LIST = 0x100000; // where the guest writes TCE lists

/** A kvm-profile guest (16 MiB RAM at gpa 0, a guest table of 1 GiB of 4K pages at bus 0) and a v2 container of the VMM with one group. */
async function setup(engine: 'wasm' | 'native', kernel: KernelEra) {
  const host = await Host.create({ engine, kernel, maxMemory: 96 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile: 'kvm' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: L, pageShift: 12, offset: 0n, size: GiB >> 12n });
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  const calls: VfioCall[] = [];
  const errors: VfioSyncError[] = [];
  const attach = () => vm.attachContainer(fd, { onCall: (c) => calls.push(c), onError: (e) => errors.push(e) });
  const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
  const list = (tces: bigint[], at = LIST): bigint => {
    tces.forEach((t, i) => dv.setBigUint64(at + i * 8, t, false));
    return BigInt(at);
  };
  const vcpu = vm.vcpu(0);
  /** Runs a hypercall on vCPU 0 through the whole chain: [status, level]. */
  const hc = (nr: number, ...args: bigint[]): [number, string] => {
    vcpu.regs[3] = BigInt(nr);
    for (let i = 0; i < 4; i++) vcpu.regs[4 + i] = args[i] ?? 0n;
    const rc = vcpu.hcall();
    return [rc, vcpu.lastLevel];
  };
  const ops = () => calls.map((c) => `${c.op}${c.error ? ` ${c.error.code}` : ''}`);
  return { host, qemu, ram, vm, group, fd, calls, errors, attach, list, hc, ops, vcpu };
}

const ZERO = { mapDma: 0, unmapDma: 0, registerMemory: 0, unregisterMemory: 0, createWindow: 0, removeWindow: 0, linkGroup: 0, unlinkGroup: 0, errors: 0 };

describe('vm.attachContainer in the kvm profile: the listeners plus the KVM link', () => {
  for (const engine of ['wasm', 'native'] as const) {
    for (const kernel of ['4.19', '5.19'] as const) {
      it(`rows 46, 47 (${engine}, ${kernel}): attach links the host window; guest INDIRECT(512), PUT and STUFF complete in the kernel with no MAP_DMA and the host window equals the guest's; detach empties the container`, async () => {
        const { host, qemu, vm, fd, group, calls, errors, attach, list, hc, ops } = await setup(engine, kernel);
        const lockedBefore = qemu.mm.lockedPages;
        const sync = attach();
        expect(ops()).toEqual(['registerMemory', 'removeWindow', 'createWindow', 'linkGroup']);
        expect(calls[3]).toMatchObject({ op: 'linkGroup', liobn: L, group: group.id });
        const hw = fd.container.windows[0]!.table;
        expect(vm.links(L)).toEqual([{ tableDesc: hw.desc, refs: 1 }]);
        expect(sync.stats()).toEqual({ ...ZERO, registerMemory: 1, createWindow: 1, removeWindow: 1, linkGroup: 1 });
        calls.length = 0;
        const tces = Array.from({ length: 512 }, (_, i) => (G + BigInt(i) * 0x1000n) | (i % 3 === 0 ? 1n : 3n));
        const [rc, level] = hc(H.PUT_TCE_INDIRECT, L, 0x200000n, list(tces), 512n);
        expect(rc).toBe(H.SUCCESS);
        // completed in the kernel: real mode (or virtual mode after a deferral) under 4.19, virtual mode under 5.19
        if (kernel === '5.19') expect(level).toBe('virtual');
        else expect(['real', 'virtual']).toContain(level);
        expect(calls).toEqual([]);
        const entries = hostEntries(fd, 0n);
        expect(entries).toHaveLength(512);
        expect(entries).toEqual(expectedEntries(vm, L));
        // a single PUT and a partial STUFF, also the kernel's
        expect(hc(H.PUT_TCE, L, 0x1000n, (G + 0x800000n) | 2n)[0]).toBe(H.SUCCESS);
        expect(hc(H.STUFF_TCE, L, 0x200000n, 0n, 100n)[0]).toBe(H.SUCCESS);
        expect(calls).toEqual([]);
        expect(hostEntries(fd, 0n)).toHaveLength(412 + 1);
        expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L));
        expect(sync.stats()).toMatchObject({ mapDma: 0, unmapDma: 0, errors: 0 });
        host.checkInvariants();
        // detach: the link's reference dropped first, then UNMAP over the window, TCE_REMOVE, UNREGISTER
        calls.length = 0;
        sync.detach();
        expect(calls.map((c) => [c.op, c.iova, c.size])).toEqual([
          ['unlinkGroup', undefined, undefined], ['unmapDma', 0n, GiB], ['removeWindow', 0n, undefined], ['unregisterMemory', undefined, 16n * MiB],
        ]);
        expect(vm.links(L)).toEqual([]);
        expect(fd.container.windows).toEqual([undefined, undefined]);
        expect(fd.container.regions).toEqual([]);
        expect(qemu.mm.lockedPages).toBe(lockedBefore);
        expect(sync.stats()).toEqual({ ...ZERO, registerMemory: 1, createWindow: 1, removeWindow: 2, linkGroup: 1, unlinkGroup: 1, unmapDma: 1, unregisterMemory: 1 });
        expect(errors).toEqual([]);
        host.checkInvariants();
        // the guest goes on with no host side: its hypercalls still complete, in the guest table alone
        expect(hc(H.PUT_TCE, L, 0x3000n, G | 3n)[0]).toBe(H.SUCCESS);
        host.checkInvariants();
      });
    }
  }

  for (const kernel of ['4.19', '5.19'] as const) {
    it(`${kernel}: what the guest mapped before the attach is replayed with one coalesced MAP_DMA; later hypercalls make none`, async () => {
      const { host, vm, fd, calls, attach, list, hc } = await setup('wasm', kernel);
      // unlinked: the kernel completes the calls in the guest table alone
      expect(hc(H.PUT_TCE_INDIRECT, L, 0x10000n, list(Array.from({ length: 16 }, (_, i) => (G + BigInt(i) * 0x1000n) | 3n)), 16n)[0]).toBe(H.SUCCESS);
      const sync = attach();
      expect(calls.filter((c) => c.op === 'mapDma')).toEqual([{ op: 'mapDma', liobn: L, iova: 0x10000n, size: 16n * 0x1000n, vaddr: vm.memslots[0]!.ua + G, write: true, entries: 16 }]);
      expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L));
      calls.length = 0;
      expect(hc(H.PUT_TCE, L, 0x10000n, 0n)[0]).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L, 0x40000n, (G + 0x100000n) | 1n)[0]).toBe(H.SUCCESS);
      expect(calls).toEqual([]);
      expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L));
      expect(sync.stats()).toMatchObject({ mapDma: 1, unmapDma: 0, errors: 0 });
      sync.detach();
      host.checkInvariants();
    });

    it(`row 48 (${kernel}): a window created later is mirrored and linked (QEMU's DDW create → kvmppc_create_spapr_tce); vm.reset() and memslots; vm.destroy() unlinks and empties the container`, async () => {
      const { host, qemu, vm, fd, calls, errors, attach, hc, ops } = await setup('native', kernel);
      const sync = attach();
      calls.length = 0;
      vm.createTceTable({ liobn: L2, pageShift: 16, offset: DDW >> 16n, size: 1n << 14n });
      expect(ops()).toEqual(['createWindow', 'linkGroup']);
      // the host page: the largest at most the guest's 64K and the RAM's 64K backing page
      expect(calls[0]).toMatchObject({ op: 'createWindow', liobn: L2, pageShift: 16, windowSize: 1n << 30n, startAddr: DDW });
      expect(sync.windows().map((w) => [w.liobn, w.busOffset, w.pageShift])).toEqual([[L, 0n, 12], [L2, DDW, 16]]);
      calls.length = 0;
      // written by the kernel, in both windows
      expect(hc(H.PUT_TCE, L2, DDW + 0x10000n, (G + 0x10000n) | 3n)[0]).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L2, DDW + 0x30000n, (G + 0x50000n) | 1n)[0]).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L, 0x5000n, G | 3n)[0]).toBe(H.SUCCESS);
      expect(calls).toEqual([]);
      expect(hostEntries(fd, DDW)).toHaveLength(2);
      expect(hostEntries(fd, DDW)).toEqual(expectedEntries(vm, L2, 16));
      expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L));
      // the machine reset clears the guest tables and the linked host windows: nothing for the sync to do
      vm.reset();
      expect(calls).toEqual([]);
      expect(hostEntries(fd, 0n)).toEqual([]);
      expect(hostEntries(fd, DDW)).toEqual([]);
      host.checkInvariants();
      // memory that comes and goes is registered and unregistered
      const more = qemu.mmap(MiB);
      vm.addMemslot({ gpa: 0x4000000n, size: MiB, ua: more.ua });
      vm.removeMemslot(0x4000000n);
      expect(ops()).toEqual(['registerMemory', 'unregisterMemory']);
      // destroy: each window's link dropped, then its region_del (one UNMAP over it, TCE_REMOVE); then the region unregistered
      expect(hc(H.PUT_TCE, L2, DDW + 0x10000n, (G + 0x10000n) | 3n)[0]).toBe(H.SUCCESS);
      calls.length = 0;
      const before = sync.stats();
      vm.destroy();
      expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
        ['unlinkGroup', L, undefined, undefined], ['unmapDma', L, 0n, 1n << 30n], ['removeWindow', L, 0n, undefined],
        ['unlinkGroup', L2, undefined, undefined], ['unmapDma', L2, DDW, 1n << 30n], ['removeWindow', L2, DDW, undefined],
        ['unregisterMemory', undefined, undefined, 16n * MiB],
      ]);
      expect(sync.stats()).toEqual({ ...before, unlinkGroup: before.unlinkGroup + 2, unmapDma: before.unmapDma + 2, removeWindow: before.removeWindow + 2, unregisterMemory: before.unregisterMemory + 1 });
      expect(fd.container.windows).toEqual([undefined, undefined]);
      expect(fd.container.regions).toEqual([]);
      expect(errors).toEqual([]);
      sync.detach();
      host.checkInvariants();
    });
  }

  it('row 48, after a restore: the window and its link are adopted (no new link), the replay refills the window, detach drops the adopted link', async () => {
    const { host, qemu, vm, list, hc } = await setup('wasm', '4.19');
    const fdA = qemu.containers()[0]!;
    vm.attachContainer(fdA);
    expect(hc(H.PUT_TCE_INDIRECT, L, 0x20000n, list([G | 3n, (G + 0x1000n) | 1n]), 2n)[0]).toBe(H.SUCCESS);
    const b = Host.restore(host.snapshot());
    const qemuB = b.processes.get(qemu.tid)!;
    const vmB = [...b.vms].find((x) => x.process === qemuB)!;
    const fdB = qemuB.containers()[0]!;
    const linksBefore = vmB.links(L);
    expect(linksBefore).toHaveLength(1);
    const calls: VfioCall[] = [];
    const sync = vmB.attachContainer(fdB, { onCall: (c) => calls.push(c) });
    // the adopted window emptied, then the replay: one MAP_DMA per permission run
    expect(calls.map((c) => c.op)).toEqual(['unmapDma', 'mapDma', 'mapDma']);
    expect(sync.windows()).toMatchObject([{ liobn: L, adopted: true }]);
    expect(vmB.links(L)).toEqual(linksBefore);
    expect(hostEntries(fdB, 0n)).toEqual(expectedEntries(vmB, L));
    calls.length = 0;
    const c = vmB.vcpu(0);
    c.regs[3] = BigInt(H.PUT_TCE);
    c.regs[4] = L;
    c.regs[5] = 0x30000n;
    c.regs[6] = (G + 0x2000n) | 3n;
    expect(c.hcall()).toBe(H.SUCCESS);
    expect(calls).toEqual([]);
    expect(hostEntries(fdB, 0n)).toEqual(expectedEntries(vmB, L));
    sync.detach();
    expect(calls.map((x) => x.op)).toEqual(['unlinkGroup', 'unmapDma', 'removeWindow', 'unregisterMemory']);
    expect(vmB.links(L)).toEqual([]);
    expect(fdB.container.windows).toEqual([undefined, undefined]);
    expect(fdB.container.regions).toEqual([]);
    b.checkInvariants();
  });

  for (const kernel of ['4.19', '5.19'] as const) {
    it(`row 46 (${kernel}): a worker vCPU's hypercalls, which deliver no events, still reach the host window through the link`, async () => {
      const { host, vm, fd, calls, attach, list, vcpu } = await setup('wasm', kernel);
      const sync = attach();
      calls.length = 0;
      const w = WorkerVcpu.attach(vcpu.workerData());
      const tces = Array.from({ length: 512 }, (_, i) => (G + BigInt(i) * 0x1000n) | 3n);
      w.regs[3] = BigInt(H.PUT_TCE_INDIRECT);
      w.regs[4] = L;
      w.regs[5] = 0x400000n;
      w.regs[6] = list(tces);
      w.regs[7] = 512n;
      expect(w.hcall()).toBe(H.SUCCESS);
      expect(vcpu.lastLevel).not.toBe('exit');
      expect(calls).toEqual([]);
      expect(hostEntries(fd, 0n)).toHaveLength(512);
      expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L));
      sync.detach();
      host.checkInvariants();
    });
  }

  it('links the VMM made itself stay: the sync drops only its own reference, whichever slot its link is in', async () => {
    const { host, qemu, vm, fd, attach } = await setup('wasm', '5.19');
    const sync = attach();
    // the VMM links another container's table to the same LIOBN after the sync did: the sync's is slot 0
    const g = host.addGroup();
    const other = qemu.openContainer();
    other.attachGroup(g);
    other.setIommu('v2');
    other.registerMemory(vm.memslots[0]!.ua, vm.memslots[0]!.size);
    other.removeWindow(0n);
    other.createWindow({ pageShift: 12, windowSize: GiB, levels: 1 });
    vm.attachGroup(g, L);
    const mine = fd.container.windows[0]!.table.desc;
    const theirs = other.container.windows[0]!.table.desc;
    expect(vm.links(L)).toEqual([{ tableDesc: mine, refs: 1 }, { tableDesc: theirs, refs: 1 }]);
    expect(vm.hcall(H.PUT_TCE, L, 0x7000n, G | 3n).ret).toBe(H.SUCCESS);
    // the kernel wrote both hardware tables
    expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L));
    expect(hostEntries(other, 0n)).toEqual(expectedEntries(vm, L));
    sync.detach();
    expect(vm.links(L)).toEqual([{ tableDesc: theirs, refs: 1 }]);
    host.checkInvariants();
    expect(vm.hcall(H.PUT_TCE, L, 0x8000n, (G + 0x1000n) | 3n).ret).toBe(H.SUCCESS);
    expect(hostEntries(other, 0n)).toEqual(expectedEntries(vm, L));
    host.checkInvariants();
  });

  it('row 48, errors: a window the host cannot place and a map in it are reported through onError; a link refused at attach (ENOSPC) fails the attach and leaves the container as it was; v1 is ENODEV', async () => {
    const { host, qemu, vm, fd, group, errors, attach, hc, ops } = await setup('wasm', '4.19');
    const sync = attach();
    // a guest window at a bus address the host cannot give (not 0, not 1 << 59)
    vm.createTceTable({ liobn: L2, pageShift: 12, offset: 0x100000n, size: 16n });
    expect(errors.map((e) => [e.op, e.reason, e.liobn])).toEqual([['createWindow', 'window-start', L2]]);
    expect(vm.links(L2)).toEqual([]);
    expect(hc(H.PUT_TCE, L2, 0x100000000n, G | 3n)[0]).toBe(H.SUCCESS);
    expect(errors.map((e) => [e.op, e.reason])).toEqual([['createWindow', 'window-start'], ['mapDma', 'no-host-window']]);
    expect(sync.stats().errors).toBe(2);
    sync.detach();
    host.checkInvariants();
    // four links on the LIOBN already (MAX_STITS): the sync's link is ENOSPC, thrown at attach
    const others = Array.from({ length: 4 }, () => {
      const g = host.addGroup();
      const c = qemu.openContainer();
      c.attachGroup(g);
      c.setIommu('v2');
      c.removeWindow(0n);
      c.createWindow({ pageShift: 12, windowSize: GiB, levels: 1 });
      vm.attachGroup(g, L);
      return c;
    });
    const links = vm.links(L);
    expect(links).toHaveLength(4);
    const locked = qemu.mm.lockedPages;
    const before = ops().length;
    const e = expectErr(() => attach(), 'ENOSPC');
    expect(e).toBeInstanceOf(VfioSyncError);
    expect((e as VfioSyncError).op).toBe('linkGroup');
    expect(ops().slice(before)).toEqual(['registerMemory', 'createWindow', 'linkGroup ENOSPC', 'unmapDma', 'removeWindow', 'unregisterMemory']);
    expect(vm.links(L)).toEqual(links);
    expect(fd.container.windows).toEqual([undefined, undefined]);
    expect(fd.container.regions).toEqual([]);
    expect(qemu.mm.lockedPages).toBe(locked);
    host.checkInvariants();
    void others;
    // v1 in the kvm profile: every guest map would exit (no pre-registered memory)
    const v1 = qemu.openContainer();
    v1.attachGroup(host.addGroup({ ddw: false }));
    v1.setIommu('v1');
    expect(expectErr(() => vm.attachContainer(v1), 'ENODEV').message).toMatch(/v2/);
    void group;
  });
});
