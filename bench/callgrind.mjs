// --instructions: deterministic instruction counts per call and per entry
// from valgrind's callgrind (docs/toolchain.md, "Measuring"): the probe
// runs under `node --single-threaded --no-liftoff` (without --no-liftoff the
// WASM may stay in the baseline compiler and count double) twice, with K1
// and K2 iterations; (Ir(K2) − Ir(K1)) / (K2 − K1) removes start-up and
// set-up. Fixed V8 hash and random seeds make most pairs of runs agree to
// ~0.01% (without them start-up varies by ~0.15%, which swamps a check of a
// few instructions per entry); single calls vary more (CG_REPEATS). Engine
// `c-floor` counts the native routine run by engine.benchLoop in one C++
// loop (callgrind-probe.mjs). Two valgrind processes at a time (the machine has two cores).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entriesOf, VARIANTS } from './ops.mjs';

const PROBE = fileURLToPath(new URL('./callgrind-probe.mjs', import.meta.url));
export const CG_OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'H_PUT_TCE_64K_OVER_4K'];

/** undefined when valgrind can run, else why not. */
export function valgrindMissing() {
  const r = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `valgrind is not available here (${r.error ? r.error.code : `exit ${r.status}`}); install valgrind to get instruction counts`;
  return undefined;
}

/**
 * Pairs of runs per cell; the median per-call count is reported, with the
 * range. Two pairs of the same probe do not always agree: H_PUT_TCE through
 * vcpu.hcall() (wasm) spread over ±15% between pairs on this machine (where
 * V8 tiers up and when the GC runs differ between runs; each result keeps
 * irPerCallRuns and irPerCallRange), while INDIRECT(512) per entry agrees
 * to well under 1%.
 */
export const CG_REPEATS = 3;

/**
 * Pairs for one cell: c-floor (the native routine in engine.benchLoop's C++
 * loop) needs one, since no JavaScript runs between its iterations and
 * nothing tiers up inside them; the engine routines count the same
 * instructions per call there as under the native column. An op of 512
 * entries needs one too: its pairs agree to well under 1% per entry, except
 * where V8 compiles or collects during the measured calls (native INDIRECT(512):
 * 197 and 206 per entry in two runs), so a cell a target judges sets
 * `repeats` (run.mjs: CG_REPEATS for TARGET_CG_CELLS).
 */
export const repeatsOf = (cell) => cell.repeats ?? (cell.engine === 'c-floor' || entriesOf(cell.op) >= 512 ? 1 : CG_REPEATS);

/** valgrind runs of `cells` (two per pair), for the progress bar. */
export const cgRunsOf = (cells) => cells.reduce((a, c) => a + 2 * repeatsOf(c), 0);

/** Iteration counts K1, K2 for an op: enough work in K2 − K1 to dwarf any jitter. */
const counts = (op) => (entriesOf(op) >= 512 ? [40, 540] : entriesOf(op) >= 16 ? [1000, 11000] : [2000, 32000]);

/** Ir of one probe run. */
function irOf(dir, op, engine, check, k) {
  const out = join(dir, `${op}-${engine}-${check}-${k}.out`);
  return new Promise((resolve, reject) => {
    const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, '--single-threaded', '--no-liftoff', '--hash-seed=1', '--random-seed=1', PROBE, op, engine, check, String(k)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        const why = err.split('\n').filter((l) => !l.startsWith('==')).join(' ').trim().slice(0, 300);
        reject(new Error(why || `valgrind exited with ${code}`));
        return;
      }
      const m = /^summary:\s*(\d+)/m.exec(readFileSync(out, 'utf8'));
      if (!m) reject(new Error(`no summary line in ${out}`));
      else resolve(Number(m[1]));
    });
  });
}

/** Runs tasks with at most `n` in flight. */
async function pool(tasks, n) {
  const results = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  return results;
}

/**
 * Instruction counts for every (op, engine, check) in `cells`. Returns
 * {results: [{op, engine, check, irPerCall, irPerEntry, k1, k2}], skipped: [{…, reason}]}.
 * `tick()` after each valgrind run.
 */
export async function runCallgrind(cells, tick = () => {}) {
  const dir = mkdtempSync(join(tmpdir(), 'spapr-cg-'));
  const results = [];
  const skipped = [];
  try {
    const tasks = [];
    for (const c of cells) {
      const [k1, k2] = counts(c.op);
      tasks.push(async () => {
        try {
          const runs = [];
          for (let i = 0; i < repeatsOf(c); i++) {
            const [a, b] = [await irOf(dir, c.op, c.engine, c.check, k1).finally(tick), await irOf(dir, c.op, c.engine, c.check, k2).finally(tick)];
            runs.push((b - a) / (k2 - k1));
          }
          const sorted = [...runs].sort((x, y) => x - y);
          const perCall = sorted[(sorted.length - 1) >> 1];
          results.push({ ...c, irPerCall: perCall, irPerEntry: perCall / entriesOf(c.op), k1, k2, irPerCallRuns: runs, irPerCallRange: [sorted[0], sorted[sorted.length - 1]] });
        } catch (e) {
          skipped.push({ ...c, reason: e.message.split('\n')[0] });
        }
      });
    }
    await pool(tasks, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const key = (r) => `${CG_OPS.indexOf(r.op)}/${r.engine}/${String(VARIANTS.indexOf(r.check)).padStart(2, '0')}`;
  results.sort((x, y) => key(x).localeCompare(key(y)));
  // Overhead against `none` of the same op and engine (exact: no interval needed).
  for (const r of results) {
    const base = results.find((x) => x.op === r.op && x.engine === r.engine && x.check === 'none');
    r.overheadPerCall = r.check === 'none' || !base ? null : r.irPerCall - base.irPerCall;
  }
  return { results, skipped };
}
