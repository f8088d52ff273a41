// Every fast-check property in the tests runs from one seed per test file, printed with the command
// that replays it when a property fails (issue 12: a failing seed is printed with the command that
// replays it). FC_SEED=n fixes the seed; a property that names its own seed keeps it, and the
// command names that one.
import fc from 'fast-check';
import { relative } from 'node:path';
import { beforeEach, expect } from 'vitest';

const fixed = process.env.FC_SEED;
if (fixed !== undefined && !/^-?\d+$/.test(fixed)) throw new Error(`FC_SEED must be an integer, got '${fixed}'`);
/** The seed of this file's properties: FC_SEED, else drawn from the clock (as fast-check does by default). */
const seed = fixed !== undefined ? Number(fixed) | 0 : (Date.now() ^ (Math.random() * 0x1_0000_0000)) | 0;

/** The command that replays this file's properties from `s`. */
function replay(s: number): string {
  const { testPath } = expect.getState();
  return `FC_SEED=${s} npx vitest run ${testPath ? relative(process.cwd(), testPath) : '<test file>'}`;
}

/** Whether the running test has run a property (set by fast-check's hook before each of its runs). */
let usedFastCheck = false;

fc.configureGlobal({
  seed,
  beforeEach: () => {
    usedFastCheck = true;
  },
  reporter(out) {
    if (!out.failed) return;
    throw new Error(`${fc.defaultReportMessage(out) ?? 'property failed'}\n  test: ${expect.getState().currentTestName ?? '?'}\n  replay: ${replay(out.seed)}`, { cause: out.errorInstance });
  },
});

// A test that ran properties can also fail outside them (a count over all runs): name the seed then too.
beforeEach(({ onTestFailed }) => {
  usedFastCheck = false;
  onTestFailed(() => {
    if (usedFastCheck) console.error(`fast-check seed ${seed} (a property of its own seed keeps that one); replay: ${replay(seed)}`);
  });
});
