// Spec: docs/semantics.md §8.4 (DDW RTAS calls in the kvm profile), §8.5 (host VFIO kept in sync, kvm
// profile), §9 V49: QEMU with KVM serves the DDW RTAS calls itself (hw/ppc/spapr_rtas_ddw.c) and
// each window it enables is a KVM table (spapr_tce_table_enable → spapr_tce_alloc_table →
// kvmppc_create_spapr_tce: KVM_CREATE_SPAPR_TCE_64); disabling one closes that table's fd
// (spapr_tce_free_table → kvm_spapr_tce_release: the table and its VFIO links dropped). Both
// engines, kernel eras 4.19 (real mode) and 5.19 (virtual mode only).
import { describe, expect, it } from 'vitest';
import { Host, H, RTAS_OUT, type VfioCall, type VfioSyncError, type VmEvent, type Vm, type KernelEra } from '../../src/index.js';
import { MiB, expectRegionCounts, hostEntries, expectedEntries } from './helpers.js';

const BUID = 0x800000020000000n;
const HI = Number(BUID >> 32n);
const LO = Number(BUID & 0xffffffffn);
const CFG = 0x10000;
const L0 = 0x80000000n;
const L1 = 0x80000001n;
const DDW = 1n << 59n;
const G = 0x400000n;
const LIST = 0x100000;
const PARAM = RTAS_OUT.PARAM_ERROR;
const HW = RTAS_OUT.HW_ERROR;

async function setup(engine: 'wasm' | 'native', kernel: KernelEra) {
  const host = await Host.create({ engine, kernel, maxMemory: 96 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile: 'kvm' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  const lockedNoPhb = qemu.mm.lockedPages;
  const phb = vm.addPhb({ buid: BUID, index: 0 });
  const create = (pageShift: number, windowShift: number) => vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, pageShift, windowShift], 4);
  const remove = (liobn: bigint) => vm.rtas('ibm,remove-pe-dma-window', [Number(liobn)], 1);
  const reset = () => vm.rtas('ibm,reset-pe-dma-window', [CFG, HI, LO], 1);
  const query = () => vm.rtas('ibm,query-pe-dma-window', [CFG, HI, LO], 5);
  const geometry = () => phb.windows().map((w) => ({ liobn: w.liobn, bus: w.busOffset, shift: w.pageShift, entries: w.entries, def: w.isDefault }));
  const DEFAULT = { liobn: L0, bus: 0n, shift: 12, entries: 262144n, def: true };
  const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
  const list = (tces: bigint[]): bigint => {
    tces.forEach((t, i) => dv.setBigUint64(LIST + i * 8, t, false));
    return BigInt(LIST);
  };
  const vcpu = vm.vcpu(0);
  const hc = (nr: number, ...args: bigint[]): [number, string] => {
    vcpu.regs[3] = BigInt(nr);
    for (let i = 0; i < 4; i++) vcpu.regs[4 + i] = args[i] ?? 0n;
    const rc = vcpu.hcall();
    return [rc, vcpu.lastLevel];
  };
  return { host, qemu, ram, vm, phb, create, remove, reset, query, geometry, DEFAULT, list, hc, lockedNoPhb };
}

describe('vmm §4 dynamic DMA windows (RTAS), profile kvm', () => {
  for (const engine of ['wasm', 'native'] as const) {
    it(`${engine}: each enabled window is a KVM table (charged to locked_vm), a disabled one has none; a hypercall on it exits`, async () => {
      const { host, vm, qemu, create, remove, reset, query, geometry, DEFAULT, hc, lockedNoPhb } = await setup(engine, '4.19');
      expect(geometry()).toEqual([DEFAULT]);
      expect([...vm.tables.keys()]).toEqual([L0]);
      const lockedDefault = qemu.mm.lockedPages;
      expect(lockedDefault).toBeGreaterThan(lockedNoPhb);
      // window 1 has no KVM table: KVM finds nothing and exits to the VMM
      expect(hc(H.PUT_TCE, L1, DDW, G | 3n)).toEqual([H.TOO_HARD, 'exit']);
      expect(vm.translate(L1, DDW)).toEqual({ ok: false, fault: 'no-window' });
      expect(create(16, 30)).toEqual([0, Number(L1), 0x08000000, 0]);
      const t = vm.tables.get(L1)!;
      expect(t).toMatchObject({ liobn: L1, pageShift: 16, offset: DDW >> 16n, size: 1n << 14n });
      expect(t.chargedPages).toBeGreaterThan(0n);
      expect(qemu.mm.lockedPages).toBe(lockedDefault + t.chargedPages);
      expect(query()[1]).toBe(0);
      expect(hc(H.PUT_TCE, L1, DDW + 0x10000n, G | 3n)[0]).toBe(H.SUCCESS);
      expect(vm.translate(L1, DDW + 0x10008n, 'write')).toMatchObject({ ok: true, gpa: G + 8n });
      // remove: the table's fd closed, its charge back
      expect(remove(L1)).toEqual([0]);
      expect(vm.tables.has(L1)).toBe(false);
      expect(qemu.mm.lockedPages).toBe(lockedDefault);
      expect(hc(H.PUT_TCE, L1, DDW, G | 3n)).toEqual([H.TOO_HARD, 'exit']);
      expect(geometry()).toEqual([DEFAULT]);
      // rows 24/25 as in the qemu profile: remove(default) then remove(DDW) restores the default
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)[0]).toBe(H.SUCCESS);
      expect(create(16, 32)[0]).toBe(0);
      expect(remove(L0)).toEqual([0]);
      expect([...vm.tables.keys()]).toEqual([L1]);
      expect(remove(L1)).toEqual([0]);
      expect(geometry()).toEqual([DEFAULT]);
      expect(hc(H.GET_TCE, L0, 0x1000n)[0]).toBe(H.SUCCESS);
      expect(vm.hcall(H.GET_TCE, L0, 0x1000n).out[0]).toBe(0n);
      // reset with both windows: only the default one, empty
      expect(create(16, 32)[0]).toBe(0);
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n)[0]).toBe(H.SUCCESS);
      expect(reset()).toEqual([0]);
      expect(geometry()).toEqual([DEFAULT]);
      expect([...vm.tables.keys()]).toEqual([L0]);
      expect(vm.hcall(H.GET_TCE, L0, 0x2000n).out[0]).toBe(0n);
      expect(qemu.mm.lockedPages).toBe(lockedDefault);
      // all windows removed, then vm.reset(): the default window back
      expect(remove(L0)).toEqual([0]);
      expect(vm.tables.size).toBe(0);
      expect(query()[1]).toBe(2);
      vm.reset();
      expect(geometry()).toEqual([DEFAULT]);
      host.checkInvariants();
    });
  }

  it('bad arguments are refused and leave the windows, tables and charges as they were', async () => {
    const { vm, qemu, create, remove, geometry, DEFAULT } = await setup('native', '4.19');
    expect(create(16, 30)[0]).toBe(0);
    const before = { g: geometry(), tables: [...vm.tables.entries()], locked: qemu.mm.lockedPages };
    const same = () => expect({ g: geometry(), tables: [...vm.tables.entries()], locked: qemu.mm.lockedPages }).toEqual(before);
    expect(create(13, 30)).toEqual([PARAM]);
    expect(create(12, 11)).toEqual([PARAM]);
    expect(create(16, 30)).toEqual([HW]); // both windows active
    same();
    expect(vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, 16], 4)).toEqual([PARAM]);
    expect(vm.rtas('ibm,reset-pe-dma-window', [CFG, HI, 7], 1)).toEqual([PARAM]);
    expect(vm.rtas('ibm,remove-pe-dma-window', [Number(L0)], 2)).toEqual([PARAM]);
    expect(remove(0x80000005n)).toEqual([PARAM]);
    same();
    expect(remove(L1)).toEqual([0]);
    expect(remove(L1)).toEqual([PARAM]); // inactive
    // the disabled window's LIOBN has no KVM table, but QEMU's table device holds it
    const lockedAtL1 = qemu.mm.lockedPages;
    expect(() => vm.createTceTable({ liobn: L1, pageShift: 12, offset: 0n, size: 16n })).toThrow(/EBUSY.*window of PHB/);
    expect(qemu.mm.lockedPages).toBe(lockedAtL1);
    expect(vm.tables.has(L1)).toBe(false);
    expect(geometry()).toEqual([DEFAULT]);
    // 2^32 entries or more (u32 nb_table) → -1; a window over the locked_vm limit: KVM refuses the table → -1
    expect(create(12, 44)).toEqual([HW]);
    const small = await Host.create({ maxMemory: 96 << 20 });
    const p = small.spawn({ memlockLimit: MiB });
    const kvm = p.createVm({ profile: 'kvm' });
    kvm.addPhb({ buid: BUID, index: 0, dma32: { addr: 0n, size: 1n << 24n } });
    const lockedBefore = p.mm.lockedPages;
    expect(kvm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, 12, 34], 4)).toEqual([HW]);
    expect(kvm.phbs[0]!.windows()).toHaveLength(1);
    expect(kvm.tables.has(L1)).toBe(false);
    expect(p.mm.lockedPages).toBe(lockedBefore);
    small.checkInvariants();
  });

  for (const engine of ['wasm', 'native'] as const) {
    for (const kernel of ['4.19', '5.19'] as const) {
      it(`${engine}, ${kernel}: a VfioSync follows DDW create (host window, linked, no MAP_DMA), remove (unmaps then window-remove, links dropped by the kernel, host window gone) and reset (default window recreated and linked)`, async () => {
        const { host, qemu, vm, create, remove, reset, list, hc } = await setup(engine, kernel);
        const group = host.addGroup();
        const fd = qemu.openContainer();
        fd.attachGroup(group);
        fd.setIommu('v2');
        const calls: VfioCall[] = [];
        const errors: VfioSyncError[] = [];
        const events: VmEvent[] = [];
        // what the host windows hold when each call has returned ('-': no window in that slot), and L1's links then
        const seen: string[] = [];
        const sync = vm.attachContainer(fd, {
          onCall: (c) => {
            calls.push(c);
            seen.push(`${c.op} ${fd.container.windows.map((w) => (w ? [...w.table.entries()].length : '-')).join(',')} links ${vm.links(L1).length}`);
          },
          onError: (e) => errors.push(e),
        });
        vm.subscribe('*', (e) => events.push(e));
        const ops = () => calls.map((c) => `${c.op}${c.error ? ` ${c.error.code}` : ''}`);
        expect(ops()).toEqual(['registerMemory', 'removeWindow', 'createWindow', 'linkGroup']);
        calls.length = 0;
        // create: a new KVM table at the DDW's LIOBN, a host window at its bus offset, the group linked
        expect(create(16, 30)).toEqual([0, Number(L1), 0x08000000, 0]);
        expect(events).toEqual([{ liobn: L1, kind: 'window-add', busOffset: DDW, pageSize: 0x10000n, windowSize: 1n << 30n }]);
        expect(ops()).toEqual(['createWindow', 'linkGroup']);
        const hw = fd.container.windows.find((w) => w?.startAddr === DDW)!.table;
        expect(vm.links(L1)).toEqual([{ tableDesc: hw.desc, refs: 1 }]);
        calls.length = 0;
        events.length = 0;
        // the guest's INDIRECT on it completes in the kernel: the host window equals the guest's, no MAP_DMA
        const tces = Array.from({ length: 512 }, (_, i) => (G + BigInt(i) * 0x10000n) | (i % 2 ? 1n : 3n)).slice(0, 64);
        const [rc, level] = hc(H.PUT_TCE_INDIRECT, L1, DDW + 0x100000n, list(tces), 64n);
        expect(rc).toBe(H.SUCCESS);
        if (kernel === '5.19') expect(level).toBe('virtual');
        else expect(['real', 'virtual']).toContain(level);
        expect(hc(H.PUT_TCE, L0, 0x3000n, G | 3n)[0]).toBe(H.SUCCESS);
        expect(calls).toEqual([]);
        expect(hostEntries(fd, DDW)).toHaveLength(64);
        expect(hostEntries(fd, DDW)).toEqual(expectedEntries(vm, L1, 16));
        expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L0, 12));
        expect(sync.stats()).toMatchObject({ mapDma: 0, unmapDma: 0, errors: 0 });
        expectRegionCounts(fd);
        host.checkInvariants();
        // remove: an unmap for each of the 64 mappings, then window-remove; the kernel dropped the link (the KVM table's
        // fd closed), the sync's region_del makes one UNMAP over the window (the unmaps make no call), then TCE_REMOVE
        events.length = 0;
        seen.length = 0;
        let before = sync.stats();
        expect(remove(L1)).toEqual([0]);
        expect(events.map((e) => e.kind)).toEqual([...Array<string>(64).fill('unmap'), 'window-remove']);
        expect(events.slice(0, 64).map((e) => ('iova' in e ? e.iova : 0n))).toEqual(tces.map((_, i) => DDW + 0x100000n + BigInt(i) * 0x10000n));
        expect(calls).toEqual([{ op: 'unmapDma', liobn: L1, iova: DDW, size: 1n << 30n }, { op: 'removeWindow', liobn: L1, iova: DDW }]);
        // the link was gone before the UNMAP (the RTAS call's events come after it), the UNMAP emptied the window, TCE_REMOVE removed it
        expect(seen).toEqual(['unmapDma 1,0 links 0', 'removeWindow 1,- links 0']);
        expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 1, removeWindow: before.removeWindow + 1 });
        expect(vm.tables.has(L1)).toBe(false);
        expect(vm.links(L1)).toEqual([]);
        expect(fd.container.windows.find((w) => w?.startAddr === DDW)).toBeUndefined();
        // the hardware table went with its last reference (the window's and the link's)
        expect(host.tables.has(hw)).toBe(false);
        expect(sync.windows().map((w) => w.liobn)).toEqual([L0]);
        expectRegionCounts(fd);
        expect(fd.container.regions[0]!.mapped).toBe(2n); // the registration and L0's one TCE
        host.checkInvariants();
        // reset with a DDW: both host windows go, the default one comes back, empty and linked again
        expect(create(16, 30)[0]).toBe(0);
        expect(hc(H.PUT_TCE, L1, DDW, G | 3n)[0]).toBe(H.SUCCESS);
        const oldDef = fd.container.windows.find((w) => w?.startAddr === 0n)!.table;
        const oldDdw = fd.container.windows.find((w) => w?.startAddr === DDW)!.table;
        calls.length = 0;
        events.length = 0;
        seen.length = 0;
        before = sync.stats();
        expect(reset()).toEqual([0]);
        expect(host.tables.has(oldDef) || host.tables.has(oldDdw)).toBe(false);
        expect(events.map((e) => `${e.kind} ${e.liobn.toString(16)}`)).toEqual(['unmap 80000000', 'unmap 80000001', 'window-remove 80000000', 'window-remove 80000001', 'window-add 80000000']);
        // spapr_phb_dma_reset: each window's region_del in window order (UNMAP over it, TCE_REMOVE), then the default window's region_add
        expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
          ['unmapDma', L0, 0n, 1n << 30n], ['removeWindow', L0, 0n, undefined],
          ['unmapDma', L1, DDW, 1n << 30n], ['removeWindow', L1, DDW, undefined],
          ['createWindow', L0, undefined, undefined], ['linkGroup', L0, undefined, undefined],
        ]);
        expect(seen).toEqual(['unmapDma 0,1 links 0', 'removeWindow -,1 links 0', 'unmapDma -,0 links 0', 'removeWindow -,- links 0', 'createWindow 0,- links 0', 'linkGroup 0,- links 0']);
        expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 2, removeWindow: before.removeWindow + 2, createWindow: before.createWindow + 1, linkGroup: before.linkGroup + 1 });
        const def = fd.container.windows.find((w) => w?.startAddr === 0n)!.table;
        expect(vm.links(L0)).toEqual([{ tableDesc: def.desc, refs: 1 }]);
        expect(fd.container.windows.filter((w) => w)).toHaveLength(1);
        expect(hostEntries(fd, 0n)).toEqual([]);
        expect(fd.container.regions[0]!.mapped).toBe(1n);
        // the recreated default window is followed: the kernel writes the host window
        calls.length = 0;
        expect(hc(H.PUT_TCE, L0, 0x5000n, G | 3n)[0]).toBe(H.SUCCESS);
        expect(calls).toEqual([]);
        expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L0, 12));
        expectRegionCounts(fd);
        // vm.reset() likewise
        calls.length = 0;
        before = sync.stats();
        vm.reset();
        expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
          ['unmapDma', L0, 0n, 1n << 30n], ['removeWindow', L0, 0n, undefined],
          ['createWindow', L0, undefined, undefined], ['linkGroup', L0, undefined, undefined],
        ]);
        expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 1, removeWindow: before.removeWindow + 1, createWindow: before.createWindow + 1, linkGroup: before.linkGroup + 1 });
        expect(hostEntries(fd, 0n)).toEqual([]);
        expect(fd.container.regions[0]!.mapped).toBe(1n);
        expectRegionCounts(fd);
        expect(errors).toEqual([]);
        host.checkInvariants();
        sync.detach();
        expect(fd.container.windows).toEqual([undefined, undefined]);
        expect(fd.container.regions).toEqual([]);
        expect(errors).toEqual([]);
        host.checkInvariants();
      });
    }
  }

  it('vm.destroy() with a PHB and a DDW in sync: each window unlinked by the sync, then its region_del (UNMAP over it, TCE_REMOVE); then UNREGISTER; nothing left', async () => {
    const { host, qemu, vm, create, hc } = await setup('wasm', '4.19');
    const group = host.addGroup();
    const fd = qemu.openContainer();
    fd.attachGroup(group);
    fd.setIommu('v2');
    const calls: VfioCall[] = [];
    const errors: VfioSyncError[] = [];
    const lockedBefore = qemu.mm.lockedPages;
    const sync = vm.attachContainer(fd, { onCall: (c) => calls.push(c), onError: (e) => errors.push(e) });
    expect(create(16, 30)[0]).toBe(0);
    expect(hc(H.PUT_TCE, L1, DDW, G | 3n)[0]).toBe(H.SUCCESS);
    calls.length = 0;
    vm.destroy();
    expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
      ['unlinkGroup', L0, undefined, undefined], ['unmapDma', L0, 0n, 1n << 30n], ['removeWindow', L0, 0n, undefined],
      ['unlinkGroup', L1, undefined, undefined], ['unmapDma', L1, DDW, 1n << 30n], ['removeWindow', L1, DDW, undefined],
      ['unregisterMemory', undefined, undefined, 16n * MiB],
    ]);
    expect(fd.container.windows).toEqual([undefined, undefined]);
    expect(fd.container.regions).toEqual([]);
    expect(errors).toEqual([]);
    sync.detach();
    expect(qemu.mm.lockedPages).toBeLessThan(lockedBefore);
    host.checkInvariants();
  });

  it('a snapshot of a kvm-profile VM with a PHB and a DDW round-trips (a disabled window has no table)', async () => {
    const { host, vm, create, remove, hc } = await setup('native', '4.19');
    expect(create(16, 30)[0]).toBe(0);
    expect(hc(H.PUT_TCE, L1, DDW, G | 3n)[0]).toBe(H.SUCCESS);
    expect(remove(L0)).toEqual([0]);
    const b = Host.restore(host.snapshot());
    const vb = [...b.vms][0]! as Vm;
    expect(vb.phbs[0]!.windows()).toEqual(vm.phbs[0]!.windows());
    expect(vb.hcall(H.GET_TCE, L1, DDW).out[0]).toBe(G | 3n);
    expect(vb.rtas('ibm,remove-pe-dma-window', [Number(L1)], 1)).toEqual([0]);
    expect(vb.phbs[0]!.windows().map((w) => w.liobn)).toEqual([L0]);
    b.checkInvariants();
  });
});
