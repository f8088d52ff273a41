// The fast-check setup (test/fast-check-setup.ts): a failing property reports its seed with the
// command that replays it, and that seed gives the same counterexample again.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';

describe('fast-check: a failing seed is printed with its replay command', () => {
  it('the failure names FC_SEED and this file; the same seed finds the same counterexample', () => {
    const seed = fc.readConfigureGlobal().seed;
    expect(Number.isInteger(seed)).toBe(true);
    if (process.env.FC_SEED !== undefined) expect(seed).toBe(Number(process.env.FC_SEED) | 0);
    const failing = () => fc.assert(fc.property(fc.array(fc.nat(1000)), (xs) => xs.reduce((a, b) => a + b, 0) < 500));
    let message = '';
    try {
      failing();
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain(`replay: FC_SEED=${seed} npx vitest run test/unit/fast-check-replay.test.ts`);
    expect(message).toMatch(/Counterexample: /);
    const counterexample = message.match(/Counterexample: (.*)/)![1];
    let again = '';
    try {
      fc.assert(fc.property(fc.array(fc.nat(1000)), (xs) => xs.reduce((a, b) => a + b, 0) < 500), { seed });
    } catch (e) {
      again = (e as Error).message;
    }
    expect(again.match(/Counterexample: (.*)/)![1]).toBe(counterexample);
  });

  it('a passing property reports nothing', () => {
    expect(() => fc.assert(fc.property(fc.nat(), (n) => n >= 0))).not.toThrow();
  });
});
