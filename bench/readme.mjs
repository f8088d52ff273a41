// Prints the README's benchmark tables from a results file, so that every
// figure the README quotes is copied from the file it cites:
//   node bench/readme.mjs bench/results/<date>.json
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const OPS = [
  ['H_PUT_TCE', 'H_PUT_TCE (one call, through `vcpu.hcall()`)'],
  ['H_PUT_TCE_INDIRECT_512', 'H_PUT_TCE_INDIRECT, 512'],
  ['H_STUFF_TCE_512', 'H_STUFF_TCE, 512 (clear entries)'],
  ['H_PUT_TCE_64K_OVER_4K', 'H_PUT_TCE 64K over 4K (per subpage)'],
  ['MAP_UNMAP_1', 'MAP_DMA + UNMAP_DMA, 1 page'],
  ['MAP_UNMAP_512', 'MAP_DMA + UNMAP_DMA, 512 pages'],
];
const ENGINES = ['wasm', 'native', 'js', 'c-floor'];

const f = (x, d = 1) => (x === undefined || x === null ? '' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const sgn = (x, d = 1) => `${x >= 0 ? '+' : '−'}${f(Math.abs(x), d)}`;

/** The markdown of the README's tables for results document `doc` stored at `file`. */
export function readmeTables(doc, file) {
  const out = [];
  const find = (op, engine, check = 'none') => doc.results.find((r) => r.op === op && r.engine === engine && r.check === check);
  const ins = doc.instructions?.results ?? [];
  const insOf = (op, engine, check = 'none') => ins.find((x) => x.op === op && x.engine === engine && x.check === check);
  const m = doc.machine;
  out.push(`Figures from \`bench/results/${basename(file)}\` (${m.cpu}, ${m.cores} vCPUs, ${m.os}, Node ${doc.node}, V8 ${doc.v8}, ${doc.settings.mode} run):`);
  out.push('');
  out.push('| op (ns per entry, median) | wasm | native | js | c-floor |');
  out.push('|---|---|---|---|---|');
  for (const [op, label] of OPS) {
    const cells = ENGINES.map((e) => {
      const r = find(op, e);
      return r ? f(r.nsPerEntry.median, r.nsPerEntry.median < 10 ? 2 : 1) : '';
    });
    if (cells.some((c) => c)) out.push(`| ${label} | ${cells.join(' | ')} |`);
  }
  if (ins.length) {
    out.push('');
    out.push('| instructions (callgrind) | wasm | native |');
    out.push('|---|---|---|');
    for (const [op, label] of OPS) {
      const w = insOf(op, 'wasm');
      const n = insOf(op, 'native');
      if (!w && !n) continue;
      const cell = (x) => (x ? (x.irPerCall === x.irPerEntry ? `${f(x.irPerCall, 0)} per call` : `${f(x.irPerEntry, 1)} per entry`) : '');
      out.push(`| ${label} | ${cell(w)} | ${cell(n)} |`);
    }
  }
  out.push('');
  out.push('What each safety mechanism costs on the real-mode path (WASM; the owner checks as check − none, the others as none − the run without them; 95% bootstrap interval; "n.s.": the interval includes 0):');
  out.push('');
  out.push('| mechanism | H_PUT_TCE, ns per call | INDIRECT(512), ns per call (per entry) | instructions per call: H_PUT_TCE / INDIRECT(512) |');
  out.push('|---|---|---|---|');
  const mech = [
    ['pid-call', '(a) pid check per call'],
    ['pid-entry', '(b) pid check per view write'],
    ['mm', '(c) mm check'],
    ['no-view-lock', '(d) per-entry view lock'],
    ['one-pass', '(e) validate-before-write pass'],
    ['no-smr-read', '(f) read side of safe memory reclamation'],
  ];
  for (const [check, label] of mech) {
    const cell = (op) => {
      const r = find(op, 'wasm', check);
      if (!r) {
        const s = doc.skipped.find((x) => x.op === op && x.engine === 'wasm' && x.check === check);
        return s ? `n/a: ${s.reason}` : '';
      }
      const o = r.cost ?? r.overhead;
      const per = r.entries > 1 ? ` (${sgn(o.ns / r.entries, 2)})` : '';
      return `${sgn(o.ns)} [${sgn(o.lo)}, ${sgn(o.hi)}]${per}, ${sgn(o.pct, 2)}%${o.significant ? '' : ', n.s.'}`;
    };
    // An ablation's instructions saved are the mechanism's cost: none − the run without it.
    const ablation = check === 'no-view-lock' || check === 'one-pass' || check === 'no-smr-read';
    const icell = (op) => {
      const x = insOf(op, 'wasm', check);
      if (!x || x.overheadPerCall === null) return '–';
      return sgn(ablation ? -x.overheadPerCall : x.overheadPerCall, 0);
    };
    out.push(`| ${label} | ${cell('H_PUT_TCE')} | ${cell('H_PUT_TCE_INDIRECT_512')} | ${icell('H_PUT_TCE')} / ${icell('H_PUT_TCE_INDIRECT_512')} |`);
  }
  if (Array.isArray(doc.targets)) {
    out.push('');
    out.push('| target (issue 10) | measured | |');
    out.push('|---|---|---|');
    for (const t of doc.targets) out.push(`| ${t.what}: ${t.target} | ${t.value ?? t.why} | ${t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL'} |`);
  }
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node bench/readme.mjs bench/results/<date>.json');
    process.exit(2);
  }
  console.log(readmeTables(JSON.parse(readFileSync(file, 'utf8')), file));
}
