// `npm run soak -- --seconds N [--workers W] [--seed S] [--engine wasm|native]`: the soak of
// test/stress/soak.mjs for N seconds on each engine (default both), its figures printed as JSON
// lines: rounds, hypercalls, churn operations, teardowns, grace periods, the longest grace period.
import { soak } from '../test/stress/soak.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const seconds = Number(opt('seconds', '30'));
const workers = Number(opt('workers', '2'));
const seed = Number(opt('seed', '1'));
if (!Number.isFinite(seconds) || seconds <= 0 || !Number.isInteger(workers) || workers < 1 || workers > 64 || !Number.isInteger(seed)) {
  console.error('usage: npm run soak -- --seconds N [--workers W (1..64)] [--seed S] [--engine wasm|native]');
  process.exit(2);
}
const engines = opt('engine') ? [opt('engine')] : ['wasm', 'native'];
for (const engine of engines) {
  try {
    const f = await soak({ engine, seconds, workers, seed });
    console.log(JSON.stringify(f));
  } catch (e) {
    console.error(`soak failed on ${engine} (seed ${seed}; replay: npm run soak -- --seconds ${seconds} --workers ${workers} --seed ${seed} --engine ${engine}):`, e);
    process.exitCode = 1;
  }
}
process.exit();
