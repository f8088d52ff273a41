// `npm run bench` / `npx spapr-tce bench [--quick] [--filter RE] [--json FILE] [--instructions]`:
// the matrix (op × engine × check, each check interleaved with `none`),
// trace replay throughput, vCPU scaling, snapshots (bench/snapshot.mjs) and
// callgrind counts (with --instructions every variant). Writes <date>.json
// and an SVG chart next to it into resultsDir (the CLI's --out:
// ./spapr-tce-results, bench/results for `npm run bench`).
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { PROFILES, BURST } from './harness.mjs';
import { plan, runMatrix } from './matrix.mjs';
import { runTraces, traceFiles, TRACE_DIR } from './traces.mjs';
import { runScaling, scalingPlan, scalingSchedule, scalingIntervals } from './scaling.mjs';
import { runSnapshot, snapshotRuns, snapshotTable } from './snapshot.mjs';
import { CG_OPS, CG_REPEATS, NODE_FLAGS, cgRunsOf, runCallgrind, valgrindMissing } from './callgrind.mjs';
import { CHECKS, VARIANTS, variantUnavailable, prepare, eraOf } from './ops.mjs';
import { cFloor } from './cfloor.mjs';
import { document, matrixTable, skippedText, tracesTable, scalingTable, instructionsTable, mechanismsTable, erasTable } from './report.mjs';
import { overheadChart } from './chart.mjs';
import { keyNumbers, targets, targetsText, TARGET_CG_CELLS } from './summary.mjs';
import { dmaPlan, runDma, dmaTable, dmaTargets } from './dma.mjs';

const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));

/** Whether a target judges the instruction count of (op, engine, check). */
const isTargetCell = (op, engine, check) => TARGET_CG_CELLS.some((t) => t.op === op && t.engine === engine && t.check === check);

/** The ops whose every check and ablation a full run counts on the WebAssembly engine. */
const MECHANISM_CG_OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512'];

/**
 * Whether a full run without --instructions counts (op, engine, check): the
 * targets' cells, and what each check and safety mechanism adds to H_PUT_TCE
 * and an INDIRECT(512) entry on the WebAssembly engine (issue 10 item 4: the
 * mechanisms table and the designs table give instructions beside ns).
 */
function defaultCgCell(op, engine, check) {
  if (isTargetCell(op, engine, check)) return true;
  return engine === 'wasm' && MECHANISM_CG_OPS.includes(op) && !eraOf(check);
}

/**
 * opts: {quick, filter, json, instructions, resultsDir, traceDir} from the
 * command line; for tests also {profile: 'tiny', quiet}. Returns the exit code.
 */
export async function main(opts = {}) {
  const t0 = Date.now();
  const quick = !!opts.quick;
  const profile = PROFILES[opts.profile ?? (quick ? 'quick' : 'full')];
  if (!profile) throw new Error(`unknown profile ${opts.profile}`);
  const tiny = opts.profile === 'tiny';
  let filter;
  try {
    filter = opts.filter ? new RegExp(opts.filter) : undefined;
  } catch (e) {
    console.error(`spapr-tce bench: --filter: ${e.message}`);
    return 2;
  }
  const log = opts.quiet ? () => {} : (s = '') => console.log(s);

  // What will run, so the progress bar knows its length.
  const cells = plan(filter);
  const traceReps = tiny ? 1 : quick ? 3 : 9;
  const scaleSchedule = scalingSchedule({ quick, tiny });
  const traceRuns = traceFiles(opts.traceDir).length * CHECKS.length * traceReps;
  const scaleRuns = scalingIntervals(filter, scaleSchedule.rounds);
  const cgMissing = opts.instructions ? valgrindMissing() : undefined;
  // Instruction counts: with --instructions every variant of the hypercall ops (--quick: H_PUT_TCE and
  // INDIRECT(512)); a full run without it still counts defaultCgCell's cells, when valgrind is there.
  let cgCells = [];
  const cgUnavailable = [];
  const wantCg = opts.instructions || (!quick && !tiny && !valgrindMissing());
  if (wantCg && !cgMissing) {
    const ops = quick || tiny ? ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512'] : CG_OPS;
    // c-floor: the native routine in its C++ loop, `none` only (what the c-floor ≤ native verdict compares).
    for (const op of ops) for (const engine of ['wasm', 'native', 'c-floor']) for (const check of VARIANTS) {
      if (engine === 'c-floor' && check !== 'none') continue;
      if (!opts.instructions && !defaultCgCell(op, engine, check)) continue;
      if (filter && !filter.test(`instructions/${op}/${engine}/${check}`) && !filter.test(`${op}/${engine}/${check}`)) continue;
      const why = variantUnavailable(op, engine, check);
      if (why) cgUnavailable.push({ op, engine, check, reason: why });
      else cgCells.push({ op, engine, check, ...(isTargetCell(op, engine, check) && engine !== 'c-floor' ? { repeats: CG_REPEATS } : {}) });
    }
  }
  // The native engine's hypercalls, once: callgrind runs are too slow to discover a missing routine 2× per cell.
  let nativeHcall;
  try {
    await prepare('H_PUT_TCE', 'native', 'none');
  } catch (e) {
    nativeHcall = e.message.split('\n')[0];
  }
  const cgSkipped = [];
  if (nativeHcall) {
    for (const c of cgCells.filter((c) => c.engine !== 'wasm')) cgSkipped.push({ ...c, reason: nativeHcall });
    cgCells = cgCells.filter((c) => c.engine === 'wasm');
  }
  // A filter that selects nothing is a usage error, not an empty result.
  const traceNames = traceFiles(opts.traceDir).map((f) => basename(f).replace(/\.jsonl(\.gz)?$/, ''));
  const anyTrace = traceNames.some((n) => CHECKS.some((c) => !filter || filter.test(`trace/${n}/${c}`)));
  const anyScaling = !filter || scalingPlan().some(([t, n]) => filter.test(`scaling/${t}/${n}`));
  const anySnapshot = !filter || filter.test('snapshot');
  const dmaCells = dmaPlan(filter);
  if (filter && cells.length === 0 && !anyTrace && !anyScaling && !anySnapshot && cgCells.length === 0 && cgSkipped.length === 0 && cgUnavailable.length === 0 && dmaCells.length === 0) {
    console.error(`spapr-tce bench: --filter ${opts.filter} matches no benchmark (names look like H_PUT_TCE/wasm/mm, trace/${traceNames[0] ?? 'NAME'}/none, scaling/disjoint/2, snapshot, dma/readInto/512)`);
    return 2;
  }
  // Cells that a skip empties still count their rounds: the progress bar's total, not a figure.
  const headToHeads = cells.filter((c) => c.engine === 'c-floor' && cells.some((n) => n.engine === 'native' && n.op === c.op)).length;
  const total = cells.reduce((a, c) => a + c.checks.length * profile.rounds, 0) + headToHeads * profile.rounds + traceRuns + scaleRuns + cgRunsOf(cgCells) + (anySnapshot ? snapshotRuns({ quick, tiny }).total : 0) + dmaCells.length * profile.rounds;

  const bar = new cliProgress.SingleBar(
    { format: 'bench [{bar}] {percentage}% | {value}/{total} | {eta_formatted} left | {label}', stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 40 },
    cliProgress.Presets.shades_classic,
  );
  if (!opts.quiet) bar.start(total, 0, { label: 'preparing' });
  const tick = (label) => (opts.quiet ? undefined : bar.increment(1, label ? { label } : undefined));

  let results, skipped, traces = [], scaling = [], instructions, snapshot, dma = [];
  const sectionSeconds = {};
  let mark = Date.now();
  const lap = (name) => {
    sectionSeconds[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };
  try {
    ({ results, skipped } = await runMatrix(cells, profile, tick));
    lap('matrix');
    if (traceFiles(opts.traceDir).length === 0) {
      traces = { skipped: `no traces in ${opts.traceDir ?? TRACE_DIR}` };
    } else {
      traces = await runTraces({ reps: traceReps, filter, dir: opts.traceDir, tick: () => tick('trace replay') });
    }
    lap('traces');
    if (anyScaling) {
      scaling = await runScaling({ ...scaleSchedule, filter, tick: () => tick('vCPU scaling') });
    }
    lap('scaling');
    if (anySnapshot) snapshot = await runSnapshot({ quick, tiny, dir: opts.traceDir, tick: () => tick('snapshots') });
    lap('snapshot');
    dma = await runDma(dmaCells, profile, () => tick('dma'));
    lap('dma');
    if (opts.instructions && cgMissing) {
      instructions = { skipped: cgMissing };
    } else if (wantCg) {
      const r = await runCallgrind(cgCells, () => tick('callgrind'));
      instructions = {
        method: `valgrind --tool=callgrind, node ${NODE_FLAGS.join(' ')}; (Ir(K2) − Ir(K1)) / (K2 − K1), the median of ${CG_REPEATS} pairs (one for c-floor, and for 512-entry cells no target judges; irPerCallRuns, irPerCallRange); linearity: the pairs and each cell's K2..K3 slope agree within the tolerance (callgrind.mjs#linearity)`,
        scope: opts.instructions ? 'every variant' : 'the cells the targets need, and every check and mechanism of H_PUT_TCE and INDIRECT(512) on wasm (--instructions counts every variant)',
        results: r.results,
        skipped: [...cgSkipped, ...cgUnavailable, ...r.skipped],
      };
    }
    if (wantCg || opts.instructions) lap('instructions');
  } catch (e) {
    if (!opts.quiet) bar.stop();
    console.error(`spapr-tce bench: ${String(e?.message ?? e).split('\n')[0]}`);
    if (process.env.SPAPR_TCE_DEBUG && e?.stack) console.error(e.stack);
    return 1;
  }
  if (!opts.quiet) bar.stop();

  const cf = await cFloor();
  const doc0 = {
    results,
    skipped,
    traces,
    scaling,
    instructions,
    snapshot,
    settings: {
      mode: opts.profile ?? (quick ? 'quick' : 'full'),
      filter: opts.filter ?? null,
      harness: `benchmark.js; ${profile.rounds} interleaved rounds per (op, engine), minTime ${profile.minTime} s, maxTime ${profile.maxTime} s per run; hypercalls of fewer than 512 entries timed in bursts of ${BURST} calls per invocation (harness.mjs#BURST)`,
      intervals: 'median: order statistics (binomial, 95%); overhead and cost: percentile bootstrap of the difference of medians (2000 resamples, 95%); significant: that interval excludes 0',
      notes: [
        'nsPerEntry divides by hardware entries written: 1, 512, 512, 1, 512 and 16 (a 64 KiB guest page over a 4 KiB hardware table).',
        'H_STUFF_TCE_512 is in steady state: the prepared 512 entries are mapped before the first timed call and already clear after it.',
        'MAP_UNMAP_* is the VFIO ioctl path (TypeScript over the engine), argument objects built once; the js and c-floor engines cover the hypercalls only.',
        'c-floor ≤ native (vsNative on the c-floor none row): the two none variants sampled again head to head, alternating within each round on their shared prepared host (cfloor.mjs#headToHead), not taken from their cells, which ran minutes apart.',
        'Trace replay runs in the qemu profile (the traces come from QEMU’s emulated TCE), where no owner check is on the path.',
        'Variants: the owner checks none, pid-call, pid-entry, mm; and runs without one safety mechanism (HDR.ablate, benchmark only): no-view-lock (d), one-pass (e), no-smr-read (f). A mechanism’s cost is none minus its run without it.',
        'Variant k5.19: H_PUT_TCE and INDIRECT(512) on a host of kernel 5.19 (no real mode: every call in virtual mode), its own host; none is kernel 4.19.',
        'vCPU scaling: every configuration set up once, measured interleaved in rounds of one interval each (a balanced order: every configuration in every position and after every other equally often); ratioToOne is the median over rounds of the rate / the one-vCPU rate of the same round, ratioInterval its 95% bootstrap interval.',
        'Every section ends with host.checkInvariants(): each matrix cell in its verify(), each scaling configuration’s hosts once its workers ended; the traces’ replay() checks every return code and translation.',
      ],
      cFloor: cf.ok ? 'available' : `not available: ${cf.reason}`,
      ...(cf.needed ? { cFloorNeeded: cf.needed } : {}),
      nativeHypercalls: nativeHcall ? `not available: ${nativeHcall}` : 'available',
    },
    seconds: (Date.now() - t0) / 1000,
    sectionSeconds,
  };
  const doc = document({ ...doc0, targets: targets(doc0) });
  doc.dma = dma;

  // Files: <resultsDir>/<date>.json (+ .svg), and --json FILE.
  const dir = opts.resultsDir ?? RESULTS;
  mkdirSync(dir, { recursive: true });
  const stamp = doc.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const base = join(dir, `${stamp}${doc.settings.mode === 'full' ? '' : `.${doc.settings.mode}`}`);
  const text = JSON.stringify(doc, null, 2) + '\n';
  writeFileSync(`${base}.json`, text);
  writeFileSync(`${base}.svg`, overheadChart(doc));
  if (opts.json) {
    mkdirSync(dirname(resolve(opts.json)), { recursive: true });
    writeFileSync(opts.json, text);
  }

  log(matrixTable(results));
  if (skipped.length) log('\n' + skippedText(skipped));
  log(`c-floor: ${cf.ok ? 'measured' : `not available — ${cf.reason}${cf.needed ? `; needed: ${cf.needed}` : ''}`}`);
  if (Array.isArray(traces) && traces.length) log('\nTrace replay (qemu profile)\n' + tracesTable(traces));
  else if (traces.skipped) log(`\ntrace replay skipped: ${traces.skipped}`);
  if (scaling.length) log('\nvCPU scaling (H_PUT_TCE on worker threads, wasm, check none)\n' + scalingTable(scaling));
  if (snapshot) log('\nSnapshots (binary format)\n' + snapshotTable(snapshot));
  if (instructions?.skipped && !instructions.results) log(`\ninstructions: skipped — ${instructions.skipped}`);
  const mech = mechanismsTable(results, instructions?.results ?? []);
  if (mech) log('\nWhat each safety mechanism costs (none − run without it; owner checks: check − none)\n' + mech);
  const eras = erasTable(results, instructions?.results ?? []);
  if (eras) log('\nKernel eras: the same hypercalls under kernel 5.19, which has no real mode (every call in virtual mode), against 4.19 (none)\n' + eras);
  if (instructions?.results) {
    log('\nInstructions (callgrind)\n' + instructionsTable(instructions.results));
    if (instructions.skipped.length) log(skippedText(instructions.skipped));
  }
  const keys = keyNumbers(doc);
  if (keys.length) log('\nKey numbers\n' + keys.map((k) => `  ${k}`).join('\n'));
  log('\nTargets (issue 10)\n' + targetsText(doc.targets));
  if (dma.length) log('\nDMA through a TCE window (vm.dma, qemu profile; issue 13)\n' + dmaTable(dma) + '\n' + dmaTargets(dma).map((t) => `  ${t}`).join('\n'));
  log(`\nwrote ${base}.json and ${base}.svg${opts.json ? ` and ${opts.json}` : ''} (${doc.seconds.toFixed(0)} s)`);
  return 0;
}
