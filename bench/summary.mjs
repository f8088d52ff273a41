// The key numbers and the targets of issue 10, read off a results document.
// Reported, never asserted: wall time on a shared VM is evidence, not a test.
const find = (doc, op, engine, check = 'none') => doc.results.find((r) => r.op === op && r.engine === engine && r.check === check);
const f = (x, d = 1) => x.toFixed(d);
const int = (x) => Math.round(x).toLocaleString('en-US');

/** The instruction counts the targets need (a full run counts them even without --instructions). */
export const TARGET_CG_CELLS = [
  { op: 'H_PUT_TCE_INDIRECT_512', engine: 'wasm', check: 'none' },
  { op: 'H_PUT_TCE_INDIRECT_512', engine: 'native', check: 'none' },
  { op: 'H_PUT_TCE', engine: 'wasm', check: 'none' },
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
  const ins = doc.instructions?.results ?? [];
  const insOf = (op, engine) => ins.find((x) => x.op === op && x.engine === engine && x.check === 'none');
  const row = (what, target, value, pass, why) => out.push({ what, target, value, pass, ...(why ? { why } : {}) });
  const atMost = (what, limit, unit, x, why) =>
    x === undefined ? row(what, `≤ ${limit} ${unit}`, null, null, why) : row(what, `≤ ${limit} ${unit}`, `${f(x, x < 10 ? 2 : 1)} ${unit}`, x <= limit);
  const atLeast = (what, limit, text, x, shown, why) =>
    x === undefined ? row(what, text, null, null, why) : row(what, text, shown, x >= limit);
  const noTime = (op, engine) => `no ${engine} timing of ${op} in this run`;
  const noIns = (op, engine) => `no instruction count of ${op} (${engine}): valgrind missing, filtered out, or the run was --quick without --instructions`;

  const wi = find(doc, 'H_PUT_TCE_INDIRECT_512', 'wasm');
  const ni = find(doc, 'H_PUT_TCE_INDIRECT_512', 'native');
  atMost('WASM H_PUT_TCE_INDIRECT(512), steady state, check none: time per entry', 26, 'ns', wi?.nsPerEntry.median, noTime('INDIRECT(512)', 'wasm'));
  atMost('WASM H_PUT_TCE_INDIRECT(512): instructions per entry', 300, 'instr', insOf('H_PUT_TCE_INDIRECT_512', 'wasm')?.irPerEntry, noIns('INDIRECT(512)', 'wasm'));
  atMost('native H_PUT_TCE_INDIRECT(512): time per entry', 22, 'ns', ni?.nsPerEntry.median, noTime('INDIRECT(512)', 'native'));
  atMost('native H_PUT_TCE_INDIRECT(512): instructions per entry', 200, 'instr', insOf('H_PUT_TCE_INDIRECT_512', 'native')?.irPerEntry, noIns('INDIRECT(512)', 'native'));
  {
    const pairs = HCALL_OPS.map((op) => [op, find(doc, op, 'c-floor'), find(doc, op, 'native')]).filter(([, c, n]) => c && n);
    const what = 'c-floor (the native routine in a C++ loop) ≤ native, every hypercall op';
    if (pairs.length === 0) row(what, 'c-floor ≤ native', null, null, 'no c-floor and native timings of the same op');
    else {
      const worst = pairs.reduce((w, p) => (p[1].nsPerCall.median / p[2].nsPerCall.median > w[1].nsPerCall.median / w[2].nsPerCall.median ? p : w));
      const ratio = worst[1].nsPerCall.median / worst[2].nsPerCall.median;
      row(what, 'c-floor ≤ native', `largest c-floor/native ${f(ratio, 2)}× (${worst[0]})`, ratio <= 1);
    }
  }
  atMost('WASM H_STUFF_TCE(512) over clear entries: time per entry', 3, 'ns', find(doc, 'H_STUFF_TCE_512', 'wasm')?.nsPerEntry.median, noTime('STUFF(512)', 'wasm'));
  atMost('WASM H_PUT_TCE through vcpu.hcall(): instructions per call', 600, 'instr', insOf('H_PUT_TCE', 'wasm')?.irPerCall, noIns('H_PUT_TCE', 'wasm'));
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
    atLeast(what, limit, `≥ ${limit}× one vCPU`, two?.ratioToOne, two ? `${f(two.ratioToOne, 2)}×` : null, `no ${tables} scaling run`);
  }
  row('every benchmark section ends with checkInvariants()', 'held', 'held (a broken invariant fails the run)', true);
  return out;
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
      const name = r.cost ? `cost of ${r.cost.mechanism}` : `${r.check} check`;
      out.push(`${op} wasm, ${name}: ${f(o.ns)} ns/call [${f(o.lo)}, ${f(o.hi)}] = ${f(o.pct, 2)}%, ${verdict(o)}`);
    }
  }
  const sc = Array.isArray(doc.scaling) ? doc.scaling : [];
  for (const t of ['disjoint', 'shared']) {
    const two = sc.find((s) => s.tables === t && s.vcpus === 2);
    if (two) out.push(`scaling ${t}: 1→2 vCPUs ${f(two.ratioToOne, 2)}×`);
  }
  if (Array.isArray(doc.traces)) {
    for (const t of doc.traces.filter((x) => x.check === 'none')) out.push(`trace ${t.trace}: ${int(t.hypercallsPerSecond)} hypercalls/s`);
  }
  return out;
}
