// The interleaved vCPU-scaling measurement of bench/scaling.mjs on synthetic
// rates: the rotating order, the baseline that comes with every selection,
// and ratios paired within a round, which a machine changing speed between
// rounds does not move (it moved the ratios of one configuration measured
// after another, up to 2.55× for two vCPUs on two cores); and the verdict
// text of bench/summary.mjs built from them.
import { describe, expect, it } from 'vitest';
import { roundOrder, scalingRows, scalingPlan, selectedConfigs, scalingIntervals } from '../../bench/scaling.mjs';
import { targets } from '../../bench/summary.mjs';

type Cfg = [string, number];
const CONFIGS: Cfg[] = [['single', 1], ['shared', 2], ['disjoint', 2], ['separate', 2]];

/** One configuration's interval in a round, as bench/scaling.mjs measures it; cpuShare is null without schedstat. */
interface Interval { rate: number; cpuShare: number | null; cpuRate: number; perVcpu: number[] }

/** Round r of a machine whose speed is speeds[r]: each configuration's rate is base × its true factor × that speed. */
function rounds(speeds: number[], factors: number[], share = 0.99): Interval[][] {
  return speeds.map((sp) => factors.map((k, i) => {
    const vcpus = CONFIGS[i]![1];
    return {
      rate: 1e7 * k * sp,
      cpuShare: share,
      // Calls per on-CPU second: the speed of the machine, times what the vCPUs cost each other (k / vCPUs).
      cpuRate: (1e7 * sp * k) / vcpus,
      perVcpu: new Array(vcpus).fill((1e7 * k * sp) / vcpus),
    };
  }));
}

describe('vCPU scaling rounds', () => {
  it('orders each round so that over a cycle every configuration takes every position and follows every other equally often', () => {
    for (const n of [1, 2, 3, 5, 6]) {
      const cycle = n % 2 ? 2 * n : n;
      const pos = Array.from({ length: n }, () => new Array(n).fill(0));
      const after = new Map<string, number>();
      for (let r = 0; r < cycle; r++) {
        const order = roundOrder(r, n) as number[];
        expect([...order].sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
        order.forEach((c, p) => pos[c]![p]++);
        for (let p = 1; p < n; p++) after.set(`${order[p - 1]}>${order[p]}`, (after.get(`${order[p - 1]}>${order[p]}`) ?? 0) + 1);
      }
      for (const row of pos) expect(new Set(row)).toEqual(new Set([cycle / n]));
      // Every ordered pair of distinct configurations, adjacent equally often.
      expect(after.size).toBe(n * (n - 1));
      expect(new Set(after.values()).size).toBeLessThanOrEqual(1);
      // The next cycle repeats the first.
      expect(roundOrder(cycle, n)).toEqual(roundOrder(0, n));
    }
    expect(roundOrder(0, 6)).toEqual([0, 1, 5, 2, 4, 3]);
  });

  it('adds the one-vCPU baseline to any selection, and selects nothing when the filter matches nothing', () => {
    expect(scalingPlan()[0]).toEqual(['single', 1]);
    expect(selectedConfigs(/^scaling\/shared\/2$/)).toEqual([['single', 1], ['shared', 2]]);
    expect(selectedConfigs(/^scaling\/single\/1$/)).toEqual([['single', 1]]);
    expect(selectedConfigs(/^H_PUT_TCE/)).toEqual([]);
    expect(selectedConfigs(undefined)).toHaveLength(6);
    expect(scalingIntervals(/^scaling\/disjoint\/2$/, 7)).toBe(14);
  });

  it('pairs each ratio with the baseline of its own round, so a machine that changes speed between rounds leaves it exact', () => {
    // Speeds swinging 3× between rounds; the true factors are 1, 1.5, 1.9, 2.
    const speeds = [1, 0.4, 1.2, 0.35, 0.9, 1.1, 0.5, 1, 0.8, 0.6, 1.05];
    const rows = scalingRows(CONFIGS, rounds(speeds, [1, 1.5, 1.9, 2]), { intervalMs: 100 });
    const by = (t: string) => rows.find((r: { tables: string }) => r.tables === t);
    expect(by('shared').ratioToOne).toBeCloseTo(1.5, 12);
    expect(by('shared').ratioInterval.lo).toBeCloseTo(1.5, 12);
    expect(by('shared').ratioInterval.hi).toBeCloseTo(1.5, 12);
    expect(by('disjoint').ratioToOne).toBeCloseTo(1.9, 12);
    expect(by('disjoint').ratios).toHaveLength(speeds.length);
    expect(by('disjoint').rounds).toBe(speeds.length);
    expect(by('disjoint').perVcpuToOne).toBeCloseTo(0.95, 12);
    expect(by('disjoint').perCpuToOne.median).toBeCloseTo(0.95, 12);
    // The control, over the same rounds, on the disjoint row; disjoint over separate per round.
    expect(by('disjoint').control.ratioToOne).toBeCloseTo(2, 12);
    expect(by('disjoint').vsSeparate.median).toBeCloseTo(0.95, 12);
    expect(by('single').ratioToOne).toBe(1);
    expect(by('single').cpuShare).toBeCloseTo(0.99, 12);
  });

  it('takes the median of the paired ratios, so one disturbed round does not move it, and widens the interval with the spread', () => {
    const speeds = new Array(15).fill(1);
    const data = rounds(speeds, [1, 1.5, 1.9, 2]);
    // Round 3: the machine stalled during the shared interval only.
    data[3]![1]!.rate /= 4;
    // The disjoint ratios spread ±10% around 1.9, round by round.
    data.forEach((r, i) => (r[2]!.rate *= 1 + 0.1 * Math.sin(i)));
    const rows = scalingRows(CONFIGS, data);
    const shared = rows[1];
    expect(shared.ratioToOne).toBeCloseTo(1.5, 12);
    expect(Math.min(...shared.ratios)).toBeCloseTo(1.5 / 4, 12);
    const d = rows[2];
    expect(d.ratioInterval.lo).toBeLessThan(d.ratioToOne);
    expect(d.ratioInterval.hi).toBeGreaterThan(d.ratioToOne);
    expect(d.ratioInterval.lo).toBeGreaterThan(1.9 * 0.9 - 1e-9);
    expect(d.ratioInterval.hi).toBeLessThan(1.9 * 1.1 + 1e-9);
  });

  it('has no ratio without the baseline, and no cpuShare when a round lacks schedstat', () => {
    const data = rounds([1, 1, 1], [1, 1.5, 1.9, 2]).map((r) => r.slice(1));
    const rows = scalingRows(CONFIGS.slice(1), data);
    expect(rows.every((r: { ratioToOne: unknown }) => r.ratioToOne === null)).toBe(true);
    const noSched = rounds([1, 1, 1], [1, 1.5, 1.9, 2]);
    noSched[1]![1]!.cpuShare = null;
    expect(scalingRows(CONFIGS, noSched)[1].cpuShare).toBeNull();
  });

  it('judges the targets by the median, says when the interval includes the target, and shows the control of the same rounds', () => {
    const speeds = new Array(12).fill(1);
    const data = rounds(speeds, [1, 1.4, 1.75, 1.95]);
    // The disjoint ratios spread 1.6..1.9: the interval includes 1.8 while the median stays below it.
    data.forEach((r, i) => (r[2]!.rate = 1e7 * (1.6 + (0.3 * (i % 4)) / 3)));
    const doc = { results: [], scaling: scalingRows(CONFIGS, data) };
    const t = targets(doc);
    const shared = t.find((x: { what: string }) => /shared table/.test(x.what));
    const disjoint = t.find((x: { what: string }) => /disjoint tables/.test(x.what));
    expect(shared.pass).toBe(true);
    expect(shared.value).toMatch(/^1\.40× \[1\.40, 1\.40\], median of 12 paired rounds \(workers on a CPU 99% of the interval; per on-CPU second 0\.70× one vCPU's\)$/);
    expect(shared.value).not.toMatch(/includes the target/);
    expect(disjoint.pass).toBe(false);
    const { lo, hi } = doc.scaling[2].ratioInterval;
    expect(lo).toBeLessThan(1.8);
    expect(hi).toBeGreaterThanOrEqual(1.8);
    expect(disjoint.value.startsWith(`1.75× [${lo.toFixed(2)}, ${hi.toFixed(2)}], median of 12 paired rounds; the interval includes the target (1.8×): not resolved by this run (`)).toBe(true);
    expect(disjoint.value).toMatch(/two separate hosts 1\.95× \[1\.95, 1\.95\] in the same rounds\)$/);
  });
});
