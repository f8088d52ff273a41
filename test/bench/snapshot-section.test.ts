// The bench's snapshot section in its tiny configuration: every figure it
// reports is there and was measured (a finite positive rate per run), the
// control of fresh-memory writes beside each restore included, and the
// table prints it. Rates are never judged here: wall time on a shared machine.
import { describe, expect, it } from 'vitest';
import { runSnapshot, snapshotTable } from '../../bench/snapshot.mjs';

const rate = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

describe('bench snapshot section (tiny)', () => {
  it('measures snapshot, restore and the fresh-write control run by run, with their system time', async () => {
    let ticks = 0;
    const s = await runSnapshot({ tiny: true, tick: () => ticks++ });
    const nz = s.nonZero;
    expect(nz.nonZeroBytes).toBe(16 << 20);
    expect(nz.snapshotBytes).toBeGreaterThan(nz.nonZeroBytes);
    for (const k of ['snapshot', 'restore', 'controlFreshWrite'] as const) {
      expect(nz.runs[k], k).toHaveLength(1);
      expect(nz.runs[k].every(rate), k).toBe(true);
    }
    expect([nz.snapshotGBps, nz.restoreGBps, nz.controlFreshWriteGBps].every(rate)).toBe(true);
    for (const k of ['snapshot', 'restore', 'control'] as const) expect(nz.systemMs[k].every((x: number) => Number.isFinite(x) && x >= 0), k).toBe(true);
    expect(ticks).toBeGreaterThan(0);
    expect(snapshotTable(s)).toMatch(/control: one copy into fresh memory +\d+\.\d\d GB\/s/);
  }, 120_000);
});
