// Spec: docs/semantics.md §4.1 (the kernel eras: '4.12' the userspace view at the first VFIO map, 39701e56f5f1;
// '4.19' the view with the table, 090bad39b237, levels on demand, a68bd1267b72; '5.19' no real mode,
// cad32d9d42e8; the misaligned TCE in virtual mode, 42de7b9e2167), §2.6 and §4.
// Unlike the hcalls-kvm helper, nothing is mapped through VFIO before the guest's first hypercall.
import { describe, expect, it } from 'vitest';
import { Host, H, type KernelEra, type Vcpu } from '../../src/index.js';
import { WorkerVcpu } from '../../src/worker.js';
import { MiB, GiB, expectErr, snap, expectUnchanged, specTablePages } from './helpers.js';
import { HEADER_BASE, HDR_KERNEL, KERNEL_4_12, KERNEL_4_19, KERNEL_5_19 } from '../../src/generated/layout.js';
import { seal } from '../../src/snapshot/snapshot.js';

const LIOBN = 0x80000000n;

function call(c: Vcpu, nr: number, ...args: bigint[]) {
  c.regs[3] = BigInt(nr);
  for (let i = 0; i < 4; i++) c.regs[4 + i] = args[i] ?? 0n;
  return { ret: c.hcall(), level: c.lastLevel };
}

/** QEMU's order: container, pre-registration, a DDW at bus 0, then the VM and the link, and no MAP_DMA at all. */
async function linked(kernel: KernelEra | undefined, o: { engine?: 'wasm' | 'native'; levels?: number; guestShift?: number } = {}) {
  const host = await Host.create({ ...(kernel ? { kernel } : {}), engine: o.engine, maxMemory: 48 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const g = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 12, windowSize: GiB, levels: o.levels ?? 2 });
  const hw = fd.container.windows[0]!.table;
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  const gs = o.guestShift ?? 12;
  vm.createTceTable({ liobn: LIOBN, pageShift: gs, offset: 0n, size: GiB >> BigInt(gs) });
  vm.attachGroup(g, LIOBN);
  const vcpu = vm.vcpu(0);
  const region = fd.container.regions[0]!;
  return { host, qemu, ram, g, fd, hw, vm, vcpu, region };
}

describe('kernel eras (Host.create({ kernel }))', () => {
  it('the default is 4.19; the era is in host.stats() and in the header every worker reads; bad eras are refused', async () => {
    const host = await Host.create();
    expect(host.kernel).toBe('4.19');
    expect(host.stats().kernel).toBe('4.19');
    for (const [era, code] of [['4.12', KERNEL_4_12], ['4.19', KERNEL_4_19], ['5.19', KERNEL_5_19]] as const) {
      const h = await Host.create({ kernel: era, maxMemory: 8 << 20 });
      expect(h.mem.getU32(HEADER_BASE + HDR_KERNEL)).toBe(code);
    }
    await expect(Host.create({ kernel: '5.10' as never })).rejects.toThrow(/opts\.kernel/);
    await expect(Host.create({ kernel: 419 as never })).rejects.toThrow(/opts\.kernel/);
  });

  for (const engine of ['wasm', 'native'] as const) {
    it(`4.19 (${engine}): H_PUT_TCE on a freshly linked table, no VFIO map before, completes without an exit (real or virtual mode)`, async () => {
      const { host, vcpu, hw, region, ram, vm } = await linked('4.19', { engine });
      expect(hw.hasView, 'the view comes with the table').toBe(true);
      const r = call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n);
      expect(r.ret).toBe(H.SUCCESS);
      expect(['real', 'virtual']).toContain(r.level);
      expect(hw.getUa(1n)).toBe(ram.ua + 0x200000n);
      expect(region.mapped).toBe(2n);
      // the level now exists, so the next entry of the same leaf completes in real mode
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x2000n, 0x201000n | 1n)).toEqual({ ret: H.SUCCESS, level: 'real' });
      // a one-level table (its root is its leaf) maps its first entry in real mode: the view was there from CREATE
      const one = await linked('4.19', { engine, levels: 1 });
      // a poison TCE (an address, no permission) makes the guest table's page and leaves the hardware table alone
      expect(call(one.vcpu, H.PUT_TCE, LIOBN, 0n, 0x5000n)).toEqual({ ret: H.SUCCESS, level: 'virtual' });
      expect(one.hw.nextValid(0n, 1n << 18n)).toBe(-1n);
      expect(call(one.vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n)).toEqual({ ret: H.SUCCESS, level: 'real' });
      expect(vm.stats().H_PUT_TCE.exit).toBe(0);
      expect(one.vm.stats().H_PUT_TCE.exit).toBe(0);
      host.checkInvariants();
      one.host.checkInvariants();
    });

    it(`4.12 (${engine}): until the first VFIO map, a guest H_PUT_TCE on a linked table exits, even in virtual mode; then it completes`, async () => {
      const { host, vcpu, hw, region, fd, ram, vm } = await linked('4.12', { engine });
      expect(hw.hasView, 'no view before the first map').toBe(false);
      const before = snap(host, [vcpu]);
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n)).toEqual({ ret: H.TOO_HARD, level: 'exit' });
      expectUnchanged(host, before, [vcpu], 'the exit');
      expect(region.mapped).toBe(1n);
      expect(vm.stats().H_PUT_TCE).toEqual({ real: 0, virtual: 0, exit: 1 });
      // the VMM's first MAP_DMA (QEMU's listener) allocates the view
      fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
      expect(hw.hasView).toBe(true);
      const r = call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n);
      expect(r.ret).toBe(H.SUCCESS);
      expect(['real', 'virtual']).toContain(r.level);
      host.checkInvariants();
    });

    it(`5.19 (${engine}): no real mode: every TCE hypercall completes in virtual mode, hcallRealMode() runs nothing`, async () => {
      const { host, vcpu, hw, region, vm, ram } = await linked('5.19', { engine });
      expect(hw.hasView).toBe(true);
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n)).toEqual({ ret: H.SUCCESS, level: 'virtual' });
      // where 4.19 would finish in real mode (the level exists now), 5.19 is still virtual
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x2000n, 0x201000n | 1n)).toEqual({ ret: H.SUCCESS, level: 'virtual' });
      const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
      for (let i = 0; i < 4; i++) dv.setBigUint64(0x100000 + i * 8, (0x300000n + BigInt(i) * 0x1000n) | 3n, false);
      expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, 0x10000n, 0x100000n, 4n)).toEqual({ ret: H.SUCCESS, level: 'virtual' });
      expect(call(vcpu, H.STUFF_TCE, LIOBN, 0x10000n, 0n, 4n)).toEqual({ ret: H.SUCCESS, level: 'virtual' });
      expect(call(vcpu, H.GET_TCE, LIOBN, 0x1000n)).toEqual({ ret: H.SUCCESS, level: 'virtual' });
      vcpu.regs[3] = BigInt(H.PUT_TCE);
      vcpu.regs[5] = 0x3000n;
      vcpu.regs[6] = 0x202000n | 3n;
      const before = snap(host, []);
      expect(vcpu.hcallRealMode()).toBe(H.TOO_HARD);
      expect(vcpu.regs[3]).toBe(BigInt(H.PUT_TCE));
      expectUnchanged(host, before, [], 'hcallRealMode without real mode');
      const st = vm.stats();
      for (const k of ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT', 'H_STUFF_TCE', 'H_GET_TCE'] as const) expect(st[k].real, k).toBe(0);
      expect(region.mapped).toBe(3n);
      host.checkInvariants();
    });

    it(`a vCPU attached from a worker (${engine}) follows the era in the shared header`, async () => {
      for (const era of ['4.19', '5.19'] as const) {
        const { vcpu, host } = await linked(era, { engine });
        const w = WorkerVcpu.attach(vcpu.workerData());
        call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n);
        w.regs[3] = BigInt(H.PUT_TCE);
        w.regs[4] = LIOBN;
        w.regs[5] = 0x2000n;
        w.regs[6] = 0x201000n | 3n;
        expect(w.hcall()).toBe(H.SUCCESS);
        expect(vcpu.lastLevel, era).toBe(era === '5.19' ? 'virtual' : 'real');
        host.checkInvariants();
      }
    });

    it(`a TCE misaligned to the guest page (${engine}): real mode H_PARAMETER; virtual mode H_PARAMETER under 4.12, H_TOO_HARD (exit) from 4.19`, async () => {
      for (const era of ['4.12', '4.19', '5.19'] as const) {
        // 64 KiB guest pages over 4 KiB hardware pages; 0x201000 is 4 KiB aligned, not 64 KiB
        const s = await linked(era, { engine, guestShift: 16 });
        if (era === '4.12') {
          s.fd.mapDma({ iova: 0n, vaddr: s.ram.ua, size: 0x1000n, read: true });
          s.fd.unmapDma({ iova: 0n, size: 0x1000n });
        }
        // the guest table's page is absent, so real mode defers before it looks at the TCE
        let before = snap(s.host, [s.vcpu]);
        const virt = call(s.vcpu, H.PUT_TCE, LIOBN, 0x10000n, 0x201000n | 3n);
        expect(virt, era).toEqual(era === '4.12' ? { ret: H.PARAMETER, level: 'virtual' } : { ret: H.TOO_HARD, level: 'exit' });
        expectUnchanged(s.host, before, [s.vcpu], `${era}: the misaligned TCE`);
        // INDIRECT in virtual mode: the same answer for a misaligned TCE in the list
        const dv = new DataView(s.ram.bytes!.buffer, s.ram.bytes!.byteOffset, s.ram.bytes!.byteLength);
        dv.setBigUint64(0x100000, 0x210000n | 3n, false);
        dv.setBigUint64(0x100008, 0x221000n | 3n, false);
        before = snap(s.host, [s.vcpu]);
        const ind = call(s.vcpu, H.PUT_TCE_INDIRECT, LIOBN, 0x20000n, 0x100000n, 2n);
        expect(ind, era).toEqual(era === '4.12' ? { ret: H.PARAMETER, level: 'virtual' } : { ret: H.TOO_HARD, level: 'exit' });
        expectUnchanged(s.host, before, [s.vcpu], `${era}: the misaligned TCE in a list`);
        if (era !== '5.19') {
          // with the guest page there, real mode reaches the TCE check itself: H_PARAMETER in every era that has it
          expect(call(s.vcpu, H.PUT_TCE, LIOBN, 0x10000n, 0x210000n | 3n).ret).toBe(H.SUCCESS);
          expect(call(s.vcpu, H.PUT_TCE, LIOBN, 0x10000n, 0x211000n | 3n), era).toEqual({ ret: H.PARAMETER, level: 'real' });
        }
        s.host.checkInvariants();
      }
    });
  }

  it('the charges do not change with the era: CREATE charges the table and its view in all three', async () => {
    const pages: bigint[] = [];
    for (const era of ['4.12', '4.19', '5.19'] as const) {
      const { qemu, fd, region } = await linked(era);
      pages.push(qemu.mm.lockedPages);
      expect(fd.container.windows[0]!.tablePages).toBe(specTablePages(12, GiB, 2));
      expect(qemu.mm.lockedPages - region.entries).toBeGreaterThan(fd.container.windows[0]!.tablePages);
    }
    expect(new Set(pages).size).toBe(1);
  });

  it('a refused geometry (2^55 bytes or more) is charged nothing and leaves no table (the kernel keeps the charge)', async () => {
    for (const era of ['4.12', '4.19'] as const) {
      const host = await Host.create({ kernel: era, pageShift: 16, maxMemory: 16 << 20 });
      const p = host.spawn();
      const fd = p.openContainer();
      fd.attachGroup(host.addGroup());
      fd.setIommu('v2');
      fd.removeWindow(0n);
      const before = { locked: p.mm.lockedPages, tables: host.tables.size, heap: host.stats().memory.heapUsedBytes };
      // 64 KiB pages, 1 GiB, 3 levels on 64 KiB system pages: (13 − 3) · 3 + 16 < 55? no: levels of 2^13 entries → 13·3 + 16 = 55
      expectErr(() => fd.createWindow({ pageShift: 16, windowSize: GiB, levels: 3 }), 'EINVAL');
      expect({ locked: p.mm.lockedPages, tables: host.tables.size, heap: host.stats().memory.heapUsedBytes }).toEqual(before);
      expect(fd.container.windows).toEqual([undefined, undefined]);
      host.checkInvariants();
    }
  });

  it('a snapshot keeps the era; one taken before eras existed restores as 4.12', async () => {
    for (const era of ['4.12', '5.19'] as const) {
      const { host } = await linked(era);
      const b = Host.restore(host.snapshot());
      expect(b.kernel).toBe(era);
      expect(b.mem.getU32(HEADER_BASE + HDR_KERNEL)).toBe(era === '4.12' ? KERNEL_4_12 : KERNEL_5_19);
    }
    // an older snapshot: no era in its options, 0 in its header
    const { host } = await linked(undefined);
    const s = host.snapshot();
    const body = structuredClone(s.body) as typeof s.body & { options: { kernel?: string } };
    delete body.options.kernel;
    const page = body.memory.pages.find(([off]) => off === HEADER_BASE)!;
    const bytes = Buffer.from(page[1], 'base64');
    bytes.writeUInt32LE(0, HDR_KERNEL);
    page[1] = bytes.toString('base64');
    const old = Host.restore(seal(body));
    expect(old.kernel).toBe('4.12');
    expect(old.mem.getU32(HEADER_BASE + HDR_KERNEL)).toBe(KERNEL_4_12);
    const p = old.spawn();
    const fd = p.openContainer();
    fd.attachGroup(old.addGroup());
    fd.setIommu('v2');
    fd.removeWindow(0n);
    fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 });
    expect(fd.container.windows[0]!.table.hasView, 'a 4.12 host allocates the view at the first map').toBe(false);
  });
});
