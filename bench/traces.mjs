// Trace replay throughput: every trace of traces/ (the recorded ones shipped
// with the package; docs/traces.md) or of the folder given, replayed with
// each check, hypercalls per second as replay() reports it (the replay loop
// only; parsing happens once, before).
// The traces come from QEMU's emulated TCE (the qemu profile), where the
// owner check is not on the path: the check columns show that it costs
// nothing there, and the spread between them is this machine's noise.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
// Not re-exported by the package index: the CLI's own modules.
import { readTrace } from '../dist/trace.js';
import { replay } from '../dist/replay.js';
import { CHECKS, hostOptions } from './ops.mjs';

/** The recorded traces shipped with the package (traces/); bench --traces DIR reads another folder. */
export const TRACE_DIR = fileURLToPath(new URL('../traces/', import.meta.url));

/** Trace files present in `dir` (.jsonl or .jsonl.gz). */
export function traceFiles(dir = TRACE_DIR) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /\.jsonl(\.gz)?$/.test(f)).sort().map((f) => join(dir, f));
}

/** [{trace, engine, check, hypercalls, hypercallsPerSecond (median), runs, mismatches}] */
export async function runTraces({ engine = 'wasm', reps = 3, filter, dir, tick = () => {} }) {
  const out = [];
  for (const file of traceFiles(dir)) {
    const trace = readTrace(file); // parsing: outside every timed loop
    const checks = CHECKS.filter((c) => !filter || filter.test(`trace/${trace.name}/${c}`));
    const runs = new Map(checks.map((c) => [c, []]));
    let hypercalls = 0;
    let mismatches = 0;
    // One untimed replay first, so every timed one runs optimised code, not the JIT's warm-up.
    if (checks.length) await replay(trace, { host: hostOptions(engine, 'none') });
    // Interleaved repetitions, as in the matrix.
    for (let i = 0; i < reps; i++) {
      for (const check of checks) {
        const r = await replay(trace, { host: hostOptions(engine, check) });
        hypercalls = r.hypercalls;
        mismatches = Math.max(mismatches, r.mismatches.length);
        runs.get(check).push(r.hypercallsPerSecond);
        tick();
      }
    }
    for (const [check, xs] of runs) {
      const s = [...xs].sort((a, b) => a - b);
      out.push({ trace: trace.name, engine, check, hypercalls, hypercallsPerSecond: s[s.length >> 1], runs: xs, mismatches });
    }
  }
  return out;
}
