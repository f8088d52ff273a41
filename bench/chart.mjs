// The SVG chart next to the JSON: what each safety mechanism costs, one
// panel per operation with a scale of its own (a 512-entry call and a
// single H_PUT_TCE differ by two orders of magnitude), one bar per engine ×
// variant: the owner checks as check − none, the other mechanisms as
// none − the run without them. Bars in percent of `none`, whiskers the 95%
// bootstrap interval, each labelled in ns and %; faded bars are not
// significant (their interval includes 0). Plain SVG, no script.
const COLORS = { wasm: '#3b6fb6', native: '#c0504d', js: '#9bbb59', 'c-floor': '#8064a2' };
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
const sign = (x, d) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(d)}`;

/** A round axis bound at or above `x` (1, 2, 5 × 10^k). */
function niceSpan(x) {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

export function overheadChart(doc) {
  const rows = doc.results.filter((r) => r.overhead).map((r) => {
    const o = r.cost ?? r.overhead;
    return { r, o, label: r.cost ? `${r.engine} · ${r.cost.mechanism}` : `${r.engine} · ${r.check} check` };
  });
  const ops = [...new Set(rows.map((x) => x.r.op))];
  const W = 1000;
  const left = 300;
  const right = 200;
  const plotW = W - left - right;
  const barH = 9;
  const rowH = 17;
  const lines = [];
  let y = 78;
  for (const op of ops) {
    const mine = rows.filter((x) => x.r.op === op);
    // This panel's own scale: every interval of the panel fits (at least ±1%).
    let span = 1;
    for (const { o } of mine) span = Math.max(span, Math.abs(o.pctLo ?? o.pct), Math.abs(o.pctHi ?? o.pct), Math.abs(o.pct));
    span = niceSpan(Math.min(span, 1000));
    const x = (p) => left + ((Math.max(-span, Math.min(span, p)) + span) / (2 * span)) * plotW;
    const base = doc.results.find((r) => r.op === op && r.check === 'none' && r.engine === mine[0].r.engine);
    lines.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${esc(op)}</text>`);
    if (base) lines.push(`<text x="${W - 10}" y="${y}" font-size="11" text-anchor="end" fill="#555">${esc(`none: ${base.nsPerCall.median.toFixed(1)} ns/call (${base.engine})`)}</text>`);
    y += 8;
    const top = y;
    for (const { r, o, label } of mine) {
      const x0 = x(0);
      const x1 = x(o.pct);
      const faded = !o.significant;
      lines.push(`<text x="20" y="${y + barH}" font-size="11">${esc(label)}</text>`);
      lines.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${barH}" fill="${COLORS[r.engine] ?? '#777'}" opacity="${faded ? 0.35 : 1}"/>`);
      if (o.pctLo !== undefined) {
        const a = x(o.pctLo);
        const b = x(o.pctHi);
        const m = y + barH / 2;
        lines.push(`<path d="M${a.toFixed(1)} ${m}H${b.toFixed(1)}M${a.toFixed(1)} ${m - 3}V${m + 3}M${b.toFixed(1)} ${m - 3}V${m + 3}" stroke="#222" stroke-width="1"/>`);
      }
      const text = `${sign(o.ns, o.ns !== 0 && Math.abs(o.ns) < 10 ? 2 : 1)} ns (${sign(o.pct, 2)}%)${faded ? ' n.s.' : ''}`;
      lines.push(`<text x="${left + plotW + 8}" y="${y + barH}" font-size="11"${faded ? ' fill="#777"' : ''}>${esc(text)}</text>`);
      y += rowH;
    }
    // The panel's axis: 0 and ±span/2, ±span, in %.
    for (const p of [-span, -span / 2, 0, span / 2, span]) {
      lines.push(`<line x1="${x(p).toFixed(1)}" y1="${top - 2}" x2="${x(p).toFixed(1)}" y2="${y}" stroke="${p === 0 ? '#000' : '#ddd'}"/>`);
      lines.push(`<text x="${x(p).toFixed(1)}" y="${y + 11}" font-size="10" text-anchor="middle" fill="#555">${sign(p, span < 4 ? 1 : 0)}%</text>`);
    }
    y += 30;
  }
  const H = y + 30;
  const legend = Object.entries(COLORS).map(([k, c], i) => `<rect x="${left + i * 110}" y="${H - 22}" width="10" height="10" fill="${c}"/><text x="${left + i * 110 + 14}" y="${H - 13}" font-size="11">${k}</text>`);
  const m = doc.machine;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="22" font-size="16" font-weight="bold">What each safety mechanism costs on the real-mode path</text>
<text x="10" y="40" font-size="11">Owner checks: check − none. (d), (e): none − the run without the mechanism. Median, 95% bootstrap interval; faded, n.s.: the interval includes 0.</text>
<text x="10" y="56" font-size="11" fill="#555">${esc(`${m.cpu}, ${m.cores} cores, ${m.os}; Node ${doc.node}, V8 ${doc.v8}; ${doc.date}`)}</text>
${lines.join('\n')}
${legend.join('\n')}
</svg>
`;
}
