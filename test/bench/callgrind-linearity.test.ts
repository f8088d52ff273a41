// bench/callgrind.mjs: the probe runs of one cell differ only in K, and a
// per-call count that is not linear in K is reported as such.
import { describe, expect, it } from 'vitest';
import { CG_TOLERANCE, counts, k3Of, linearity, NODE_FLAGS, probeArgv } from '../../bench/callgrind.mjs';

const OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'H_PUT_TCE_64K_OVER_4K'];

describe('callgrind probe runs', () => {
  it('give node the same argument lengths for K1, K2 and K3', () => {
    for (const op of OPS) {
      const [k1, k2] = counts(op);
      const lengths = [k1, k2, k3Of(k1, k2)].map((k) => probeArgv(op, 'wasm', 'none', k).map((a: string) => a.length));
      expect(lengths[1], op).toEqual(lengths[0]);
      expect(lengths[2], op).toEqual(lengths[0]);
      expect(Number(probeArgv(op, 'wasm', 'none', k2).at(-1)), op).toBe(k2);
    }
  });

  it('schedule V8 collections by allocation, not by the clock', () => {
    for (const f of ['--single-threaded', '--predictable-gc-schedule', '--no-minor-gc-task', '--no-incremental-marking-task']) expect(NODE_FLAGS).toContain(f);
  });
});

describe('linearity', () => {
  it('holds for pairs that agree within the tolerance', () => {
    const r = linearity([89813, 89308, 89676], 89676);
    expect(r.linear).toBe(true);
    expect(r.worst).toBeLessThan(CG_TOLERANCE);
  });

  it('fails for a pair that counted a step (a collection in one run only)', () => {
    const r = linearity([94146, 181205, 182081], 181205);
    expect(r.linear).toBe(false);
  });

  it('checks a single pair against its K2..K3 slope', () => {
    expect(linearity([88679], 88679, 2540, 88681)).toMatchObject({ k3: 2540, irPerCallK2K3: 88681, linear: true });
    expect(linearity([167845], 167845, 2540, 9513).linear).toBe(false);
  });
});

describe('linearity of a cell with several pairs', () => {
  it('fails when the pairs agree but the K3 slope does not (a step in every K2 run)', () => {
    expect(linearity([89391, 89351, 89383], 89383, 2540, 89380).linear).toBe(true);
    expect(linearity([89391, 89351, 89383], 89383, 2540, 60210)).toMatchObject({ k3: 2540, linear: false });
  });
});
