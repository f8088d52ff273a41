// The key numbers and the issue's targets, read off a results document.
// Reported, never asserted: wall time on a shared VM is evidence, not a test.
const find = (doc, op, engine, check = 'none') => doc.results.find((r) => r.op === op && r.engine === engine && r.check === check);
const f = (x, d = 1) => x.toFixed(d);

export function keyNumbers(doc) {
  const out = [];
  const ind = (e) => find(doc, 'H_PUT_TCE_INDIRECT_512', e);
  const per = ['wasm', 'native', 'js', 'c-floor'].map((e) => [e, ind(e)]).filter(([, r]) => r);
  if (per.length) out.push(`INDIRECT(512) ns/entry: ${per.map(([e, r]) => `${e} ${f(r.nsPerEntry.median, 2)} [${f(r.nsPerEntry.lo, 2)}, ${f(r.nsPerEntry.hi, 2)}]`).join(', ')}`);
  const w = ind('wasm');
  const n = ind('native');
  const c = ind('c-floor');
  if (w && n) out.push(`target wasm ≤ 1.5× native per entry: ${f(w.nsPerEntry.median / n.nsPerEntry.median, 2)}×`);
  else if (w) out.push('target wasm ≤ 1.5× native per entry: not measurable (no native hypercalls)');
  if (w && c) out.push(`target wasm ≤ 3× c-floor per entry: ${f(w.nsPerEntry.median / c.nsPerEntry.median, 2)}×`);
  else if (w) out.push('target wasm ≤ 3× c-floor per entry: not measurable (no c-floor)');
  const put = find(doc, 'H_PUT_TCE', 'wasm');
  if (put && w) out.push(`H_PUT_TCE (wasm) ${f(put.nsPerCall.median)} ns/call = ${f(put.nsPerCall.median / w.nsPerEntry.median, 2)}× INDIRECT(512) per entry (target ≤ 3×)`);
  for (const check of ['pid-call', 'pid-entry', 'mm']) {
    const r = find(doc, 'H_PUT_TCE_INDIRECT_512', 'wasm', check);
    if (r?.overhead) {
      const o = r.overhead;
      out.push(`INDIRECT(512) wasm ${check} overhead: ${f(o.ns)} ns/call [${f(o.lo)}, ${f(o.hi)}] = ${f(o.pct, 2)}% [${f(o.pctLo, 2)}, ${f(o.pctHi, 2)}], ${o.significant ? 'significant' : 'not significant'}`);
    }
  }
  const ins = doc.instructions?.results ?? [];
  for (const check of ['pid-call', 'pid-entry', 'mm']) {
    const r = ins.find((x) => x.op === 'H_PUT_TCE_INDIRECT_512' && x.engine === 'wasm' && x.check === check);
    const b = ins.find((x) => x.op === 'H_PUT_TCE_INDIRECT_512' && x.engine === 'wasm' && x.check === 'none');
    if (r && b) out.push(`INDIRECT(512) wasm ${check}: ${f(r.overheadPerCall, 0)} instructions/call (${f((100 * r.overheadPerCall) / b.irPerCall, 3)}%)`);
  }
  const sc = Array.isArray(doc.scaling) ? doc.scaling : [];
  for (const t of ['disjoint', 'shared']) {
    const two = sc.find((s) => s.tables === t && s.vcpus === 2);
    if (two) out.push(`scaling ${t}: 1→2 vCPUs ${f(two.ratioToOne, 2)}×${t === 'disjoint' ? ' (target ≥ 1.7×)' : ''}`);
  }
  if (Array.isArray(doc.traces)) {
    for (const t of doc.traces.filter((x) => x.check === 'none')) out.push(`trace ${t.trace}: ${Math.round(t.hypercallsPerSecond).toLocaleString('en-US')} hypercalls/s`);
  }
  return out;
}
