// The matrix op × engine × check. For one (op, engine) the four check
// variants are prepared on four hosts and sampled interleaved (harness.mjs);
// each variant's median is compared with `none` of the same run. Cells an
// engine cannot run are listed as skipped with the reason, never filled in.
import { OPS, CHECKS, HCALL_OPS, prepare } from './ops.mjs';
import { prepareJs } from './js-baseline.mjs';
import { interleaved } from './harness.mjs';
import { cFloor, prepareCFloor, sampleCFloor } from './cfloor.mjs';
import { medianInterval, diffInterval, significant } from './stats.mjs';

export const ENGINES = ['wasm', 'native', 'js', 'c-floor'];

/** The cells a run will try: [{op, engine, checks}] after --filter (name `op/engine/check`). */
export function plan(filter) {
  const out = [];
  for (const op of OPS) {
    for (const engine of ENGINES) {
      if ((engine === 'js' || engine === 'c-floor') && !HCALL_OPS.has(op)) continue;
      const checks = CHECKS.filter((c) => !filter || filter.test(`${op}/${engine}/${c}`));
      if (checks.length === 0) continue;
      // `none` is always sampled: it is what every other check is compared with.
      out.push({ op, engine, checks: checks.includes('none') ? checks : ['none', ...checks] });
    }
  }
  return out;
}

const ns = (s) => s.map((x) => x * 1e9);
const scale = (iv, k) => ({ median: iv.median / k, lo: iv.lo / k, hi: iv.hi / k });

/** Rows of the schema from pooled samples (Map check → seconds per call). */
export function rows(op, engine, entries, pooled) {
  const base = ns(pooled.get('none'));
  const baseMed = medianInterval(base);
  const out = [];
  for (const [check, samples] of pooled) {
    const s = ns(samples);
    const iv = medianInterval(s);
    let overhead = null;
    if (check !== 'none') {
      const d = diffInterval(base, s);
      const diff = iv.median - baseMed.median;
      overhead = { ns: diff, pct: (100 * diff) / baseMed.median, lo: d.lo, hi: d.hi, pctLo: 100 * d.relLo, pctHi: 100 * d.relHi, significant: significant(pooled.get('none'), samples) };
    }
    out.push({ op, engine, check, nsPerCall: iv, nsPerEntry: scale(iv, entries), samples: s.length, overhead, entries });
  }
  return out;
}

/** Builds the variants of one cell, or throws with the reason the engine cannot run it. */
async function variantsOf(cell) {
  const { op, engine, checks } = cell;
  const vs = [];
  for (const check of checks) {
    if (engine === 'js') {
      const p = prepareJs(op, check);
      p.verify();
      vs.push({ key: check, run: p.run, entries: p.entries });
    } else if (engine === 'c-floor') {
      const f = await cFloor();
      if (!f.ok) throw new Error(f.reason);
      const p = await prepareCFloor(op, check);
      p.verify();
      vs.push({ key: check, entries: p.entries, loop: p.loop, verify: p.verify });
    } else {
      const p = await prepare(op, engine, check);
      p.before?.();
      p.run();
      p.verify();
      vs.push({ key: check, run: p.run, before: p.before, entries: p.entries, verify: p.verify });
    }
  }
  return vs;
}

/** Runs every planned cell; returns {results, skipped}. `tick(label)` after each benchmark run. */
export async function runMatrix(cells, profile, tick) {
  const results = [];
  const skipped = [];
  for (const cell of cells) {
    let vs;
    try {
      vs = await variantsOf(cell);
    } catch (e) {
      const reason = e.message.split('\n')[0];
      for (const check of cell.checks) skipped.push({ op: cell.op, engine: cell.engine, check, reason });
      for (let i = 0; i < profile.rounds * cell.checks.length; i++) tick(`${cell.op} ${cell.engine} (skipped)`);
      continue;
    }
    const label = `${cell.op} ${cell.engine}`;
    const pooled = cell.engine === 'c-floor'
      ? sampleCFloor(vs, profile.rounds, profile.minTime, () => tick(label))
      : interleaved(label, vs, profile, () => tick(label));
    // The state must still be the prepared one after timing: real mode, success.
    for (const v of vs) v.verify?.();
    results.push(...rows(cell.op, cell.engine, vs[0].entries, pooled));
  }
  return { results, skipped };
}
