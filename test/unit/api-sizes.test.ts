// Sizes and addresses (docs/semantics.md §1.1): every u64 argument of the
// public API takes a bigint, or a number that is a safe integer, with the
// same effect; results are bigints. A number that is not a safe integer, a
// fraction, a negative value, 2^64 or more, or another type is refused
// (RangeError or TypeError naming the argument) and changes nothing.
// maxMemory follows the same rule.
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/index.js';
import { world, state, refused, any, LIOBN, VIO } from './api-helpers.js';

type World = Awaited<ReturnType<typeof world>>;
/** How a test spells a u64: as the bigint itself, or as a number. */
type Spell = (x: bigint) => bigint | number;
const asBig: Spell = (x) => x;
const asNumber: Spell = (x) => Number(x);

/** Calls whose u64 arguments all go through `N`: with bigints and with numbers they must leave equal states. */
const CALLS: { what: string; call: (w: World, N: Spell) => unknown }[] = [
  { what: 'mmap(size)', call: (w, N) => w.p.mmap(N(1n << 16n)) },
  { what: 'fd.registerMemory(vaddr, size) / unregisterMemory', call: (w, N) => {
    const r = w.p.mmap(1n << 20n);
    w.fd.registerMemory(N(r.ua), N(r.size));
    w.fd.unregisterMemory(N(r.ua), N(1n << 20n));
  } },
  { what: 'fd.createWindow({windowSize}) / removeWindow(startAddr)', call: (w, N) => {
    // the new window starts at 2^59 (no number can say that exactly): the old one at 0 goes
    expect(w.fd.createWindow({ pageShift: 16, windowSize: N(1n << 30n), levels: 2 }).startAddr).toBe(1n << 59n);
    w.fd.removeWindow(N(0n));
  } },
  { what: 'fd.mapDma / unmapDma({iova, vaddr, size})', call: (w, N) => {
    w.fd.mapDma({ iova: N(0x2000n), vaddr: N(w.ram.ua + 0x2000n), size: N(0x3000n), read: true });
    w.fd.unmapDma({ iova: N(0x3000n), size: N(0x1000n) });
  } },
  { what: 'vm.addMemslot({gpa, size, ua}) / removeMemslot(gpa)', call: (w, N) => {
    const r = w.p.mmap(1n << 20n);
    w.vm.addMemslot({ gpa: N(1n << 40n), size: N(r.size), ua: N(r.ua) });
    w.vm.addMemslot({ gpa: N(1n << 41n), size: N(r.size), ua: N(r.ua) });
    w.vm.removeMemslot(N(1n << 40n));
  } },
  { what: 'vm.createTceTable({offset, size})', call: (w, N) => w.vm.createTceTable({ liobn: 7, pageShift: 16, offset: N(1n << 40n), size: N(4096n) }) },
  { what: 'host.addGroup({tce32Start, tce32Size})', call: (w, N) => w.host.addGroup({ tce32Start: N(1n << 20n), tce32Size: N(1n << 28n), ddw: false }) },
  { what: 'host.spawn({memlockLimit})', call: (w, N) => w.host.spawn({ memlockLimit: N(1n << 30n) }).mmap(1n << 16n) },
  { what: 'vm.addPhb({buid, dma32, dma64Addr, pageSizeMask})', call: (w, N) => w.qvm.addPhb({ buid: N(0x1234n), index: 3, dma32: { addr: N(1n << 30n), size: N(1n << 28n) }, dma64Addr: N(1n << 40n), pageSizeMask: N(0x1000n | 0x10000n) }) },
  { what: 'vm.dma().write/read(iova), vm.translate(iova), vm.guestEntry(idx)', call: (w, N) => {
    w.qvm.hcall(0x20, VIO, 0x1000n, 0x5000n | 3n);
    const d = w.qvm.dma(VIO);
    d.write(N(0x1010n), Uint8Array.of(1, 2, 3));
    expect([...d.read(N(0x1010n), 3)]).toEqual([1, 2, 3]);
    expect(w.qvm.translate(VIO, N(0x1234n))).toEqual({ ok: true, gpa: 0x5234n, pageIova: 0x1000n, pageSize: 0x1000n, perm: 3 });
    expect(w.qvm.guestEntry(w.qvm.tables.get(VIO)!, N(1n))).toBe(0x5003n);
  } },
];

describe('a u64 argument takes a bigint or a safe-integer number, to the same effect', () => {
  for (const c of CALLS) {
    it(c.what, async () => {
      const a = await world();
      const b = await world();
      expect(state(a.host)).toBe(state(b.host));
      c.call(a, asBig);
      c.call(b, asNumber);
      expect(state(b.host), 'numbers and bigints gave different states').toBe(state(a.host));
      // and the call did something: the state moved
      const fresh = await world();
      expect(state(a.host)).not.toBe(state(fresh.host));
    });
  }

  it('results are bigints whatever the arguments were', async () => {
    const w = await world();
    const m = w.p.mmap(65536);
    expect(typeof m.ua).toBe('bigint');
    expect(m.size).toBe(65536n);
    const { startAddr } = w.fd.createWindow({ pageShift: 16, windowSize: 2 ** 30, levels: 2 });
    expect(typeof startAddr).toBe('bigint');
    const t = w.vm.createTceTable({ liobn: 9, pageShift: 12, offset: 0, size: 16 });
    expect(t).toMatchObject({ liobn: 9n, offset: 0n, size: 16n });
    expect(w.vm.memslots.every((s) => typeof s.gpa === 'bigint')).toBe(true);
  });

  it('Host.create: maxMemory as a bigint or a number (and memlockLimit too)', async () => {
    const a = await Host.create({ maxMemory: 8n << 20n, memlockLimit: 1n << 20n });
    const b = await Host.create({ maxMemory: 8 << 20, memlockLimit: 1 << 20 });
    expect(a.stats().memory.bytes).toBe(8 << 20);
    expect(b.stats()).toEqual(a.stats());
    expect(b.memlockLimit).toBe(1n << 20n);
    for (const [bad, kind, msg] of [
      [2 ** 53, RangeError, /^opts\.maxMemory must be a safe integer when it is a number \(pass a bigint\), got 9007199254740992$/],
      [(8 << 20) + 0.5, RangeError, /^opts\.maxMemory must be an integer/],
      [1n << 19n, RangeError, /^opts\.maxMemory must be in \[1048576, 4294901760\], got 524288n$/],
      [1n << 32n, RangeError, /^opts\.maxMemory must be in \[1048576, 4294901760\]/],
      [-1, RangeError, /^opts\.maxMemory must be in/],
      ['8M', TypeError, /^opts\.maxMemory must be a bigint or a number, got the string "8M"$/],
    ] as const) {
      await expect(Host.create({ maxMemory: any(bad) })).rejects.toThrow(kind);
      await expect(Host.create({ maxMemory: any(bad) })).rejects.toThrow(msg);
    }
  });
});

/** Calls with one u64 argument replaced by `x`, and the name the refusal must give. */
const ARGS: { arg: string; call: (w: World, x: unknown) => unknown; optional?: true }[] = [
  { arg: 'size', call: (w, x) => w.p.mmap(any(x)) },
  { arg: 'vaddr', call: (w, x) => w.fd.registerMemory(any(x), 1n << 16n) },
  { arg: 'size', call: (w, x) => w.fd.unregisterMemory(w.ram.ua, any(x)) },
  { arg: 'windowSize', call: (w, x) => w.fd.createWindow({ pageShift: 16, windowSize: any(x), levels: 2 }) },
  { arg: 'startAddr', call: (w, x) => w.fd.removeWindow(any(x)) },
  { arg: 'iova', call: (w, x) => w.fd.mapDma({ iova: any(x), vaddr: w.ram.ua, size: 0x1000n, read: true }) },
  { arg: 'vaddr', call: (w, x) => w.fd.mapDma({ iova: 0x1000n, vaddr: any(x), size: 0x1000n, read: true }) },
  { arg: 'size', call: (w, x) => w.fd.unmapDma({ iova: 0n, size: any(x) }) },
  { arg: 'gpa', call: (w, x) => w.vm.addMemslot({ gpa: any(x), size: 1n << 16n, ua: w.ram.ua }) },
  { arg: 'ua', call: (w, x) => w.vm.addMemslot({ gpa: 1n << 40n, size: 1n << 16n, ua: any(x) }) },
  { arg: 'gpa', call: (w, x) => w.vm.removeMemslot(any(x)) },
  { arg: 'offset', call: (w, x) => w.vm.createTceTable({ liobn: 7n, pageShift: 12, offset: any(x), size: 1n }) },
  { arg: 'size', call: (w, x) => w.vm.createTceTable({ liobn: 7n, pageShift: 12, offset: 0n, size: any(x) }) },
  { arg: 'opts.tce32Size', call: (w, x) => w.host.addGroup({ tce32Size: any(x) }), optional: true },
  { arg: 'opts.memlockLimit', call: (w, x) => w.host.spawn({ memlockLimit: any(x) }), optional: true },
  { arg: 'opts.dma32.size', call: (w, x) => w.qvm.addPhb({ buid: 5n, index: 2, dma32: { addr: 0n, size: any(x) } }) },
  { arg: 'iova', call: (w, x) => w.vm.translate(LIOBN, any(x)) },
  { arg: 'iova', call: (w, x) => w.qvm.dma(VIO).write(any(x), Uint8Array.of(1)) },
  { arg: 'idx', call: (w, x) => w.vm.guestEntry(w.vm.tables.get(LIOBN)!, any(x)) },
];

const BAD: { what: string; x: unknown; kind: RangeErrorConstructor | TypeErrorConstructor; says: string }[] = [
  { what: 'a number past 2^53', x: 2 ** 53, kind: RangeError, says: 'must be a safe integer when it is a number \\(pass a bigint\\)' },
  { what: 'a fraction', x: 4096.5, kind: RangeError, says: 'must be an integer' },
  { what: 'a negative number', x: -4096, kind: RangeError, says: 'must be in' },
  { what: 'a negative bigint', x: -4096n, kind: RangeError, says: 'must be in' },
  { what: '2^64', x: 1n << 64n, kind: RangeError, says: 'must be in' },
  { what: 'NaN', x: Number.NaN, kind: RangeError, says: 'must be an integer' },
  { what: 'a string', x: '4096', kind: TypeError, says: 'must be a bigint or a number' },
  { what: 'null', x: null, kind: TypeError, says: 'must be a bigint or a number' },
  { what: 'undefined', x: undefined, kind: TypeError, says: 'is required' },
];

describe('a bad u64 is refused, naming the argument, and changes nothing', () => {
  ARGS.forEach((a, i) => {
    it(`#${i}: ${a.arg}`, async () => {
      const w = await world();
      const esc = a.arg.replace(/\./g, '\\.');
      // an optional option left undefined is its default, not an error
      for (const b of BAD) if (!(a.optional && b.x === undefined)) refused(w.host, () => a.call(w, b.x), b.kind, new RegExp(`^${esc} ${b.says}`));
    });
  });
});
