// The SVG chart next to the JSON: overhead of each check against `none`, in
// percent with its 95% interval, one panel per op, one bar per engine ×
// check. Plain SVG, no script: any browser shows it.
const COLORS = { wasm: '#3b6fb6', native: '#c0504d', js: '#9bbb59', 'c-floor': '#8064a2' };
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

export function overheadChart(doc) {
  const rows = doc.results.filter((r) => r.overhead);
  const ops = [...new Set(rows.map((r) => r.op))];
  const W = 900;
  const panelH = 34;
  const barH = 7;
  const left = 330;
  const right = 40;
  const plotW = W - left - right;
  // Symmetric axis around 0 covering every interval (at least ±2%).
  let span = 2;
  for (const r of rows) span = Math.max(span, Math.abs(r.overhead.pctLo ?? r.overhead.pct), Math.abs(r.overhead.pctHi ?? r.overhead.pct));
  span = Math.min(200, Math.ceil(span / 5) * 5);
  const x = (p) => left + ((Math.max(-span, Math.min(span, p)) + span) / (2 * span)) * plotW;
  const lines = [];
  let y = 70;
  for (const op of ops) {
    const mine = rows.filter((r) => r.op === op);
    lines.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(op)}</text>`);
    y += 18;
    for (const r of mine) {
      const o = r.overhead;
      const x0 = x(0);
      const x1 = x(o.pct);
      lines.push(`<text x="20" y="${y + barH}" font-size="11">${esc(`${r.engine} · ${r.check}`)} ${o.pct.toFixed(2)}% (${o.ns.toFixed(1)} ns)${o.significant ? '' : ' n.s.'}</text>`);
      lines.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${barH}" fill="${COLORS[r.engine] ?? '#777'}" opacity="${o.significant ? 1 : 0.45}"/>`);
      if (o.pctLo !== undefined) {
        const a = x(o.pctLo);
        const b = x(o.pctHi);
        const m = y + barH / 2;
        lines.push(`<path d="M${a.toFixed(1)} ${m}H${b.toFixed(1)}M${a.toFixed(1)} ${m - 3}V${m + 3}M${b.toFixed(1)} ${m - 3}V${m + 3}" stroke="#222" stroke-width="1"/>`);
      }
      y += barH + 9;
    }
    y += 6;
  }
  const H = y + 40;
  const ticks = [];
  for (let p = -span; p <= span; p += span / 4) {
    ticks.push(`<line x1="${x(p).toFixed(1)}" y1="60" x2="${x(p).toFixed(1)}" y2="${y}" stroke="${p === 0 ? '#000' : '#ddd'}"/>`);
    ticks.push(`<text x="${x(p).toFixed(1)}" y="${y + 16}" font-size="11" text-anchor="middle">${p.toFixed(p % 1 ? 1 : 0)}%</text>`);
  }
  const legend = Object.entries(COLORS).map(([k, c], i) => `<rect x="${left + i * 110}" y="${H - 18}" width="10" height="10" fill="${c}"/><text x="${left + i * 110 + 14}" y="${H - 9}" font-size="11">${k}</text>`);
  const m = doc.machine;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="22" font-size="15" font-weight="bold">Owner-check overhead vs none (median, 95% bootstrap interval; faded: not significant per benchmark.js)</text>
<text x="10" y="42" font-size="11">${esc(`${m.cpu}, ${m.cores} cores, ${m.os}; Node ${doc.node}, V8 ${doc.v8}; ${doc.date}`)}</text>
${ticks.join('\n')}
${lines.join('\n')}
${legend.join('\n')}
</svg>
`;
}
