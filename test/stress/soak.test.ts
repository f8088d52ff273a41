// The bounded soak of issue 12 (test/stress/soak.mjs): worker vCPUs on both engines hammer the
// tables while the main thread unregisters and re-registers memory, removes and creates a window,
// detaches the group, closes the container and destroys the VM; 0 traps, every worker joins
// before its deadline, checkInvariants() holds and every region's mapped equals its live TCEs + 1.
// `npm run soak -- --seconds N` runs it longer.
import { describe, expect, it } from 'vitest';
import { nativeAvailable } from '../differential/support.js';
// @ts-expect-error a plain ES module shared with scripts/soak.mjs
import { soak } from './soak.mjs';

const ENGINES = nativeAvailable ? (['wasm', 'native'] as const) : (['wasm'] as const);

describe('soak: teardown under running vCPUs', () => {
  for (const engine of ENGINES) {
    it(`${engine}: 2 worker vCPUs, 6 rounds of churn and hostile teardown`, async () => {
      const f = await soak({ engine, seconds: 3, workers: 2, seed: 12, roundMs: 400 });
      expect(f.rounds).toBeGreaterThanOrEqual(3);
      expect(f.hcalls).toBeGreaterThan(1000);
      expect(f.churn).toBeGreaterThan(10);
      expect(f.teardown.destroy).toBeGreaterThan(0);
      expect(f.reclaim.gracePeriods).toBeGreaterThan(0);
      expect(f.reclaim.pending).toBe(0);
    }, 60_000);
  }
});
