// The bounded soak of issue 12 (test/stress/soak.mjs): worker vCPUs on both engines hammer the
// tables while the main thread unregisters and re-registers memory, removes and creates a window,
// detaches the group, closes the container and destroys the VM; 0 traps, every worker joins
// before its deadline, checkInvariants() holds and every region's mapped equals its live TCEs + 1.
// `npm run soak -- --seconds N` runs it longer and writes bench/results/soak-<date>.json; the
// README's soak table is checked here against the file it names.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeAvailable } from '../differential/support.js';
import { soak } from './soak.mjs';

const ENGINES = nativeAvailable ? (['wasm', 'native'] as const) : (['wasm'] as const);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface SoakFigures {
  engine: string; rounds: number; hcalls: number; churn: number; longestJoinMs: number;
  teardown: { detach: number; close: number; destroy: number };
  reclaim: { gracePeriods: number; waited: number; longestMs: number };
}

/** The README table row of one engine's figures, as the README prints it. */
function readmeRow(f: SoakFigures): string {
  const n = (x: number) => x.toLocaleString('en-US');
  return `| ${f.engine} | ${n(f.rounds)} | ${n(f.hcalls)} | ${n(f.churn)} | ${f.teardown.detach} / ${f.teardown.close} / ${f.teardown.destroy} | ${n(f.reclaim.gracePeriods)} | ${n(f.reclaim.waited)} | ${f.reclaim.longestMs} ms | ${f.longestJoinMs} ms |`;
}

describe('soak: teardown under running vCPUs', () => {
  for (const engine of ENGINES) {
    it(`${engine}: 2 worker vCPUs, 3 s and at least 3 rounds of churn and hostile teardown`, async () => {
      // At least 3 rounds whatever the load: each kind of teardown (detach, close, destroy) runs once.
      const f = await soak({ engine, seconds: 3, workers: 2, seed: 12, roundMs: 400, minRounds: 3 });
      expect(f.rounds).toBeGreaterThanOrEqual(3);
      expect(f.teardown.detach).toBeGreaterThan(0);
      expect(f.teardown.close).toBeGreaterThan(0);
      expect(f.hcalls).toBeGreaterThan(1000);
      expect(f.churn).toBeGreaterThan(10);
      expect(f.teardown.destroy).toBeGreaterThan(0);
      expect(f.reclaim.gracePeriods).toBeGreaterThan(0);
      expect(f.reclaim.pending).toBe(0);
    }, 60_000);
  }

  it('the README quotes its soak figures from the results file it names (npm run soak writes one)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const names = [...new Set(readme.match(/bench\/results\/soak-[0-9TZ-]+\.json/g) ?? [])];
    expect(names).toHaveLength(1);
    const file = join(ROOT, names[0]!);
    expect(existsSync(file)).toBe(true);
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    expect(doc.kind).toBe('soak');
    expect(doc.failures).toEqual([]);
    expect(doc.results.length).toBeGreaterThan(0);
    for (const f of doc.results as SoakFigures[]) expect(readme).toContain(readmeRow(f));
    // A figure that differs from the file is caught.
    const changed = { ...doc.results[0], hcalls: doc.results[0].hcalls + 1 };
    expect(readme).not.toContain(readmeRow(changed));
  });
});
