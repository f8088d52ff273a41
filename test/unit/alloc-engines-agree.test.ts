// The two engines run the same allocator statement for statement: the same
// random allocations, frees and bad frees leave byte-identical memories (up
// to the heap top, and above it both untouched) and the same results.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host } from '../../src/index.js';
import { ENGINES, heapTop, isZero } from './alloc-heap.js';

type Op = { kind: 'alloc'; bytes: number } | { kind: 'free'; pick: number } | { kind: 'bad'; pick: number; delta: number; bytes: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 1, max: 1 << 20 }), fc.constant(2 ** 31 + 1)).map((bytes) => ({ kind: 'alloc' as const, bytes })) },
  { weight: 3, arbitrary: fc.nat().map((pick) => ({ kind: 'free' as const, pick })) },
  {
    weight: 1,
    arbitrary: fc.record({ pick: fc.nat(), delta: fc.integer({ min: -128, max: 128 }), bytes: fc.integer({ min: 0, max: 1 << 16 }) })
      .map((r) => ({ kind: 'bad' as const, ...r })),
  },
);

const nativeSkip = ENGINES.find((x) => x.engine === 'native')!.skip;

describe('TLSF allocator: both engines', () => {
  it.skipIf(nativeSkip !== undefined)(`the same sequences leave the same bytes${nativeSkip ? ` (skipped: ${nativeSkip})` : ''}`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'large' }), async (ops) => {
        const a = await Host.create({ engine: 'wasm', maxMemory: 2 << 20 });
        const b = await Host.create({ engine: 'native', maxMemory: 2 << 20 });
        const live: [number, number][] = [];
        for (const op of ops) {
          let ra: number | undefined;
          let rb: number | undefined;
          if (op.kind === 'alloc') {
            ra = a.engine.alloc(op.bytes);
            rb = b.engine.alloc(op.bytes);
            if (ra !== 0) live.push([ra, op.bytes]);
          } else if (live.length > 0) {
            const i = op.pick % live.length;
            const [p, n] = live[i]!;
            // A bad free: a pointer near a live block, a size other than its own (or, by chance, a good one).
            const [fp, fn] = op.kind === 'free' ? [p, n] : [(p + op.delta) >>> 0, op.bytes];
            a.engine.free(fp, fn);
            b.engine.free(fp, fn);
            if (op.kind === 'free') live.splice(i, 1);
          }
          if (ra !== rb) expect.fail(`${JSON.stringify(op)}: wasm ${ra}, native ${rb}`);
          const top = heapTop(a);
          if (top !== heapTop(b) || Buffer.compare(a.mem.u8.subarray(0, top), b.mem.u8.subarray(0, top)) !== 0) {
            expect.fail(`${JSON.stringify(op)}: the memories differ`);
          }
          if (a.engine.heapCheck() !== b.engine.heapCheck()) expect.fail(`${JSON.stringify(op)}: heapCheck differs`);
        }
        const top = heapTop(a);
        expect(isZero(a, top, a.mem.byteLength - top) && isZero(b, top, b.mem.byteLength - top)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});
