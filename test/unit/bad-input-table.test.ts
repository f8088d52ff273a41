// Bad input to TCE tables (docs/semantics.md §1 "Errors", §2.2, §2.4): create/get/getUa/buildV2/clearV2/xchg/nextValid/getTableSize/checkGeometry reject bad arguments with an error naming them, never a WebAssembly trap, state untouched.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE, getTableSize, checkGeometry } from '../../src/index.js';
import { expectRejected } from '../model/harness.js';

async function setup() {
  const host = await Host.create();
  const p = host.spawn();
  const ram = p.mmap(1n << 20n);
  preregNew(p, ram.ua, 16n);
  const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
  t.viewMm = p.mm;
  t.buildV2(p.mm, 3n, 2n, ram.ua, TCE.READ);
  return { host, p, ram, t };
}
const any = (x: unknown) => x as never;
const geo = { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n };

describe('bad input: IommuTable.create', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['pageShift', { pageShift: '16' }],
    ['pageShift', { pageShift: 16.5 }],
    ['pageShift', { pageShift: -16 }],
    ['windowSize', { windowSize: 2 ** 60 }],
    ['windowSize', { windowSize: -(1n << 30n) }],
    ['levels', { levels: 2.5 }],
    ['levels', { levels: '2' }],
    ['busOffset', { busOffset: 0.5 }],
    ['busOffset', { busOffset: 1n << 64n }],
    ['busOffset', { busOffset: 0x8000n }], // not aligned to the 64K IOMMU page: TceError EINVAL naming busOffset
  ];
  for (const [arg, patch] of cases) {
    it(`${arg} = ${String(Object.values(patch)[0])}`, async () => {
      const { host } = await setup();
      expectRejected(host, () => IommuTable.create(host, any({ ...geo, ...patch }), true), arg);
    });
  }
  it('v2 not a boolean', async () => {
    const { host } = await setup();
    expectRejected(host, () => IommuTable.create(host, geo, any('yes')), 'v2');
  });
});

describe('bad input: get / getUa / nextValid / xchg', () => {
  it('entry negative, ≥ 2^64, a fraction or a string', async () => {
    const { host, t } = await setup();
    for (const e of [-1n, 1n << 64n, 3.5, '3', undefined]) {
      expectRejected(host, () => t.get(any(e)), 'entry');
      expectRejected(host, () => t.getUa(any(e)), 'entry');
      expectRejected(host, () => t.nextValid(any(e), t.size), 'entry');
    }
    expectRejected(host, () => t.nextValid(0n, any(-1n)), 'end');
  });
  it('xchg: tce of the wrong type, an entry outside the table', async () => {
    const { host, t } = await setup();
    expectRejected(host, () => t.xchg(100n, any(2 ** 64)), 'tce');
    expectRejected(host, () => t.xchg(100n, -1n), 'tce');
    expectRejected(host, () => t.xchg(t.size, 0x10000n | 1n), 'entry');
  });
});

describe('bad input: buildV2', () => {
  const cases: [string, (s: Awaited<ReturnType<typeof setup>>) => void][] = [
    ['entry', ({ p, ram, t }) => t.buildV2(p.mm, -1n, 1n, ram.ua, 1)],
    ['entry', ({ p, ram, t }) => t.buildV2(p.mm, any(5.5), 1n, ram.ua, 1)],
    ['n', ({ p, ram, t }) => t.buildV2(p.mm, 5n, any(2 ** 53), ram.ua, 1)],
    ['n', ({ p, ram, t }) => t.buildV2(p.mm, 5n, -1n, ram.ua, 1)],
    ['n', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n << 64n, ram.ua, 1)],
    ['ua', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, any(String(ram.ua)), 1)],
    ['ua', ({ p, t }) => t.buildV2(p.mm, 5n, 1n, -65536n, 1)],
    ['perm', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, ram.ua, 0)],
    ['perm', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, ram.ua, 4)],
    ['perm', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, ram.ua, 1.5)],
    ['perm', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, ram.ua, any('rw'))],
    ['mm', ({ ram, t }) => t.buildV2(any(undefined), 5n, 1n, ram.ua, 1)],
    ['mm', ({ ram, t }) => t.buildV2(any({ desc: 12345 }), 5n, 1n, ram.ua, 1)],
    ['realMode', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, ram.ua, 1, any({ realMode: 'no' }))],
    ['checkPidOf', ({ p, ram, t }) => t.buildV2(p.mm, 5n, 1n, ram.ua, 1, any({ checkPidOf: 'x' }))],
  ];
  cases.forEach(([arg, call], i) => {
    it(`#${i}: ${arg}`, async () => {
      const s = await setup();
      expectRejected(s.host, () => call(s), arg);
    });
  });
  it('an mm of another host is refused', async () => {
    const s = await setup();
    const other = await Host.create();
    const q = other.spawn();
    const ram = q.mmap(1n << 20n);
    preregNew(q, ram.ua, 16n);
    expectRejected(s.host, () => s.t.buildV2(q.mm, 5n, 1n, ram.ua, 1), 'mm');
  });
  it('an unaligned ua or a range outside the table is EINVAL', async () => {
    const s = await setup();
    expectRejected(s.host, () => s.t.buildV2(s.p.mm, 5n, 1n, s.ram.ua + 0x1000n, 1), 'ua');
    expectRejected(s.host, () => s.t.buildV2(s.p.mm, s.t.size - 1n, 2n, s.ram.ua, 1), 'entries');
  });
});

describe('bad input: clearV2', () => {
  it('entry / n of the wrong type or range, range outside the table', async () => {
    const s = await setup();
    expectRejected(s.host, () => s.t.clearV2(s.p.mm, -1n, 1n), 'entry');
    expectRejected(s.host, () => s.t.clearV2(s.p.mm, any(3.5), 1n), 'entry');
    expectRejected(s.host, () => s.t.clearV2(s.p.mm, 3n, any('2')), 'n');
    expectRejected(s.host, () => s.t.clearV2(s.p.mm, 3n, 1n << 64n), 'n');
    expectRejected(s.host, () => s.t.clearV2(s.p.mm, 3n, s.t.size), 'entries');
  });
  it('mm not an Mm', async () => {
    const s = await setup();
    expectRejected(s.host, () => s.t.clearV2(any(null), 3n, 2n), 'mm');
  });
});

describe('bad input: freed table', () => {
  it('get on a freed table throws instead of reading freed memory', async () => {
    const { host, t } = await setup();
    const m = host.spawn().mm;
    t.clearV2(m, 0n, t.size); // (through an mm without regions: the counts are not the point here)
    t.free();
    expectRejected(host, () => t.get(3n), 'table');
  });
});

describe('bad input: getTableSize / checkGeometry', () => {
  const check = (fn: () => unknown, arg: string) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err instanceof TypeError || err instanceof RangeError, `${arg}: expected TypeError/RangeError, got ${String(err)}`).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`\\b${arg}\\b`));
  };
  const cases: [string, string, () => unknown][] = [
    ['getTableSize', 'pageShift', () => getTableSize(any('16'), 1n << 30n, 2, 16)],
    ['getTableSize', 'pageShift', () => getTableSize(16.5, 1n << 30n, 2, 16)],
    ['getTableSize', 'windowSize', () => getTableSize(16, any(2 ** 60), 2, 16)],
    ['getTableSize', 'levels', () => getTableSize(16, 1n << 30n, 2.5, 16)],
    ['getTableSize', 'sysPageShift', () => getTableSize(16, 1n << 30n, 2, any('16'))],
    ['checkGeometry', 'windowSize', () => checkGeometry(any({ ...geo, windowSize: 2 ** 60 }), 16)],
    ['checkGeometry', 'levels', () => checkGeometry(any({ ...geo, levels: 2.5 }), 16)],
    ['checkGeometry', 'pageShift', () => checkGeometry(any({ ...geo, pageShift: '16' }), 16)],
    ['checkGeometry', 'sysPageShift', () => checkGeometry(geo, any('16'))],
  ];
  cases.forEach(([fn, arg, call], i) => {
    it(`#${i}: ${fn} with a bad ${arg}`, () => check(call, arg));
  });
});
