// Statistics over benchmark.js samples (each sample: seconds per call, the
// mean of one timed cycle). Medians, not means: outliers of +15..55% are
// common on these shared VMs. The interval of a median is distribution-free
// (order statistics of the binomial); the interval of a difference of two
// medians is a percentile bootstrap with a fixed seed, so a rerun on the
// same samples gives the same interval, and it alone decides significance.
const sorted = (xs) => Float64Array.from(xs).sort();

/** Median of a sorted array. */
function medianSorted(s) {
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

export function median(xs) {
  return medianSorted(sorted(xs));
}

/**
 * The median and its 95% interval: the order statistics s[j], s[k] with
 * P(s[j] ≤ median ≤ s[k]) ≥ 0.95 (normal approximation of Binomial(n, 1/2);
 * the full range for fewer than 6 samples, where no tighter claim holds).
 */
export function medianInterval(xs) {
  const s = sorted(xs);
  const n = s.length;
  const m = medianSorted(s);
  if (n < 6) return { median: m, lo: s[0], hi: s[n - 1] };
  const half = 1.96 * Math.sqrt(n) / 2;
  const j = Math.max(0, Math.floor(n / 2 - half) - 1);
  const k = Math.min(n - 1, Math.ceil(n / 2 + half));
  return { median: m, lo: s[j], hi: s[k] };
}

/** mulberry32: a small seeded PRNG for the bootstrap. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 95% percentile-bootstrap interval of median(b) − median(a), and of that as a fraction of median(a). */
export function diffInterval(a, b, iterations = 2000, seed = 12345) {
  const rand = rng(seed);
  const ra = new Float64Array(a.length);
  const rb = new Float64Array(b.length);
  const diffs = new Float64Array(iterations);
  const rel = new Float64Array(iterations);
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < a.length; i++) ra[i] = a[(rand() * a.length) | 0];
    for (let i = 0; i < b.length; i++) rb[i] = b[(rand() * b.length) | 0];
    const ma = medianSorted(ra.sort());
    const mb = medianSorted(rb.sort());
    diffs[it] = mb - ma;
    rel[it] = (mb - ma) / ma;
  }
  diffs.sort();
  rel.sort();
  const q = (s, p) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  return { lo: q(diffs, 0.025), hi: q(diffs, 0.975), relLo: q(rel, 0.025), relHi: q(rel, 0.975) };
}

/**
 * The one significance verdict: a difference is significant when the 95%
 * bootstrap interval of the difference of medians (diffInterval) excludes 0;
 * an interval that includes 0 is "not significant", whatever the medians.
 */
export function significant(interval) {
  return interval.lo > 0 || interval.hi < 0;
}

/**
 * The median of `xs` with a 95% percentile-bootstrap interval (one sample:
 * resample `xs`, take the median; fixed seed, so a rerun on the same values
 * gives the same interval). For paired quantities such as bench/scaling.mjs's
 * per-round ratios, where each value is already a comparison within a round.
 */
export function medianBootstrap(xs, iterations = 2000, seed = 12345) {
  const n = xs.length;
  const m = median(xs);
  if (n === 0) return { median: NaN, lo: NaN, hi: NaN };
  const rand = rng(seed);
  const r = new Float64Array(n);
  const meds = new Float64Array(iterations);
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < n; i++) r[i] = xs[(rand() * n) | 0];
    meds[it] = medianSorted(r.sort());
  }
  meds.sort();
  const q = (p) => meds[Math.min(iterations - 1, Math.max(0, Math.round(p * (iterations - 1))))];
  return { median: m, lo: q(0.025), hi: q(0.975) };
}
