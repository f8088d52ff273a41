// Every fast-check property in the tests runs from one seed per test file, printed with the command
// that replays it when a property fails (issue 12: a failing seed is printed with the command that
// replays it). FC_SEED=n fixes the seed; a property that names its own seed keeps it, and the
// command names that one.
import fc from 'fast-check';
import { relative } from 'node:path';
import { expect } from 'vitest';

const fixed = process.env.FC_SEED;
if (fixed !== undefined && !/^-?\d+$/.test(fixed)) throw new Error(`FC_SEED must be an integer, got '${fixed}'`);
/** The seed of this file's properties: FC_SEED, else drawn from the clock (as fast-check does by default). */
const seed = fixed !== undefined ? Number(fixed) | 0 : (Date.now() ^ (Math.random() * 0x1_0000_0000)) | 0;

fc.configureGlobal({
  seed,
  reporter(out) {
    if (!out.failed) return;
    const { testPath, currentTestName } = expect.getState();
    const file = testPath ? relative(process.cwd(), testPath) : '<test file>';
    const replay = `FC_SEED=${out.seed} npx vitest run ${file}`;
    throw new Error(`${fc.defaultReportMessage(out) ?? 'property failed'}\n  test: ${currentTestName ?? '?'}\n  replay: ${replay}`, { cause: out.errorInstance });
  },
});
