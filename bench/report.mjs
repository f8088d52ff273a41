// The report: the results document (the JSON schema, plus extra
// keys other tools may ignore) and the terminal tables.
import os from 'node:os';
import { ERAS } from './ops.mjs';

/** machine, node, v8, date: the contract's header fields. */
export function header() {
  const cpus = os.cpus();
  return {
    machine: { cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, os: `${os.type()} ${os.release()} ${os.arch()}` },
    node: process.versions.node,
    v8: process.versions.v8,
    date: new Date().toISOString(),
  };
}

/** The results document. Contract fields first; everything else under extra keys. */
export function document({ results, skipped, traces, scaling, instructions, targets, snapshot, settings, seconds, sectionSeconds }) {
  return {
    ...header(),
    // Contract rows: {op, engine, check, nsPerCall, nsPerEntry, samples, overhead}; `entries`,
    // overhead.pctLo/pctHi (the interval in %) and, on ablation rows, `cost` are additions.
    results,
    skipped,
    traces,
    scaling,
    instructions,
    targets,
    snapshot,
    settings,
    seconds,
    sectionSeconds,
  };
}

const f = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));
const pad = (s, n, right = false) => (right ? String(s).padEnd(n) : String(s).padStart(n));

/** A plain text table: columns [{title, width, left}], rows of strings. */
function table(cols, rows) {
  const line = (cells) => cells.map((c, i) => pad(c, cols[i].width, cols[i].left)).join('  ');
  return [line(cols.map((c) => c.title)), line(cols.map((c) => '-'.repeat(c.width))), ...rows.map(line)].join('\n');
}

export function matrixTable(results) {
  const cols = [
    { title: 'op', width: 22, left: true }, { title: 'engine', width: 7, left: true }, { title: 'variant', width: 12, left: true },
    { title: 'ns/call', width: 9 }, { title: '95% interval', width: 19 }, { title: 'ns/entry', width: 8 }, { title: 'n', width: 4 },
    { title: 'Δ vs none ns [95%]', width: 26 }, { title: '%', width: 6 }, { title: 'sig', width: 3 },
  ];
  const rows = results.map((r) => [
    r.op, r.engine, r.check, f(r.nsPerCall.median), `[${f(r.nsPerCall.lo)}, ${f(r.nsPerCall.hi)}]`, f(r.nsPerEntry.median, 2), r.samples,
    r.overhead ? `${f(r.overhead.ns)} [${f(r.overhead.lo)}, ${f(r.overhead.hi)}]` : '', r.overhead ? f(r.overhead.pct, 2) : '', r.overhead ? (r.overhead.significant ? 'yes' : 'no') : '',
  ]);
  return table(cols, rows);
}

/**
 * Each safety mechanism side by side: the owner checks as check − none, the
 * others as none − the run without them; ns per call and per entry with the
 * interval and verdict, and instructions when counted.
 */
export function mechanismsTable(results, ins) {
  // The kernel-era rows are no mechanism: erasTable prints them.
  const rowsOut = results.filter((r) => r.overhead && r.engine !== 'js' && !ERA_KEYS.has(r.check)).map((r) => {
    const o = r.cost ?? r.overhead;
    const what = r.cost ? r.cost.mechanism : `(${{ 'pid-call': 'a', 'pid-entry': 'b', mm: 'c' }[r.check] ?? '?'}) ${r.check} check`;
    const c = ins.find((x) => x.op === r.op && x.engine === r.engine && x.check === r.check);
    const di = c ? (r.cost ? -c.overheadPerCall : c.overheadPerCall) : null;
    return [what, r.op, r.engine, `${f(o.ns)} [${f(o.lo)}, ${f(o.hi)}]`, f(o.ns / r.entries, 2), f(o.pct, 2), o.significant ? 'yes' : 'no',
      di === null ? '' : f(di, 0), di === null ? '' : f(di / r.entries, 1)];
  });
  if (rowsOut.length === 0) return '';
  const cols = [{ title: 'mechanism', width: 34, left: true }, { title: 'op', width: 22, left: true }, { title: 'engine', width: 7, left: true },
    { title: 'ns/call [95%]', width: 24 }, { title: 'ns/entry', width: 8 }, { title: '%', width: 6 }, { title: 'sig', width: 3 },
    { title: 'instr/call', width: 10 }, { title: 'instr/entry', width: 11 }];
  return table(cols, rowsOut);
}

const ERA_KEYS = new Set(ERAS.map((e) => e.key));

/**
 * The kernel eras side by side: each era row of an op and engine against
 * `none` (kernel '4.19', real mode) of the same run, ns per call and per
 * entry, the difference with its interval, and instructions when counted.
 */
export function erasTable(results, ins) {
  const rowsOut = [];
  for (const r of results.filter((x) => ERA_KEYS.has(x.check))) {
    const base = results.find((x) => x.op === r.op && x.engine === r.engine && x.check === 'none');
    const era = ERAS.find((e) => e.key === r.check);
    const c = ins.find((x) => x.op === r.op && x.engine === r.engine && x.check === r.check);
    rowsOut.push([r.op, r.engine, era.label, base ? f(base.nsPerCall.median) : '', f(r.nsPerCall.median), f(r.nsPerEntry.median, 2),
      r.overhead ? `${f(r.overhead.ns)} [${f(r.overhead.lo)}, ${f(r.overhead.hi)}]` : '', r.overhead ? (r.overhead.significant ? 'yes' : 'no') : '', c ? f(c.irPerCall, 0) : '']);
  }
  if (rowsOut.length === 0) return '';
  const cols = [{ title: 'op', width: 22, left: true }, { title: 'engine', width: 7, left: true }, { title: 'era', width: 31, left: true },
    { title: '4.19 ns/call', width: 12 }, { title: 'ns/call', width: 9 }, { title: 'ns/entry', width: 8 }, { title: 'Δ vs 4.19 ns [95%]', width: 26 },
    { title: 'sig', width: 3 }, { title: 'instr/call', width: 10 }];
  return table(cols, rowsOut);
}

export function skippedText(skipped) {
  const seen = new Map();
  for (const s of skipped) {
    const k = `${s.engine}: ${s.reason}`;
    if (!seen.has(k)) seen.set(k, new Set());
    seen.get(k).add(s.check && s.check !== 'none' ? `${s.op}/${s.check}` : s.op);
  }
  return [...seen].map(([k, ops]) => `skipped ${k}\n    (${[...ops].join(', ')})`).join('\n');
}

export function tracesTable(traces) {
  const cols = [{ title: 'trace', width: 26, left: true }, { title: 'check', width: 9, left: true }, { title: 'hcalls', width: 6 }, { title: 'hcalls/s (median)', width: 17 }, { title: 'mismatches', width: 10 }];
  return table(cols, traces.map((t) => [t.trace, t.check, t.hypercalls, Math.round(t.hypercallsPerSecond).toLocaleString('en-US'), t.mismatches]));
}

export function scalingTable(scaling) {
  const cols = [{ title: 'tables', width: 8, left: true }, { title: 'vCPUs', width: 5 }, { title: 'hcalls/s (median)', width: 17 }, { title: '× one vCPU', width: 10 }, { title: 'on CPU', width: 6 }];
  const share = (s) => (typeof s.cpuShare === 'number' ? `${Math.round(100 * s.cpuShare)}%` : '');
  return table(cols, scaling.map((s) => [s.tables, s.vcpus, Math.round(s.hypercallsPerSecond).toLocaleString('en-US'), f(s.ratioToOne, 2), share(s)]));
}

/** A count's linearity check (callgrind.mjs#linearity) as a cell: yes, NO with its worst deviation, or blank for results older than the check. */
const linearText = (l) => (!l ? '' : l.linear ? 'yes' : `NO ${f(100 * l.worst, 1)}%`);

/** The callgrind table: per (op, engine, variant) instructions per call and per entry, Δ vs none, and the linearity check. */
export function instructionsTable(ins) {
  const cols = [{ title: 'op', width: 22, left: true }, { title: 'engine', width: 7, left: true }, { title: 'variant', width: 12, left: true }, { title: 'instr/call', width: 11 }, { title: 'instr/entry', width: 11 }, { title: 'Δ vs none', width: 10 }, { title: 'linear in K', width: 11 }];
  return table(cols, ins.map((r) => [r.op, r.engine, r.check, f(r.irPerCall, 0), f(r.irPerEntry, 1), r.overheadPerCall === null ? '' : f(r.overheadPerCall, 0), linearText(r.linearity)]));
}
