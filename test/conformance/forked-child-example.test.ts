// Spec: docs/semantics.md §5 (forked child); runs examples/forked-child.mjs as a child process against a fresh build of src/.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { root, scratchBuild } from './example-build.js';

let env: NodeJS.ProcessEnv = {};
let cleanup = (): void => {};

beforeAll(() => {
  ({ env, cleanup } = scratchBuild('spapr-tce-example-'));
}, 120_000);

afterAll(() => cleanup());

const runExample = (...args: string[]): string =>
  execFileSync(process.execPath, [join(root, 'examples/forked-child.mjs'), ...args], { cwd: root, env, encoding: 'utf8' });

describe('examples/forked-child.mjs', () => {
  it('prints per mode what each call returned, the counters, the unregister result and the invariant check', () => {
    const text = runExample();
    const sections = text.split(/^== ownerCheck: /m).slice(1);
    expect(sections.map((s) => s.split(' ')[0])).toEqual(['none', 'pid', 'mm']);
    const [none, pid, mm] = sections as [string, string, string];

    expect(none).toMatch(/child\s+registerMemory\(.*\)\s+-> ok/);
    expect(none).toMatch(/child\s+mapDma\(iova 0x100000, 1 page\)\s+-> ok/);
    expect(none).toMatch(/child\s+unmapDma\(iova 0x0, 1 page\) \[the parent's\]\s+-> ok/);
    expect(none).toMatch(/parent region used=1 mapped=2; child region used=1 mapped=1/);
    expect(none).toMatch(/parent\s+unregisterMemory\(.*\)\s+-> EBUSY/);
    expect(none).toMatch(/checkInvariants: FAILED/);
    expect(none).toMatch(/vm-clone\s+registerMemory\(.*\)\s+-> ok/);

    for (const s of [pid, mm]) {
      expect(s).toMatch(/child\s+registerMemory\(.*\)\s+-> EPERM/);
      expect(s).toMatch(/child\s+mapDma\(iova 0x100000, 1 page\)\s+-> EPERM/);
      expect(s).toMatch(/child\s+unmapDma\(iova 0x0, 1 page\) \[the parent's\]\s+-> EPERM/);
      expect(s).toMatch(/parent region used=1 mapped=2; child region none/);
      expect(s).toMatch(/parent\s+unmapDma\(iova 0x0, 1 page\)\s+-> ok/);
      expect(s).toMatch(/parent\s+unregisterMemory\(.*\)\s+-> ok/);
      expect(s).toMatch(/checkInvariants: passed/);
    }
    expect(pid).toMatch(/vm-clone\s+registerMemory\(.*\)\s+-> EPERM/);
    // under mm the vm-clone shares the owner's mm and may register more memory
    expect(mm).toMatch(/vm-clone\s+registerMemory\(.*\)\s+-> ok/);
  }, 60_000);

  it('--json gives the same outcome as data', () => {
    const results = JSON.parse(runExample('--json')) as {
      mode: string;
      calls: { who: string; result: string }[];
      counters: { parentRegion: { used: number; mapped: number }; childRegion: { used: number; mapped: number } | null };
      parentUnregister: string;
      invariants: string;
      vmClone: string;
    }[];
    expect(results.map((r) => r.mode)).toEqual(['none', 'pid', 'mm']);
    const by = Object.fromEntries(results.map((r) => [r.mode, r]));
    expect(by.none!.calls.filter((c) => c.who === 'child').map((c) => c.result)).toEqual(['ok', 'ok', 'ok']);
    expect(by.none!.counters).toEqual({ parentRegion: { used: 1, mapped: 2 }, childRegion: { used: 1, mapped: 1 } });
    expect(by.none!.parentUnregister).toBe('EBUSY');
    expect(by.none!.invariants).toBe('FAILED');
    for (const m of ['pid', 'mm']) {
      expect(by[m]!.calls.filter((c) => c.who === 'child').map((c) => c.result)).toEqual(['EPERM', 'EPERM', 'EPERM']);
      expect(by[m]!.counters).toEqual({ parentRegion: { used: 1, mapped: 2 }, childRegion: null });
      expect(by[m]!.parentUnregister).toBe('ok');
      expect(by[m]!.invariants).toBe('passed');
    }
    expect(by.pid!.vmClone).toBe('EPERM');
    expect(by.mm!.vmClone).toBe('ok');
    expect(by.none!.vmClone).toBe('ok');
  }, 60_000);
});
