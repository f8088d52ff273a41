// v.u64's number fast path and v.u64Safe (src/core/validate.ts): the fast
// path must accept exactly what the full rule accepts and never skip an
// entry point's own bounds; u64Safe must return an exact number below 2^53
// and the full rule's bigint or error everywhere else.
import { describe, expect, it } from 'vitest';
import * as v from '../../src/core/validate.js';

/** The error fn throws, as [class name, message]; ['ok', result] when it returns. */
function outcome(fn: () => unknown): [string, unknown] {
  try {
    return ['ok', fn()];
  } catch (e) {
    return [(e as Error).constructor.name, (e as Error).message];
  }
}

const BAD: unknown[] = [2 ** 53, 2 ** 64, -1, -(2 ** 53), 1.5, -0.5, NaN, Infinity, -Infinity, '1', null, undefined, {}, -1n, 1n << 64n];
const GOOD: (number | bigint)[] = [0, -0, 1, 0x1000, 2 ** 32, 2 ** 53 - 1, 0n, 1n, (1n << 53n) - 1n, 1n << 53n, (1n << 64n) - 1n];

describe('v.u64 with a number: the fast path', () => {
  it('a safe non-negative number gives its bigint; the refusals are the full rule’s', () => {
    expect(v.u64('x', 0)).toBe(0n);
    expect(v.u64('x', -0)).toBe(0n);
    expect(v.u64('x', 2 ** 53 - 1)).toBe((1n << 53n) - 1n);
    expect(outcome(() => v.u64('x', 2 ** 53))).toEqual(['RangeError', 'x must be a safe integer when it is a number (pass a bigint), got 9007199254740992']);
    expect(outcome(() => v.u64('x', -1))).toEqual(['RangeError', 'x must be in [0, 2^64), got -1']);
    expect(outcome(() => v.u64('x', 0.5))).toEqual(['RangeError', 'x must be an integer, got 0.5']);
    expect(outcome(() => v.u64('x', undefined))).toEqual(['TypeError', 'x is required']);
  });

  it('an entry point’s own bounds still apply to numbers (the fast path is for the default bounds only)', () => {
    expect(outcome(() => v.u64('x', 5, 10n))).toEqual(['RangeError', 'x must be in [10, 18446744073709551615], got 5']);
    expect(outcome(() => v.u64('x', 50, 10n, 20n))).toEqual(['RangeError', 'x must be in [10, 20], got 50']);
    expect(outcome(() => v.u64('x', 50, undefined, 20n))).toEqual(['RangeError', 'x must be in [0, 20], got 50']);
    expect(v.u64('x', 15, 10n, 20n)).toBe(15n);
    expect(outcome(() => v.u64('x', 50n, 10n, 20n))).toEqual(['RangeError', 'x must be in [10, 20], got 50n']);
    expect(v.size('n', 4096, 1, 1 << 20)).toBe(4096);
    expect(outcome(() => v.size('n', 0, 1, 1 << 20))).toEqual(['RangeError', 'n must be in [1, 1048576], got 0']);
  });
});

describe('v.u64Safe', () => {
  it('below 2^53, number or bigint, the exact number; at or above, the bigint', () => {
    for (const x of GOOD) {
      const r = v.u64Safe('x', x);
      const big = v.u64('x', x);
      if (big < 1n << 53n) {
        expect(typeof r, String(x)).toBe('number');
        expect(Object.is(r, Number(big)), String(x)).toBe(true);
      } else expect(r, String(x)).toBe(big);
    }
    expect(Object.is(v.u64Safe('x', -0), 0)).toBe(true);
  });

  it('everything u64 refuses it refuses with the same error', () => {
    for (const x of BAD) expect(outcome(() => v.u64Safe('iova', x)), String(x)).toEqual(outcome(() => v.u64('iova', x)));
    for (const x of BAD) expect(outcome(() => v.u64Safe('iova', x))[0], String(x)).not.toBe('ok');
  });
});
