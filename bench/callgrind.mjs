// --instructions: deterministic instruction counts per call and per entry
// from valgrind's callgrind (docs/toolchain.md, "Measuring"): the probe
// runs under node with NODE_FLAGS twice, with K1 and K2 iterations;
// (Ir(K2) − Ir(K1)) / (K2 − K1) removes start-up and set-up, provided the
// two runs do the same work outside the K calls. Engine `c-floor` counts
// the native routine run by engine.benchLoop in one C++ loop
// (callgrind-probe.mjs). Two valgrind processes at a time (the machine has
// two cores). SPAPR_CG_KEEP=DIR keeps the callgrind files (for callgrind_annotate).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entriesOf, VARIANTS } from './ops.mjs';

const PROBE = fileURLToPath(new URL('./callgrind-probe.mjs', import.meta.url));

/**
 * node's flags under callgrind. --no-liftoff: without it the WebAssembly may
 * stay in the baseline compiler and count double. Fixed hash and random
 * seeds: without them start-up varies by ~0.15%. --single-threaded,
 * --predictable-gc-schedule, --no-minor-gc-task, --no-incremental-marking-task:
 * V8 otherwise schedules its collections by the clock (the memory reducer's
 * timers, a new space that shrinks when the allocation rate in bytes per ms
 * is low, a heap limit grown from measured GC speed, GC tasks run when the
 * event loop turns), and under valgrind, with another process beside it, the
 * clock runs differently in each run: one run of a pair had an incremental
 * mark-compact (~40 M instructions) the other had not, which doubled the
 * per-call count of INDIRECT(512) (c-floor 167,845 instead of 88,679), and
 * scavenges that differed in number moved c-floor by ±5% between full runs
 * (bench/results/callgrind-gc-2026-12-02.md). With them every collection
 * happens at the same allocation in both runs.
 */
export const NODE_FLAGS = ['--single-threaded', '--no-liftoff', '--hash-seed=1', '--random-seed=1', '--predictable-gc-schedule', '--no-minor-gc-task', '--no-incremental-marking-task'];

/**
 * The probe's iteration count as an argument of one width for every K, so
 * that process.argv, and every allocation before the measured calls, is the
 * same size in each run of a cell (a string one character longer moved the
 * point at which the new space fills, and which objects its scavenges found).
 */
const kArg = (k) => String(k).padStart(8, '0');

/** node's arguments for one probe run of `k` iterations. */
export const probeArgv = (op, engine, check, k) => [...NODE_FLAGS, PROBE, op, engine, check, kArg(k)];

/** Largest relative disagreement of per-call counts of one cell taken as agreement (noise is ~0.1–0.6%, a step as the doubling ≥ 10%). */
export const CG_TOLERANCE = 0.02;
export const CG_OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'H_PUT_TCE_64K_OVER_4K'];

/** undefined when valgrind can run, else why not. */
export function valgrindMissing() {
  const r = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `valgrind is not available here (${r.error ? r.error.code : `exit ${r.status}`}); install valgrind to get instruction counts`;
  return undefined;
}

/**
 * Pairs of runs per cell; the median per-call count is reported, with the
 * range (each result keeps irPerCallRuns and irPerCallRange). Before
 * NODE_FLAGS fixed the collection schedule and the probe's warm-up grew,
 * H_PUT_TCE through vcpu.hcall() (wasm) spread over ±15% between pairs on
 * this machine; in 2026-12-02T04-40-34Z.json its pairs agree within 0.3%.
 * The pairs and the K3 run together are the cell's linearity check.
 */
export const CG_REPEATS = 3;

/**
 * Pairs for one cell: c-floor (the native routine in engine.benchLoop's C++
 * loop) needs one, since no JavaScript runs between its iterations and
 * nothing tiers up inside them; the engine routines count the same
 * instructions per call there as under the native column. An op of 512
 * entries needs one too: its pairs agree to well under 1% per entry once the
 * collections follow allocation, not the clock (NODE_FLAGS), and the probe's
 * warm-up has optimised the JavaScript path; a cell a target judges still
 * sets `repeats` (run.mjs: CG_REPEATS for TARGET_CG_CELLS). Every cell
 * gets one more run, at K3, that checks it (linearity).
 */
export const repeatsOf = (cell) => cell.repeats ?? (cell.engine === 'c-floor' || entriesOf(cell.op) >= 512 ? 1 : CG_REPEATS);

/** valgrind runs of `cells` (two per pair, and one at K3 per cell for its linearity check), for the progress bar. */
export const cgRunsOf = (cells) => cells.reduce((a, c) => a + 2 * repeatsOf(c) + 1, 0);

/**
 * Iteration counts K1, K2 for an op: enough work in K2 − K1 to dwarf the
 * jitter that stays. Two runs of one probe with the same K still differ by
 * ~0.2–0.5 M instructions (where malloc and the scavenger find things; the
 * module loader's reads finish in another order), ~1% of 500 INDIRECT(512)
 * calls, so K2 − K1 is 2,000 of those (~180 M instructions); start-up
 * (~1.5 G) costs more than the calls.
 */
export const counts = (op) => (entriesOf(op) >= 512 ? [40, 2040] : entriesOf(op) >= 16 ? [1000, 41000] : [2000, 202000]);

/**
 * The K3 run's count of a cell: K2 − K1 beyond K2, so its slope has as much
 * work as the pairs' against the same ~0.2–0.5 M run-to-run jitter (a
 * quarter of it left H_PUT_TCE's slope 2.1% off its pairs from jitter alone:
 * 398.3 against 404.8–407.9 per call).
 */
export const k3Of = (k1, k2) => k2 + (k2 - k1);

/** Ir of one probe run. */
function irOf(dir, op, engine, check, k, pair) {
  const out = join(dir, `${op}-${engine}-${check}-p${pair}-${k}.out`);
  return new Promise((resolve, reject) => {
    const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, ...probeArgv(op, engine, check, k)], { stdio: ['ignore', 'ignore', 'pipe'] });
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
 * Whether a cell's per-call counts are linear in K: its pairs and the slope
 * of its K3 run (k3Of), (Ir(K3) − Ir(K2)) / (K3 − K2), all agree within
 * CG_TOLERANCE of the pairs' median. A step
 * that lands between K1 and K2 (a collection or a compilation in one run
 * only) makes the slopes differ; the result says so instead of passing it
 * off as a cost per call.
 * @param {number} [k3] K of the cell's K3 run (k3Of)
 * @param {number} [k3PerCall] that run's slope, (Ir(K3) − Ir(K2)) / (K3 − K2)
 */
export function linearity(runs, perCall, k3 = undefined, k3PerCall = undefined) {
  const slopes = k3PerCall === undefined ? runs : [...runs, k3PerCall];
  const worst = Math.max(...slopes.map((x) => Math.abs(x - perCall) / perCall));
  return { ...(k3 === undefined ? {} : { k3, irPerCallK2K3: k3PerCall }), worst, linear: worst <= CG_TOLERANCE };
}

/**
 * Instruction counts for every (op, engine, check) in `cells`. Returns
 * {results: [{op, engine, check, irPerCall, irPerEntry, k1, k2, linearity}], skipped: [{…, reason}]}.
 * `tick()` after each valgrind run.
 */
export async function runCallgrind(cells, tick = () => {}) {
  // SPAPR_CG_KEEP=DIR keeps every run's callgrind file there (for callgrind_annotate), else a temporary directory.
  const keep = process.env.SPAPR_CG_KEEP;
  if (keep) mkdirSync(keep, { recursive: true });
  const dir = keep || mkdtempSync(join(tmpdir(), 'spapr-cg-'));
  const results = [];
  const skipped = [];
  try {
    const tasks = [];
    for (const c of cells) {
      const [k1, k2] = counts(c.op);
      tasks.push(async () => {
        try {
          const runs = [];
          let last;
          for (let i = 0; i < repeatsOf(c); i++) {
            const [a, b] = [await irOf(dir, c.op, c.engine, c.check, k1, i).finally(tick), await irOf(dir, c.op, c.engine, c.check, k2, i).finally(tick)];
            runs.push((b - a) / (k2 - k1));
            last = b;
          }
          const sorted = [...runs].sort((x, y) => x - y);
          const perCall = sorted[(sorted.length - 1) >> 1];
          // Every cell, pairs or not, gets the K3 run: with collections scheduled by allocation the
          // pairs of one cell repeat the same work, so their agreeing cannot show a step that lands in every K2 run.
          const k3 = k3Of(k1, k2);
          const c3 = await irOf(dir, c.op, c.engine, c.check, k3, runs.length - 1).finally(tick);
          const check = linearity(runs, perCall, k3, (c3 - last) / (k3 - k2));
          if (!check.linear) console.error(`callgrind: ${c.op}/${c.engine}/${c.check} is not linear in K (per-call counts ${[...runs, check.irPerCallK2K3].filter((x) => x !== undefined).map((x) => x.toFixed(1)).join(', ')}): see its linearity in the results`);
          results.push({ ...c, irPerCall: perCall, irPerEntry: perCall / entriesOf(c.op), k1, k2, irPerCallRuns: runs, irPerCallRange: [sorted[0], sorted[sorted.length - 1]], linearity: check });
        } catch (e) {
          skipped.push({ ...c, reason: e.message.split('\n')[0] });
        }
      });
    }
    await pool(tasks, 2);
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
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
