// The coalescing allocator (assembly/alloc.ts, a TLSF): random interleaved
// allocations (1 byte to MiBs) and frees keep its invariants after every
// step, every request that fits is served (and none that does not), and
// freeing everything leaves exactly one free block, into which the largest
// possible request fits.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host } from '../../src/index.js';
import { ENGINES, GRANULE, blockSize, blocks, counters, fits, geometry, heapTop, isZero } from './alloc-heap.js';

type Op = { free: false; bytes: number } | { free: true; pick: number };

const bytesArb = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 512 }) },
  { weight: 3, arbitrary: fc.integer({ min: 513, max: 64 << 10 }) },
  { weight: 2, arbitrary: fc.integer({ min: (64 << 10) + 1, max: 3 << 20 }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: bytesArb.map((bytes) => ({ free: false as const, bytes })) },
  { weight: 2, arbitrary: fc.nat().map((pick) => ({ free: true as const, pick })) },
);

/** Everything the allocator promises about the heap, checked by the engine's walk and by an independent one: '' or what is wrong. */
function heapProblems(host: Host, live: Map<number, number>): string {
  const check = host.engine.heapCheck();
  if (check < 0) return `heapCheck() = ${check}`;
  const { start, end } = geometry(host);
  const bs = blocks(host);
  // Blocks tile [start, top) exactly, free ones never touch, and the used ones are exactly what the caller holds.
  let at = start;
  let used = 0;
  for (let i = 0; i < bs.length; i++) {
    const b = bs[i]!;
    const where = `block 0x${b.p.toString(16)}+0x${b.size.toString(16)}`;
    if (b.p !== at) return `${where} does not start where the last one ended (0x${at.toString(16)})`;
    if (b.free && i > 0 && bs[i - 1]!.free) return `${where} is free next to a free block`;
    if (!b.free) {
      used++;
      if (b.size !== blockSize(live.get(b.p) ?? -1)) return `${where} is used, but the caller holds ${live.get(b.p)} bytes there`;
    }
    at += b.size;
  }
  if (at !== heapTop(host) || at > end) return `blocks end at 0x${at.toString(16)}, top 0x${heapTop(host).toString(16)}, end 0x${end.toString(16)}`;
  const c = counters(host);
  const want = {
    bytes: [...live.values()].reduce((sum, n) => sum + blockSize(n), 0), blocks: live.size, freeBlocks: bs.length - used, refused: 0, busy: 0,
  };
  if (used !== live.size || JSON.stringify(c) !== JSON.stringify(want)) return `${used} used blocks, counters ${JSON.stringify(c)}, expected ${JSON.stringify(want)}`;
  if (check !== c.freeBlocks) return `heapCheck() = ${check}, but ${c.freeBlocks} free blocks`;
  return '';
}

describe('TLSF allocator: random allocate/free sequences', () => {
  for (const { engine, skip, name } of ENGINES) {
    it.skipIf(skip !== undefined)(`${name}: invariants after every step, exact "fits", free all leaves one block`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 10, maxLength: 100, size: 'large' }), async (ops) => {
          const host = await Host.create({ engine, maxMemory: 4 << 20 });
          const e = host.engine;
          const live = new Map<number, number>();
          for (const op of ops) {
            if (op.free) {
              if (live.size === 0) continue;
              const p = [...live.keys()][op.pick % live.size]!;
              e.free(p, live.get(p)!);
              live.delete(p);
            } else {
              const expected = fits(host, op.bytes);
              const p = e.alloc(op.bytes);
              if ((p !== 0) !== expected) expect.fail(`alloc(${op.bytes}) ${p ? 'succeeded' : 'failed'}, but fits() says ${expected}`);
              if (p !== 0) {
                if (p % GRANULE !== 0) expect.fail(`alloc(${op.bytes}) = 0x${p.toString(16)}, not ${GRANULE}-byte aligned`);
                if (!isZero(host, p, blockSize(op.bytes))) expect.fail(`block 0x${p.toString(16)} of ${op.bytes} bytes is not zeroed`);
                // Dirty it all, so a recycled block that is not cleared shows.
                host.mem.u8.fill(0xa5, p, p + blockSize(op.bytes));
                live.set(p, op.bytes);
              }
            }
            const problems = heapProblems(host, live);
            if (problems) expect.fail(`after ${JSON.stringify(op)}: ${problems}`);
          }
          for (const [p, n] of live) e.free(p, n);
          live.clear();
          expect(heapProblems(host, live)).toBe('');
          const { start, end } = geometry(host);
          // One free block, or none when no allocation ever succeeded.
          const everUsed = heapTop(host) > start;
          expect(blocks(host)).toEqual(everUsed ? [{ p: start, size: heapTop(host) - start, free: true }] : []);
          expect(e.heapCheck()).toBe(everUsed ? 1 : 0);
          // The whole arena is one request's worth again.
          expect(e.alloc(end - start)).toBe(start);
          expect(e.alloc(1)).toBe(0);
          e.free(start, end - start);
          expect(e.heapCheck()).toBe(1);
        }),
        { numRuns: 100 },
      );
    });
  }
});
