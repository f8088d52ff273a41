// Spec: docs/semantics.md §8.7 (windows and memory that come and go), §9 V30, V31, V40, V41:
// window-add/window-remove events and the unmaps of what a removal drops (spapr_tce_table_enable /
// _disable, spapr_phb_dma_reset), vm.removeMemslot (KVM_SET_USER_MEMORY_REGION with size 0,
// kvm_arch_flush_shadow_memslot), vm.reset() (spapr_tce_reset, spapr_phb_dma_reset,
// spapr_vio_busdev_reset) and the VIO TCE bypass (rtas_set_tce_bypass, spapr_vio_set_bypass).
import { describe, expect, it } from 'vitest';
import { Host, H, RTAS_OUT, DmaFault, type VmEvent } from '../../src/index.js';
import { MiB, expectErr, guestSetup, isIommuEvent } from './helpers.js';

const BUID = 0x800000020000000n;
const HI = Number(BUID >> 32n);
const LO = Number(BUID & 0xffffffffn);
const L0 = 0x80000000n;
const L1 = 0x80000001n;
const VIO = 0x71000002n;
const DDW = 1n << 59n;
const G = 0x200000n;
const PARAM = RTAS_OUT.PARAM_ERROR;

/** A qemu-profile guest with 16 MiB of RAM, a PHB (default window L0) and a VIO unit's table (256 MiB of 4K pages at bus 0). */
async function qemuGuest() {
  const { host, qemu, ram, vm, list } = await guestSetup('qemu', VIO);
  const events: VmEvent[] = [];
  vm.addPhb({ buid: BUID, index: 0 });
  vm.subscribe('*', (e) => events.push(e));
  const hc = (nr: number, ...args: bigint[]): number => vm.hcall(nr, ...args).ret;
  const rtas = (name: string, args: number[], nret: number) => vm.rtas(name, args, nret);
  const create = (pageShift: number, windowShift: number) => rtas('ibm,create-pe-dma-window', [0, HI, LO, pageShift, windowShift], 4);
  const show = (e: VmEvent): string => (!isIommuEvent(e)
    ? `${e.kind} ${e.liobn.toString(16)} @${e.busOffset.toString(16)} ${e.pageSize.toString(16)} ${e.windowSize.toString(16)}`
    : `${e.kind} ${e.liobn.toString(16)} ${e.iova.toString(16)} ${e.gpa.toString(16)} ${e.perm}`);
  const seen = (): string[] => events.splice(0).map(show);
  const mappings = (liobn: bigint): string[] => {
    const out: string[] = [];
    vm.replay(liobn, (e) => out.push(`${e.iova.toString(16)} ${e.gpa.toString(16)}`));
    return out;
  };
  return { host, qemu, ram, vm, list, hc, rtas, create, seen, mappings };
}

describe('window events and the unmaps of dropped mappings', () => {
  it('createTceTable and a PHB\'s default window are window-add events (bus offset, page size, window size); subscribe(liobn) filters them', async () => {
    const host = await Host.create({ maxMemory: 48 << 20 });
    const qemu = host.spawn();
    for (const profile of ['kvm', 'qemu'] as const) {
      const vm = qemu.createVm({ profile });
      const all: VmEvent[] = [];
      const one: VmEvent[] = [];
      vm.subscribe('*', (e) => all.push(e));
      vm.subscribe(0x1234n, (e) => one.push(e));
      vm.createTceTable({ liobn: 0x1234n, pageShift: 16, offset: 0x100n, size: 0x4000n });
      vm.createTceTable({ liobn: 0x5678n, pageShift: 12, offset: 0n, size: 16n });
      expect(all).toEqual([
        { liobn: 0x1234n, kind: 'window-add', busOffset: 0x1000000n, pageSize: 0x10000n, windowSize: 1n << 30n },
        { liobn: 0x5678n, kind: 'window-add', busOffset: 0n, pageSize: 0x1000n, windowSize: 0x10000n },
      ]);
      expect(one).toEqual([all[0]]);
      if (profile === 'qemu') {
        all.length = 0;
        vm.addPhb({ buid: BUID, index: 0 });
        // spapr_phb_realize makes both tables disabled (no event); the PHB reset enables the default window
        expect(all).toEqual([{ liobn: L0, kind: 'window-add', busOffset: 0n, pageSize: 0x1000n, windowSize: 1n << 30n }]);
      }
    }
  });

  it('row 40: reset-pe-dma-window → an unmap for every mapping it dropped, then window-remove/window-add; afterwards replay is empty', async () => {
    const { vm, list, hc, rtas, create, seen, mappings } = await qemuGuest();
    expect(create(16, 36)).toEqual([0, Number(L1), 0x08000000, 0]);
    expect(seen()).toEqual([`window-add 80000001 @${DDW.toString(16)} 10000 1000000000`]);
    expect(hc(H.PUT_TCE_INDIRECT, L0, 0x3000n, list([G | 3n, (G + 0x1000n) | 1n, G | 0x7fcn]), 3n)).toBe(H.SUCCESS); // the third: poison, no permission
    expect(hc(H.PUT_TCE, L1, DDW + 0x20000n, 0x10000n | 2n)).toBe(H.SUCCESS);
    seen();
    expect(rtas('ibm,reset-pe-dma-window', [0, HI, LO], 1)).toEqual([0]);
    expect(seen()).toEqual([
      'unmap 80000000 3000 200000 0',
      'unmap 80000000 4000 201000 0',
      `unmap 80000001 ${(DDW + 0x20000n).toString(16)} 10000 0`,
      'window-remove 80000000 @0 1000 40000000',
      `window-remove 80000001 @${DDW.toString(16)} 10000 1000000000`,
      'window-add 80000000 @0 1000 40000000',
    ]);
    expect(mappings(L0)).toEqual([]);
    expect(mappings(L1)).toEqual([]);
    // nothing is delivered for a window that was already off, and the events of the RTAS call arrive before rtas() returns
    expect(rtas('ibm,reset-pe-dma-window', [0, HI, LO], 1)).toEqual([0]);
    expect(seen()).toEqual(['window-remove 80000000 @0 1000 40000000', 'window-add 80000000 @0 1000 40000000']);
    void vm;
  });

  it('remove-pe-dma-window: the window\'s unmaps, window-remove, and the default window\'s window-add when it comes back', async () => {
    const { hc, rtas, create, seen } = await qemuGuest();
    create(16, 36);
    hc(H.PUT_TCE, L0, 0x1000n, G | 3n);
    hc(H.PUT_TCE, L1, DDW, 0x10000n | 3n);
    seen();
    expect(rtas('ibm,remove-pe-dma-window', [Number(L0)], 1)).toEqual([0]);
    expect(seen()).toEqual(['unmap 80000000 1000 200000 0', 'window-remove 80000000 @0 1000 40000000']);
    // the last window, not the default: the DMA reset brings the default back (QEMU ≥ 7.1)
    expect(rtas('ibm,remove-pe-dma-window', [Number(L1)], 1)).toEqual([0]);
    expect(seen()).toEqual([`unmap 80000001 ${DDW.toString(16)} 10000 0`, `window-remove 80000001 @${DDW.toString(16)} 10000 1000000000`, 'window-add 80000000 @0 1000 40000000']);
    // refused calls send nothing
    expect(rtas('ibm,remove-pe-dma-window', [Number(L1)], 1)).toEqual([PARAM]);
    expect(create(13, 36)).toEqual([PARAM]);
    expect(seen()).toEqual([]);
  });

  it('vm.destroy(): an unmap for every present mapping, then a window-remove per enabled table, then the memslots go; a sync is left with an empty container', async () => {
    const { host, qemu, vm, hc, create, seen } = await qemuGuest();
    create(16, 36);
    expect(hc(H.PUT_TCE, VIO, 0x2000n, (G + 0x1000n) | 2n)).toBe(H.SUCCESS);
    expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toBe(H.SUCCESS);
    expect(hc(H.PUT_TCE, L1, DDW, 0x10000n | 1n)).toBe(H.SUCCESS);
    const fd = qemu.openContainer();
    fd.attachGroup(host.addGroup());
    fd.setIommu('v2');
    const errors: unknown[] = [];
    const sync = vm.attachContainer(fd, { liobns: [L0, L1], onError: (e) => errors.push(e) });
    expect(fd.container.windows.filter((w) => w).map((w) => [...w!.table.entries()].length)).toEqual([1, 1]);
    seen();
    // a subscriber that throws does not stop the destroy, and its error comes out after it
    vm.subscribe(VIO, () => {
      throw new Error('listener bug');
    });
    expect(() => vm.destroy()).toThrow('listener bug');
    expect(vm.isDestroyed).toBe(true);
    expect(seen()).toEqual([
      'unmap 71000002 2000 201000 0',
      'unmap 80000000 1000 200000 0',
      `unmap 80000001 ${DDW.toString(16)} 10000 0`,
      'window-remove 71000002 @0 1000 40000000',
      'window-remove 80000000 @0 1000 40000000',
      `window-remove 80000001 @${DDW.toString(16)} 10000 1000000000`,
    ]);
    // the sync unmapped, removed its windows and unregistered the memslot's region: nothing stays pinned
    expect(fd.container.windows).toEqual([undefined, undefined]);
    expect(fd.container.regions).toEqual([]);
    expect(qemu.mm.lockedPages).toBe(0n);
    expect(errors).toEqual([]);
    expect(sync.stats()).toMatchObject({ unmapDma: 2, removeWindow: 3, unregisterMemory: 1, errors: 0 });
    sync.detach();
    expect(sync.stats()).toMatchObject({ unmapDma: 2, removeWindow: 3, unregisterMemory: 1, errors: 0 });
    host.checkInvariants();
  });

  it('a subscriber that throws during an RTAS call does not leave the call half done', async () => {
    const { vm, rtas, create, hc } = await qemuGuest();
    create(16, 36);
    hc(H.PUT_TCE, L1, DDW, 0x10000n | 3n);
    vm.subscribe('*', () => {
      throw new Error('listener bug');
    });
    expect(() => rtas('ibm,reset-pe-dma-window', [0, HI, LO], 1)).toThrow('listener bug');
    expect(vm.phbs[0]!.windows().map((w) => w.liobn)).toEqual([L0]);
    expect(vm.tables.get(L1)!.size).toBe(0n);
  });
});

describe('vm.removeMemslot: KVM_SET_USER_MEMORY_REGION with size 0', () => {
  /** A kvm VM linked to a VFIO v2 window, as the README example: 4 MiB of RAM in memslot 0, a 1 GiB window of 64K pages. */
  async function linked() {
    const host = await Host.create({ maxMemory: 64 << 20 });
    const qemu = host.spawn();
    const ram = qemu.mmap(4n * MiB);
    const more = qemu.mmap(4n * MiB);
    const g = host.addGroup();
    const fd = qemu.openContainer();
    fd.attachGroup(g);
    fd.setIommu('v2');
    fd.registerMemory(ram.ua, ram.size);
    fd.registerMemory(more.ua, more.size);
    fd.removeWindow(0n);
    fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
    const vm = qemu.createVm();
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.addMemslot({ gpa: 0x1000000n, size: more.size, ua: more.ua });
    vm.createTceTable({ liobn: 1n, pageShift: 16, offset: 0n, size: 1n << 14n });
    vm.attachGroup(g, 1n);
    const w = fd.container.windows[0]!;
    const region = (ua: bigint) => fd.container.regions.find((r) => r.ua === ua)!;
    return { host, qemu, ram, more, fd, vm, w, region };
  }

  it('row 41: TCEs into the removed memory stay as the kernel leaves them; the memory stays pinned until they are cleared', async () => {
    const { host, more, fd, vm, w, region } = await linked();
    expect(vm.hcall(H.PUT_TCE, 1n, 0x20000n, 0x1010000n | 3n).ret).toBe(H.SUCCESS); // gpa 16 MiB + 64K: the second memslot
    const hwBefore = w.table.get(2n);
    expect(region(more.ua).mapped).toBe(2n);
    vm.removeMemslot(0x1000000n);
    expect(vm.memslots.map((s) => s.gpa)).toEqual([0n]);
    // kvmppc_core_flush_memslot touches no TCE table: guest and hardware entries are unchanged, the region still pinned
    expect(vm.hcall(H.GET_TCE, 1n, 0x20000n).out[0]).toBe(0x1010000n | 3n);
    expect(w.table.get(2n)).toBe(hwBefore);
    expect(w.table.getUa(2n)).toBe(more.ua + 0x10000n);
    expect(region(more.ua).mapped).toBe(2n);
    // the translation is the raw TCE, but there is no RAM behind it any more
    expect(vm.translate(1n, 0x20000n, 'read')).toMatchObject({ ok: true, gpa: 0x1010000n });
    expect(() => vm.dma(1n).read(0x20000n, 8)).toThrow(DmaFault);
    // a new map of an address in it cannot translate: H_TOO_HARD (kvmppc_tce_validate → kvmppc_tce_to_ua), nothing written
    expect(vm.hcall(H.PUT_TCE, 1n, 0x30000n, 0x1020000n | 3n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    expect(w.table.get(3n)).toBe(0n);
    // UNREGISTER is refused while the hardware TCE points in (docs/semantics.md §1: EBUSY)
    expectErr(() => fd.unregisterMemory(more.ua, more.size), 'EBUSY');
    host.checkInvariants();
    // clearing works without the memslot (the view recorded the userspace address), and then the region can go
    expect(vm.hcall(H.PUT_TCE, 1n, 0x20000n, 0n).ret).toBe(H.SUCCESS);
    expect(w.table.get(2n)).toBe(0n);
    expect(region(more.ua).mapped).toBe(1n);
    fd.unregisterMemory(more.ua, more.size);
    host.checkInvariants();
  });

  it('real mode stops seeing the slot at once (a TCE list in it → H_TOO_HARD), and the slot can come back, reusing its descriptor', async () => {
    const { host, more, vm } = await linked();
    const dv = new DataView(more.bytes!.buffer, more.bytes!.byteOffset, more.bytes!.byteLength);
    dv.setBigUint64(0, 0x10000n | 3n, false);
    const c = vm.vcpu(0);
    const indirect = (): [number, string] => {
      c.regs[3] = BigInt(H.PUT_TCE_INDIRECT);
      c.regs[4] = 1n;
      c.regs[5] = 0x40000n;
      c.regs[6] = 0x1000000n; // the list, in the second memslot
      c.regs[7] = 1n;
      return [c.hcall(), c.lastLevel];
    };
    expect(indirect()).toEqual([H.SUCCESS, 'virtual']); // the guest-table page is allocated by virtual mode
    expect(indirect()).toEqual([H.SUCCESS, 'real']);
    vm.removeMemslot(0x1000000n);
    expect(indirect()).toEqual([H.TOO_HARD, 'exit']);
    const top = host.stats().memory.heapTop;
    vm.addMemslot({ gpa: 0x1000000n, size: more.size, ua: more.ua });
    expect(host.stats().memory.heapTop).toBe(top);
    expect(indirect()).toEqual([H.SUCCESS, 'real']);
    host.checkInvariants();
  });

  it('an unknown start address is EINVAL and changes nothing; bad types are TypeError', async () => {
    const { vm } = await linked();
    expectErr(() => vm.removeMemslot(0x10000n), 'EINVAL'); // inside memslot 0, not its start
    expectErr(() => vm.removeMemslot(0x8000000n), 'EINVAL');
    expect(() => vm.removeMemslot('0' as unknown as bigint)).toThrow(TypeError);
    expect(vm.memslots.map((s) => s.gpa)).toEqual([0n, 0x1000000n]);
  });

  it('a snapshot after a removal restores without the slot, and the restored VM reuses the descriptor too', async () => {
    const { host, qemu, more, vm } = await linked();
    vm.removeMemslot(0x1000000n);
    const b = Host.restore(host.snapshot());
    const vmB = [...b.vms].find((x) => x.process.tid === qemu.tid)!;
    expect(vmB.memslots.map((s) => s.gpa)).toEqual([0n]);
    const top = b.stats().memory.heapTop;
    vmB.addMemslot({ gpa: 0x2000000n, size: more.size, ua: more.ua });
    expect(b.stats().memory.heapTop).toBe(top);
    expect(vmB.hcall(H.PUT_TCE, 1n, 0x50000n, 0x2000000n | 3n).ret).toBe(H.SUCCESS);
    b.checkInvariants();
  });
});

describe('vm.reset(): QEMU\'s machine reset for the IOMMU', () => {
  it('row 31: entries zeroed, bypass off, the DDW removed, the default window restored; every dropped mapping an unmap first', async () => {
    const { vm, list, hc, create, seen, mappings } = await qemuGuest();
    create(16, 36);
    hc(H.PUT_TCE_INDIRECT, L0, 0x3000n, list([G | 3n, (G + 0x1000n) | 1n]), 2n);
    hc(H.PUT_TCE, L1, DDW, 0x10000n | 3n);
    hc(H.PUT_TCE, VIO, 0x5000n, (G + 0x5000n) | 2n);
    hc(H.PUT_TCE, VIO, 0x6000n, (G + 0x6000n) | 0x7fcn); // no permission: zeroed, but no event
    vm.setTceBypass(VIO, true);
    seen();
    vm.reset();
    expect(seen()).toEqual([
      'unmap 71000002 5000 205000 0',
      'unmap 80000000 3000 200000 0',
      'unmap 80000000 4000 201000 0',
      `unmap 80000001 ${DDW.toString(16)} 10000 0`,
      'window-remove 80000000 @0 1000 40000000',
      `window-remove 80000001 @${DDW.toString(16)} 10000 1000000000`,
      'window-add 80000000 @0 1000 40000000',
    ]);
    expect(vm.phbs[0]!.windows()).toEqual([{ liobn: L0, busOffset: 0n, pageShift: 12, entries: 262144n, isDefault: true }]);
    for (const l of [L0, L1, VIO]) expect(mappings(l)).toEqual([]);
    expect(vm.hcall(H.GET_TCE, VIO, 0x6000n).out[0]).toBe(0n);
    expect(vm.tables.get(VIO)!.size).toBe(262144n); // the VIO table keeps its geometry
    expect(vm.tceBypass(VIO)).toBe(false);
    expect(vm.translate(VIO, 0x5000n, 'write')).toEqual({ ok: false, fault: 'no-permission' });
    // and the guest can start again
    expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toBe(H.SUCCESS);
  });

  it('kvm profile: the guest tables and the hardware tables linked to them are cleared; the accounting stays exact', async () => {
    const host = await Host.create({ maxMemory: 64 << 20 });
    const qemu = host.spawn();
    const ram = qemu.mmap(4n * MiB);
    const g = host.addGroup();
    const fd = qemu.openContainer();
    fd.attachGroup(g);
    fd.setIommu('v2');
    fd.registerMemory(ram.ua, ram.size);
    fd.removeWindow(0n);
    fd.createWindow({ pageShift: 12, windowSize: 1n << 30n, levels: 2 });
    const vm = qemu.createVm();
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: 1n, pageShift: 16, offset: 0n, size: 1n << 14n }); // 64K guest pages over a 4K hardware table
    vm.attachGroup(g, 1n);
    expect(vm.hcall(H.PUT_TCE, 1n, 0x10000n, 0x20000n | 3n).ret).toBe(H.SUCCESS);
    expect(vm.hcall(H.PUT_TCE, 1n, 0x3ff0000n, 0x30000n | 1n).ret).toBe(H.SUCCESS);
    const w = fd.container.windows[0]!;
    expect([...w.table.entries()]).toHaveLength(32);
    const region = fd.container.regions[0]!;
    expect(region.mapped).toBe(33n);
    const events: VmEvent[] = [];
    vm.subscribe('*', (e) => events.push(e));
    vm.reset();
    expect(events.map((e) => `${e.kind} ${'iova' in e ? e.iova.toString(16) : ''}`)).toEqual(['unmap 10000', 'unmap 3ff0000']);
    expect([...w.table.entries()]).toEqual([]);
    expect(region.mapped).toBe(1n);
    expect(vm.hcall(H.GET_TCE, 1n, 0x10000n).out[0]).toBe(0n);
    host.checkInvariants();
    fd.unregisterMemory(ram.ua, ram.size);
    host.checkInvariants();
  });
});

describe('VIO TCE bypass (ibm,set-tce-bypass)', () => {
  it('row 30: bypass on → DMA at X reaches guest address X; off → TCE translation again; unknown unit or a PHB window → -3', async () => {
    const { ram, vm, rtas, hc, seen } = await qemuGuest();
    const X = 0x300000n;
    ram.bytes!.set([1, 2, 3, 4], Number(X));
    expect(vm.dma(VIO).read.bind(null, X, 4)).toThrow(DmaFault);
    expect(rtas('ibm,set-tce-bypass', [Number(VIO), 1], 1)).toEqual([0]);
    expect(vm.tceBypass(VIO)).toBe(true);
    expect(vm.translate(VIO, X + 0x10n, 'write')).toEqual({ ok: true, gpa: X + 0x10n, pageIova: X, pageSize: 0x1000n, perm: 3 });
    expect([...vm.dma(VIO).read(X, 4)]).toEqual([1, 2, 3, 4]);
    vm.dma(VIO).write(X + 4n, Uint8Array.of(9));
    expect(ram.bytes![Number(X) + 4]).toBe(9);
    // the entries are ignored while on, and kept: a mapping made in bypass counts once it is off
    expect(hc(H.PUT_TCE, VIO, 0x1000n, X | 1n)).toBe(H.SUCCESS);
    expect(vm.translate(VIO, 0x1000n, 'read')).toMatchObject({ ok: true, gpa: 0x1000n });
    expect(rtas('ibm,set-tce-bypass', [Number(VIO), 0], 1)).toEqual([0]);
    expect(vm.translate(VIO, 0x1000n, 'read')).toMatchObject({ ok: true, gpa: X });
    expect(vm.translate(VIO, X, 'read')).toEqual({ ok: false, fault: 'no-permission' });
    expect(() => vm.dma(VIO).read(X, 4)).toThrow(DmaFault);
    // nargs ≠ 2, an unknown unit, a PHB's LIOBN (no VIO device): -3, nothing changed
    expect(rtas('ibm,set-tce-bypass', [Number(VIO)], 1)).toEqual([PARAM]);
    expect(rtas('ibm,set-tce-bypass', [Number(VIO), 1, 0], 1)).toEqual([PARAM]);
    expect(rtas('ibm,set-tce-bypass', [0x71000099, 1], 1)).toEqual([PARAM]);
    expect(rtas('ibm,set-tce-bypass', [Number(L0), 1], 1)).toEqual([PARAM]);
    expect(vm.tceBypass(VIO)).toBe(false);
    expect(vm.tceBypass(L0)).toBe(false);
    // bypass is no window change: no events
    expect(seen().filter((e) => e.startsWith('window'))).toEqual([]);
  });

  it('vm.setTceBypass: numbers or bigints; EINVAL for no VIO table; the flag survives a snapshot round trip', async () => {
    const { host, qemu, vm } = await qemuGuest();
    expectErr(() => vm.setTceBypass(0x71000099, true), 'EINVAL');
    expect(expectErr(() => vm.setTceBypass(L0, true), 'EINVAL').message).toMatch(/PHB/);
    expect(() => vm.setTceBypass(VIO, 1 as unknown as boolean)).toThrow(TypeError);
    expect(() => vm.setTceBypass(-1, true)).toThrow(RangeError);
    vm.setTceBypass(Number(VIO), true);
    const snap = host.snapshot();
    const b = Host.restore(JSON.parse(JSON.stringify(snap)));
    const vmB = [...b.vms].find((x) => x.process.tid === qemu.tid)!;
    expect(vmB.tceBypass(VIO)).toBe(true);
    expect(vmB.translate(VIO, 0x123456n, 'read')).toMatchObject({ ok: true, gpa: 0x123456n });
    expect(b.snapshot().checksum).toBe(snap.checksum);
    vm.setTceBypass(VIO, false);
    expect(host.snapshot().body.vms[0]!.bypass).toBeUndefined();
  });

  it('kvm profile: a VIO unit\'s table has a bypass too (QEMU serves the VIO devices whichever handles the hypercalls)', async () => {
    const { vm, ram } = await guestSetup('kvm', VIO);
    ram.bytes![0x1234] = 7;
    vm.setTceBypass(VIO, true);
    expect(vm.dma(VIO).read(0x1234n, 1)[0]).toBe(7);
  });
});
