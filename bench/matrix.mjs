// The matrix op × engine × variant: the owner checks (a)–(c) and the
// ablations of the other safety mechanisms (d)–(f), ops.mjs. For one
// (op, engine) every variant runs on one shared setup and is sampled
// interleaved (harness.mjs); each variant's median is compared with `none`
// of the same run. Cells and variants an engine cannot run are listed as
// skipped with the reason, never filled in.
import { OPS, CHECKS, VARIANTS, HCALL_OPS, ablationOf, variantUnavailable, prepare } from './ops.mjs';
import { prepareJs } from './js-baseline.mjs';
import { interleaved, inBursts, BURST } from './harness.mjs';
import { cFloor, prepareCFloor, sampleCFloor, headToHead, versusNative } from './cfloor.mjs';
import { medianInterval, diffInterval, significant } from './stats.mjs';

export const ENGINES = ['wasm', 'native', 'js', 'c-floor'];

/**
 * The cells a run will try: [{op, engine, checks}] after --filter (name
 * `op/engine/variant`); `checks` are the variants (owner checks and
 * ablations) of the cell.
 */
export function plan(filter) {
  const out = [];
  for (const op of OPS) {
    for (const engine of ENGINES) {
      if ((engine === 'js' || engine === 'c-floor') && !HCALL_OPS.has(op)) continue;
      const all = HCALL_OPS.has(op) ? VARIANTS : CHECKS;
      const checks = all.filter((c) => !filter || filter.test(`${op}/${engine}/${c}`));
      if (checks.length === 0) continue;
      // `none` is always sampled: it is what every other variant is compared with.
      out.push({ op, engine, checks: checks.includes('none') ? checks : ['none', ...checks] });
    }
  }
  return out;
}

const ns = (s) => s.map((x) => x * 1e9);
const scale = (iv, k) => ({ median: iv.median / k, lo: iv.lo / k, hi: iv.hi / k });

/**
 * Rows of the schema from pooled samples (Map variant → seconds per
 * call). `overhead` is variant − none for every variant; an ablation row
 * also has `mechanism` and `cost` = none − ablation (what the mechanism
 * costs), with its interval and verdict.
 */
export function rows(op, engine, entries, pooled) {
  const base = ns(pooled.get('none'));
  const baseMed = medianInterval(base);
  const out = [];
  for (const [check, samples] of pooled) {
    const s = ns(samples);
    const iv = medianInterval(s);
    let overhead = null;
    let cost;
    if (check !== 'none') {
      const d = diffInterval(base, s);
      const diff = iv.median - baseMed.median;
      overhead = { ns: diff, pct: (100 * diff) / baseMed.median, lo: d.lo, hi: d.hi, pctLo: 100 * d.relLo, pctHi: 100 * d.relHi, significant: significant(d) };
      const a = ablationOf(check);
      if (a) {
        const c = { ns: -diff, lo: -d.hi, hi: -d.lo };
        cost = { mechanism: a.mechanism, ...c, pct: (-100 * diff) / baseMed.median, pctLo: -100 * d.relHi, pctHi: -100 * d.relLo, perEntry: -diff / entries, significant: significant(c) };
      }
    }
    out.push({ op, engine, check, nsPerCall: iv, nsPerEntry: scale(iv, entries), samples: s.length, overhead, entries, ...(cost ? { cost } : {}) });
  }
  return out;
}

/**
 * The timed closure of a prepared hypercall: below 512 entries a burst of
 * calls per invocation (harness.mjs#BURST: benchmark.js's own cost per
 * invocation is of the order of one such call); each repeats a remap or a
 * clear of the same entries, so a burst leaves the state as one call does.
 */
function timed(p) {
  // A hypercall cell brings its own burst loop (ops.mjs, cellClosures: its own call feedback).
  return p.entries >= 512 ? { run: p.run } : { run: p.burst ?? inBursts(p.run), burst: BURST };
}

/** Builds the variants of one cell; unavailable ones go to `skipped` with their reason. Throws when the engine cannot run the cell. */
async function variantsOf(cell, skipped) {
  const { op, engine, checks } = cell;
  const vs = [];
  for (const check of checks) {
    const why = variantUnavailable(op, engine, check);
    if (why) {
      skipped.push({ op, engine, check, reason: why });
      continue;
    }
    if (engine === 'js') {
      const p = prepareJs(op, check);
      p.verify();
      vs.push({ key: check, entries: p.entries, ...timed(p) });
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
      vs.push({ key: check, before: p.before, entries: p.entries, verify: p.verify, ...(HCALL_OPS.has(op) ? timed(p) : { run: p.run }) });
    }
  }
  return vs;
}

/**
 * Runs every planned cell; returns {results, skipped}. `tick(label)` after
 * each benchmark run. Each cell ends with its verify(): the prepared state
 * is still the real-mode success it was, and checkInvariants() holds.
 */
export async function runMatrix(cells, profile, tick) {
  const results = [];
  const skipped = [];
  // The native `none` variant of each op, sampled again head to head with the c-floor cell's (ENGINES runs native first).
  const nativeNone = new Map();
  for (const cell of cells) {
    let vs;
    const mine = [];
    try {
      vs = await variantsOf(cell, mine);
    } catch (e) {
      const reason = e.message.split('\n')[0];
      for (const check of cell.checks) skipped.push({ op: cell.op, engine: cell.engine, check, reason });
      for (let i = 0; i < profile.rounds * cell.checks.length; i++) tick(`${cell.op} ${cell.engine} (skipped)`);
      continue;
    }
    skipped.push(...mine);
    for (let i = 0; i < profile.rounds * mine.length; i++) tick(`${cell.op} ${cell.engine} (skipped)`);
    const label = `${cell.op} ${cell.engine}`;
    const pooled = cell.engine === 'c-floor'
      ? sampleCFloor(vs, profile.rounds, profile.minTime, () => tick(label))
      : interleaved(label, vs, profile, () => tick(label));
    // The state must still be the prepared one after timing: real mode, success, invariants.
    for (const v of vs) v.verify?.();
    const out = rows(cell.op, cell.engine, vs[0].entries, pooled);
    if (cell.engine === 'native') nativeNone.set(cell.op, vs.find((v) => v.key === 'none'));
    if (cell.engine === 'c-floor' && nativeNone.has(cell.op)) {
      const cfNone = vs.find((v) => v.key === 'none');
      const h = headToHead(nativeNone.get(cell.op), cfNone, profile, () => tick(`${label} head to head`));
      // Both still in the prepared state after the head-to-head rounds, as after their own cells.
      nativeNone.get(cell.op).verify?.();
      cfNone.verify();
      out.find((r) => r.check === 'none').vsNative = versusNative(h.native, h.cFloor);
    }
    results.push(...out);
  }
  return { results, skipped };
}
