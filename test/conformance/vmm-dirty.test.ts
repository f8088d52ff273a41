// Dirty tracking (issue 13 item 4; src/vmm/dirty.ts): vm.dirtyLog(gpa) in
// KVM_GET_DIRTY_LOG's layout, vm.clearDirtyLog(gpa, mask?) as
// KVM_CLEAR_DIRTY_LOG, set by DMA writes and, with trackDmaWritable(true),
// by every page a TCE maps writable, in both profiles.
import { describe, expect, it } from 'vitest';
import { Host, H, TceError } from '../../src/index.js';
import { MiB, expectErr } from './helpers.js';

const L = 0x80000000n;
const PAGES = 4096; // 16 MiB of 4K system pages
const G = 0x200000n; // guest page 512

/** The page numbers whose bit is set, read as KVM's little-endian 64-bit words. */
function dirtyPages(bm: Uint8Array): number[] {
  const dv = new DataView(bm.buffer, bm.byteOffset, bm.byteLength);
  const out: number[] = [];
  for (let w = 0; w < bm.length / 8; w++) {
    const word = dv.getBigUint64(w * 8, true);
    for (let b = 0; b < 64; b++) if ((word >> BigInt(b)) & 1n) out.push(w * 64 + b);
  }
  return out;
}

/** 16 MiB of guest RAM at gpa 0 on 4K system pages (64K in the last test), LIOBN `liobn` with 1 GiB of 4K pages at bus 0, one vCPU. */
async function guestSetup(profile: 'qemu' | 'kvm', liobn: bigint, pageShift: 12 | 16 = 12) {
  const host = await Host.create({ maxMemory: 48 << 20, pageShift });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn, pageShift: 12, offset: 0n, size: 262144n });
  const vcpu = vm.vcpu(0);
  const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
  /** Writes a big-endian TCE list at guest physical 1 MiB and returns its address. */
  const list = (tces: bigint[]): bigint => {
    tces.forEach((t, i) => dv.setBigUint64(0x100000 + i * 8, t, false));
    return 0x100000n;
  };
  /** Runs hypercall `nr` with arguments r4.. through the vCPU's whole chain. */
  const run = (nr: number, ...args: bigint[]): number => {
    vcpu.regs[3] = BigInt(nr);
    for (let i = 0; i < 4; i++) vcpu.regs[4 + i] = args[i] ?? 0n;
    return vcpu.hcall();
  };
  return { host, qemu, ram, vm, list, run };
}

for (const profile of ['qemu', 'kvm'] as const) {
  describe(`dirty log, profile ${profile}`, () => {
    async function setup() {
      const s = await guestSetup(profile, L);
      const put = (ioba: bigint, tce: bigint): void => {
        expect(s.run(H.PUT_TCE, L, ioba, tce), `PUT 0x${ioba.toString(16)}`).toBe(H.SUCCESS);
      };
      return { ...s, put, log: () => dirtyPages(s.vm.dirtyLog(0n)) };
    }

    it('a DMA write marks each system page it touches; reads mark nothing; the bitmap is KVM_GET_DIRTY_LOG\'s', async () => {
      const { host, vm, put, log } = await setup();
      const bm = vm.dirtyLog(0n);
      expect(bm.length).toBe(PAGES / 8); // one bit per page, whole 64-bit words
      expect(dirtyPages(bm)).toEqual([]);
      put(0x1000n, G | 3n);
      put(0x2000n, (G + 0x5000n) | 3n);
      vm.dma(L).read(0x1000n, 0x2000);
      expect(log()).toEqual([]);
      vm.dma(L).write(0x1ff0n, new Uint8Array(0x20)); // the end of page 512, the start of page 517
      expect(log()).toEqual([512, 517]);
      // Reading does not clear (manual protection); a copy, not the log itself.
      const again = vm.dirtyLog(0x123456n); // any address in the slot
      expect(dirtyPages(again)).toEqual([512, 517]);
      again.fill(0);
      expect(log()).toEqual([512, 517]);
      host.checkInvariants();
    });

    it('clearDirtyLog clears all bits, or only those of the mask (KVM_CLEAR_DIRTY_LOG)', async () => {
      const { vm, put, log } = await setup();
      put(0x1000n, G | 3n);
      put(0x2000n, 0n | 2n); // guest page 0, write-only
      const dma = vm.dma(L);
      dma.write(0x1000n, Uint8Array.of(1));
      const seen = vm.dirtyLog(0n);
      dma.write(0x2000n, Uint8Array.of(1)); // after the read: must survive a clear of `seen`
      vm.clearDirtyLog(0n, seen);
      expect(log()).toEqual([0]);
      vm.clearDirtyLog(0n);
      expect(log()).toEqual([]);
      expectErr(() => vm.clearDirtyLog(0n, new Uint8Array(8)), 'EINVAL');
      expect(() => vm.clearDirtyLog(0n, [0] as unknown as Uint8Array)).toThrow(TypeError);
    });

    it('a read-only mapping is never dirty, with or without trackDmaWritable', async () => {
      const { vm, put, log } = await setup();
      put(0x1000n, G | 1n);
      vm.trackDmaWritable(true);
      put(0x2000n, (G + 0x1000n) | 1n);
      expect(() => vm.dma(L).write(0x1000n, Uint8Array.of(1))).toThrow(/no-permission/);
      expect(log()).toEqual([]);
      put(0x2000n, 0n);
      expect(log()).toEqual([]);
    });

    it('trackDmaWritable: mapped writable → dirty while mapped; unmapped since the clear → still dirty; cleared after the unmap → clean', async () => {
      const { host, vm, put, log, run, list } = await setup();
      put(0x1000n, G | 3n); // before tracking starts: counts once it does
      expect(log()).toEqual([]);
      vm.trackDmaWritable(true);
      expect(log()).toEqual([512]);
      put(0x2000n, (G + 0x1000n) | 2n);
      expect(log()).toEqual([512, 513]);
      vm.clearDirtyLog(0n);
      expect(log()).toEqual([512, 513]); // still mapped: the device may write them any time
      put(0x1000n, 0n);
      put(0x2000n, (G + 0x3000n) | 1n); // overwritten read-only
      expect(log()).toEqual([512, 513]); // unmapped since the clear: a device may have written them
      vm.clearDirtyLog(0n);
      expect(log()).toEqual([]);
      // Mapped and unmapped between two reads of the log: marked by the engine when the TCE was stored.
      put(0x3000n, (G + 0x8000n) | 3n);
      put(0x3000n, 0n);
      // INDIRECT and STUFF too.
      expect(run(H.PUT_TCE_INDIRECT, L, 0x10000n, list([(G + 0x10000n) | 3n, (G + 0x11000n) | 1n]), 2n)).toBe(H.SUCCESS);
      expect(run(H.STUFF_TCE, L, 0x10000n, 0n, 2n)).toBe(H.SUCCESS);
      expect(log()).toEqual([520, 528]);
      vm.clearDirtyLog(0n);
      expect(log()).toEqual([]);
      vm.trackDmaWritable(false);
      put(0x4000n, G | 3n);
      expect(log()).toEqual([]);
      host.checkInvariants();
    });

    it('a large IOMMU page marks every system page it covers, within the memslot', async () => {
      const { vm, run, log } = await setup();
      const L64 = 0x80000001n;
      vm.createTceTable({ liobn: L64, pageShift: 16, offset: 0n, size: 256n });
      vm.trackDmaWritable(true);
      expect(run(H.PUT_TCE, L64, 0x10000n, (16n * MiB - 0x10000n) | 3n)).toBe(H.SUCCESS);
      expect(log()).toEqual(Array.from({ length: 16 }, (_, i) => PAGES - 16 + i));
    });

    it('removeMemslot drops the slot\'s log; bad addresses are ENOENT; bad arguments TypeError', async () => {
      const { vm, qemu, put } = await setup();
      const extra = qemu.mmap(1n * MiB);
      const X = 64n * MiB;
      vm.addMemslot({ gpa: X, size: extra.size, ua: extra.ua });
      put(0x1000n, X | 3n);
      vm.dma(L).write(0x1000n, Uint8Array.of(1));
      expect(dirtyPages(vm.dirtyLog(X + 5n))).toEqual([0]);
      expect(vm.dirtyLog(X).length).toBe(256 / 8);
      vm.removeMemslot(X);
      expectErr(() => vm.dirtyLog(X), 'ENOENT');
      expectErr(() => vm.clearDirtyLog(X), 'ENOENT');
      vm.addMemslot({ gpa: X, size: extra.size, ua: extra.ua });
      expect(dirtyPages(vm.dirtyLog(X))).toEqual([]);
      expectErr(() => vm.dirtyLog(17n * MiB), 'ENOENT');
      expect(() => vm.dirtyLog('0' as unknown as bigint)).toThrow(TypeError);
      expect(() => vm.dirtyLog(-1n)).toThrow(RangeError);
      expect(() => vm.trackDmaWritable('yes' as unknown as boolean)).toThrow(TypeError);
      const e = expectErr(() => vm.dirtyLog(1n << 40n), 'ENOENT');
      expect(e).toBeInstanceOf(TceError);
    });
  });
}

describe('dirty log with TCE bypass (qemu profile)', () => {
  it('on 64K system pages a bit is a 64K page', async () => {
    const { vm } = await guestSetup('qemu', L, 16);
    expect(vm.dirtyLog(0n).length).toBe(256 / 8);
    expect(vm.hcall(H.PUT_TCE, L, 0x1000n, 0x12000n | 3n).ret).toBe(H.SUCCESS);
    vm.dma(L).write(0x1ffcn, new Uint8Array(4));
    expect(dirtyPages(vm.dirtyLog(0n))).toEqual([1]);
  });

  it('a DMA write in bypass marks the guest physical pages it wrote', async () => {
    const VIO = 0x71000002n;
    const { host, vm } = await guestSetup('qemu', VIO);
    vm.setTceBypass(VIO, true);
    vm.dma(VIO).write(0x5000n, new Uint8Array(0x1001));
    expect(dirtyPages(vm.dirtyLog(0n))).toEqual([5, 6]);
    vm.clearDirtyLog(0n);
    expect(dirtyPages(vm.dirtyLog(0n))).toEqual([]);
    host.checkInvariants();
  });
});
