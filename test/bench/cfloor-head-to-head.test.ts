// bench/cfloor.mjs#headToHead: the c-floor ≤ native verdict compares samples
// taken alternately in the same rounds, not the two cells' own samples.
import { describe, expect, it } from 'vitest';
import { headToHead, versusNative } from '../../bench/cfloor.mjs';
import { PROFILES } from '../../bench/harness.mjs';

describe('c-floor head to head with native', () => {
  it('alternates native and c-floor within each round and keeps what each loop measured', () => {
    const log: string[] = [];
    let x = 0;
    const native = { before: () => log.push('N'), run: () => { x = (x + 1) | 0; return x; } };
    const cFloor = { loop: (n: number) => { log.push('C'); return n * 100; } };
    const h = headToHead(native, cFloor, PROFILES.tiny);
    const turns = log.filter((t, i) => i === 0 || t !== log[i - 1]);
    // The calibration loops, then round 0 native → c-floor, round 1 c-floor → native.
    expect(turns).toEqual(['C', 'N', 'C', 'N']);
    expect(h.cFloor).toHaveLength(PROFILES.tiny.rounds * 20);
    expect(h.cFloor.every((s: number) => Math.abs(s - 100e-9) < 1e-15)).toBe(true);
    expect(h.native.length).toBeGreaterThanOrEqual(PROFILES.tiny.rounds * 5);
    expect(h.native.every((s: number) => s > 0 && Number.isFinite(s))).toBe(true);
  });

  it('reports c-floor − native with its interval and the sample counts', () => {
    const v = versusNative([2e-7, 2.1e-7, 1.9e-7, 2e-7, 2.05e-7], [1e-7, 1.1e-7, 0.9e-7, 1e-7, 1.05e-7]);
    expect(v.ns).toBeCloseTo(-100, 6);
    expect(v.significant).toBe(true);
    expect(v.hi).toBeLessThan(0);
    expect(v.samples).toEqual({ native: 5, cFloor: 5 });
  });
});
