// vm.dma's runs (src/vmm/dma.ts: oneRun(); dma/plan.ts: planPages();
// dma/window.ts: runPages()): IOMMU pages whose TCEs map consecutive guest
// memory are copied as one piece,
// and every way a run can end is an edge the coalescing must not step
// over: a page without a mapping or without the access bit, a page in
// another memslot (even one whose bytes follow in host memory), the end of
// a table page of TCEs, the window's end, a guest physical address carrying
// past 2^32. Each case is checked on the bytes (against a page-by-page
// model), on the count of copies, on the fault (the first unreachable
// IOVA, nothing touched) and, for writes, on the dirty log: every system
// page a write touched is marked, in the memslot it belongs to.
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { countSets as sets, fault } from '../fixtures.js';

const MiB = 1n << 20n;
const L = 0x1000n;
const P = 0x1000; // IOMMU page and system page: 4 KiB, so a table page holds 512 TCEs
const WINDOW = 2048; // pages
const G = 0x100000; // guest physical of IOVA page 0 in the in-order mapping

/** 8 MiB of RAM as two memslots over one mapping (guest and host adjacent), an in-order mapping of the first 1024 IOVA pages. */
async function setup() {
  const host = await Host.create({ maxMemory: 48 << 20, pageShift: 12 });
  const qemu = host.spawn();
  const ram = qemu.mmap(8n * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: 4n * MiB, ua: ram.ua });
  vm.addMemslot({ gpa: 4n * MiB, size: 4n * MiB, ua: ram.ua + 4n * MiB });
  vm.createTceTable({ liobn: L, pageShift: 12, offset: 0n, size: BigInt(WINDOW) });
  const mem = ram.bytes!;
  for (let i = 0; i < mem.length; i += 4) mem[i] = (i >>> 12) & 0xff;
  for (let i = 1; i < mem.length; i += 4) mem[i] = (i >>> 20) & 0xff;
  for (let i = 2; i < mem.length; i += 4) mem[i] = i & 0xff;
  /** IOVA page `page` → guest physical `gpa` (as a number) with permission bits `perm` (0: no mapping). */
  const pages = new Map<number, number>();
  const map = (page: number, gpa: number, perm = 3): void => {
    expect(vm.hcall(H.PUT_TCE, L, BigInt(page) << 12n, perm === 0 ? 0n : BigInt(gpa) | BigInt(perm)).ret).toBe(H.SUCCESS);
    pages.set(page, gpa);
  };
  for (let p = 0; p < 1024; p++) map(p, G + p * P);
  /** The bytes a page-by-page model reads at IOVA [iova, iova + n). */
  const model = (iova: number, n: number): Uint8Array => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = mem[pages.get(Math.floor((iova + i) / P))! + ((iova + i) % P)]!;
    return out;
  };
  /** The dirty system pages of the memslot at `gpa`, as guest physical page numbers. */
  const dirty = (gpa: number): number[] => {
    const bm = vm.dirtyLog(BigInt(gpa));
    const base = gpa >= 4 << 20 ? (4 << 20) / P : 0;
    const out: number[] = [];
    for (let i = 0; i < bm.length * 8; i++) if ((bm[i >>> 3]! >>> (i & 7)) & 1) out.push(base + i);
    return out;
  };
  return { host, vm, mem, map, model, dirty };
}


/** Guest pages [first, last] as page numbers. */
const range = (first: number, last: number): number[] => Array.from({ length: last - first + 1 }, (_, i) => first + i);

describe('vm.dma runs: a coalesced run and what ends it', () => {
  it('a 64 KiB write over 16 in-order pages is one copy and marks each of its 17 system pages (it starts mid-page)', async () => {
    const { vm, mem, dirty } = await setup();
    const dma = vm.dma(L);
    const data = Uint8Array.from({ length: 0x10000 }, (_, i) => (i * 7 + 3) & 0xff);
    for (const at of [0x20800, 0x20800n]) {
      vm.clearDirtyLog(0n);
      expect(sets(() => dma.write(at, data))).toBe(1);
      expect(mem.subarray(G + 0x20800, G + 0x30800)).toEqual(data);
      expect(dirty(0)).toEqual(range(G / P + 0x20, G / P + 0x30));
    }
    // Page aligned: exactly its 16 pages, not the one after.
    vm.clearDirtyLog(0n);
    dma.write(0x40000, data);
    expect(dirty(0)).toEqual(range(G / P + 0x40, G / P + 0x4f));
  });

  it('reads of every length from 1 byte to 3 pages at every page offset give the model bytes, one copy each', async () => {
    const { vm, model } = await setup();
    const dma = vm.dma(L);
    for (const off of [0, 1, 0x7ff, 0xfff]) {
      for (const n of [1, 0x1000 - off, 0x1001 - off, 0x2000, 0x3000 - off]) {
        if (n <= 0) continue;
        const dst = new Uint8Array(n);
        expect(sets(() => dma.readInto(0x5000 + off, dst))).toBe(1);
        expect(dst).toEqual(model(0x5000 + off, n));
        expect(dma.read(0x5000 + off, n)).toEqual(dst);
      }
    }
  });

  it('an unmapped page ends the run: read and write fault at its first byte, nothing touched, the same accessor reads again once it is mapped', async () => {
    const { vm, mem, map, model, dirty } = await setup();
    const dma = vm.dma(L);
    const dst = new Uint8Array(0x8000);
    dma.readInto(0x10000, dst);
    map(0x14, 0, 0);
    dst.fill(0xee);
    for (const at of [0x10000, 0x10000n, 0x13fff]) {
      expect(fault(() => dma.readInto(at, dst))).toMatchObject({ iova: 0x14000n, access: 'read', reason: 'no-permission' });
      expect(dst.every((x) => x === 0xee)).toBe(true);
    }
    vm.clearDirtyLog(0n);
    const before = Buffer.from(mem);
    expect(fault(() => dma.write(0x10000, new Uint8Array(0x8000).fill(1)))).toMatchObject({ iova: 0x14000n, access: 'write', reason: 'no-permission' });
    expect(Buffer.from(mem).equals(before)).toBe(true);
    expect(dirty(0)).toEqual([]);
    map(0x14, G + 0x14 * P);
    dma.readInto(0x10000, dst);
    expect(dst).toEqual(model(0x10000, dst.length));
  });

  it('a permission changed in the middle of a run that was just copied whole: the next access of the other kind faults there', async () => {
    const { vm, mem, map, model, dirty } = await setup();
    const dma = vm.dma(L);
    const data = new Uint8Array(0x6000).fill(0x42);
    dma.write(0x30000, data);
    // Read-only: reads still one run, writes refused at the page.
    map(0x33, G + 0x33 * P, 1);
    const dst = new Uint8Array(0x6000);
    expect(sets(() => dma.readInto(0x30000, dst))).toBe(1);
    expect(dst).toEqual(model(0x30000, 0x6000));
    vm.clearDirtyLog(0n);
    const before = Buffer.from(mem);
    expect(fault(() => dma.write(0x30000, data))).toMatchObject({ iova: 0x33000n, reason: 'no-permission' });
    expect(Buffer.from(mem).equals(before)).toBe(true);
    expect(dirty(0)).toEqual([]);
    // Write-only: the reverse.
    map(0x33, G + 0x33 * P, 2);
    expect(fault(() => dma.readInto(0x30000, dst))).toMatchObject({ iova: 0x33000n, reason: 'no-permission' });
    expect(sets(() => dma.write(0x30000, data))).toBe(1);
    expect(dirty(0)).toEqual(range(G / P + 0x30, G / P + 0x35));
  });

  it('a run from one memslot into the next, adjacent in guest and in host memory: two copies, each slot marks its own pages', async () => {
    const { vm, mem, map, model, dirty } = await setup();
    const dma = vm.dma(L);
    const SLOT1 = 4 << 20;
    for (let p = 0; p < 8; p++) map(0x200 + p, SLOT1 - 4 * P + p * P);
    const dst = new Uint8Array(8 * P - 0x100);
    expect(sets(() => dma.readInto(0x200080, dst))).toBe(2);
    expect(dst).toEqual(model(0x200080, dst.length));
    vm.clearDirtyLog(0n);
    vm.clearDirtyLog(BigInt(SLOT1));
    const data = Uint8Array.from({ length: dst.length }, (_, i) => (i * 5) & 0xff);
    expect(sets(() => dma.write(0x200080, data))).toBe(2);
    expect(mem.subarray(SLOT1 - 4 * P + 0x80, SLOT1 - 4 * P + 0x80 + data.length)).toEqual(data);
    expect(dirty(0)).toEqual(range(SLOT1 / P - 4, SLOT1 / P - 1));
    expect(dirty(SLOT1)).toEqual(range(SLOT1 / P, SLOT1 / P + 3));
    // The next access starts in the second slot (the memslot of the last hit changed): one copy again, the right bytes.
    expect(sets(() => dma.readInto(0x204000, dst.subarray(0, 0x3000)))).toBe(1);
    expect(dst.subarray(0, 0x3000)).toEqual(model(0x204000, 0x3000));
    expect(sets(() => dma.readInto(0x10000, dst.subarray(0, 0x3000)))).toBe(1);
    expect(dst.subarray(0, 0x3000)).toEqual(model(0x10000, 0x3000));
  });

  it('a run across the end of a table page of TCEs (entry 511 to 512) continues; an absent table page after it is unmapped', async () => {
    const { vm, map, model } = await setup();
    const dma = vm.dma(L);
    const dst = new Uint8Array(6 * P);
    expect(sets(() => dma.readInto(509 * P, dst))).toBe(1);
    expect(dst).toEqual(model(509 * P, dst.length));
    // Entries from 1024 on were never written: their table page (1024..1535) is absent.
    map(1022, G + 1022 * P);
    map(1023, G + 1023 * P);
    dst.fill(0xee);
    expect(fault(() => dma.readInto(1022 * P, dst))).toMatchObject({ iova: 1024n * 0x1000n, reason: 'no-permission' });
    expect(dst.every((x) => x === 0xee)).toBe(true);
    map(1024, G + 1024 * P);
    map(1025, G + 1025 * P);
    expect(sets(() => dma.readInto(1022 * P, dst.subarray(0, 4 * P)))).toBe(1);
    expect(dst.subarray(0, 4 * P)).toEqual(model(1022 * P, 4 * P));
  });

  it('a run up to the window end and past it: out-of-range at the end, nothing touched; a run in RAM up to the end reads', async () => {
    const { vm, mem, map, model, dirty } = await setup();
    const dma = vm.dma(L);
    for (let p = WINDOW - 3; p < WINDOW; p++) map(p, G + p * P - 0x100000);
    const dst = new Uint8Array(4 * P).fill(0xee);
    for (const at of [(WINDOW - 3) * P, BigInt((WINDOW - 3) * P), (WINDOW - 3) * P + 0x800]) {
      expect(fault(() => dma.readInto(at, dst))).toMatchObject({ iova: BigInt(WINDOW * P), reason: 'out-of-range' });
      expect(dst.every((x) => x === 0xee)).toBe(true);
    }
    vm.clearDirtyLog(0n);
    const before = Buffer.from(mem);
    expect(fault(() => dma.write((WINDOW - 3) * P, new Uint8Array(4 * P)))).toMatchObject({ iova: BigInt(WINDOW * P), access: 'write', reason: 'out-of-range' });
    expect(Buffer.from(mem).equals(before)).toBe(true);
    expect(dirty(0)).toEqual([]);
    expect(sets(() => dma.readInto((WINDOW - 3) * P, dst.subarray(0, 3 * P)))).toBe(1);
    expect(dst.subarray(0, 3 * P)).toEqual(model((WINDOW - 3) * P, 3 * P));
  });

  it('pages in guest order but ending past RAM: not-ram at the first page outside, nothing touched', async () => {
    const { vm, mem, map } = await setup();
    const dma = vm.dma(L);
    const END = 8 << 20;
    for (let p = 0; p < 4; p++) map(0x300 + p, END - 2 * P + p * P);
    const dst = new Uint8Array(4 * P).fill(0xee);
    expect(fault(() => dma.readInto(0x300000, dst))).toMatchObject({ iova: 0x302000n, reason: 'not-ram' });
    expect(dst.every((x) => x === 0xee)).toBe(true);
    const before = Buffer.from(mem);
    expect(fault(() => dma.write(0x300000, dst))).toMatchObject({ iova: 0x302000n, reason: 'not-ram' });
    expect(Buffer.from(mem).equals(before)).toBe(true);
  });
});

describe('vm.dma runs: guest physical addresses across 2^32', () => {
  it('a run of pages that carries from below 2^32 to above it is one run; a page 2^32 off is not its successor', async () => {
    const host = await Host.create({ maxMemory: 48 << 20, pageShift: 12 });
    const qemu = host.spawn();
    const ram = qemu.mmap(1n * MiB);
    const vm = qemu.createVm({ profile: 'qemu' });
    const BASE = (1n << 32n) - 0x80000n; // the memslot straddles 4 GiB
    vm.addMemslot({ gpa: BASE, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: L, pageShift: 12, offset: 0n, size: 256n });
    const mem = ram.bytes!;
    for (let i = 0; i < mem.length; i++) mem[i] = (i >>> 12) ^ (i & 0xff);
    const put = (page: number, gpa: bigint): void => {
      expect(vm.hcall(H.PUT_TCE, L, BigInt(page) << 12n, gpa | 3n).ret).toBe(H.SUCCESS);
    };
    // IOVA pages 0..3 → the last two pages below 4 GiB and the first two above it.
    for (let p = 0; p < 4; p++) put(p, (1n << 32n) - 0x2000n + BigInt(p) * 0x1000n);
    const dma = vm.dma(L);
    const dst = new Uint8Array(4 * P);
    expect(sets(() => dma.readInto(0, dst))).toBe(1);
    expect(dst).toEqual(mem.subarray(0x7e000, 0x82000));
    // Page 2 now maps 2^32 below where the run needs it (inside no memslot): the carry must not be dropped.
    put(2, 0x0n);
    expect(fault(() => dma.readInto(0, dst))).toMatchObject({ iova: 0x2000n, reason: 'not-ram' });
    // And a page whose low word matches but high word is one too far: a separate run, outside RAM.
    put(2, (2n << 32n));
    expect(fault(() => dma.readInto(0, dst))).toMatchObject({ iova: 0x2000n, reason: 'not-ram' });
    put(2, 1n << 32n);
    expect(sets(() => dma.readInto(0, dst))).toBe(1);
    expect(dst).toEqual(mem.subarray(0x7e000, 0x82000));
    vm.clearDirtyLog(BASE);
    dma.write(0x1800, new Uint8Array(0x1000));
    const bm = vm.dirtyLog(BASE);
    const marked: number[] = [];
    for (let i = 0; i < bm.length * 8; i++) if ((bm[i >>> 3]! >>> (i & 7)) & 1) marked.push(i);
    expect(marked).toEqual([0x7f, 0x80]);
  });
});
