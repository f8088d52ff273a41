// `npm run soak -- --seconds N [--workers W] [--seed S] [--engine wasm|native] [--out FILE]`: the
// soak of test/stress/soak.mjs for N seconds on each engine (default both). Its figures per engine
// (rounds, hypercalls, churn operations, teardowns, grace periods, the longest grace period and
// worker join) are printed as JSON lines and written, with the machine and the settings, to a
// results file as the benchmark's are: bench/results/soak-<date>.json unless --out names one.
// The README's soak figures are quoted from such a file and name it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { arch, cpus, loadavg, release, type } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { soak } from '../test/stress/soak.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const seconds = Number(opt('seconds', '30'));
const workers = Number(opt('workers', '2'));
const seed = Number(opt('seed', '1'));
const engines = opt('engine') ? [opt('engine')] : ['wasm', 'native'];
if (!Number.isFinite(seconds) || seconds <= 0 || !Number.isInteger(workers) || workers < 1 || workers > 64 || !Number.isInteger(seed) || engines.some((e) => e !== 'wasm' && e !== 'native')) {
  console.error('usage: npm run soak -- --seconds N [--workers W (1..64)] [--seed S] [--engine wasm|native] [--out FILE]');
  process.exit(2);
}
const date = new Date().toISOString();
const out = opt('out') ?? join(ROOT, 'bench', 'results', `soak-${date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
const doc = {
  kind: 'soak',
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, os: `${type()} ${release()} ${arch()}` },
  node: process.versions.node,
  date,
  // mode 'soak': never taken for a benchmark run (bench/readme.mjs reads full runs, mode 'full').
  settings: { mode: 'soak', seconds, workers, seed, engines },
  results: [],
  failures: [],
};
for (const engine of engines) {
  try {
    // At least 3 rounds, so even a short run ends one round each by detach, close and destroy.
    const f = await soak({ engine, seconds, workers, seed, minRounds: 3 });
    console.log(JSON.stringify(f));
    doc.results.push(f);
  } catch (e) {
    const replay = `npm run soak -- --seconds ${seconds} --workers ${workers} --seed ${seed} --engine ${engine}`;
    console.error(`soak failed on ${engine} (seed ${seed}; replay: ${replay}):`, e);
    doc.failures.push({ engine, error: String(e?.message ?? e).split('\n')[0], replay });
    process.exitCode = 1;
  }
}
// The load the soak ran under (1, 5, 15 min): on a shared machine the workers' share of the CPU explains the counts.
doc.machine.loadAverage = loadavg().map((x) => Math.round(x * 100) / 100);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
const shown = relative(process.cwd(), out);
console.log(`wrote ${shown.startsWith('..') ? out : shown}`);
process.exit();
