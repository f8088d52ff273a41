// Shared helpers of the unit tests: state digests, error expectations, and the
// comparison of the library's observable state with the reference model.
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { TceError, regionsOf, type Host, type Mm, type IommuTable, type Process } from '../../src/index.js';
import { HEAP_BASE } from '../../src/generated/layout.js';
import type { ReferenceModel, Translation } from './reference.js';

/** sha1 of the linear memory up to the heap top, plus host.stats() (pins, regions, locked pages, heap counters). */
export function digest(host: Host): string {
  const s = host.stats();
  const top = HEAP_BASE + s.memory.heapTop;
  const h = createHash('sha1');
  h.update(host.mem.u8.slice(0, top));
  h.update(JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
  for (const mm of host.mms) h.update(`${mm.id}:${[...mm.charges].join(',')};`);
  return h.digest('hex');
}

/** Runs fn, expects a TceError with `code`, returns it. */
export function expectTce(fn: () => unknown, code: string): TceError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected TceError ${code}, got no error`).toBeDefined();
  expect(caught, `expected TceError ${code}, got ${String(caught)}`).toBeInstanceOf(TceError);
  expect((caught as TceError).code).toBe(code);
  return caught as TceError;
}

/**
 * Bad input: fn must throw a TceError, TypeError or RangeError (never a
 * WebAssembly trap) whose message names `arg` (a regexp source), and leave the
 * host's digest unchanged.
 */
export function expectRejected(host: Host, fn: () => unknown, arg: string): void {
  const before = digest(host);
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `bad ${arg}: expected an error, got none`).toBeDefined();
  expect(caught, `bad ${arg}: a WebAssembly trap`).not.toBeInstanceOf(WebAssembly.RuntimeError);
  const ok = caught instanceof TceError || caught instanceof TypeError || caught instanceof RangeError;
  expect(ok, `bad ${arg}: expected TceError/TypeError/RangeError, got ${String(caught)}`).toBe(true);
  expect((caught as Error).message, `bad ${arg}: the message should name the argument`).toMatch(new RegExp(`\\b${arg}\\b`));
  expect(digest(host), `bad ${arg}: the state changed`).toBe(before);
}

/** The simulated MMU of a process, for the model: what backs each address. */
export function translator(p: Process): (ua: bigint) => Translation | undefined {
  return (ua) => p.mm.translate(ua);
}

/** Sorted plain view of an mm's regions (library side). */
export function libRegions(mm: Mm): { ua: bigint; entries: bigint; used: number; mapped: bigint; pageShift: number }[] {
  return regionsOf(mm)
    .map((r) => ({ ua: r.ua, entries: r.entries, used: r.used, mapped: r.mapped, pageShift: r.pageShift }))
    .sort((a, b) => (a.ua < b.ua ? -1 : a.ua > b.ua ? 1 : 0));
}

/** Sorted plain view of an mm's regions (model side). */
export function modelRegions(model: ReferenceModel, mmId: number): { ua: bigint; entries: bigint; used: number; mapped: bigint; pageShift: number }[] {
  return model
    .mm(mmId)
    .regions.map((r) => ({ ua: r.ua, entries: r.entries, used: r.used, mapped: r.mapped, pageShift: r.pageShift }))
    .sort((a, b) => (a.ua < b.ua ? -1 : a.ua > b.ua ? 1 : 0));
}

/** Every valid entry of a table (library side): entry → [tce, ua]. */
export function libEntries(t: IommuTable): Map<bigint, [bigint, bigint]> {
  const m = new Map<bigint, [bigint, bigint]>();
  for (const [e, tce, ua] of t.entries()) m.set(e, [tce, ua]);
  return m;
}

/** Every valid entry of a model table: entry → [tce, ua]. */
export function modelEntries(model: ReferenceModel, tableId: number): Map<bigint, [bigint, bigint]> {
  const m = new Map<bigint, [bigint, bigint]>();
  for (const [e, v] of model.table(tableId).entries) if (v.tce !== 0n) m.set(e, [v.tce, v.ua]);
  return m;
}

/** A deterministic 32-bit PRNG (mulberry32) for seeded scattered choices. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
