// Spec: docs/semantics.md §8.3 (DMA translation), §9 V7–V9, in both profiles: vm.translate and vm.dma(liobn).
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { fault } from '../fixtures.js';
import { MiB } from './helpers.js';

const L0 = 0x80000000n;
const ENTRIES = 262144n; // 1 GiB of 4K pages at bus 0
const G = 0x200000n; // a page-aligned guest physical address in RAM
const HOLE = 32n * MiB; // guest physical: a memslot whose mapping has no bytes (backed: false)

async function setup(profile: 'qemu' | 'kvm') {
  const host = await Host.create({ maxMemory: 48 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const unbacked = qemu.mmap(1n * MiB, { backed: false });
  const vm = qemu.createVm({ profile });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.addMemslot({ gpa: HOLE, size: unbacked.size, ua: unbacked.ua });
  vm.createTceTable({ liobn: L0, pageShift: 12, offset: 0n, size: ENTRIES });
  const put = (ioba: bigint, tce: bigint): void => {
    expect(vm.hcall(H.PUT_TCE, L0, ioba, tce).ret, `PUT 0x${ioba.toString(16)}`).toBe(H.SUCCESS);
  };
  const bytes = ram.bytes!;
  /** Guest RAM at `gpa` as seen by the VMM (no IOMMU). */
  const at = (gpa: bigint, n: number): Uint8Array => bytes.slice(Number(gpa), Number(gpa) + n);
  return { host, vm, ram, bytes, put, at };
}

const pattern = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

for (const profile of ['qemu', 'kvm'] as const) {
  describe(`vmm §3 DMA translation, profile ${profile}`, () => {
    it('row 7: translate(liobn0, 0x1010) after PUT(0x1000, G|3) → GPA G+0x10, page IOVA 0x1000', async () => {
      const { vm, put, bytes } = await setup(profile);
      put(0x1000n, G | 3n);
      expect(vm.translate(L0, 0x1010n, 'read')).toEqual({ ok: true, gpa: G + 0x10n, pageIova: 0x1000n, pageSize: 0x1000n, perm: 3 });
      expect(vm.translate(L0, 0x1fffn, 'write')).toMatchObject({ ok: true, gpa: G + 0xfffn });
      bytes.set([1, 2, 3, 4], Number(G + 0x10n));
      expect([...vm.dma(L0).read(0x1010n, 4)]).toEqual([1, 2, 3, 4]);
    });

    it('row 8: bit0-only TCE: DMA read ok / write faults; bit1-only: the reverse; 0: both fault', async () => {
      const { vm, put, bytes, at } = await setup(profile);
      put(0x1000n, G | 1n);
      put(0x2000n, (G + 0x1000n) | 2n);
      put(0x3000n, 0n);
      const dma = vm.dma(L0);
      bytes.set([9, 8, 7], Number(G));
      expect([...dma.read(0x1000n, 3)]).toEqual([9, 8, 7]);
      expect(fault(() => dma.write(0x1000n, Uint8Array.of(1)))).toMatchObject({ liobn: L0, iova: 0x1000n, access: 'write', reason: 'no-permission' });
      dma.write(0x2004n, Uint8Array.of(5, 6));
      expect([...at(G + 0x1004n, 2)]).toEqual([5, 6]);
      expect(fault(() => dma.read(0x2000n, 1))).toMatchObject({ iova: 0x2000n, access: 'read', reason: 'no-permission' });
      expect(fault(() => dma.read(0x3008n, 1))).toMatchObject({ iova: 0x3008n, reason: 'no-permission' });
      expect(fault(() => dma.write(0x3008n, Uint8Array.of(1)))).toMatchObject({ iova: 0x3008n, reason: 'no-permission' });
      expect(vm.translate(L0, 0x1000n, 'write')).toEqual({ ok: false, fault: 'no-permission' });
      expect(vm.translate(L0, 0x2000n, 'read')).toEqual({ ok: false, fault: 'no-permission' });
    });

    it('row 9: translate outside every window → fault (out-of-range in the LIOBN\'s table, no-window for an unknown LIOBN)', async () => {
      const { vm, put } = await setup(profile);
      put(0x3ffff000n, G | 3n);
      expect(vm.translate(L0, 0x3ffff000n, 'read').ok).toBe(true);
      for (const iova of [0x40000000n, 1n << 59n, 0x400_0000_0000n, (1n << 64n) - 1n]) {
        expect(vm.translate(L0, iova, 'read')).toEqual({ ok: false, fault: 'out-of-range' });
        expect(fault(() => vm.dma(L0).read(iova, 1))).toMatchObject({ iova, reason: 'out-of-range' });
      }
      expect(vm.translate(0x80000001n, 0x1000n, 'read')).toEqual({ ok: false, fault: 'no-window' });
      expect(fault(() => vm.dma(0x80000001n).write(0x1000n, Uint8Array.of(1)))).toMatchObject({ liobn: 0x80000001n, reason: 'no-window' });
    });

    it('a DMA crossing pages goes page by page, to wherever each page maps', async () => {
      const { vm, put, at } = await setup(profile);
      // IOVA pages 1, 2, 3 → guest pages G, G+0x5000, G+0x3000 (not contiguous, not ascending)
      put(0x1000n, G | 3n);
      put(0x2000n, (G + 0x5000n) | 3n);
      put(0x3000n, (G + 0x3000n) | 3n);
      const data = pattern(0x1900);
      vm.dma(L0).write(0x1800n, data);
      expect(at(G + 0x800n, 0x800)).toEqual(data.subarray(0, 0x800));
      expect(at(G + 0x5000n, 0x1000)).toEqual(data.subarray(0x800, 0x1800));
      expect(at(G + 0x3000n, 0x100)).toEqual(data.subarray(0x1800));
      expect(vm.dma(L0).read(0x1800n, 0x1900)).toEqual(data);
      // read returns a copy, not a view of guest memory
      const r = vm.dma(L0).read(0x1000n, 4);
      r[0] = 0xee;
      expect(at(G, 1)[0]).not.toBe(0xee);
    });

    it('a fault anywhere in the range touches nothing, and names the first unreachable IOVA', async () => {
      const { vm, put, bytes } = await setup(profile);
      put(0x1000n, G | 3n);
      put(0x2000n, (G + 0x1000n) | 1n); // read-only
      const before = Buffer.from(bytes);
      const e = fault(() => vm.dma(L0).write(0x1ff0n, pattern(0x20, 7)));
      expect(e).toMatchObject({ liobn: L0, iova: 0x2000n, access: 'write', reason: 'no-permission' });
      expect(e.name).toBe('DmaFault');
      expect(Buffer.from(bytes).equals(before)).toBe(true);
      // a page that is not mapped in the middle
      put(0x4000n, (G + 0x2000n) | 3n);
      expect(fault(() => vm.dma(L0).write(0x3ff0n, pattern(0x1020)))).toMatchObject({ iova: 0x3ff0n, reason: 'no-permission' });
      expect(fault(() => vm.dma(L0).write(0x4ff0n, pattern(0x20)))).toMatchObject({ iova: 0x5000n, reason: 'no-permission' });
      expect(Buffer.from(bytes).equals(before)).toBe(true);
    });

    it("a TCE whose GPA is not backed guest RAM faults with reason 'not-ram'", async () => {
      const { vm, put, bytes } = await setup(profile);
      put(0x1000n, G | 3n);
      put(0x2000n, HOLE | 3n); // a memslot, but its mapping has no bytes
      const before = Buffer.from(bytes);
      expect(vm.translate(L0, 0x2000n, 'write')).toMatchObject({ ok: true, gpa: HOLE });
      expect(fault(() => vm.dma(L0).write(0x1ffcn, pattern(8)))).toMatchObject({ iova: 0x2000n, access: 'write', reason: 'not-ram' });
      expect(fault(() => vm.dma(L0).read(0x2010n, 1))).toMatchObject({ iova: 0x2010n, reason: 'not-ram' });
      expect(Buffer.from(bytes).equals(before)).toBe(true);
      if (profile === 'qemu') {
        // QEMU stores any value; a GPA outside every memslot decodes to nothing
        put(0x3000n, (64n * MiB) | 3n);
        expect(fault(() => vm.dma(L0).read(0x3000n, 1))).toMatchObject({ iova: 0x3000n, reason: 'not-ram' });
      }
    });

    it('a page that ends RAM: the DMA may run up to the end of the memslot, not past it', async () => {
      const { vm, put, at } = await setup(profile);
      const last = 16n * MiB - 0x1000n;
      put(0x1000n, last | 3n);
      vm.dma(L0).write(0x1ff0n, pattern(0x10));
      expect(at(last + 0xff0n, 0x10)).toEqual(pattern(0x10));
    });

    it('a PUT takes effect at once (no IOTLB): the same accessor sees the new mapping', async () => {
      const { vm, put, at } = await setup(profile);
      const dma = vm.dma(L0);
      expect(fault(() => dma.read(0x1000n, 1)).reason).toBe('no-permission');
      put(0x1000n, G | 3n);
      dma.write(0x1000n, Uint8Array.of(0x11));
      put(0x1000n, (G + 0x1000n) | 3n);
      dma.write(0x1000n, Uint8Array.of(0x22));
      expect([at(G, 1)[0], at(G + 0x1000n, 1)[0]]).toEqual([0x11, 0x22]);
    });

    it('length 0 touches nothing and never faults', async () => {
      const { vm } = await setup(profile);
      expect(vm.dma(L0).read(0x40000000n, 0)).toEqual(new Uint8Array(0));
      vm.dma(0x1234n).write(0n, new Uint8Array(0));
    });

    it('arguments are validated: TypeError / RangeError naming them', async () => {
      const { vm } = await setup(profile);
      expect(() => vm.dma('1' as unknown as bigint)).toThrow(/liobn/);
      expect(() => vm.dma(-1n)).toThrow(RangeError);
      const dma = vm.dma(L0);
      expect(dma.liobn).toBe(L0);
      expect(() => dma.read('0x1000' as unknown as bigint, 4)).toThrow(TypeError);
      expect(() => dma.read(0x1000n, -1)).toThrow(/length/);
      expect(() => dma.read(0x1000n, 1.5)).toThrow(RangeError);
      expect(() => dma.read(0x1000n, 4n as unknown as number)).toThrow(TypeError);
      expect(() => dma.write(0x1000n, [1, 2] as unknown as Uint8Array)).toThrow(/bytes/);
      expect(() => dma.write(1n << 64n, Uint8Array.of(1))).toThrow(/iova/);
      expect(() => vm.translate(L0, 0n, 'exec' as 'read')).toThrow(/access/);
    });
  });
}

describe('vmm §3 DMA translation with large IOMMU pages', () => {
  it('a 16M IOMMU page at a non-zero bus offset: offsets inside the page, across 64K host pages', async () => {
    const { vm, at } = await setup('qemu');
    const L = 0x80000001n;
    const bus = 1n << 59n;
    vm.createTceTable({ liobn: L, pageShift: 24, offset: bus >> 24n, size: 16n });
    expect(vm.hcall(H.PUT_TCE, L, bus + (1n << 24n), 0n | 3n).ret).toBe(H.SUCCESS); // IOVA page 1 → GPA 0
    const data = pattern(0x30000, 3);
    vm.dma(L).write(bus + (1n << 24n) + 0x123450n, data);
    expect(at(0x123450n, data.length)).toEqual(data);
    expect(vm.translate(L, bus + (1n << 24n) + 5n, 'read')).toEqual({ ok: true, gpa: 5n, pageIova: bus + (1n << 24n), pageSize: 1n << 24n, perm: 3 });
    // IOVA page 2 → GPA 16 MiB, just past RAM: the DMA that crosses from page 1 into it faults at the boundary
    expect(vm.hcall(H.PUT_TCE, L, bus + (2n << 24n), (16n * MiB) | 3n).ret).toBe(H.SUCCESS);
    expect(fault(() => vm.dma(L).read(bus + (2n << 24n) - 2n, 4))).toMatchObject({ iova: bus + (2n << 24n), reason: 'not-ram' });
  });
});
