// benchmark.js as the sampler, driven in interleaved rounds: within one
// (op, engine) every check variant runs once per round, in an order that
// rotates from round to round, and the samples of all rounds are pooled per
// variant. A slow patch of the shared machine then lands on every variant
// alike instead of on whichever ran during it, which is what lets `none` and
// a check be compared in the same run.
import Benchmark from 'benchmark';

// The timed function is a closure over prepared state: benchmark.js must call
// it (f#()), not decompile its source into a loop where those names are unbound.
Benchmark.support.decompilation = false;

/** Sampling settings: full run and --quick. */
export const PROFILES = {
  full: { rounds: 10, minTime: 0.004, maxTime: 0.12 },
  quick: { rounds: 3, minTime: 0.002, maxTime: 0.04 },
  tiny: { rounds: 2, minTime: 0.001, maxTime: 0.005 },
};

/** One benchmark.js run of `fn`, which makes `burst` calls; its samples (seconds per call). */
export function sampleOnce(name, fn, p, burst = 1) {
  const bench = new Benchmark(name, fn, { minTime: p.minTime, maxTime: p.maxTime, minSamples: 5, initCount: 1, async: false, defer: false });
  bench.run();
  if (bench.error) throw bench.error;
  return bench.stats.sample.filter((x) => Number.isFinite(x) && x > 0).map((x) => x / burst);
}

/**
 * Calls of a short operation per timed invocation. benchmark.js's own loop
 * around a closure cost about 30 ns per invocation here (one H_PUT_TCE: 65.8 ns
 * through benchmark.js, 34.4 ns in a plain loop, same prepared state): charged
 * to a 30 ns hypercall it would double it. A burst of calls in an optimised
 * loop, divided out, leaves the call's own cost, as a VMM's vCPU loop sees it.
 */
export const BURST = 32;

/** `run` repeated BURST times in one loop (for an operation whose repetition changes nothing). */
export function inBursts(run) {
  return () => {
    let rc = 0;
    for (let i = 0; i < BURST; i++) rc |= run();
    return rc;
  };
}

/**
 * Samples every variant ({key, run, before?, burst?}) in `p.rounds` interleaved
 * rounds; `before()` runs untimed before each of the variant's runs.
 * Returns Map key → pooled samples (seconds per call). `tick()` after each run.
 */
export function interleaved(name, variants, p, tick = () => {}) {
  const pooled = new Map(variants.map((v) => [v.key, []]));
  for (let r = 0; r < p.rounds; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length];
      v.before?.();
      const s = sampleOnce(`${name} ${v.key}`, v.run, p, v.burst ?? 1);
      const into = pooled.get(v.key);
      for (const x of s) into.push(x);
      tick();
    }
  }
  return pooled;
}
