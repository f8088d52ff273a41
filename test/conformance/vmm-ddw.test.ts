// Spec: docs/semantics.md §8.1 (PHB defaults, LIOBNs), §8.4 (DDW RTAS calls), §9 V19–V29: qemu profile.
import { describe, expect, it } from 'vitest';
import { Host, H, RTAS_OUT, TceError, type IommuEvent, type VmEvent } from '../../src/index.js';
import { MiB } from './helpers.js';

const BUID = 0x800000020000000n;
const HI = Number(BUID >> 32n);
const LO = Number(BUID & 0xffffffffn);
const CFG = 0x10000; // PE config address: ignored (PE = PHB)
const L0 = 0x80000000n;
const L1 = 0x80000001n;
const G = 0x200000n;
const DDW = 1n << 59n;
const PARAM = RTAS_OUT.PARAM_ERROR;
const HW = RTAS_OUT.HW_ERROR;

async function setup(phbOpts: { ddw?: boolean; pageSizeMask?: bigint } = {}) {
  const host = await Host.create({ maxMemory: 48 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  const phb = vm.addPhb({ buid: BUID, index: 0, ...phbOpts });
  const query = (nret = 5) => vm.rtas('ibm,query-pe-dma-window', [CFG, HI, LO], nret);
  const create = (pageShift: number, windowShift: number) => vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, pageShift, windowShift], 4);
  const remove = (liobn: bigint) => vm.rtas('ibm,remove-pe-dma-window', [Number(liobn)], 1);
  const reset = () => vm.rtas('ibm,reset-pe-dma-window', [CFG, HI, LO], 1);
  const geometry = () => phb.windows().map((w) => ({ liobn: w.liobn, bus: w.busOffset, shift: w.pageShift, entries: w.entries, def: w.isDefault }));
  const DEFAULT = { liobn: L0, bus: 0n, shift: 12, entries: 262144n, def: true };
  return { host, vm, phb, query, create, remove, reset, geometry, DEFAULT };
}

describe('vmm §4 dynamic DMA windows (RTAS), profile qemu', () => {
  it('the PHB starts with the default window: LIOBN 0x80000000, 1 GiB of 4K pages at bus 0; window 1 exists, disabled', async () => {
    const { vm, phb, geometry, DEFAULT } = await setup();
    expect(phb.liobns).toEqual([L0, L1]);
    expect(geometry()).toEqual([DEFAULT]);
    expect(vm.hcall(H.PUT_TCE, L0, 0x3ffff000n, G | 3n).ret).toBe(H.SUCCESS);
    // a disabled table is still found by LIOBN: every index check fails
    expect(vm.hcall(H.PUT_TCE, L1, 0n, G | 3n).ret).toBe(H.PARAMETER);
    expect(vm.hcall(H.GET_TCE, L1, DDW).ret).toBe(H.PARAMETER);
    expect(vm.hcall(H.STUFF_TCE, L1, 0n, 0n, 1n).ret).toBe(H.PARAMETER);
    expect(vm.translate(L1, DDW, 'read')).toEqual({ ok: false, fault: 'no-window' });
    // the LIOBN scheme follows the index
    const p3 = vm.addPhb({ buid: BUID + 1n, index: 3 });
    expect(p3.liobns).toEqual([0x80000300n, 0x80000301n]);
  });

  it('row 19: query with nret 5 / 6 / 4 → [0,1,0x80000000,0x107,0] / [0,1,0x20,0,0x107,0] / [-3]', async () => {
    const { query } = await setup();
    expect(query(5)).toEqual([0, 1, 0x80000000, 0x107, 0]);
    expect(query(6)).toEqual([0, 1, 0x20, 0, 0x107, 0]);
    expect(query(4)).toEqual([PARAM]);
  });

  it('row 19: the query mask follows the PHB page sizes (LoPAPR encoding)', async () => {
    const { query } = await setup({ pageSizeMask: (1n << 12n) | (1n << 25n) | (1n << 34n) });
    expect(query(5)).toEqual([0, 1, 0x80000000, 0x01 | 0x08 | 0x80, 0]);
  });

  it('row 20: create(page 16, window 40) → [0, 0x80000001, 0x08000000, 0]; 2^24 TCEs; no replay events, one window-add', async () => {
    const { vm, create, geometry, DEFAULT, query } = await setup();
    const events: VmEvent[] = [];
    vm.subscribe('*', (e) => events.push(e));
    expect(create(16, 40)).toEqual([0, 0x80000001, 0x08000000, 0]);
    expect(geometry()).toEqual([DEFAULT, { liobn: L1, bus: DDW, shift: 16, entries: 1n << 24n, def: false }]);
    expect(events).toEqual([{ liobn: L1, kind: 'window-add', busOffset: DDW, pageSize: 0x10000n, windowSize: 1n << 40n }]);
    events.length = 0;
    const replayed: IommuEvent[] = [];
    vm.replay(L1, (e) => replayed.push(e));
    expect(replayed).toEqual([]);
    expect(query()[1]).toBe(0);
    // the new window works: last entry in, one past out
    expect(vm.hcall(H.PUT_TCE, L1, DDW + ((1n << 24n) - 1n) * 0x10000n, G | 3n).ret).toBe(H.SUCCESS);
    expect(vm.hcall(H.PUT_TCE, L1, DDW + (1n << 40n), G | 3n).ret).toBe(H.PARAMETER);
    expect(vm.translate(L1, DDW + ((1n << 24n) - 1n) * 0x10000n + 0x1234n, 'write')).toMatchObject({ ok: true, gpa: G + 0x1234n });
    vm.dma(L1).write(DDW + ((1n << 24n) - 1n) * 0x10000n + 8n, Uint8Array.of(0xab));
    expect(events.map((e) => e.kind)).toEqual(['map']);
  });

  it('row 21: create with page_shift 13, or window_shift 11 → -3, even when 2 windows are active', async () => {
    const { create } = await setup();
    expect(create(13, 30)).toEqual([PARAM]);
    expect(create(12, 11)).toEqual([PARAM]);
    expect(create(64, 70)).toEqual([PARAM]);
    expect(create(16, 30)[0]).toBe(0);
    expect(create(13, 30)).toEqual([PARAM]);
    expect(create(12, 11)).toEqual([PARAM]);
  });

  it('row 22: create when 2 windows are active → -1; 2^32 TCEs or more (u32 nb_table) → -1', async () => {
    const { create, geometry } = await setup();
    expect(create(12, 44)).toEqual([HW]);
    expect(create(16, 30)[0]).toBe(0);
    const before = geometry();
    expect(create(16, 30)).toEqual([HW]);
    expect(geometry()).toEqual(before);
  });

  it('row 23: remove(DDW) with the default present → 0; 1 window left', async () => {
    const { create, remove, geometry, DEFAULT, query } = await setup();
    expect(create(16, 32)[0]).toBe(0);
    expect(remove(L1)).toEqual([0]);
    expect(geometry()).toEqual([DEFAULT]);
    expect(query()[1]).toBe(1);
  });

  it('row 24: remove(default), then remove(DDW) → the default window is restored automatically (empty, 1 GiB/4K)', async () => {
    const { vm, create, remove, geometry, DEFAULT } = await setup();
    expect(vm.hcall(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
    expect(create(16, 32)[0]).toBe(0);
    expect(remove(L0)).toEqual([0]);
    expect(geometry()).toEqual([{ liobn: L1, bus: DDW, shift: 16, entries: 1n << 16n, def: false }]);
    expect(vm.hcall(H.GET_TCE, L0, 0x1000n).ret).toBe(H.PARAMETER);
    expect(remove(L1)).toEqual([0]);
    expect(geometry()).toEqual([DEFAULT]);
    expect(vm.hcall(H.GET_TCE, L0, 0x1000n)).toMatchObject({ ret: H.SUCCESS, out: [0n] });
  });

  it('row 25: remove(DDW), then remove(default) → 0 windows; no restore', async () => {
    const { vm, create, remove, geometry, query } = await setup();
    expect(create(16, 32)[0]).toBe(0);
    expect(remove(L1)).toEqual([0]);
    expect(remove(L0)).toEqual([0]);
    expect(geometry()).toEqual([]);
    expect(query()[1]).toBe(2);
    expect(vm.hcall(H.PUT_TCE, L0, 0n, G | 3n).ret).toBe(H.PARAMETER);
  });

  it('row 26: remove on an inactive or unknown LIOBN → -3', async () => {
    const { vm, remove, geometry, DEFAULT } = await setup();
    vm.createTceTable({ liobn: 0x71000000n, pageShift: 12, offset: 0n, size: 16n }); // a VIO-style table: not a PHB's
    expect(remove(L1)).toEqual([PARAM]);
    expect(remove(0x80000005n)).toEqual([PARAM]);
    expect(remove(0x71000000n)).toEqual([PARAM]);
    expect(geometry()).toEqual([DEFAULT]);
  });

  it('row 27: remove(default), then create → window placed at bus 0', async () => {
    const { create, remove, geometry } = await setup();
    expect(remove(L0)).toEqual([0]);
    const r = create(16, 34);
    expect(r[0]).toBe(0);
    expect(r.slice(2)).toEqual([0, 0]);
    expect(geometry()).toEqual([{ liobn: BigInt(r[1]!), bus: 0n, shift: 16, entries: 1n << 18n, def: false }]);
    // the second one goes to the 64-bit address
    expect(create(12, 20)).toEqual([0, Number(L0), 0x08000000, 0]);
  });

  it('row 28: reset-pe-dma-window → only the default window, empty; query avail = 1', async () => {
    const { host, vm, create, reset, geometry, DEFAULT, query } = await setup();
    expect(vm.hcall(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
    expect(create(16, 32)[0]).toBe(0);
    expect(vm.hcall(H.PUT_TCE, L1, DDW, G | 3n).ret).toBe(H.SUCCESS);
    const before = host.stats().memory.heapUsedBytes;
    expect(reset()).toEqual([0]);
    expect(geometry()).toEqual([DEFAULT]);
    expect(query()[1]).toBe(1);
    expect(vm.hcall(H.GET_TCE, L0, 0x1000n).out[0]).toBe(0n);
    expect(vm.hcall(H.GET_TCE, L1, DDW).ret).toBe(H.PARAMETER);
    const replayed: IommuEvent[] = [];
    vm.replay(L0, (e) => replayed.push(e));
    expect(replayed).toEqual([]);
    // the windows' pages went back to the allocator
    expect(host.stats().memory.heapUsedBytes).toBeLessThan(before);
  });

  it('row 29: wrong nargs/nret, an unknown BUID, or ddw=off (any DDW call) → -3', async () => {
    const { vm } = await setup();
    expect(vm.rtas('ibm,query-pe-dma-window', [CFG, HI], 5)).toEqual([PARAM]);
    expect(vm.rtas('ibm,query-pe-dma-window', [CFG, HI, LO, 0], 5)).toEqual([PARAM]);
    expect(vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, 16], 4)).toEqual([PARAM]);
    expect(vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, 16, 32], 3)).toEqual([PARAM]);
    expect(vm.rtas('ibm,remove-pe-dma-window', [Number(L0), 0], 1)).toEqual([PARAM]);
    expect(vm.rtas('ibm,remove-pe-dma-window', [Number(L0)], 2)).toEqual([PARAM]);
    expect(vm.rtas('ibm,reset-pe-dma-window', [CFG, HI, LO], 2)).toEqual([PARAM]);
    expect(vm.rtas('ibm,query-pe-dma-window', [CFG, HI, LO + 1], 5)).toEqual([PARAM]);
    expect(vm.rtas('ibm,create-pe-dma-window', [CFG, 0, LO, 16, 32], 4)).toEqual([PARAM]);
    expect(vm.rtas('ibm,reset-pe-dma-window', [CFG, HI, 7], 1)).toEqual([PARAM]);

    const off = await setup({ ddw: false });
    expect(off.query(5)).toEqual([PARAM]);
    expect(off.create(16, 32)).toEqual([PARAM]);
    expect(off.remove(L0)).toEqual([PARAM]);
    expect(off.reset()).toEqual([PARAM]);
    expect(off.geometry()).toEqual([off.DEFAULT]); // the default window is there regardless
  });

  it('addPhb and rtas validate their arguments; addPhb needs free LIOBNs/BUID (the kvm profile: vmm-ddw-kvm.test.ts)', async () => {
    const { vm } = await setup();
    expect(() => vm.addPhb({ buid: BUID, index: 1 })).toThrow(TceError);
    expect(() => vm.addPhb({ buid: 1n, index: 0 })).toThrow(/EBUSY/);
    expect(() => vm.addPhb({ buid: '1' as unknown as bigint, index: 1 })).toThrow(/opts.buid/);
    expect(() => vm.addPhb({ buid: 2n, index: -1 })).toThrow(RangeError);
    expect(() => vm.addPhb({ buid: 2n, index: 1, pageSizeMask: 1n << 11n })).toThrow(/pageSizeMask/);
    expect(() => vm.addPhb({ buid: 2n, index: 1, dma32: { addr: 0n, size: 0x1234n } })).toThrow(/dma32.size/);
    expect(() => vm.addPhb({ buid: 2n, index: 1, dma64Addr: 0x1000n })).toThrow(/dma64Addr/);
    expect(() => vm.rtas('ibm,get-xive', [1, 1], 1)).toThrow(TypeError);
    expect(() => vm.rtas('ibm,query-pe-dma-window', [CFG, HI, -1], 5)).toThrow(/args\[2\]/);
    expect(() => vm.rtas('ibm,query-pe-dma-window', 'x' as unknown as number[], 5)).toThrow(/args/);
    expect(() => vm.rtas('ibm,query-pe-dma-window', [CFG, HI, LO], 5.5)).toThrow(/nret/);
  });

  it('a custom PHB: dma32 {addr, size} and dma64Addr place the windows', async () => {
    const host = await Host.create({ maxMemory: 16 << 20 });
    const vm = host.spawn().createVm({ profile: 'qemu' });
    const phb = vm.addPhb({ buid: 5n, index: 2, dma32: { addr: 0x1000000n, size: 0x800000n }, dma64Addr: 1n << 40n });
    expect(phb.windows()).toEqual([{ liobn: 0x80000200n, busOffset: 0x1000000n, pageShift: 12, entries: 0x800n, isDefault: true }]);
    expect(vm.rtas('ibm,create-pe-dma-window', [0, 0, 5, 24, 36], 4)).toEqual([0, 0x80000201, 0x100, 0]);
    expect(vm.hcall(H.PUT_TCE, 0x80000200n, 0xfff000n, 3n).ret).toBe(H.PARAMETER);
    expect(vm.hcall(H.PUT_TCE, 0x80000200n, 0x1000000n, 3n).ret).toBe(H.SUCCESS);
  });
});
