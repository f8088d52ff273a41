// vm.dma's fast paths (src/vmm/dma.ts): an IOVA given as a number goes
// through without BigInt and must give what the same IOVA as a bigint
// gives, bad numbers are refused as v.u64 refuses them, pages that follow
// each other in host memory are copied as one run while pages that do not
// are each copied from where they map, and a refused page anywhere in a
// range leaves everything as it was.
import { afterEach, describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { countSets as sets, fault } from '../fixtures.js';

const MiB = 1n << 20n;
const L = 0x1000n;
const DDW = 0x1001n;
const DDW_BUS = 1n << 59n;
const G = 0x100000; // guest physical of IOVA page 0 in the in-order mapping

async function setup() {
  const host = await Host.create({ maxMemory: 64 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: L, pageShift: 12, offset: 0n, size: 4096n });
  vm.createTceTable({ liobn: DDW, pageShift: 12, offset: DDW_BUS >> 12n, size: 4096n });
  const mem = ram.bytes!;
  // A pattern no two pages share: a byte read from the wrong page shows.
  for (let i = 0; i < mem.length; i += 4) mem[i] = (i >>> 12) & 0xff;
  for (let i = 1; i < mem.length; i += 4) mem[i] = i & 0xff;
  /** IOVA page `page` of window `liobn` → guest physical `gpa` with permission bits `perm` (0 clears it). */
  const map = (page: number, gpa: number, perm = 3, liobn = L): void => {
    const bus = liobn === DDW ? DDW_BUS : 0n;
    const tce = perm === 0 ? 0n : BigInt(gpa) | BigInt(perm);
    expect(vm.hcall(H.PUT_TCE, liobn, bus + (BigInt(page) << 12n), tce).ret).toBe(H.SUCCESS);
  };
  for (let p = 0; p < 64; p++) map(p, G + p * 0x1000);
  return { host, qemu, vm, mem, map };
}

/** The error fn throws, as [class name, message], for comparing two refusals. */
function thrown(fn: () => unknown): [string, string] {
  try {
    fn();
  } catch (e) {
    return [(e as Error).constructor.name, (e as Error).message];
  }
  return ['none', ''];
}

/** What a plain model gives: the bytes of IOVA [iova, iova + n) of window L, page by page through `pages` (IOVA page → guest physical). */
function model(mem: Uint8Array, pages: Map<number, number>, iova: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const a = iova + i;
    out[i] = mem[pages.get(a >>> 12)! + (a & 0xfff)]!;
  }
  return out;
}

const realBigInt = globalThis.BigInt;
afterEach(() => {
  globalThis.BigInt = realBigInt;
});

describe('vm.dma: an IOVA as a number', () => {
  it('a safe-integer number and the same bigint give the same bytes, for read, readInto and write', async () => {
    const { vm, mem } = await setup();
    const dma = vm.dma(L);
    for (const [iova, n] of [
      [0, 1],
      [0x10, 512],
      [0xff0, 0x20],
      [0x3000, 0x10000],
      [0x3ffff, 1],
    ] as const) {
      const a = new Uint8Array(n).fill(0xee);
      const b = new Uint8Array(n).fill(0xee);
      dma.readInto(iova, a);
      dma.readInto(BigInt(iova), b);
      expect(a, `readInto ${iova}`).toEqual(b);
      expect(a).toEqual(mem.subarray(G + iova, G + iova + n));
      expect(dma.read(iova, n), `read ${iova}`).toEqual(b);
    }
    const data = Uint8Array.from({ length: 0x1800 }, (_, i) => (i * 7 + 3) & 0xff);
    dma.write(0x2800, data);
    expect(mem.subarray(G + 0x2800, G + 0x4000)).toEqual(data);
    dma.write(0x2800n, data.map((x) => x ^ 0xff));
    expect(dma.read(0x2800, data.length)).toEqual(data.map((x) => x ^ 0xff));
  });

  it('no BigInt() is called for a number IOVA once the cache is built; a bigint IOVA gives the same bytes', async () => {
    const { vm } = await setup();
    const dma = vm.dma(L);
    const dst = new Uint8Array(0x2000);
    const src = new Uint8Array(0x2000).fill(9);
    // The first calls build the caches (the window's, and the dirty log's bitmap), which convert with BigInt.
    dma.readInto(0x1800, dst);
    dma.write(0x1800, src);
    let calls = 0;
    globalThis.BigInt = new Proxy(realBigInt, {
      apply(target, self, args: [string | number | bigint | boolean]) {
        calls++;
        return target(...args);
      },
    });
    dma.readInto(0x1800, dst);
    dma.write(0x1800, src);
    const r = dma.read(0x1800, 0x2000);
    globalThis.BigInt = realBigInt;
    expect(calls).toBe(0);
    expect(r).toEqual(src);
    // The same calls with bigints are allowed BigInt work and reach the same bytes.
    const big = new Uint8Array(0x2000);
    dma.readInto(0x1800n, big);
    expect(big).toEqual(src);
  });

  it('a bad number is refused with the same TypeError or RangeError as before, the bigint checks are unchanged', async () => {
    const { vm } = await setup();
    const dma = vm.dma(L);
    const dst = new Uint8Array(4);
    const cases: [unknown, string, string][] = [
      [2 ** 53, 'RangeError', 'iova must be a safe integer when it is a number (pass a bigint), got 9007199254740992'],
      [2 ** 64, 'RangeError', 'iova must be a safe integer when it is a number (pass a bigint), got 18446744073709552000'],
      [-1, 'RangeError', 'iova must be in [0, 2^64), got -1'],
      [-(2 ** 53) + 1, 'RangeError', 'iova must be in [0, 2^64), got -9007199254740991'],
      [1.5, 'RangeError', 'iova must be an integer, got 1.5'],
      [-0.5, 'RangeError', 'iova must be an integer, got -0.5'],
      [NaN, 'RangeError', 'iova must be an integer, got NaN'],
      [Infinity, 'RangeError', 'iova must be an integer, got Infinity'],
      ['4096', 'TypeError', 'iova must be a bigint or a number, got the string "4096"'],
      [undefined, 'TypeError', 'iova is required'],
      [-1n, 'RangeError', 'iova must be in [0, 2^64), got -1n'],
      [1n << 64n, 'RangeError', 'iova must be in [0, 2^64), got 18446744073709551616n'],
    ];
    for (const [iova, cls, msg] of cases) {
      const at = iova as number;
      for (const call of [() => dma.readInto(at, dst), () => dma.read(at, 4), () => dma.write(at, dst)]) {
        expect(thrown(call), String(iova)).toEqual([cls, msg]);
      }
    }
    // -0 is 0; a bigint at or above 2^53 still goes through (here: out of the window).
    expect(dma.read(-0, 4)).toEqual(dma.read(0n, 4));
    expect(fault(() => dma.read(1n << 53n, 1))).toMatchObject({ iova: 1n << 53n, reason: 'out-of-range' });
    expect(fault(() => dma.read((1n << 64n) - 1n, 1))).toMatchObject({ iova: (1n << 64n) - 1n, reason: 'out-of-range' });
  });

  it('faults name the IOVA as a bigint whichever way it was given, in a window below and above 2^53', async () => {
    const { vm, map, mem } = await setup();
    const dma = vm.dma(L);
    expect(fault(() => dma.read(0x1000000, 1))).toMatchObject({ liobn: L, iova: 0x1000000n, access: 'read', reason: 'out-of-range' });
    map(3, G, 1);
    expect(fault(() => dma.write(0x2ffe, new Uint8Array(4)))).toMatchObject({ iova: 0x3000n, access: 'write', reason: 'no-permission' });
    expect(fault(() => vm.dma(0x4242).readInto(5, new Uint8Array(1)))).toMatchObject({ liobn: 0x4242n, iova: 5n, reason: 'no-window' });
    // The DDW's bus offset is 2^59: a number IOVA (below 2^53) is before the window; the bigint path reaches its pages.
    const ddw = vm.dma(DDW);
    expect(fault(() => ddw.read(0x10, 1))).toMatchObject({ liobn: DDW, iova: 0x10n, reason: 'out-of-range' });
    map(1, G + 0x5000, 3, DDW);
    expect(ddw.read(DDW_BUS + 0x1010n, 8)).toEqual(mem.subarray(G + 0x5010, G + 0x5018));
  });

  it('TCE bypass with a number IOVA is the identity, up to the end of RAM', async () => {
    const { vm, mem } = await setup();
    const dma = vm.dma(L);
    vm.setTceBypass(L, true);
    expect(dma.read(0x1234, 16)).toEqual(mem.subarray(0x1234, 0x1244));
    expect(dma.read(0x1234, 16)).toEqual(dma.read(0x1234n, 16));
    const end = Number(16n * MiB);
    expect(fault(() => dma.read(end - 4, 8))).toMatchObject({ iova: BigInt(end), reason: 'not-ram' });
    expect(fault(() => dma.read(2 ** 53 - 1, 2))).toMatchObject({ reason: 'not-ram' });
  });
});

describe('vm.dma: contiguous and non-contiguous host runs', () => {
  it('pages in host order are one run (one set), a page mapped elsewhere splits it, and every byte comes from its own page', async () => {
    const { vm, mem, map } = await setup();
    const dma = vm.dma(L);
    const pages = new Map<number, number>();
    for (let p = 0; p < 64; p++) pages.set(p, G + p * 0x1000);
    const dst = new Uint8Array(0x10000);
    // 16 pages in order, starting mid-page: one piece.
    expect(sets(() => dma.readInto(0x4800, dst))).toBe(1);
    expect(dst).toEqual(model(mem, pages, 0x4800, dst.length));
    // Page 8 now maps far away (ascending, not adjacent), page 9 below page 0's target (descending): four runs.
    map(8, 0x700000);
    pages.set(8, 0x700000);
    map(9, 0x40000);
    pages.set(9, 0x40000);
    dst.fill(0);
    expect(sets(() => dma.readInto(0x4800, dst))).toBe(4);
    expect(dst).toEqual(model(mem, pages, 0x4800, dst.length));
    expect(dma.read(0x4800, dst.length)).toEqual(dst);
    // Two IOVA pages onto the same guest page: not adjacent either.
    map(20, G + 19 * 0x1000);
    pages.set(20, G + 19 * 0x1000);
    const two = dma.read(0x13000, 0x2000);
    expect(two.subarray(0, 0x1000)).toEqual(two.subarray(0x1000));
    expect(two).toEqual(model(mem, pages, 0x13000, 0x2000));
  });

  it('a write across non-adjacent pages lands on each page and marks each in the dirty log', async () => {
    const { vm, mem, map } = await setup();
    const dma = vm.dma(L);
    map(1, 0x300000);
    map(2, 0x200000);
    const data = Uint8Array.from({ length: 0x1100 }, (_, i) => (i * 13 + 1) & 0xff);
    expect(sets(() => dma.write(0xf80, data))).toBe(3);
    expect(mem.subarray(G + 0xf80, G + 0x1000)).toEqual(data.subarray(0, 0x80));
    expect(mem.subarray(0x300000, 0x301000)).toEqual(data.subarray(0x80, 0x1080));
    expect(mem.subarray(0x200000, 0x200080)).toEqual(data.subarray(0x1080));
    const log = vm.dirtyLog(0n);
    // One bit per system page (the host's page size), as KVM_GET_DIRTY_LOG.
    const bit = (gpa: number): number => {
      const page = Math.floor(gpa / 2 ** vm.host.pageShift);
      return (log[page >>> 3]! >>> (page & 7)) & 1;
    };
    expect([G, 0x300000, 0x200000, 0x500000, 0].map(bit)).toEqual([1, 1, 1, 0, 0]);
  });

  it('read returns a plain Uint8Array over a buffer of its own, for small and large lengths', async () => {
    const { vm, mem } = await setup();
    const dma = vm.dma(L);
    for (const n of [1, 64, 65, 512, 0x10000]) {
      const a = dma.read(0x100, n);
      const b = dma.read(0x100, n);
      expect(Object.getPrototypeOf(a)).toBe(Uint8Array.prototype);
      expect([a.byteOffset, a.byteLength, a.buffer.byteLength]).toEqual([0, n, n]);
      expect(a.buffer).not.toBe(b.buffer);
      expect(a).toEqual(mem.subarray(G + 0x100, G + 0x100 + n));
      a[0] = a[0]! ^ 0xff;
      expect(b[0]).toBe(mem[G + 0x100]);
    }
  });
});

describe('vm.dma: a refused page in the middle of a range', () => {
  for (const [what, perm, reason] of [
    ['write-only', 2, 'no-permission'],
    ['unmapped', 0, 'no-permission'],
  ] as const) {
    it(`a ${what} page in the middle: readInto and read fault at its first byte, dst untouched`, async () => {
      const { vm, map, mem } = await setup();
      const dma = vm.dma(L);
      map(5, G + 5 * 0x1000, perm);
      const dst = new Uint8Array(0x3000).fill(0xcd);
      for (const at of [0x3800, 0x3800n]) {
        expect(fault(() => dma.readInto(at, dst))).toMatchObject({ iova: 0x5000n, access: 'read', reason });
        expect(dst.every((x) => x === 0xcd)).toBe(true);
        expect(fault(() => dma.read(at, 0x3000))).toMatchObject({ iova: 0x5000n, reason });
      }
      // Either side of it still reads, the bytes of its own page.
      dma.readInto(0x4000, dst.subarray(0, 0x1000));
      dma.readInto(0x6000, dst.subarray(0x1000, 0x2000));
      expect(dst.subarray(0, 0x1000)).toEqual(mem.subarray(G + 0x4000, G + 0x5000));
      expect(dst.subarray(0x1000, 0x2000)).toEqual(mem.subarray(G + 0x6000, G + 0x7000));
    });
  }

  it('a read-only page in the middle: the write faults, memory and the dirty log stay as they were', async () => {
    const { vm, mem, map } = await setup();
    const dma = vm.dma(L);
    map(5, G + 5 * 0x1000, 1);
    vm.clearDirtyLog(0n);
    const before = Buffer.from(mem);
    for (const at of [0x3800, 0x3800n]) {
      expect(fault(() => dma.write(at, new Uint8Array(0x3000).fill(1)))).toMatchObject({ iova: 0x5000n, access: 'write', reason: 'no-permission' });
    }
    expect(Buffer.from(mem).equals(before)).toBe(true);
    expect(vm.dirtyLog(0n).every((x) => x === 0)).toBe(true);
    dma.write(0x4fff, Uint8Array.of(7));
    expect(vm.dirtyLog(0n).some((x) => x !== 0)).toBe(true);
  });

  it('a page mapped outside RAM in the middle: not-ram at its first byte, nothing touched', async () => {
    const { vm, mem, map } = await setup();
    const dma = vm.dma(L);
    map(5, 0x4000000);
    const dst = new Uint8Array(0x3000).fill(0xcd);
    expect(fault(() => dma.readInto(0x3800, dst))).toMatchObject({ iova: 0x5000n, reason: 'not-ram' });
    expect(dst.every((x) => x === 0xcd)).toBe(true);
    const before = Buffer.from(mem);
    expect(fault(() => dma.write(0x3800, dst))).toMatchObject({ iova: 0x5000n, access: 'write', reason: 'not-ram' });
    expect(Buffer.from(mem).equals(before)).toBe(true);
  });

  // planPages() gathers pages contiguous in guest memory into runs and checks RAM once per run: the run before a refused page must be checked first.
  it('the first unreachable address wins: a page outside RAM at the end of a contiguous run, a page without permission or the window end after it', async () => {
    const { vm, mem, map } = await setup();
    const dma = vm.dma(L);
    // Pages 3..5 contiguous in guest memory, running past the end of RAM (16 MiB): page 5 is not RAM, page 6 not readable.
    const END = 16 << 20;
    for (const [page, gpa] of [[3, END - 0x2000], [4, END - 0x1000], [5, END]] as const) map(page, gpa);
    map(6, G + 6 * 0x1000, 2);
    const dst = new Uint8Array(0x4000).fill(0xcd);
    for (const at of [0x3000, 0x3000n]) {
      expect(fault(() => dma.readInto(at, dst))).toMatchObject({ iova: 0x5000n, reason: 'not-ram' });
      expect(dst.every((x) => x === 0xcd)).toBe(true);
    }
    // With page 5 back in RAM the same read stops at page 6; the run of pages 3..4 then reads its own bytes.
    map(5, G + 5 * 0x1000);
    expect(fault(() => dma.readInto(0x3000, dst))).toMatchObject({ iova: 0x6000n, reason: 'no-permission' });
    dma.readInto(0x3000, dst.subarray(0, 0x2000));
    expect(dst.subarray(0, 0x2000)).toEqual(mem.subarray(END - 0x2000, END));
    // A run reaching the window's end (4096 pages): out-of-range after it, not-ram before it if its last page is outside RAM.
    map(4094, END - 0x1000);
    map(4095, END);
    expect(fault(() => dma.readInto(4094 * 0x1000, new Uint8Array(0x3000)))).toMatchObject({ iova: 4095n * 0x1000n, reason: 'not-ram' });
    map(4095, G);
    expect(fault(() => dma.readInto(4094 * 0x1000, new Uint8Array(0x3000)))).toMatchObject({ iova: 4096n * 0x1000n, reason: 'out-of-range' });
    const two = new Uint8Array(0x2000);
    dma.readInto(4094 * 0x1000, two);
    expect(two.subarray(0, 0x1000)).toEqual(mem.subarray(END - 0x1000, END));
    expect(two.subarray(0x1000)).toEqual(mem.subarray(G, G + 0x1000));
  });

  it('a bigint IOVA is converted exactly (2^32 - 1, 2^32, 2^53 - 1) and refused as before when negative or at 2^64', async () => {
    const { vm } = await setup();
    const dma = vm.dma(L);
    for (const at of [0xffff_ffffn, 1n << 32n, (1n << 53n) - 1n]) {
      expect(fault(() => dma.readInto(at, new Uint8Array(1)))).toMatchObject({ iova: at, reason: 'out-of-range' });
      expect(fault(() => dma.readInto(Number(at), new Uint8Array(1)))).toMatchObject({ iova: at, reason: 'out-of-range' });
    }
    expect(fault(() => dma.readInto((1n << 64n) - 1n, new Uint8Array(1)))).toMatchObject({ iova: (1n << 64n) - 1n, reason: 'out-of-range' });
    for (const bad of [-1n, 1n << 64n, -(1n << 63n)]) expect(thrown(() => dma.readInto(bad, new Uint8Array(1)))[0]).toBe('RangeError');
  });
});

describe('vm.dma: the cache follows the VM between two number-IOVA reads', () => {
  it('a TCE changed, bypass switched, a memslot removed and added again over other memory: each seen by the next read', async () => {
    const { vm, mem, map, host, qemu } = await setup();
    const dma = vm.dma(L);
    expect(dma.read(0x10, 4)).toEqual(mem.subarray(G + 0x10, G + 0x14));
    map(0, 0x300000);
    expect(dma.read(0x10, 4)).toEqual(mem.subarray(0x300010, 0x300014));
    vm.setTceBypass(L, true);
    expect(dma.read(0x10, 4)).toEqual(mem.subarray(0x10, 0x14));
    vm.setTceBypass(L, false);
    expect(dma.read(0x10, 4)).toEqual(mem.subarray(0x300010, 0x300014));
    vm.removeMemslot(0n);
    expect(fault(() => dma.read(0x10, 4))).toMatchObject({ iova: 0x10n, reason: 'not-ram' });
    const other = qemu.mmap(4n * MiB);
    other.bytes!.fill(0x5c);
    vm.addMemslot({ gpa: 0n, size: other.size, ua: other.ua });
    expect([...dma.read(0x10, 4)]).toEqual([0x5c, 0x5c, 0x5c, 0x5c]);
    host.checkInvariants();
  });
});

describe('vm.dma: the page masks of the number path', () => {
  it('for 4K, 64K, 16M, 256M and 16G IOMMU pages, bits of a TCE below the page size are dropped as vm.translate drops them', async () => {
    const { vm, mem } = await setup();
    for (const [i, shift] of [12, 16, 24, 28, 34].entries()) {
      const liobn = 0x2000n + BigInt(i);
      const page = 1n << BigInt(shift);
      vm.createTceTable({ liobn, pageShift: shift, offset: 0n, size: 4n });
      // Page 1 of the window → guest physical 0, with junk in the bits below the page size (bit 32 too, for the 16G page); QEMU stores any value.
      const junk = (page - 1n) & 0x1_0000_fff0n;
      expect(vm.hcall(H.PUT_TCE, liobn, page, junk | 3n).ret).toBe(H.SUCCESS);
      const dma = vm.dma(liobn);
      for (const off of [0x10n, page > 0x8000n ? 0x7ff0n : page - 0x20n]) {
        const t = vm.translate(liobn, page + off, 'read');
        expect(t, `shift ${shift}`).toMatchObject({ ok: true, gpa: off });
        expect(dma.read(Number(page + off), 0x20), `shift ${shift} +0x${off.toString(16)}`).toEqual(mem.subarray(Number(off), Number(off) + 0x20));
      }
    }
  });
});
