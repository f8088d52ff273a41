// The key numbers and the targets of issue 10, read off a results document.
// Reported, never asserted: wall time on a shared VM is evidence, not a test.
const find = (doc, op, engine, check = 'none') => doc.results.find((r) => r.op === op && r.engine === engine && r.check === check);
const f = (x, d = 1) => x.toFixed(d);
/** The callgrind count of (op, engine, none) in `doc`, linear in K or not. */
const countOf = (doc, op, engine) => (doc.instructions?.results ?? []).find((x) => x.op === op && x.engine === engine && x.check === 'none');
/** countOf, but undefined for a count not linear in K (callgrind.mjs#linearity): that is no cost per call, as if not counted. */
const linearCountOf = (doc, op, engine) => {
  const c = countOf(doc, op, engine);
  return c?.linearity?.linear === false ? undefined : c;
};
const int = (x) => Math.round(x).toLocaleString('en-US');

/** The instruction counts the targets need (a full run counts them even without --instructions). */
export const TARGET_CG_CELLS = [
  { op: 'H_PUT_TCE_INDIRECT_512', engine: 'wasm', check: 'none' },
  { op: 'H_PUT_TCE_INDIRECT_512', engine: 'native', check: 'none' },
  { op: 'H_PUT_TCE', engine: 'wasm', check: 'none' },
  // c-floor ≤ native: INDIRECT(512) is the op whose difference (one N-API crossing per 512 entries)
  // wall time cannot resolve; the other ops' c-floor is faster by far more than their intervals.
  { op: 'H_PUT_TCE_INDIRECT_512', engine: 'c-floor', check: 'none' },
];

/** Trace A's hypercalls per second before issue 10 (its "today"), the base of the 3× target. */
export const TRACE_A_BEFORE = 700_000;

const HCALL_OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'H_PUT_TCE_64K_OVER_4K'];

/**
 * The targets of issue 10, each {what, target, value (the figure), pass:
 * true | false | null (not measured), why (when null)}, in the issue's order.
 */
export function targets(doc) {
  const out = [];
  const insOf = (op, engine) => linearCountOf(doc, op, engine);
  const row = (what, target, value, pass, why) => out.push({ what, target, value, pass, ...(why ? { why } : {}) });
  const atMost = (what, limit, unit, x, why) =>
    x === undefined ? row(what, `≤ ${limit} ${unit}`, null, null, why) : row(what, `≤ ${limit} ${unit}`, `${f(x, x < 10 ? 2 : 1)} ${unit}`, x <= limit);
  const atLeast = (what, limit, text, x, shown, why) =>
    x === undefined ? row(what, text, null, null, why) : row(what, text, shown, x >= limit);
  const noTime = (op, engine) => `no ${engine} timing of ${op} in this run`;
  /** Why there is no count of `op` (shown as `label`) on `engine`: not linear in K, or not counted. */
  const noIns = (label, op, engine) => {
    const c = countOf(doc, op, engine);
    if (c?.linearity?.linear === false) return `the instruction count of ${label} (${engine}) is not linear in K (worst slope ${f(100 * c.linearity.worst, 1)}% off): a collection or compilation inside the measured calls`;
    return `no instruction count of ${label} (${engine}): valgrind missing, filtered out, or the run was --quick without --instructions`;
  };

  const wi = find(doc, 'H_PUT_TCE_INDIRECT_512', 'wasm');
  const ni = find(doc, 'H_PUT_TCE_INDIRECT_512', 'native');
  atMost('WASM H_PUT_TCE_INDIRECT(512), steady state, check none: time per entry', 26, 'ns', wi?.nsPerEntry.median, noTime('INDIRECT(512)', 'wasm'));
  atMost('WASM H_PUT_TCE_INDIRECT(512): instructions per entry', 300, 'instr', insOf('H_PUT_TCE_INDIRECT_512', 'wasm')?.irPerEntry, noIns('INDIRECT(512)', 'H_PUT_TCE_INDIRECT_512', 'wasm'));
  atMost('native H_PUT_TCE_INDIRECT(512): time per entry', 22, 'ns', ni?.nsPerEntry.median, noTime('INDIRECT(512)', 'native'));
  atMost('native H_PUT_TCE_INDIRECT(512): instructions per entry', 200, 'instr', insOf('H_PUT_TCE_INDIRECT_512', 'native')?.irPerEntry, noIns('INDIRECT(512)', 'H_PUT_TCE_INDIRECT_512', 'native'));
  {
    const what = 'c-floor (the native routine in a C++ loop) ≤ native, every hypercall op';
    const v = cFloorVerdict(doc);
    if (v.pass === null) row(what, C_FLOOR_TARGET, null, null, v.why);
    else row(what, C_FLOOR_TARGET, v.value, v.pass);
  }
  atMost('WASM H_STUFF_TCE(512) over clear entries: time per entry', 3, 'ns', find(doc, 'H_STUFF_TCE_512', 'wasm')?.nsPerEntry.median, noTime('STUFF(512)', 'wasm'));
  atMost('WASM H_PUT_TCE through vcpu.hcall(): instructions per call', 600, 'instr', insOf('H_PUT_TCE', 'wasm')?.irPerCall, noIns('H_PUT_TCE', 'H_PUT_TCE', 'wasm'));
  {
    const put = find(doc, 'H_PUT_TCE', 'wasm');
    const what = 'WASM H_PUT_TCE per call ≤ 2× INDIRECT(512) per entry, same run';
    if (!put || !wi) row(what, '≤ 2×', null, null, 'needs both wasm timings');
    else {
      const ratio = put.nsPerCall.median / wi.nsPerEntry.median;
      row(what, '≤ 2×', `${f(ratio, 2)}× (${f(put.nsPerCall.median)} ns / ${f(wi.nsPerEntry.median, 2)} ns)`, ratio <= 2);
    }
  }
  {
    const tr = Array.isArray(doc.traces) ? doc.traces.find((t) => t.check === 'none' && /^trace-a/.test(t.trace)) : undefined;
    const limit = 3 * TRACE_A_BEFORE;
    atLeast('trace replay of trace A (qemu profile, parsing outside the timed part)', limit, `≥ 3× ${int(TRACE_A_BEFORE)} = ${int(limit)} hypercalls/s`,
      tr?.hypercallsPerSecond, tr ? `${int(tr.hypercallsPerSecond)} hypercalls/s (${f(tr.hypercallsPerSecond / TRACE_A_BEFORE, 2)}×)` : null, 'trace A was not replayed');
  }
  const sc = Array.isArray(doc.scaling) ? doc.scaling : [];
  for (const [tables, limit, what] of [['shared', 1.3, 'two worker vCPUs on one shared table (different entries, one region)'], ['disjoint', 1.8, 'two worker vCPUs on disjoint tables']]) {
    const two = sc.find((s) => s.tables === tables && s.vcpus === 2);
    atLeast(what, limit, `≥ ${limit}× one vCPU`, two?.ratioToOne ?? undefined, two ? scalingValue(sc, two, limit) : null, `no ${tables} scaling run`);
  }
  row('every benchmark section ends with checkInvariants()', 'held', 'held (a broken invariant fails the run)', true);
  return out;
}

const iv2 = (i) => `[${f(i.lo, 2)}, ${f(i.hi, 2)}]`;

/**
 * The figure of a scaling target: the median of the paired per-round ratios
 * with its interval and the number of rounds, whether that interval
 * includes the target (the median decides the verdict; such an interval
 * says the run did not resolve it), and what bounds it on this machine: the
 * workers' share of a CPU, hypercalls per on-CPU second against one vCPU
 * (what the vCPUs cost each other whatever the load), and for disjoint
 * tables the control, two separate hosts, over the same rounds. A file from
 * before the paired rounds has neither interval nor control of the same
 * rounds: its separate row is shown as it was measured.
 */
export function scalingValue(sc, two, limit) {
  const parts = [];
  if (typeof two.cpuShare === 'number') parts.push(`workers on a CPU ${Math.round(100 * two.cpuShare)}% of the interval`);
  if (two.perCpuToOne) parts.push(`per on-CPU second ${f(two.perCpuToOne.median, 2)}× one vCPU's`);
  if (two.tables === 'disjoint') {
    if (two.control && typeof two.control.ratioToOne === 'number') {
      const c = two.control;
      parts.push(`two separate hosts ${f(c.ratioToOne, 2)}×${c.ratioInterval ? ` ${iv2(c.ratioInterval)}` : ''} in the same rounds`);
    } else {
      const separate = sc.find((s) => s.tables === 'separate' && s.vcpus === 2);
      if (typeof separate?.ratioToOne === 'number') parts.push(`two separate hosts ${f(separate.ratioToOne, 2)}×`);
    }
  }
  const i = two.ratioInterval;
  let head = `${f(two.ratioToOne, 2)}×`;
  if (i) {
    head += ` ${iv2(i)}, median of ${two.ratios?.length ?? two.rounds} paired rounds`;
    if (i.lo < limit && limit <= i.hi) head += `; the interval includes the target (${limit}×): not resolved by this run`;
  }
  return `${head}${parts.length ? ` (${parts.join('; ')})` : ''}`;
}

const C_FLOOR_TARGET = 'c-floor ≤ native: not significantly slower in time and no more instructions';
const sgn = (x, d = 1) => `${x >= 0 ? '+' : '−'}${f(Math.abs(x), d)}`;

/**
 * The c-floor ≤ native verdict, per hypercall op with both timings, then
 * overall. An op FAILs when c-floor is significantly slower (the bootstrap
 * interval of c-floor − native, `vsNative` on the c-floor row, lies above
 * 0) or when callgrind counts more instructions per call for c-floor than
 * for native. It PASSes when it is not significantly slower and has no more
 * instructions, or is significantly faster (time resolves it; no count
 * needed). Not significant without both counts is not measured: wall time
 * cannot resolve it, and nothing else was counted. Overall: FAIL if any op
 * fails, else not measured if any op is, else PASS. Returns {pass, value} or
 * {pass: null, why}; `ops` holds each op's {op, pass, text}.
 */
export function cFloorVerdict(doc) {
  const insOf = (op, engine) => linearCountOf(doc, op, engine);
  const ops = [];
  for (const op of HCALL_OPS) {
    const cf = find(doc, op, 'c-floor');
    const nat = find(doc, op, 'native');
    if (!cf || !nat) continue;
    const d = cf.vsNative;
    const ic = insOf(op, 'c-floor');
    const inat = insOf(op, 'native');
    const parts = [];
    let time = null; // 'slower' | 'faster' | 'n.s.'
    if (d) {
      time = !d.significant ? 'n.s.' : d.ns > 0 ? 'slower' : 'faster';
      parts.push(`c-floor − native ${sgn(d.ns)} ns/call [${sgn(d.lo)}, ${sgn(d.hi)}], ${time === 'n.s.' ? 'not significant' : `significantly ${time}`}`);
    } else {
      parts.push(`c-floor ${f(cf.nsPerCall.median)} vs native ${f(nat.nsPerCall.median)} ns/call, no interval of the difference in this file`);
    }
    let fewer = null;
    if (ic && inat) {
      fewer = ic.irPerCall <= inat.irPerCall;
      parts.push(`${int(ic.irPerCall)} vs ${int(inat.irPerCall)} instr/call`);
    }
    let pass;
    if (time === 'slower' || fewer === false) pass = false;
    else if (fewer === true && time !== null) pass = true;
    else if (time === 'faster') pass = true;
    else pass = null;
    ops.push({ op, pass, text: `${op}: ${parts.join('; ')}` });
  }
  if (ops.length === 0) return { pass: null, why: 'no c-floor and native timings of the same op', ops };
  const text = ops.map((o) => o.text).join(' | ');
  if (ops.some((o) => o.pass === false)) return { pass: false, value: text, ops };
  const open = ops.filter((o) => o.pass === null);
  if (open.length) {
    const old = HCALL_OPS.some((op) => find(doc, op, 'c-floor') && !find(doc, op, 'c-floor').vsNative);
    const why = old
      ? 'the file has no bootstrap interval of c-floor − native (it was recorded before the verdict had one)'
      : `not resolved for ${open.map((o) => o.op).join(', ')}: not significant in time, and callgrind did not count both (a full run or --instructions counts them)`;
    return { pass: null, why: `${text} — ${why}`, ops };
  }
  return { pass: true, value: text, ops };
}

/** The targets as text lines: PASS / FAIL / not measured, with the figure. */
export function targetsText(rows) {
  return rows.map((t) => `  ${t.pass === null ? 'n/m ' : t.pass ? 'PASS' : 'FAIL'}  ${t.what}: ${t.value ?? t.why} (target ${t.target})`).join('\n');
}

/** A handful of numbers worth reading first. */
export function keyNumbers(doc) {
  const out = [];
  const ind = (e) => find(doc, 'H_PUT_TCE_INDIRECT_512', e);
  const per = ['wasm', 'native', 'js', 'c-floor'].map((e) => [e, ind(e)]).filter(([, r]) => r);
  if (per.length) out.push(`INDIRECT(512) ns/entry: ${per.map(([e, r]) => `${e} ${f(r.nsPerEntry.median, 2)} [${f(r.nsPerEntry.lo, 2)}, ${f(r.nsPerEntry.hi, 2)}]`).join(', ')}`);
  const verdict = (o) => (o.significant ? 'significant' : 'not significant (the interval includes 0)');
  for (const op of ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512']) {
    for (const r of doc.results.filter((x) => x.op === op && x.engine === 'wasm' && x.overhead)) {
      const o = r.cost ?? r.overhead;
      const name = r.cost ? `cost of ${r.cost.mechanism}` : r.check === 'k5.19' ? 'kernel 5.19 (virtual mode only) against 4.19' : `${r.check} check`;
      out.push(`${op} wasm, ${name}: ${f(o.ns)} ns/call [${f(o.lo)}, ${f(o.hi)}] = ${f(o.pct, 2)}%, ${verdict(o)}`);
    }
  }
  const sc = Array.isArray(doc.scaling) ? doc.scaling : [];
  for (const t of ['disjoint', 'shared', 'separate']) {
    const two = sc.find((s) => s.tables === t && s.vcpus === 2);
    if (two) out.push(`scaling ${t}: 1→2 vCPUs ${f(two.ratioToOne, 2)}×`);
  }
  if (Array.isArray(doc.traces)) {
    for (const t of doc.traces.filter((x) => x.check === 'none')) out.push(`trace ${t.trace}: ${int(t.hypercallsPerSecond)} hypercalls/s`);
  }
  return out;
}
