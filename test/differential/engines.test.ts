// Differential test of the two engines: seeded random sequences of
// operations (pre-registration through src/prereg.ts, tables, v2 build and
// clear, v1 exchange, raw engine calls, failing calls of every kind) run on
// two hosts, one with the WebAssembly engine and one with the C++ engine.
// After every step the outcomes must be equal, the linear memories
// byte-identical up to the allocator's top, and checkInvariants() must hold
// on both.
//
// Reproduce a failure with the seed it prints:
//   DIFF_SEED=1234 npx vitest run test/differential/engines.test.ts
// DIFF_STEPS sets the steps per seed, DIFF_SEEDS the number of seeds,
// DIFF_TRACE=1 prints every operation and its outcome.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, preregGet, preregPut, IommuTable, TceError, type Process, type Region } from '../../src/index.js';
import { nativeLoadError } from '../../src/engine/native.js';
import { HEADER_BASE, HEAP_BASE, HDR_ALLOC_TOP, OP_ALLOC, OP_CHECK_PID } from '../../src/generated/layout.js';
import { Rng, nativeAvailable, json, allocTop, firstDiff, invariants } from './support.js';


/** A block size for a bad free(), varied by the pointer (deterministic). */
const rng64 = (p: number): number => [64, 128, 4096][p % 3]!;


interface Mapping { proc: number; ua: bigint; size: bigint; pageShift: number }
interface TableRec { t: IommuTable; v2: boolean; proc: number }

/** What one host knows; both hosts' worlds evolve identically while the engines agree. */
class World {
  readonly procs: Process[];
  readonly maps: Mapping[] = [];
  readonly regions: { proc: number; r: Region; refs: number }[] = [];
  readonly tables: TableRec[] = [];
  readonly blocks: [number, number][] = [];
  constructor(readonly host: Host) {
    this.procs = [host.spawn(), host.spawn(), host.spawn()];
  }
}

/** An operation, chosen once from world A and applied to both worlds. */
type Op = { kind: string; [k: string]: unknown };

type Outcome = { ok: unknown } | { err: string; code?: string; msg: string };

const str = (v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);

function outcome(f: () => unknown): Outcome {
  try {
    const v = f();
    if (v instanceof IommuTable) return { ok: `table@${v.desc}` };
    if (v && typeof v === 'object' && 'desc' in v) return { ok: `desc@${(v as { desc: number }).desc}` };
    return { ok: Array.isArray(v) ? v.map(str) : str(v) };
  } catch (e) {
    if (e instanceof TceError) return { err: 'TceError', code: e.code, msg: e.message };
    // The native engine adds where it trapped after the WebAssembly message.
    if (e instanceof WebAssembly.RuntimeError) return { err: 'RuntimeError', msg: e.message.replace(/ \(native engine.*$/s, '') };
    const err = e as Error;
    return { err: err.constructor?.name ?? 'unknown', msg: String(err.message) };
  }
}

/** Chooses the next operation from world `w` (world A). */
function nextOp(rng: Rng, w: World): Op {
  const sys = w.host.pageShift;
  const memLen = w.host.mem.byteLength;
  const roll = rng.int(0, 99);
  const v2Tables = w.tables.filter((x) => x.v2);
  const v1Tables = w.tables.filter((x) => !x.v2);
  if (roll < 6 || w.maps.length === 0) {
    const huge = rng.chance(0.25) ? rng.pick(sys === 12 ? [16, 21, 24] : [21, 24]) : sys;
    const pages = huge === sys ? rng.int(1, 48) : rng.int(1, 3);
    return { kind: 'mmap', proc: rng.int(0, 1), size: BigInt(pages) << BigInt(huge), huge };
  }
  if (roll < 14) {
    const m = rng.pick(w.maps);
    const sysPages = Number(m.size >> BigInt(sys));
    let first = rng.int(0, sysPages - 1);
    let entries = rng.int(1, sysPages - first);
    if (rng.chance(0.3)) [first, entries] = [0, sysPages];
    let ua = m.ua + (BigInt(first) << BigInt(sys));
    if (rng.chance(0.08)) entries += rng.int(1, 4); // runs into the unmapped hole after the mapping: EFAULT
    if (rng.chance(0.04)) ua += 8n; // misaligned: EINVAL
    const proc = rng.chance(0.9) ? m.proc : 1 - m.proc; // the other mm has nothing there: EFAULT
    return { kind: 'register', proc, ua, entries: BigInt(entries) };
  }
  if (roll < 18 && w.regions.length) {
    return { kind: rng.chance(0.3) ? 'regionGet' : 'unregister', i: rng.int(0, w.regions.length - 1) };
  }
  if (roll < 23 && w.tables.length < 6) {
    const pageShift = rng.pick(sys === 12 ? [12, 12, 16, 16, 21, 24] : [16, 16, 16, 21, 24]);
    const es = rng.chance(0.1) ? rng.int(18, 26) : rng.int(0, 14);
    let levels = rng.int(1, 5);
    if (rng.chance(0.04)) levels = rng.pick([0, 6]);
    const windowSize = (1n << BigInt(pageShift + es)) + (rng.chance(0.03) ? 1n : 0n);
    const busOffset = rng.pick([0n, 1n << 59n, BigInt(rng.int(0, 7)) << 30n]) + (rng.chance(0.02) ? 4096n : 0n);
    const owner = rng.chance(0.5);
    return { kind: 'createTable', g: { pageShift, windowSize, levels, busOffset }, v2: rng.chance(0.8), proc: rng.int(0, 1), owner };
  }
  if (roll < 55 && v2Tables.length) {
    const tr = rng.pick(v2Tables);
    const t = tr.t;
    const ps = BigInt(t.pageShift);
    const entry = pickEntry(rng, t);
    let n = BigInt(rng.pick([0, 1, 1, 2, 3, 5, 8, 16, 33, 64]));
    if (rng.chance(0.05)) n = BigInt(rng.int(100, 700));
    // Process 2 never registers anything: its lookups fail on the first page,
    // so the call fails without touching the table. (A lookup that succeeds in
    // another mm would map pages the table's owner does not know about: the
    // hazard of ownerCheck 'none', which checkInvariants rightly reports.)
    const proc = rng.chance(0.08) ? 2 : tr.proc;
    const regs = w.regions.filter((r) => r.proc === proc);
    // Mostly regions whose pages can back the table's IOMMU pages, so that most builds get somewhere.
    const fit = regs.filter((r) => r.r.pageShift >= t.pageShift && r.r.size >= 1n << ps);
    let ua: bigint;
    if (regs.length && rng.chance(0.9)) {
      const r = rng.pick(fit.length && rng.chance(0.8) ? fit : regs).r;
      const base = (r.ua + (1n << ps) - 1n) & ~((1n << ps) - 1n);
      const pages = Number((r.ua + r.size - base) >> ps);
      if (pages > 0 && rng.chance(0.75)) {
        // Inside the region: succeeds unless levels are missing in real mode, the range leaves the table, or the owner check refuses.
        if (n > BigInt(pages)) n = BigInt(rng.int(1, pages));
        ua = base + (BigInt(rng.int(0, pages - Number(n))) << ps);
      } else {
        // Often runs off the region's end: fails part-way and rolls back.
        ua = base + (BigInt(rng.int(0, Math.max(0, Math.min(pages, 64)))) << ps);
      }
    } else {
      ua = (0x7fff_0000_0000n + (BigInt(rng.int(0, 4096)) << 16n)) & ~((1n << ps) - 1n);
    }
    const realMode = rng.chance(0.3);
    const checkPidOf = rng.chance(0.2) ? (rng.chance(0.7) ? w.procs[tr.proc]!.pid : 4242) : undefined;
    if (rng.chance(0.15)) {
      // Straight to the engine, past the TypeScript checks: bad perms, flags and ranges reach it.
      const perm = rng.pick([0, 1, 2, 3, 4, 7]);
      const flags = rng.pick([0, OP_ALLOC, OP_CHECK_PID, OP_ALLOC | OP_CHECK_PID]);
      return { kind: 'rawBuild', t: w.tables.indexOf(tr), proc, entry, n, ua, perm, flags, pid: checkPidOf ?? 0 };
    }
    return { kind: 'build', t: w.tables.indexOf(tr), proc, entry, n, ua, perm: rng.int(1, 3), realMode, checkPidOf };
  }
  if (roll < 70 && v2Tables.length) {
    const tr = rng.pick(v2Tables);
    const entry = pickEntry(rng, tr.t);
    let n = BigInt(rng.pick([0, 1, 2, 4, 16, 64, 300]));
    if (rng.chance(0.1)) n = tr.t.offset + tr.t.size - entry;
    const checkPidOf = rng.chance(0.15) ? (rng.chance(0.6) ? w.procs[tr.proc]!.pid : 4242) : undefined;
    return { kind: rng.chance(0.1) ? 'rawClear' : 'clear', t: w.tables.indexOf(tr), proc: tr.proc, entry, n, checkPidOf };
  }
  if (roll < 77 && v1Tables.length) {
    const tr = rng.pick(v1Tables);
    const entry = pickEntry(rng, tr.t);
    let tce = (rng.big(40) << 12n) | BigInt(rng.int(0, 3));
    if (rng.chance(0.2)) tce = 0n;
    if (rng.chance(0.05)) tce |= 1n << BigInt(rng.int(62, 63));
    return { kind: 'xchg', t: w.tables.indexOf(tr), entry, tce, flags: rng.chance(0.7) ? OP_ALLOC : 0 };
  }
  if (roll < 85 && w.tables.length) {
    const tr = rng.pick(w.tables);
    const a = pickEntry(rng, tr.t);
    const b = rng.chance(0.2) ? (1n << 64n) - 1n : a + BigInt(rng.int(0, 5000));
    return { kind: 'query', t: w.tables.indexOf(tr), a, b };
  }
  if (roll < 88 && w.tables.length) {
    return { kind: rng.pick(['freeTable', 'freeView', 'allocView', 'tableInitAgain']), t: rng.int(0, w.tables.length - 1) };
  }
  if (roll < 92) {
    if (w.blocks.length && rng.chance(0.5)) return { kind: 'rawFree', i: rng.int(0, w.blocks.length - 1) };
    const bytes = rng.pick([0, 1, 8, 63, 64, 65, 100, 4096, 5000, 65536, 1 << 20, 2 ** 31 + 1]);
    return { kind: 'rawAlloc', bytes };
  }
  if (roll < 96 && w.regions.length) {
    const r = rng.pick(w.regions);
    const ua = r.r.ua + BigInt(rng.int(-2, 40)) * 4096n;
    return { kind: 'regionRaw', i: w.regions.indexOf(r), ua, size: BigInt(rng.int(0, 1 << 20)), pageShift: rng.pick([12, 16, 21, 24, 30]) };
  }
  // Bad pointers: both engines must trap (or not) the same way and leave the same bytes.
  // free() refuses a pointer that is not a live block of that size without
  // trapping, and always releases the allocator's lock (else the next
  // allocation would give up).
  const top = w.host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP);
  const choices: [string, number][] = [
    ['free', rng.pick([memLen + 64, HEAP_BASE + 8, HEAP_BASE - 64, top, top + 4096, 0xffff_ffc0])],
    ['tableGet', memLen + 8 * rng.int(0, 1000)],
    ['tableClearV2', memLen - 8 * rng.int(1, 16)],
    ['regionMappedInc', w.regions.length ? rng.pick(w.regions).r.desc + 4 : memLen],
    ['tableNextValid', w.tables.length ? rng.pick(w.tables).t.desc + 1 : memLen + 64],
    ['tableGet', 0],
    ['regionLookup', memLen - 4],
  ];
  const [fn, ptr] = rng.pick(choices);
  return { kind: 'badPointer', fn, ptr };
}

function pickEntry(rng: Rng, t: IommuTable): bigint {
  const size = t.size;
  if (rng.chance(0.05)) return t.offset + size + BigInt(rng.int(0, 3)); // past the end
  if (rng.chance(0.03) && t.offset > 0n) return t.offset - 1n; // before the start
  if (rng.chance(0.3)) return t.offset + BigInt(rng.int(0, Math.min(Number(size) - 1, 600)));
  const r = BigInt(rng.u32()) * BigInt(rng.u32());
  return t.offset + (r % size);
}

/** Applies `op` to world `w`; returns its outcome. */
function apply(w: World, op: Op): Outcome {
  const { host } = w;
  const e = host.engine;
  switch (op.kind) {
    case 'mmap':
      return outcome(() => {
        const proc = w.procs[op.proc as number]!;
        const m = proc.mmap(op.size as bigint, { hugePageShift: op.huge as number, backed: false });
        w.maps.push({ proc: op.proc as number, ua: m.ua, size: m.size, pageShift: op.huge as number });
        return m.ua;
      });
    case 'register':
      return outcome(() => {
        const r = preregNew(w.procs[op.proc as number]!, op.ua as bigint, op.entries as bigint);
        w.regions.push({ proc: op.proc as number, r, refs: 1 });
        return r;
      });
    case 'regionGet':
      return outcome(() => {
        const rec = w.regions[op.i as number]!;
        const r = preregGet(w.procs[rec.proc]!.mm, rec.r.ua, rec.r.entries);
        if (r) rec.refs++;
        return r;
      });
    case 'unregister':
      return outcome(() => {
        const rec = w.regions[op.i as number]!;
        preregPut(w.procs[rec.proc]!.mm, rec.r);
        if (--rec.refs === 0) w.regions.splice(op.i as number, 1);
      });
    case 'createTable':
      return outcome(() => {
        const g = op.g as { pageShift: number; windowSize: bigint; levels: number; busOffset: bigint };
        const t = IommuTable.create(host, g, op.v2 as boolean);
        const proc = w.procs[op.proc as number]!;
        t.viewMm = proc.mm;
        if (op.owner) t.ownerPid = proc.pid;
        w.tables.push({ t, v2: op.v2 as boolean, proc: op.proc as number });
        return t;
      });
    case 'build':
      return outcome(() => {
        const tr = w.tables[op.t as number]!;
        const opts = { realMode: op.realMode as boolean, checkPidOf: op.checkPidOf as number | undefined };
        tr.t.buildV2(w.procs[op.proc as number]!.mm, op.entry as bigint, op.n as bigint, op.ua as bigint, op.perm as number, opts);
      });
    case 'rawBuild':
      return outcome(() => {
        const tr = w.tables[op.t as number]!;
        return e.tableBuildV2(tr.t.desc, w.procs[op.proc as number]!.mm.desc, op.entry as bigint, op.n as bigint, op.ua as bigint,
          op.perm as number, op.flags as number, op.pid as number);
      });
    case 'clear':
      return outcome(() => {
        const tr = w.tables[op.t as number]!;
        tr.t.clearV2(w.procs[op.proc as number]!.mm, op.entry as bigint, op.n as bigint, { checkPidOf: op.checkPidOf as number | undefined });
      });
    case 'rawClear':
      return outcome(() => {
        const tr = w.tables[op.t as number]!;
        const pid = op.checkPidOf as number | undefined;
        return e.tableClearV2(tr.t.desc, w.procs[op.proc as number]!.mm.desc, op.entry as bigint, op.n as bigint, pid === undefined ? 0 : OP_CHECK_PID, pid ?? 0);
      });
    case 'xchg':
      return outcome(() => {
        const tr = w.tables[op.t as number]!;
        if (op.flags === OP_ALLOC) return tr.t.xchg(op.entry as bigint, op.tce as bigint);
        return e.tableXchg(tr.t.desc, op.entry as bigint, op.tce as bigint, op.flags as number);
      });
    case 'query':
      return outcome(() => {
        const t = w.tables[op.t as number]!.t;
        const a = op.a as bigint;
        const b = op.b as bigint;
        return [e.tableGet(t.desc, a), e.tableUaGet(t.desc, a), e.tableNextValid(t.desc, a, b), e.tableNextValid(t.desc, t.offset, b)];
      });
    case 'freeTable':
      return outcome(() => {
        const tr = w.tables[op.t as number]!;
        if (tr.v2) tr.t.clearV2(w.procs[tr.proc]!.mm, tr.t.offset, tr.t.size);
        tr.t.free();
        w.tables.splice(op.t as number, 1);
      });
    case 'freeView':
      return outcome(() => {
        const t = w.tables[op.t as number]!.t;
        // Only an empty table may lose its view without breaking the accounting.
        if (t.nextValid(t.offset, t.offset + t.size) >= 0n) return 'not empty';
        e.tableUaFree(t.desc);
      });
    case 'allocView':
      return outcome(() => w.tables[op.t as number]!.t.allocView());
    case 'tableInitAgain':
      return outcome(() => [e.tableInit(w.tables[op.t as number]!.t.desc), e.tableUaAlloc(w.tables[op.t as number]!.t.desc)]);
    case 'rawAlloc':
      return outcome(() => {
        const p = e.alloc(op.bytes as number);
        if (p !== 0) w.blocks.push([p, op.bytes as number]);
        return p;
      });
    case 'rawFree':
      return outcome(() => {
        const [p, bytes] = w.blocks.splice(op.i as number, 1)[0]!;
        e.free(p, bytes);
      });
    case 'regionRaw':
      return outcome(() => {
        const rec = w.regions[op.i as number]!;
        const mm = w.procs[rec.proc]!.mm.desc;
        const out: unknown[] = [e.regionLookup(mm, op.ua as bigint, op.size as bigint), e.regionUaToHpa(rec.r.desc, op.ua as bigint, op.pageShift as number)];
        // A balanced pair leaves the accounting as it was.
        out.push(e.regionMappedInc(rec.r.desc));
        e.regionMappedDec(rec.r.desc);
        return out;
      });
    case 'badPointer':
      return outcome(() => {
        const p = op.ptr as number;
        switch (op.fn) {
          case 'tableGet': return e.tableGet(p, 0n);
          case 'tableClearV2': return e.tableClearV2(p, w.procs[0]!.mm.desc, 0n, 16n, 0, 0);
          case 'regionMappedInc': return e.regionMappedInc(p);
          case 'tableNextValid': return e.tableNextValid(p, 0n, 1n << 20n);
          case 'regionLookup': return e.regionLookup(p, 0n, 1n);
          case 'free': return e.free(p, rng64(p));
          default: throw new Error(`unknown ${String(op.fn)}`);
        }
      });
    default:
      throw new Error(`unknown op ${op.kind}`);
  }
}





const trace = process.env.DIFF_TRACE === '1';

interface RunStats { steps: number; errors: number; traps: number; kinds: Map<string, number> }

async function runSeed(seed: number, steps: number, stats: RunStats): Promise<void> {
  const cfg = new Rng(seed ^ 0x5bd1e995);
  const pageShift = cfg.pick([12, 16]);
  const maxMemory = cfg.pick([2, 4, 16]) << 20;
  const opts = { pageShift, maxMemory, ownerCheck: 'none' as const };
  const a = new World(await Host.create({ ...opts, engine: 'wasm' }));
  const b = new World(await Host.create({ ...opts, engine: 'native' }));
  expect(b.host.engine.kind).toBe('native');
  const rng = new Rng(seed);
  const fail = (step: number, op: Op | undefined, what: string): never => {
    throw new Error(`engines differ (seed ${seed}, step ${step}, ${json(opts)}): ${what}\n  op: ${json(op)}\n  reproduce: DIFF_SEED=${seed} DIFF_STEPS=${steps} npx vitest run test/differential/engines.test.ts`);
  };
  const compare = (step: number, op: Op | undefined): void => {
    const ta = allocTop(a.host);
    const tb = allocTop(b.host);
    if (ta !== tb) fail(step, op, `allocator tops differ: wasm 0x${ta.toString(16)}, native 0x${tb.toString(16)}`);
    const d = firstDiff(a.host.mem.u8, b.host.mem.u8, Math.min(ta, a.host.mem.byteLength));
    if (d >= 0) fail(step, op, `memories differ at byte 0x${d.toString(16)}: wasm ${a.host.mem.u8[d]}, native ${b.host.mem.u8[d]}`);
    const ia = invariants(a.host);
    const ib = invariants(b.host);
    if (ia !== 'ok' || ib !== 'ok') fail(step, op, `invariants: wasm: ${ia}; native: ${ib}`);
  };
  compare(-1, undefined);
  for (let step = 0; step < steps; step++) {
    const op = nextOp(rng, a);
    const oa = apply(a, op);
    const ob = apply(b, op);
    if (trace) console.log(`${step} ${json(op)} -> ${json(oa)} top ${allocTop(a.host).toString(16)}/${allocTop(b.host).toString(16)}`);
    if (json(oa) !== json(ob)) fail(step, op, `outcomes differ:\n  wasm:   ${json(oa)}\n  native: ${json(ob)}`);
    stats.steps++;
    stats.kinds.set(op.kind, (stats.kinds.get(op.kind) ?? 0) + 1);
    if ('err' in oa) {
      stats.errors++;
      if (oa.err === 'RuntimeError') stats.traps++;
    }
    compare(step, op);
  }
  // Above the allocator's top both memories must still be untouched.
  const len = a.host.mem.byteLength;
  const d = firstDiff(a.host.mem.u8, b.host.mem.u8, len);
  if (d >= 0) fail(steps, undefined, `memories differ above the allocator top at byte 0x${d.toString(16)}`);
}

describe.skipIf(!nativeAvailable)('engines: wasm and native agree', () => {
  it('the native addon loads (the comparison needs it)', () => {
    expect(nativeLoadError()).toBeUndefined();
  });

  const steps = Number(process.env.DIFF_STEPS ?? 600);
  const fixedSeed = process.env.DIFF_SEED;
  const seeds = fixedSeed !== undefined
    ? [Number(fixedSeed)]
    : [...Array.from({ length: Number(process.env.DIFF_SEEDS ?? 7) }, (_, i) => 1000 + i * 7919), (Date.now() % 1_000_000) + 1];

  const total: RunStats = { steps: 0, errors: 0, traps: 0, kinds: new Map() };
  for (const seed of seeds) {
    it(`seed ${seed}: ${steps} random steps leave identical results and memories`, async () => {
      const stats: RunStats = { steps: 0, errors: 0, traps: 0, kinds: new Map() };
      await runSeed(seed, steps, stats);
      const replay = `seed ${seed}; reproduce: DIFF_SEED=${seed} DIFF_STEPS=${steps} npx vitest run test/differential/engines.test.ts`;
      expect(stats.steps, replay).toBe(steps);
      // Failing calls are part of the point: each seed must exercise some.
      expect(stats.errors, replay).toBeGreaterThan(0);
      total.steps += stats.steps;
      total.errors += stats.errors;
      total.traps += stats.traps;
      for (const [k, n] of stats.kinds) total.kinds.set(k, (total.kinds.get(k) ?? 0) + n);
    });
  }

  // Many short sequences too: fresh hosts, every configuration, the first steps after setup.
  const shortSeeds = Number(process.env.DIFF_SHORT_SEEDS ?? 1000);
  it.skipIf(fixedSeed !== undefined)(`${shortSeeds} short sequences (8 steps each, seeds 500000…) agree as well`, async () => {
    const stats: RunStats = { steps: 0, errors: 0, traps: 0, kinds: new Map() };
    for (let i = 0; i < shortSeeds; i++) await runSeed(500_000 + i, 8, stats);
    expect(stats.steps).toBe(shortSeeds * 8);
    expect(stats.errors).toBeGreaterThan(0);
  });

  it.skipIf(fixedSeed !== undefined)('the seeds together exercise every kind of operation', () => {
    const kinds = ['mmap', 'register', 'regionGet', 'unregister', 'createTable', 'build', 'rawBuild', 'clear', 'rawClear', 'xchg',
      'query', 'freeTable', 'freeView', 'allocView', 'tableInitAgain', 'rawAlloc', 'rawFree', 'regionRaw', 'badPointer'];
    for (const k of kinds) expect(total.kinds.get(k) ?? 0, k).toBeGreaterThan(0);
    expect(total.traps).toBeGreaterThan(0);
    console.log(`differential: ${total.steps} steps over ${seeds.length} seeds, ${total.errors} failing calls (${total.traps} traps)`);
  });
});
