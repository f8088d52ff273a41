// vm.dma's cached translation (src/vmm/dma.ts): one accessor, kept across
// every change its cache depends on. Each case reads through an accessor
// that has already translated once (its cache built), changes one thing,
// and checks the next access sees the change: with a stale cache each
// would read the old memory or fault the old way.
import { describe, expect, it } from 'vitest';
import { Host, H, DmaFault } from '../../src/index.js';

const MiB = 1n << 20n;
const VIO = 0x71000002n;
const BUID = 0x800000020000000n;
const CFG = 0;
const HI = Number(BUID >> 32n);
const LO = Number(BUID & 0xffff_ffffn);
const G = 0x200000n;

async function setup() {
  const host = await Host.create({ maxMemory: 64 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const other = qemu.mmap(1n * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0n, size: 65536n });
  const put = (liobn: bigint, ioba: bigint, tce: bigint): void => {
    expect(vm.hcall(H.PUT_TCE, liobn, ioba, tce).ret).toBe(H.SUCCESS);
  };
  const bytes = ram.bytes!;
  bytes.fill(0);
  return { host, qemu, vm, ram, other, bytes, put };
}

const reason = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DmaFault);
    return (e as DmaFault).reason;
  }
  return 'none';
};

describe('vm.dma: the cached window and memslots are invalidated by every change', () => {
  it('a TCE changed between two accesses: the entry is read live (no IOTLB)', async () => {
    const { vm, bytes, put } = await setup();
    const dma = vm.dma(VIO);
    const dst = new Uint8Array(4);
    bytes.set([1, 1, 1, 1], Number(G));
    bytes.set([2, 2, 2, 2], Number(G + 0x1000n));
    put(VIO, 0x1000n, G | 3n);
    dma.readInto(0x1000n, dst);
    expect([...dst]).toEqual([1, 1, 1, 1]);
    put(VIO, 0x1000n, (G + 0x1000n) | 3n);
    dma.readInto(0x1000n, dst);
    expect([...dst]).toEqual([2, 2, 2, 2]);
    put(VIO, 0x1000n, (G + 0x1000n) | 1n);
    expect(reason(() => dma.write(0x1000n, dst))).toBe('no-permission');
    put(VIO, 0x1000n, 0n);
    expect(reason(() => dma.readInto(0x1000n, dst))).toBe('no-permission');
  });

  it('TCE bypass switched on and off (vm.setTceBypass and RTAS ibm,set-tce-bypass)', async () => {
    const { vm, bytes, put } = await setup();
    const dma = vm.dma(VIO);
    const dst = new Uint8Array(2);
    bytes.set([7, 7], Number(G));
    bytes.set([9, 9], 0x1000);
    put(VIO, 0x1000n, G | 3n);
    dma.readInto(0x1000n, dst);
    expect([...dst]).toEqual([7, 7]);
    vm.setTceBypass(VIO, true);
    dma.readInto(0x1000n, dst); // identity: guest physical 0x1000
    expect([...dst]).toEqual([9, 9]);
    vm.setTceBypass(VIO, false);
    dma.readInto(0x1000n, dst);
    expect([...dst]).toEqual([7, 7]);
    expect(vm.rtas('ibm,set-tce-bypass', [Number(VIO), 1], 1)).toEqual([0]);
    dma.readInto(0x1000n, dst);
    expect([...dst]).toEqual([9, 9]);
    // In bypass an unmapped IOVA is still RAM; past RAM it is not.
    expect(reason(() => dma.readInto(16n * MiB, dst))).toBe('not-ram');
    expect(vm.rtas('ibm,set-tce-bypass', [Number(VIO), 0], 1)).toEqual([0]);
    expect(reason(() => dma.readInto(0x5000n, dst))).toBe('no-permission');
  });

  it('a memslot removed, then another added at the same address backed by other memory', async () => {
    const { vm, ram, other, put } = await setup();
    const HOLE = 32n * MiB;
    vm.addMemslot({ gpa: HOLE, size: other.size, ua: other.ua });
    other.bytes!.fill(0x33);
    put(VIO, 0x1000n, HOLE | 3n);
    const dma = vm.dma(VIO);
    const dst = new Uint8Array(1);
    dma.readInto(0x1000n, dst);
    expect(dst[0]).toBe(0x33);
    vm.removeMemslot(HOLE);
    expect(reason(() => dma.readInto(0x1000n, dst))).toBe('not-ram');
    // Same guest physical range, now backed by the first MiB of `ram`.
    ram.bytes!.fill(0x44, 0, 1 << 20);
    vm.addMemslot({ gpa: HOLE, size: 1n * MiB, ua: ram.ua });
    dma.readInto(0x1000n, dst);
    expect(dst[0]).toBe(0x44);
  });

  it('a DDW window removed, created again with another page size, and reset (ibm,remove/create/reset-pe-dma-window)', async () => {
    const { vm, bytes } = await setup();
    vm.addPhb({ buid: BUID, index: 0 });
    const created = vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, 16, 24], 4);
    expect(created[0]).toBe(0);
    const liobn = BigInt(created[1]!);
    const bus = (BigInt(created[2]!) << 32n) | BigInt(created[3]!);
    const dma = vm.dma(liobn);
    const dst = new Uint8Array(2);
    bytes.set([5, 6], Number(G) + 0x10);
    expect(vm.hcall(H.PUT_TCE, liobn, bus, G | 3n).ret).toBe(H.SUCCESS);
    dma.readInto(bus + 0x10n, dst);
    expect([...dst]).toEqual([5, 6]);
    expect(vm.rtas('ibm,remove-pe-dma-window', [Number(liobn)], 1)).toEqual([0]);
    expect(reason(() => dma.readInto(bus + 0x10n, dst))).toBe('no-window');
    // Again, with 4K pages: the same LIOBN, a geometry the old cache would get wrong.
    const again = vm.rtas('ibm,create-pe-dma-window', [CFG, HI, LO, 12, 24], 4);
    expect(BigInt(again[1]!)).toBe(liobn);
    expect(reason(() => dma.readInto(bus + 0x10n, dst))).toBe('no-permission');
    expect(vm.hcall(H.PUT_TCE, liobn, bus + 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
    dma.readInto(bus + 0x1010n, dst);
    expect([...dst]).toEqual([5, 6]);
    expect(reason(() => dma.readInto(bus + 0x10000n, dst))).toBe('no-permission'); // page 16: 64K pages would have mapped it to G+0x10000
    expect(vm.rtas('ibm,reset-pe-dma-window', [CFG, HI, LO], 1)).toEqual([0]);
    expect(reason(() => dma.readInto(bus + 0x1010n, dst))).toBe('no-window');
  });

  it('vm.reset(): the entries cleared and bypass off', async () => {
    const { vm, bytes, put } = await setup();
    const dma = vm.dma(VIO);
    const dst = new Uint8Array(1);
    bytes[0x3000] = 0x77;
    put(VIO, 0x1000n, G | 3n);
    dma.readInto(0x1000n, dst);
    vm.setTceBypass(VIO, true);
    dma.readInto(0x3000n, dst);
    expect(dst[0]).toBe(0x77);
    vm.reset();
    expect(vm.tceBypass(VIO)).toBe(false);
    expect(reason(() => dma.readInto(0x3000n, dst))).toBe('no-permission');
    expect(reason(() => dma.readInto(0x1000n, dst))).toBe('no-permission');
  });

  it('readInto of a fault leaves dst as it was; readInto and read agree; methods work unbound', async () => {
    const { vm, bytes, put } = await setup();
    put(VIO, 0x1000n, G | 3n);
    put(VIO, 0x2000n, (G + 0x1000n) | 2n); // write-only
    bytes.fill(0xab, Number(G), Number(G) + 0x1000);
    const { readInto, read } = vm.dma(VIO);
    const dst = new Uint8Array(0x20).fill(0xcd);
    expect(reason(() => readInto(0x1ff0n, dst))).toBe('no-permission');
    expect(dst.every((b) => b === 0xcd)).toBe(true);
    readInto(0x1fe0n, dst);
    expect(dst).toEqual(read(0x1fe0n, 0x20));
    expect(() => readInto(0x1000n, [1] as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => readInto(-1n, dst)).toThrow(RangeError);
  });
});

/** mulberry32: a seeded PRNG, so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('vm.dma differential: readInto, read and write against a plain model over random maps', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}`, async () => {
      const rand = rng(seed);
      const int = (n: number): number => Math.floor(rand() * n);
      const host = await Host.create({ maxMemory: 64 << 20 });
      const qemu = host.spawn();
      const ram = qemu.mmap(1n * MiB);
      const hole = qemu.mmap(1n * MiB, { backed: false });
      const vm = qemu.createVm({ profile: 'qemu' });
      const HOLE = 8n * MiB;
      vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
      vm.addMemslot({ gpa: HOLE, size: hole.size, ua: hole.ua });
      // A 4K-page window at bus 0 and a 64K-page one at 2^59 (the BigInt IOVA path), 64 entries each.
      const wins = [
        { liobn: 0x10n, shift: 12n, bus: 0n },
        { liobn: 0x11n, shift: 16n, bus: 1n << 59n },
      ];
      for (const w of wins) vm.createTceTable({ liobn: w.liobn, pageShift: Number(w.shift), offset: w.bus >> w.shift, size: 64n });
      const model = new Map<string, bigint>();
      const mem = ram.bytes!;
      for (let i = 0; i < mem.length; i += 4096) mem[i + int(4096)] = int(256);
      const targets = (w: (typeof wins)[number]): bigint => {
        const r = int(10);
        if (r === 0) return HOLE; // a memslot without bytes
        if (r === 1) return 1n << 60n; // above 2^53, outside RAM: the general path
        if (r === 2) return ram.size - (1n << w.shift); // the last page of RAM
        return BigInt(int(Number(ram.size >> w.shift))) << w.shift;
      };
      for (let op = 0; op < 150; op++) {
        const w = wins[int(2)]!;
        const idx = BigInt(int(64));
        const tce = int(5) === 0 ? 0n : targets(w) | BigInt(int(4));
        expect(vm.hcall(H.PUT_TCE, w.liobn, w.bus + (idx << w.shift), tce).ret).toBe(H.SUCCESS);
        model.set(`${w.liobn}:${idx}`, tce);
        // The model's translation of one byte, or its fault.
        const at = (a: bigint, access: 1 | 2): bigint | string => {
          const rel = a - w.bus;
          if (rel < 0n || rel >= 64n << w.shift) return 'out-of-range';
          const t = model.get(`${w.liobn}:${rel >> w.shift}`) ?? 0n;
          if ((Number(t & 3n) & access) === 0) return 'no-permission';
          const gpa = (t & ~((1n << w.shift) - 1n)) | (rel & ((1n << w.shift) - 1n));
          if (gpa >= ram.size) return 'not-ram';
          return gpa;
        };
        for (let k = 0; k < 3; k++) {
          // Often near a page boundary, so that transfers cross pages; sometimes past the window's ends.
          const page = BigInt(int(66)) << w.shift;
          const start = w.bus + page + (int(2) === 0 ? BigInt(int(0x1000)) : -BigInt(int(0x1000)));
          if (start < 0n) continue;
          const len = int(3) === 0 ? int(16) : int(0x2800);
          const write = int(3) === 0;
          let expected: Uint8Array | { iova: bigint; reason: string } = new Uint8Array(len);
          for (let i = 0; i < len; i++) {
            const g = at(start + BigInt(i), write ? 2 : 1);
            if (typeof g === 'string') {
              expected = { iova: start + BigInt(i), reason: g };
              break;
            }
            (expected as Uint8Array)[i] = mem[Number(g)]!;
          }
          const dma = vm.dma(w.liobn);
          const what = `seed ${seed} op ${op}: ${write ? 'write' : 'read'} ${len} at 0x${start.toString(16)}`;
          if (write) {
            const data = Uint8Array.from({ length: len }, () => int(256));
            const before = Buffer.from(mem);
            let err: unknown;
            try {
              dma.write(start, data);
            } catch (e) {
              err = e;
            }
            if (expected instanceof Uint8Array) {
              expect(err, what).toBeUndefined();
              for (let i = 0; i < len; i++) before[Number(at(start + BigInt(i), 2))] = data[i]!;
            } else expect(err, what).toMatchObject(expected);
            expect(Buffer.from(mem).equals(before), what).toBe(true);
          } else {
            const dst = new Uint8Array(len).fill(0xee);
            if (expected instanceof Uint8Array) {
              dma.readInto(start, dst);
              expect(dst, what).toEqual(expected);
              expect(dma.read(start, len), what).toEqual(expected);
            } else {
              expect(() => dma.readInto(start, dst), what).toThrow(DmaFault);
              expect(dst.every((b) => b === 0xee), what).toBe(true);
              let err: unknown;
              try {
                dma.read(start, len);
              } catch (e) {
                err = e;
              }
              expect(err, what).toMatchObject(expected);
            }
          }
        }
      }
      host.checkInvariants();
    });
  }
});
