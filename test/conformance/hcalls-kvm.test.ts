// Spec: docs/semantics.md §2.6 (KVM TCE tables and hcalls), §4 (real → virtual → exit), §7 E38–E47, §5 (the owner check: none/pid/mm).
import { describe, expect, it } from 'vitest';
import { Host, H, type OwnerCheck, type Vcpu } from '../../src/index.js';
import { MiB, GiB, expectErr, snap, expectUnchanged } from './helpers.js';

const LIOBN = 0x80000000n;
const TOO_HARD_R3 = 9999n;
const PARAM_R3 = BigInt.asUintN(64, -4n);


/** Runs hypercall `nr` on the vCPU's registers through the whole chain (real → virtual → exit). */
function call(c: Vcpu, nr: number, ...args: bigint[]) {
  c.regs[3] = BigInt(nr);
  for (let i = 0; i < 4; i++) c.regs[4 + i] = args[i] ?? 0n;
  const ret = c.hcall();
  return { ret, r3: c.regs[3]!, r4: c.regs[4]!, level: c.lastLevel };
}

/** Real mode only. */
function callReal(c: Vcpu, nr: number, ...args: bigint[]) {
  c.regs[3] = BigInt(nr);
  for (let i = 0; i < 4; i++) c.regs[4 + i] = args[i] ?? 0n;
  const ret = c.hcallRealMode();
  return { ret, r3: c.regs[3]!, r4: c.regs[4]!, level: c.lastLevel };
}

interface KvmOpts {
  ownerCheck?: OwnerCheck;
  pidCheck?: 'call' | 'entry';
  hwShift?: number;
  hwWindow?: bigint;
  levels?: number;
  guestShift?: number;
  guestSize?: bigint;
  link?: boolean;
  /** Pre-register the guest RAM (default); false registers only an unrelated scratch mapping. */
  register?: boolean;
}

/**
 * QEMU with a v2 container (RAM pre-registered, the default window replaced by
 * one of hwWindow bytes at bus 0), a KVM VM with 16 MiB of RAM at gpa 0, a
 * guest table at LIOBN 0x80000000 (bus 0) linked to the container's table. No
 * MAP_DMA before the link: under the default era '4.19' the userspace view
 * comes with the table (docs/semantics.md §4.1), so nothing is needed to let
 * the guest's hypercalls complete in the kernel.
 */
async function kvm(o: KvmOpts = {}) {
  const hwShift = o.hwShift ?? 12;
  const hwWindow = o.hwWindow ?? GiB;
  const host = await Host.create({ ownerCheck: o.ownerCheck ?? 'mm', pidCheck: o.pidCheck });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const scratch = qemu.mmap(MiB);
  const reg = o.register === false ? scratch : ram;
  const g = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(reg.ua, reg.size);
  fd.removeWindow(0n);
  expect(fd.createWindow({ pageShift: hwShift, windowSize: hwWindow, levels: o.levels ?? 2 }).startAddr).toBe(0n);
  const hw = fd.container.windows[0]!.table;
  expect(hw.hasView, 'the view comes with the table (4.19)').toBe(true);
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  const gs = o.guestShift ?? 12;
  vm.createTceTable({ liobn: LIOBN, pageShift: gs, offset: 0n, size: o.guestSize ?? hwWindow >> BigInt(gs) });
  if (o.link ?? true) vm.attachGroup(g, LIOBN);
  const vcpu = vm.vcpu(0);
  const region = fd.container.regions.find((r) => r.ua === reg.ua)!;
  const hpa = (gpa: bigint): bigint => qemu.mm.translate(ram.ua + gpa)!.hpa;
  host.checkInvariants();
  return { host, qemu, ram, scratch, g, fd, hw, vm, vcpu, region, hpa };
}

describe('KVM TCE hypercalls (kernel §7 E38–E47)', () => {
  it('E38: H_PUT_TCE to an unknown LIOBN → H_TOO_HARD at both levels → exit; misaligned / out-of-range ioba → H_PARAMETER', async () => {
    const { host, vm, vcpu, hw, region } = await kvm();
    let before = snap(host, [vcpu]);
    for (const liobn of [0x80000001n, 0x180000000n, 0n]) {
      expect(callReal(vcpu, H.PUT_TCE, liobn, 0x1000n, 0x200000n | 3n).ret).toBe(H.TOO_HARD);
      const r = call(vcpu, H.PUT_TCE, liobn, 0x1000n, 0x200000n | 3n);
      expect(r).toEqual({ ret: H.TOO_HARD, r3: TOO_HARD_R3, r4: liobn, level: 'exit' });
      // the arguments stay for the VMM
      expect(vcpu.regs[5]).toBe(0x1000n);
      expect(vcpu.regs[6]).toBe(0x200000n | 3n);
      for (const nr of [H.PUT_TCE_INDIRECT, H.STUFF_TCE, H.GET_TCE]) expect(call(vcpu, nr, liobn, 0n, 0n, 1n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    }
    expectUnchanged(host, before, [vcpu], 'an unknown LIOBN');
    expect(vm.stats()).toEqual({
      H_PUT_TCE: { real: 0, virtual: 0, exit: 3 },
      H_PUT_TCE_INDIRECT: { real: 0, virtual: 0, exit: 3 },
      H_STUFF_TCE: { real: 0, virtual: 0, exit: 3 },
      H_GET_TCE: { real: 0, virtual: 0, exit: 3 },
    });
    before = snap(host, [vcpu]);
    for (const ioba of [0x1800n, 0x1001n, 0x40000000n, 0x40001000n, 1n << 59n, (1n << 64n) - 0x1000n]) {
      expect(call(vcpu, H.PUT_TCE, LIOBN, ioba, 0x200000n | 3n), `ioba 0x${ioba.toString(16)}`).toEqual({ ret: H.PARAMETER, r3: PARAM_R3, r4: LIOBN, level: 'real' });
    }
    expectUnchanged(host, before, [vcpu], 'a bad ioba');
    expect(region.mapped).toBe(1n);
    // the last page is inside
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x3ffff000n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    expect(hw.getUa(0x3ffffn)).not.toBe(0n);
    expect(region.mapped).toBe(2n);
    host.checkInvariants();
  });

  it('E39: H_PUT_TCE with a gpa misaligned to the guest page → H_PARAMETER in real mode (virtual: H_PARAMETER or H_TOO_HARD), nothing changed', async () => {
    const { host, vcpu, hw, region } = await kvm();
    // The guest-table page of entries 0.. exists after this PUT, so real mode reaches the TCE check.
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0n, 0x200000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'virtual' });
    const before = snap(host, [vcpu]);
    for (const tce of [0x200800n | 3n, 0x200004n | 1n, 0x201ffcn | 2n]) {
      expect(callReal(vcpu, H.PUT_TCE, LIOBN, 0x1000n, tce)).toMatchObject({ ret: H.PARAMETER, r3: PARAM_R3, level: 'real' });
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, tce)).toMatchObject({ ret: H.PARAMETER, level: 'real' });
    }
    expectUnchanged(host, before, [vcpu]);
    expect(hw.get(1n)).toBe(0n);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x1000n).r4).toBe(0n);
    // virtual mode (guest page absent, so real mode defers): an error, never a write
    const s = await kvm({ guestShift: 16 });
    const b2 = snap(s.host, [s.vcpu]);
    const r = call(s.vcpu, H.PUT_TCE, LIOBN, 0x10000n, 0x201000n | 3n); // 4 KiB aligned, not 64 KiB aligned
    expect([H.PARAMETER, H.TOO_HARD]).toContain(r.ret);
    expectUnchanged(s.host, b2, [s.vcpu]);
    expect(region.mapped).toBe(2n);
    host.checkInvariants();
    s.host.checkInvariants();
  });

  it('E40: H_PUT_TCE of a poison value (address, no R/W) → H_SUCCESS, stored verbatim, HW entry cleared', async () => {
    const { host, vcpu, hw, region, ram } = await kvm();
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x5000n, 0x300000n | 3n).ret).toBe(H.SUCCESS);
    expect(hw.getUa(5n)).toBe(ram.ua + 0x300000n);
    expect(region.mapped).toBe(2n);
    for (const poison of [0x300000n, 0xdeadbeef000n | 0x7fcn, 0x123456789abcdef0n & ~3n]) {
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x5000n, poison)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
      expect(call(vcpu, H.GET_TCE, LIOBN, 0x5000n)).toMatchObject({ ret: H.SUCCESS, r4: poison });
      expect(hw.get(5n)).toBe(0n);
      expect(hw.getUa(5n)).toBe(0n);
      expect(region.mapped).toBe(1n);
      host.checkInvariants();
    }
    // poison on a never-mapped entry of an absent guest page (gpa outside every memslot: not looked at)
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x20000000n, 0xf00000000n).ret).toBe(H.SUCCESS);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x20000000n).r4).toBe(0xf00000000n);
    host.checkInvariants();
  });

  it('E41: H_PUT_TCE whose memory is not pre-registered (a linked table) → H_TOO_HARD at both levels → exit, nothing changed', async () => {
    const { host, vcpu, hw, region, vm } = await kvm({ register: false });
    const before = snap(host, [vcpu]);
    expect(callReal(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n).ret).toBe(H.TOO_HARD);
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n)).toMatchObject({ ret: H.TOO_HARD, r3: TOO_HARD_R3, level: 'exit' });
    expectUnchanged(host, before, [vcpu]);
    expect(hw.get(1n)).toBe(0n);
    expect(region.mapped).toBe(1n);
    expect(vm.stats().H_PUT_TCE).toEqual({ real: 0, virtual: 0, exit: 1 });
    host.checkInvariants();
  });

  it('E41: without a linked table, a gpa outside every memslot → H_TOO_HARD at both levels → exit, nothing changed', async () => {
    const { host, vcpu } = await kvm({ link: false });
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0n, 0x100000n | 3n).ret).toBe(H.SUCCESS); // guest page present
    const before = snap(host, [vcpu]);
    for (const gpa of [16n * MiB, 0x40000000n, 1n << 50n]) {
      expect(callReal(vcpu, H.PUT_TCE, LIOBN, 0x1000n, gpa | 3n).ret).toBe(H.TOO_HARD);
      expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, gpa | 3n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    }
    expectUnchanged(host, before, [vcpu]);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x1000n).r4).toBe(0n);
  });

  it('E41: a v1 container\'s legacy table can be linked (§2.6: any group table of compatible geometry) and H_PUT_TCE into it exits (H_TOO_HARD)', async () => {
    const host = await Host.create({ ownerCheck: 'mm' });
    const qemu = host.spawn();
    const ram = qemu.mmap(MiB);
    const g = host.addGroup({ ddw: false, tce32Size: 256n * MiB });
    const fd = qemu.openContainer();
    fd.attachGroup(g);
    fd.setIommu('v1');
    fd.enable();
    const vm = qemu.createVm();
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: (256n * MiB) >> 12n });
    vm.attachGroup(g, LIOBN);
    expect(vm.links(LIOBN)).toHaveLength(1);
    const vcpu = vm.vcpu(0);
    const before = snap(host, [vcpu]);
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x2000n | 3n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    expectUnchanged(host, before, [vcpu]);
    expect(fd.container.windows[0]!.table.get(1n)).toBe(0n);
  });

  it('E42: H_PUT_TCE_INDIRECT npages=513 / list not 4 KiB aligned → H_PARAMETER; one bad TCE among 512 → nothing changed', async () => {
    const { host, vcpu, hw, region, ram, hpa } = await kvm();
    const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset);
    const LIST = 0xf00000;
    const IOBA = 0x100000n; // entries 256..767: across HW leaves of 512 entries
    const fill = (n: number, f: (i: number) => bigint) => {
      for (let i = 0; i < n; i++) dv.setBigUint64(LIST + i * 8, f(i), false);
    };
    const good = (i: number): bigint => (0x200000n + BigInt(i) * 0x1000n) | 3n;
    // something mapped beforehand, which a partial write would disturb
    expect(call(vcpu, H.PUT_TCE, LIOBN, IOBA + 0x1000n, 0x700000n | 1n).ret).toBe(H.SUCCESS);
    fill(513, good);
    let before = snap(host, [vcpu]);
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, IOBA, BigInt(LIST), 513n)).toMatchObject({ ret: H.PARAMETER, level: 'real' });
    for (const list of [LIST + 8, LIST + 0x800, LIST + 1]) {
      expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, IOBA, BigInt(list), 4n)).toMatchObject({ ret: H.PARAMETER, level: 'real' });
    }
    // the range [ioba, +npages) must fit: 512 entries from the last-but-one page
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, 0x3fffe000n, BigInt(LIST), 512n).ret).toBe(H.PARAMETER);
    expectUnchanged(host, before, [vcpu]);
    // one misaligned gpa at position 300 → nothing written: real mode defers (the guest pages are absent) and the
    // virtual-mode kvmppc_tce_validate of ≥4.19 (42de7b9e2167) answers H_TOO_HARD, an exit (H_PARAMETER under '4.12')
    fill(512, (i) => (i === 300 ? 0x400800n | 3n : good(i)));
    before = snap(host, [vcpu]);
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, IOBA, BigInt(LIST), 512n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    expectUnchanged(host, before, [vcpu], 'a list with one misaligned TCE');
    // one gpa outside the memslots at the end → H_TOO_HARD, exit, nothing written
    fill(512, (i) => (i === 511 ? (64n * MiB) | 3n : good(i)));
    before = snap(host, [vcpu]);
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, IOBA, BigInt(LIST), 512n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    expectUnchanged(host, before, [vcpu], 'a list with one unbacked TCE');
    expect(hw.get(257n)).toBe(hpa(0x700000n) | 1n);
    expect(region.mapped).toBe(2n);
    // all good → every entry written
    fill(512, good);
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, IOBA, BigInt(LIST), 512n).ret).toBe(H.SUCCESS);
    for (const i of [0, 1, 300, 511]) {
      expect(hw.get(256n + BigInt(i))).toBe(hpa(0x200000n + BigInt(i) * 0x1000n) | 3n);
      expect(call(vcpu, H.GET_TCE, LIOBN, IOBA + BigInt(i) * 0x1000n).r4).toBe(good(i));
    }
    expect(region.mapped).toBe(513n);
    host.checkInvariants();
  });

  it('E42 (divergence): an INDIRECT entry without permission bits unmaps its HW entry (not pushed through the map path)', async () => {
    const { host, vcpu, hw, region, ram } = await kvm();
    const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset);
    for (let i = 0; i < 4; i++) dv.setBigUint64(0x100000 + i * 8, (0x200000n + BigInt(i) * 0x1000n) | 3n, false);
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, 0x8000n, 0x100000n, 4n).ret).toBe(H.SUCCESS);
    expect(region.mapped).toBe(5n);
    dv.setBigUint64(0x100000 + 8, 0x201000n, false); // poison: address, no R/W
    dv.setBigUint64(0x100000 + 16, 0n, false);
    expect(call(vcpu, H.PUT_TCE_INDIRECT, LIOBN, 0x8000n, 0x100000n, 4n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
    expect(hw.get(9n)).toBe(0n);
    expect(hw.getUa(9n)).toBe(0n);
    expect(hw.get(10n)).toBe(0n);
    expect(hw.getUa(8n)).toBe(ram.ua + 0x200000n);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x9000n).r4).toBe(0x201000n);
    expect(region.mapped).toBe(3n);
    host.checkInvariants();
  });

  it('E43: H_STUFF_TCE with R or W bits → H_PARAMETER, nothing changed; H_GET_TCE on an untouched entry → 0', async () => {
    const { host, vcpu, hw, region } = await kvm();
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x7000n)).toEqual({ ret: H.SUCCESS, r3: 0n, r4: 0n, level: 'real' });
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x2000n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    const before = snap(host, [vcpu]);
    for (const v of [0x200000n | 1n, 0x200000n | 2n, 0x200000n | 3n, 1n, 2n, 3n]) {
      expect(call(vcpu, H.STUFF_TCE, LIOBN, 0x2000n, v, 4n)).toMatchObject({ ret: H.PARAMETER, level: 'real' });
    }
    expectUnchanged(host, before, [vcpu]);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x3000n).r4).toBe(0n);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x3ffff000n)).toMatchObject({ ret: H.SUCCESS, r4: 0n });
    // clearing (value without R/W) works and unmaps
    expect(call(vcpu, H.STUFF_TCE, LIOBN, 0n, 0xabc000n, 4n).ret).toBe(H.SUCCESS);
    expect(hw.get(2n)).toBe(0n);
    expect(region.mapped).toBe(1n);
    for (let i = 0n; i < 4n; i++) expect(call(vcpu, H.GET_TCE, LIOBN, i << 12n).r4).toBe(0xabc000n);
    expect(call(vcpu, H.GET_TCE, LIOBN, 4n << 12n).r4).toBe(0n);
    host.checkInvariants();
  });

  it('E44: guest 64K page over a 4K HW table: one H_PUT_TCE changes 16 HW entries and mapped+16', async () => {
    const { host, vcpu, hw, region, ram, hpa } = await kvm({ guestShift: 16 });
    expect(region.mapped).toBe(1n);
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x10000n, 0x100000n | 2n).ret).toBe(H.SUCCESS);
    for (let k = 0n; k < 16n; k++) {
      expect(hw.get(16n + k), `HW entry ${16n + k}`).toBe(hpa(0x100000n + k * 0x1000n) | 3n); // W implies R on PowerNV
      expect(hw.getUa(16n + k)).toBe(ram.ua + 0x100000n + k * 0x1000n);
    }
    expect(hw.get(15n)).toBe(0n);
    expect(hw.get(32n)).toBe(0n);
    expect(region.mapped).toBe(17n);
    expect(call(vcpu, H.GET_TCE, LIOBN, 0x10000n).r4).toBe(0x100000n | 2n);
    host.checkInvariants();
    // remapping the guest page elsewhere: still 16, the old pages released
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x10000n, 0x200000n | 1n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
    expect(hw.getUa(31n)).toBe(ram.ua + 0x20f000n);
    expect(region.mapped).toBe(17n);
    host.checkInvariants();
    // clearing it clears all 16
    expect(call(vcpu, H.STUFF_TCE, LIOBN, 0x10000n, 0n, 1n).ret).toBe(H.SUCCESS);
    for (let k = 0n; k < 16n; k++) expect(hw.get(16n + k)).toBe(0n);
    expect(region.mapped).toBe(1n);
    host.checkInvariants();
  });

  it('E45: real mode, missing HW/view level → H_TOO_HARD with nothing changed; virtual mode succeeds and allocates; the next call on that level completes in real mode', async () => {
    const { host, vm, vcpu, hw, region, ram } = await kvm(); // 4K pages, 2^18 entries, 2 levels
    expect(hw.levels).toBe(2);
    // The first entry of the second leaf, and the two after it (leaves hold 2^levelBits entries).
    const e = (k: bigint): bigint => (1n << BigInt(hw.levelBits)) + k;
    // entry 0: allocates the guest-table page and HW/view leaf 0
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0n, 0x100000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'virtual' });
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x101000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
    // entry e(0) lies in HW leaf 1, which is absent; the guest-table page is present
    const bytes0 = hw.memoryBytes;
    const before = snap(host, [vcpu]);
    const r = callReal(vcpu, H.PUT_TCE, LIOBN, e(0n) << 12n, 0x180000n | 3n);
    expect(r.ret).toBe(H.TOO_HARD);
    expect(r.r3).toBe(BigInt(H.PUT_TCE)); // real mode leaves r3 alone on H_TOO_HARD
    expectUnchanged(host, before, [vcpu], 'real mode on a missing level');
    expect(hw.memoryBytes).toBe(bytes0);
    expect(hw.get(e(0n))).toBe(0n);
    // the full chain: virtual mode allocates leaf 1 (both trees) and maps
    expect(vcpu.hcall()).toBe(H.SUCCESS);
    expect(vcpu.lastLevel).toBe('virtual');
    expect(hw.memoryBytes).toBeGreaterThan(bytes0);
    expect(hw.getUa(e(0n))).toBe(ram.ua + 0x180000n);
    expect(region.mapped).toBe(4n);
    // the next entry of that leaf completes in real mode
    expect(callReal(vcpu, H.PUT_TCE, LIOBN, e(1n) << 12n, 0x181000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
    expect(hw.getUa(e(1n))).toBe(ram.ua + 0x181000n);
    expect(call(vcpu, H.PUT_TCE, LIOBN, e(2n) << 12n, 0x182000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
    expect(vm.stats().H_PUT_TCE).toEqual({ real: 3, virtual: 2, exit: 0 });
    host.checkInvariants();
  });

  it('E45: real mode, missing guest-table page for a non-zero TCE → H_TOO_HARD, nothing changed; virtual mode allocates it', async () => {
    const { host, vcpu, hw } = await kvm();
    // host pages of 64 KiB hold 8192 TCEs: entry 8192 is in the guest table's second page
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0n, 0x100000n | 3n).ret).toBe(H.SUCCESS);
    const before = snap(host, [vcpu]);
    expect(callReal(vcpu, H.PUT_TCE, LIOBN, 8192n << 12n, 0x100000n | 1n).ret).toBe(H.TOO_HARD);
    expect(callReal(vcpu, H.STUFF_TCE, LIOBN, 8190n << 12n, 0x5000n, 4n).ret).toBe(H.TOO_HARD); // poison stuffing needs the page
    expectUnchanged(host, before, [vcpu]);
    // a zero TCE needs no page: done in real mode
    expect(callReal(vcpu, H.PUT_TCE, LIOBN, 8192n << 12n, 0n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
    expect(call(vcpu, H.PUT_TCE, LIOBN, 8192n << 12n, 0x100000n | 1n)).toMatchObject({ ret: H.SUCCESS, level: 'virtual' });
    expect(hw.get(8192n) & 3n).toBe(1n);
    expect(call(vcpu, H.GET_TCE, LIOBN, 8192n << 12n)).toMatchObject({ ret: H.SUCCESS, r4: 0x100001n, level: 'real' });
    host.checkInvariants();
  });

  it('E46: SET_SPAPR_TCE with a HW page > guest page, another bus start or a smaller HW window → EINVAL; linking twice only counts a reference', async () => {
    // HW 64K pages, guest 4K pages
    let s = await kvm({ hwShift: 16, guestShift: 12, link: false });
    expectErr(() => s.vm.attachGroup(s.g, LIOBN), 'EINVAL');
    expect(s.vm.links(LIOBN)).toEqual([]);
    // another bus start: guest table at bus 4 KiB, HW at 0
    s = await kvm({ link: false });
    s.vm.createTceTable({ liobn: 0x80000001n, pageShift: 12, offset: 1n, size: 1024n });
    expectErr(() => s.vm.attachGroup(s.g, 0x80000001n), 'EINVAL');
    s.vm.createTceTable({ liobn: 0x80000002n, pageShift: 12, offset: (1n << 59n) >> 12n, size: 1024n });
    expectErr(() => s.vm.attachGroup(s.g, 0x80000002n), 'EINVAL');
    expect(s.vm.links(0x80000001n)).toEqual([]);
    // a HW window (256 MiB) smaller than the guest's (1 GiB)
    s = await kvm({ hwWindow: 256n * MiB, guestSize: GiB >> 12n, link: false });
    expectErr(() => s.vm.attachGroup(s.g, LIOBN), 'EINVAL');
    expect(s.vm.links(LIOBN)).toEqual([]);
    // unknown LIOBN (no such table fd)
    expectErr(() => s.vm.attachGroup(s.g, 0x1234n), 'EINVAL');
    // compatible: HW page 4K ≤ guest 64K, HW window ≥ guest window; twice → one link, two references
    s = await kvm({ hwShift: 12, guestShift: 16, guestSize: (512n * MiB) >> 16n, link: false });
    s.vm.attachGroup(s.g, LIOBN);
    expect(s.vm.links(LIOBN)).toEqual([{ tableDesc: s.hw.desc, refs: 1 }]);
    s.vm.attachGroup(s.g, LIOBN);
    expect(s.vm.links(LIOBN)).toEqual([{ tableDesc: s.hw.desc, refs: 2 }]);
    // the twice-linked table is mapped once per hypercall
    expect(call(s.vcpu, H.PUT_TCE, LIOBN, 0n, 0x100000n | 3n).ret).toBe(H.SUCCESS);
    expect(s.region.mapped).toBe(17n);
    s.host.checkInvariants();
    // the DDW window at 1<<59 links to a guest table at the same bus address
    s.fd.createWindow({ pageShift: 16, windowSize: 256n * MiB, levels: 1 });
    s.vm.createTceTable({ liobn: 0x80000003n, pageShift: 16, offset: (1n << 59n) >> 16n, size: 4096n });
    s.vm.attachGroup(s.g, 0x80000003n);
    expect(s.vm.links(0x80000003n)).toEqual([{ tableDesc: s.fd.container.windows[1]!.table.desc, refs: 1 }]);
    // the qemu profile has no in-kernel acceleration
    const q = s.qemu.createVm({ profile: 'qemu' });
    q.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1024n });
    expectErr(() => q.attachGroup(s.g, LIOBN), 'ENODEV');
  });

  it('E46: a linked HW table is referenced by the link (§1 refcount, §2.6 "stit holds a table ref"): after TCE_REMOVE and a new TCE_CREATE the link does not name the new table and H_PUT_TCE leaves it alone', async () => {
    const { host, fd, vm, vcpu, hw, region, ram } = await kvm();
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    const oldDesc = hw.desc;
    expect(vm.links(LIOBN)).toEqual([{ tableDesc: oldDesc, refs: 1 }]);
    fd.removeWindow(0n);
    expect(region.mapped).toBe(1n);
    // a smaller 4K window at the same bus address: SET_SPAPR_TCE would refuse it for this 1 GiB guest table (E46 above)
    fd.createWindow({ pageShift: 12, windowSize: 256n * MiB, levels: 2 });
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
    fd.unmapDma({ iova: 0n, size: 0x1000n });
    const hw2 = fd.container.windows[0]!.table;
    for (const l of vm.links(LIOBN)) expect(l.tableDesc, 'the link names a table it was never given').not.toBe(hw2.desc);
    call(vcpu, H.PUT_TCE, LIOBN, 0x3000n, 0x300000n | 3n);
    call(vcpu, H.STUFF_TCE, LIOBN, 0x1000n, 0n, 1n);
    expect(hw2.get(3n)).toBe(0n);
    expect(hw2.getUa(3n)).toBe(0n);
    host.checkInvariants();
  });

  it('E47: CREATE_SPAPR_TCE_64 page shift 11/35, size 0 or an end past 2^64 → EINVAL; duplicate LIOBN → EBUSY; locked_vm unchanged by failures', async () => {
    const host = await Host.create({ ownerCheck: 'mm' });
    const qemu = host.spawn();
    const vm = qemu.createVm();
    const base = qemu.mm.lockedPages;
    expectErr(() => vm.createTceTable({ liobn: 1n, pageShift: 11, offset: 0n, size: 1024n }), 'EINVAL');
    expectErr(() => vm.createTceTable({ liobn: 1n, pageShift: 35, offset: 0n, size: 1024n }), 'EINVAL');
    expectErr(() => vm.createTceTable({ liobn: 1n, pageShift: 12, offset: 0n, size: 0n }), 'EINVAL');
    expectErr(() => vm.createTceTable({ liobn: 1n, pageShift: 12, offset: 1n << 52n, size: 1n }), 'EINVAL');
    expect(vm.tables.size).toBe(0);
    expect(qemu.mm.lockedPages).toBe(base);
    for (const sh of [12, 34]) vm.createTceTable({ liobn: BigInt(sh), pageShift: sh, offset: 0n, size: 1n });
    const t = vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 262144n });
    // ⌈size·8/PAGE_SIZE⌉ pages of TCEs at least (plus the descriptor's)
    expect(t.chargedPages).toBeGreaterThanOrEqual(32n);
    const after = qemu.mm.lockedPages;
    expect(after - base).toBeGreaterThanOrEqual(32n + 2n);
    expectErr(() => vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 16n }), 'EBUSY');
    expect(qemu.mm.lockedPages).toBe(after);
    expect(vm.tables.get(LIOBN)).toBe(t);
    expect(vm.tables.size).toBe(3);
    // the same LIOBN in another VM is fine
    qemu.createVm().createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 16n });
    host.checkInvariants();
  });
});

describe('the owner check on the hypercall path (docs/semantics.md §5)', () => {
  for (const placement of ['call', 'entry'] as const) {
    it(`pid (${placement}): a vCPU on a clone({vm: true}) child (other pid) is refused at both levels → exit, nothing changed; a thread() vCPU passes`, async () => {
      const s = await kvm({ ownerCheck: 'pid', pidCheck: placement });
      const { host, qemu, vm, hw, region, ram } = s;
      expect(hw.ownerPid).toBe(qemu.pid);
      const mine = vm.vcpu(1, { thread: qemu.thread() });
      const clone = qemu.clone({ vm: true });
      expect(clone.pid).not.toBe(qemu.pid);
      expect(clone.mm).toBe(qemu.mm);
      const other = vm.vcpu(2, { thread: clone });
      const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset);
      for (let i = 0; i < 2; i++) dv.setBigUint64(0x100000 + i * 8, (0x300000n + BigInt(i) * 0x1000n) | 3n, false);
      // the owner maps entries 0..3, which also makes every level present (real mode could do it)
      expect(call(mine, H.PUT_TCE, LIOBN, 0n, 0x200000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'virtual' });
      expect(call(mine, H.PUT_TCE, LIOBN, 0x1000n, 0x201000n | 3n)).toMatchObject({ ret: H.SUCCESS, level: 'real' });
      expect(region.mapped).toBe(3n);
      const before = snap(host, [mine, other]);
      const attempts: [number, bigint[]][] = [
        [H.PUT_TCE, [LIOBN, 0x2000n, 0x202000n | 3n]], // map
        [H.PUT_TCE, [LIOBN, 0x1000n, 0n]], // unmap
        [H.PUT_TCE, [LIOBN, 0n, 0x205000n | 1n]], // remap
        [H.PUT_TCE_INDIRECT, [LIOBN, 0x4000n, 0x100000n, 2n]],
        [H.STUFF_TCE, [LIOBN, 0n, 0n, 4n]],
      ];
      for (const [nr, args] of attempts) {
        expect(callReal(other, nr, ...args).ret, `real mode ${nr.toString(16)}`).toBe(H.TOO_HARD);
        expect(call(other, nr, ...args), `hcall ${nr.toString(16)}`).toMatchObject({ ret: H.TOO_HARD, r3: TOO_HARD_R3, level: 'exit' });
      }
      expectUnchanged(host, before, [mine, other], 'a refused vCPU');
      expect(hw.getUa(1n)).toBe(ram.ua + 0x201000n);
      expect(region.mapped).toBe(3n);
      // reading is not a change
      expect(call(other, H.GET_TCE, LIOBN, 0x1000n)).toMatchObject({ ret: H.SUCCESS, r4: 0x201000n | 3n });
      // the owner's thread does all of it
      for (const [nr, args] of attempts) expect(call(mine, nr, ...args).ret, `owner ${nr.toString(16)}`).toBe(H.SUCCESS);
      expect(vm.stats().H_PUT_TCE.exit).toBe(3);
      expect(region.mapped).toBe(3n); // INDIRECT's 2 entries at 4, 5 remain
      host.checkInvariants();
    });
  }

  it('pid: a vCPU of the VM\'s own process (default thread) passes', async () => {
    const { host, vcpu, region } = await kvm({ ownerCheck: 'pid', pidCheck: 'entry' });
    expect(call(vcpu, H.PUT_TCE, LIOBN, 0n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    expect(region.mapped).toBe(2n);
    host.checkInvariants();
  });

  it('mm: attachGroup from a VM of another mm → EPERM; a VM of the owner\'s mm (another pid) links and its vCPUs map', async () => {
    const s = await kvm({ ownerCheck: 'mm', link: false });
    for (const foreign of [s.host.spawn(), s.qemu.fork()]) {
      const vm = foreign.createVm();
      vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1024n });
      expectErr(() => vm.attachGroup(s.g, LIOBN), 'EPERM');
      expect(vm.links(LIOBN)).toEqual([]);
    }
    s.vm.attachGroup(s.g, LIOBN);
    const sibling = s.qemu.clone({ vm: true }).createVm();
    sibling.addMemslot({ gpa: 0n, size: s.ram.size, ua: s.ram.ua });
    sibling.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1024n });
    sibling.attachGroup(s.g, LIOBN);
    expect(sibling.links(LIOBN)).toHaveLength(1);
    expect(call(sibling.vcpu(0), H.PUT_TCE, LIOBN, 0x3000n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    // in mm mode the hypercall path does not compare pids
    const c = s.vm.vcpu(3, { thread: s.qemu.clone({ vm: true }) });
    expect(call(c, H.PUT_TCE, LIOBN, 0x4000n, 0x201000n | 3n).ret).toBe(H.SUCCESS);
    expect(s.region.mapped).toBe(3n);
    s.host.checkInvariants();
  });

  it('none: nothing is refused (a foreign-mm VM links; a clone vCPU maps)', async () => {
    const s = await kvm({ ownerCheck: 'none' });
    const vm = s.host.spawn().createVm();
    vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1024n });
    vm.attachGroup(s.g, LIOBN);
    expect(vm.links(LIOBN)).toHaveLength(1);
    const c = s.vm.vcpu(1, { thread: s.qemu.clone({ vm: true }) });
    expect(call(c, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    expect(call(c, H.STUFF_TCE, LIOBN, 0n, 0n, 4n).ret).toBe(H.SUCCESS);
    expect(call(c, H.PUT_TCE, LIOBN, 0x1000n, 0x200000n | 3n).ret).toBe(H.SUCCESS);
    expect(s.region.mapped).toBe(2n);
    s.host.checkInvariants();
  });
});
