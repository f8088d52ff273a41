// Property (docs/semantics.md §2.1, §2.4, §3): random register/get/put/build/clear/overwrite sequences, failing ones and bad inputs included, agree with the reference model step by step; invariants hold; a failing call leaves the state byte-identical.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host, preregNew, preregGet, preregPut, regionsOf, IommuTable, TceError, type Process, type Mm } from '../../src/index.js';
import { ReferenceModel, ModelError } from '../model/reference.js';
import { digest, libEntries, libRegions, modelEntries, modelRegions, translator } from '../model/harness.js';

const PS = 1n << 16n;
const M16 = 1n << 24n;
const LIMIT_PAGES = 530n;

interface World {
  host: Host;
  procs: Process[]; // 0: parent, 1: parent's thread, 2: forked child
  mms: Mm[]; // 0: parent's, 1: child's
  maps: { ua: bigint; size: bigint }[]; // 0, 1: 16 normal pages each (hole between); 2: 32 MiB of 16 MiB huge pages
  tables: { t: IommuTable; mm: number; pick: number[] }[];
  model: ReferenceModel;
  touched: Map<number, Set<bigint>>;
}

async function makeWorld(): Promise<World> {
  const host = await Host.create({ maxMemory: 2 << 20 });
  const p = host.spawn({ memlockLimit: LIMIT_PAGES * PS });
  const a = p.mmap(16n * PS, { backed: false });
  const b = p.mmap(16n * PS, { backed: false });
  const h = p.mmap(2n * M16, { hugePageShift: 24, backed: false });
  const c = p.fork();
  const model = new ReferenceModel(16);
  const mk = (pageShift: number, windowSize: bigint, levels: number, busOffset: bigint, mm: Mm, pick: number[]) => {
    const t = IommuTable.create(host, { pageShift, windowSize, levels, busOffset }, true);
    t.viewMm = mm;
    model.createTable(t.id, { pageShift, windowSize, busOffset });
    return { t, mm: mm === p.mm ? 0 : 1, pick };
  };
  const tables = [
    mk(16, 1n << 24n, 2, 0n, p.mm, [0, 1, 2]), // 64K pages, padded to 8192 entries
    mk(24, 1n << 30n, 1, 1n << 30n, p.mm, [2, 0]), // 16M pages
    mk(12, 1n << 28n, 3, 1n << 59n, c.mm, [0, 1]), // 4K pages, 2^16 entries, in the child's mm
  ];
  return { host, procs: [p, p.thread(), c], mms: [p.mm, c.mm], maps: [a, b, h], tables, model, touched: new Map(tables.map((x) => [x.t.id, new Set<bigint>()])) };
}

type Cmd =
  | { k: 'reg'; proc: number; map: number; off: number; n: number; skew: boolean }
  | { k: 'get'; mm: number; pick: number; delta: number }
  | { k: 'put'; mm: number; pick: number }
  | { k: 'build'; tbl: number; entry: number; end: boolean; n: number; map: number; off: number; perm: number; fromRegion: boolean }
  | { k: 'clear'; tbl: number; entry: number; end: boolean; n: number }
  | { k: 'bad'; which: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('reg' as const), proc: fc.nat(2), map: fc.nat(2), off: fc.nat(16), n: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 17 }) }, { weight: 1, arbitrary: fc.constantFrom(256, 512) }), skew: fc.integer({ min: 0, max: 4 }).map((x) => x === 0) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('get' as const), mm: fc.nat(1), pick: fc.nat(5), delta: fc.constantFrom(0, 0, 0, 1, -1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('put' as const), mm: fc.nat(1), pick: fc.nat(5) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('build' as const), tbl: fc.nat(2), entry: fc.nat(24), end: fc.integer({ min: 0, max: 6 }).map((x) => x === 0), n: fc.integer({ min: 0, max: 8 }), map: fc.nat(1), off: fc.nat(16), perm: fc.integer({ min: 1, max: 3 }), fromRegion: fc.integer({ min: 0, max: 3 }).map((x) => x > 0) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('clear' as const), tbl: fc.nat(2), entry: fc.nat(24), end: fc.integer({ min: 0, max: 6 }).map((x) => x === 0), n: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('bad' as const), which: fc.nat(9) }) },
);

function outcome(fn: () => void): { code?: string; err?: unknown } {
  try {
    fn();
    return {};
  } catch (e) {
    if (e instanceof TceError || e instanceof ModelError) return { code: e.code, err: e };
    return { code: 'JS', err: e };
  }
}

/** Applies one command to the library and the model; returns what each did and whether a failure may allocate table levels. */
function step(w: World, c: Cmd): { lib: ReturnType<typeof outcome>; ref: ReturnType<typeof outcome>; mayGrowLevels: boolean; bad: boolean } {
  const { model } = w;
  switch (c.k) {
    case 'reg': {
      const p = w.procs[c.proc]!;
      const m = w.maps[c.map]!;
      const ua = m.ua + BigInt(c.map === 2 ? (c.off % 3) * 256 : c.off) * PS + (c.skew ? 0x1000n : 0n);
      const n = BigInt(c.n);
      const ref = outcome(() => void model.register(p.mm.id, LIMIT_PAGES, ua, n, translator(p)));
      const lib = outcome(() => void preregNew(p, ua, n));
      return { lib, ref, mayGrowLevels: false, bad: false };
    }
    case 'get': {
      const mm = w.mms[c.mm]!;
      const regs = model.mm(mm.id).regions;
      if (regs.length === 0) return { lib: {}, ref: {}, mayGrowLevels: false, bad: false };
      const r = regs[c.pick % regs.length]!;
      const n = r.entries + BigInt(c.delta);
      const refR = model.get(mm.id, r.ua, n);
      const libR = preregGet(mm, r.ua, n);
      expect(libR === undefined).toBe(refR === undefined);
      return { lib: {}, ref: {}, mayGrowLevels: false, bad: false };
    }
    case 'put': {
      const mm = w.mms[c.mm]!;
      const regs = [...model.mm(mm.id).regions].sort((a, b) => (a.ua < b.ua ? -1 : 1));
      if (regs.length === 0) return { lib: {}, ref: {}, mayGrowLevels: false, bad: false };
      const r = regs[c.pick % regs.length]!;
      const libR = regionsOf(mm).find((x) => x.ua === r.ua)!;
      const ref = outcome(() => model.put(mm.id, r));
      const lib = outcome(() => preregPut(mm, libR));
      return { lib, ref, mayGrowLevels: false, bad: false };
    }
    case 'build': {
      const { t, mm: mmIdx, pick } = w.tables[c.tbl]!;
      const mm = w.mms[mmIdx]!;
      const m = w.maps[pick[c.map % pick.length]!]!;
      const page = 1n << BigInt(t.pageShift);
      let ua = m.ua + BigInt(t.pageShift === 24 ? c.off % 3 : c.off) * page;
      const regs = model.mm(mm.id).regions;
      if (c.fromRegion && regs.length > 0) {
        // mostly inside a registered region (page by page it may still run out of it)
        const r = regs[c.off % regs.length]!;
        const start = (r.ua + page - 1n) & ~(page - 1n);
        const pages = (r.ua + r.entries * PS - start) / page;
        ua = start + (pages > 0n ? BigInt(c.map * 7 + c.off) % pages : 0n) * page;
      }
      const entry = t.offset + (c.end ? t.size - BigInt(c.entry % 5) : BigInt(c.entry));
      const n = BigInt(c.n);
      const argFail = !(entry >= t.offset && entry + n <= t.offset + t.size);
      for (let i = 0n; i < n; i++) w.touched.get(t.id)!.add(entry + i);
      const ref = outcome(() => model.buildV2(t.id, mm.id, entry, n, ua, c.perm));
      const lib = outcome(() => t.buildV2(mm, entry, n, ua, c.perm));
      return { lib, ref, mayGrowLevels: !argFail, bad: false };
    }
    case 'clear': {
      const { t, mm: mmIdx } = w.tables[c.tbl]!;
      const mm = w.mms[mmIdx]!;
      const entry = t.offset + (c.end ? t.size - BigInt(c.entry % 5) : BigInt(c.entry));
      const n = BigInt(c.n);
      const ref = outcome(() => model.clearV2(t.id, mm.id, entry, n));
      const lib = outcome(() => t.clearV2(mm, entry, n));
      return { lib, ref, mayGrowLevels: false, bad: false };
    }
    case 'bad': {
      const p = w.procs[0]!;
      const t = w.tables[0]!.t;
      const ua = w.maps[0]!.ua;
      const any = (x: unknown) => x as never;
      const calls: (() => unknown)[] = [
        () => preregNew(p, -PS, 1n),
        () => preregNew(p, ua, any(1.5)),
        () => preregNew(p, any(String(ua)), 1n),
        () => preregGet(p.mm, ua, -1n),
        () => t.buildV2(p.mm, 0n, 1n, ua, 0),
        () => t.buildV2(p.mm, 0n, 1n, ua, 4),
        () => t.buildV2(p.mm, -1n, 1n, ua, 1),
        () => t.clearV2(p.mm, 0n, any(2 ** 53)),
        () => t.get(1n << 64n),
        () => t.getUa(any(-1)),
      ];
      const lib = outcome(() => void calls[c.which % calls.length]!());
      return { lib, ref: { code: 'JS' }, mayGrowLevels: false, bad: true };
    }
  }
}

function compare(w: World): void {
  const { model } = w;
  for (const mm of w.mms) {
    expect(libRegions(mm)).toEqual(modelRegions(model, mm.id));
    expect(mm.lockedPages).toBe(model.mm(mm.id).lockedPages);
  }
  for (const { t } of w.tables) {
    expect(libEntries(t)).toEqual(modelEntries(model, t.id));
    for (const e of w.touched.get(t.id)!) {
      expect(t.get(e)).toBe(model.tceAt(t.id, e));
      expect(t.getUa(e)).toBe(model.uaAt(t.id, e));
    }
  }
  w.host.checkInvariants();
}

function modelSnapshot(w: World): string {
  const parts: string[] = [];
  for (const mm of w.mms) parts.push(JSON.stringify(modelRegions(w.model, mm.id), (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
  for (const { t } of w.tables) parts.push([...modelEntries(w.model, t.id)].map(([e, [tce, ua]]) => `${e}:${tce}:${ua}`).join(','));
  return parts.join('|');
}

function statsWithoutMemory(h: Host): string {
  const { memory: _m, ...rest } = h.stats();
  return JSON.stringify(rest, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

const tally = new Map<string, number>();

describe('property: prereg + v2 tables against the reference model', () => {
  it('random sequences agree with the model, keep the invariants, and failures change nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 40 }), async (cmds) => {
        const w = await makeWorld();
        for (const c of cmds) {
          const before = digest(w.host);
          const statsBefore = statsWithoutMemory(w.host);
          const heapBefore = w.host.stats().memory.heapUsedBytes;
          const levelBytesBefore = w.tables.reduce((s, x) => s + x.t.memoryBytes, 0n);
          const modelBefore = modelSnapshot(w);
          const { lib, ref, mayGrowLevels, bad } = step(w, c);
          if (process.env.PROP_STATS) { const key = `${c.k}${c.k === "build" ? c.tbl : ""}:${lib.code ?? "ok"}${c.k === "build" && ref.err ? (ref.err as Error).message.slice(7, 20) : ""}`; tally.set(key, (tally.get(key) ?? 0) + 1); }
          if (bad) {
            expect(lib.code, `bad input ${JSON.stringify(c)} was accepted`).toBeDefined();
            expect(lib.err).not.toBeInstanceOf(WebAssembly.RuntimeError);
            if (lib.code === 'JS') expect(lib.err instanceof TypeError || lib.err instanceof RangeError).toBe(true);
          } else {
            expect(lib.code, `${JSON.stringify(c)}: library ${String(lib.err)} vs model ${String(ref.err)}`).toBe(ref.code);
          }
          compare(w);
          if (lib.code !== undefined) {
            if (mayGrowLevels) {
              // A build that failed after its argument checks may leave the levels it
              // allocated on the way (the kernel's useraddrptr(alloc=true) does too);
              // nothing else may change.
              expect(statsWithoutMemory(w.host)).toBe(statsBefore);
              const levelBytes = w.tables.reduce((s, x) => s + x.t.memoryBytes, 0n);
              expect(BigInt(w.host.stats().memory.heapUsedBytes - heapBefore)).toBe(levelBytes - levelBytesBefore);
              // With no level allocated and no entry lost to the rollback, the failure is byte-identical.
              if (levelBytes === levelBytesBefore && modelBefore === modelSnapshot(w)) expect(digest(w.host)).toBe(before);
            } else {
              expect(digest(w.host), `${JSON.stringify(c)} failed (${String(lib.err)}) but changed the state`).toBe(before);
            }
          }
        }
      }),
      { numRuns: 1000, verbose: 1 },
    );
    if (process.env.PROP_STATS) console.log([...tally].sort().map(([k, v]) => `${k}=${v}`).join(' '));
  });
});
