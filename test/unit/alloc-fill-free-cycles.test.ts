// Fill-and-free cycles never lose capacity: filling the heap with a pattern
// of sizes until the first refusal, then freeing everything in any order,
// leaves a heap on which the same fill takes exactly the same blocks again,
// and on which the largest request (the whole arena) fits.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host } from '../../src/index.js';
import { ENGINES, blockSize, geometry } from './alloc-heap.js';

const sizeArb = fc.oneof(
  fc.integer({ min: 1, max: 256 }),
  fc.integer({ min: 257, max: 32 << 10 }),
  fc.integer({ min: (32 << 10) + 1, max: 512 << 10 }),
);

/** Allocates the pattern's sizes in turn until one is refused: the blocks taken, in order. */
function fill(host: Host, pattern: number[]): [number, number][] {
  const taken: [number, number][] = [];
  const { start, end } = geometry(host);
  // Each block takes at least one granule, so this bound is never what stops the loop.
  for (let i = 0; i <= (end - start) / 64; i++) {
    const bytes = pattern[i % pattern.length]!;
    const p = host.engine.alloc(bytes);
    if (p === 0) return taken;
    taken.push([p, bytes]);
  }
  throw new Error('the heap never filled');
}

describe('TLSF allocator: fill-and-free cycles', () => {
  for (const { engine, skip, name } of ENGINES) {
    it.skipIf(skip !== undefined)(`${name}: every cycle takes the same blocks as the first, and the whole arena fits after each`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(sizeArb, { minLength: 1, maxLength: 12 }), { minLength: 2, maxLength: 4 }),
          fc.array(fc.nat(), { minLength: 4, maxLength: 4 }),
          async (patterns, orderSeeds) => {
            const host = await Host.create({ engine, maxMemory: 1 << 20 });
            const { start, end } = geometry(host);
            const first = new Map<number, [number, number][]>();
            // Each pattern fills the heap twice, interleaved with the others.
            for (const round of [0, 1]) {
              for (const [k, pattern] of patterns.entries()) {
                const taken = fill(host, pattern);
                expect(taken.length).toBeGreaterThan(0);
                const total = taken.reduce((s, [, n]) => s + blockSize(n), 0);
                // Filled: the next size of the pattern did not fit in what is left.
                expect(total + blockSize(pattern[taken.length % pattern.length]!)).toBeGreaterThan(end - start);
                if (round === 0 && !first.has(k)) first.set(k, taken);
                else if (JSON.stringify(taken) !== JSON.stringify(first.get(k))) expect(taken).toEqual(first.get(k));
                // Free in an order drawn from the seed.
                const order = taken.map((t, i) => [((i + 1) * 2654435761 + orderSeeds[k % 4]!) >>> 0, t] as const).sort((a, b) => a[0] - b[0]);
                for (const [, [p, n]] of order) host.engine.free(p, n);
                expect(host.engine.heapCheck()).toBe(1);
                expect(host.stats().memory.heapUsedBytes).toBe(0);
                expect(host.engine.alloc(end - start)).toBe(start);
                host.engine.free(start, end - start);
              }
            }
          },
        ),
        { numRuns: 20 },
      );
    });
  }
});
