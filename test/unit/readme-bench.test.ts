// The README's benchmark figures are generated (bench/readme.mjs, npm run
// docs:bench) from the results file its first marker names: this fails when
// the section differs from what that file gives, so no figure in it can
// drift from the file it cites. The designs table, generated from the
// newest full run too (npm run docs:designs), must cite the same file.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
// @ts-expect-error: plain JavaScript module without types
import { namedFile, readResults, withSection, readmeTables, newestFullRun, END } from '../../bench/readme.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

describe('README benchmark figures', () => {
  const file = namedFile(readme) as string | undefined;

  it('name a results file of the repository, the newest full run, the one the designs table cites', () => {
    expect(file).toMatch(/^bench\/results\/[^/]+\.json$/);
    expect(existsSync(join(ROOT, file!))).toBe(true);
    expect(newestFullRun()).toBe(file);
    expect(readme).toContain(`from \`${file}\``);
  });

  it('are exactly what that file gives (npm run docs:bench -- FILE rewrites them)', () => {
    expect(withSection(readme, readResults(file!), file!), `README.md is stale: run npm run docs:bench -- ${file}`).toBe(readme);
  });

  it('change when a figure of the file changes', () => {
    const doc = readResults(file!);
    const r = doc.results.find((x: { op: string; engine: string; check: string }) => x.op === 'H_PUT_TCE_INDIRECT_512' && x.engine === 'wasm' && x.check === 'none');
    const before = readmeTables(doc, file!);
    r.nsPerEntry.median += 1.5;
    const after = readmeTables(doc, file!);
    expect(after).not.toBe(before);
    expect(withSection(readme, doc, file!)).not.toBe(readme);
    expect(readme.indexOf(END)).toBeGreaterThan(readme.indexOf(before.split('\n')[0]!));
  });

  it('print every mechanism, the 5.19 rows when measured, and a verdict that follows the interval', () => {
    const doc = {
      machine: { cpu: 'cpu', cores: 2, os: 'os' }, node: 'n', v8: 'v', date: 'd', settings: { mode: 'full' }, skipped: [],
      results: [
        { op: 'H_PUT_TCE', engine: 'wasm', check: 'none', entries: 1, nsPerEntry: { median: 50 }, nsPerCall: { median: 50 } },
        { op: 'H_PUT_TCE', engine: 'wasm', check: 'k5.19', entries: 1, nsPerEntry: { median: 80 }, nsPerCall: { median: 80 } },
        // A file that recorded "significant" although the interval includes 0: the README says n.s.
        { op: 'H_PUT_TCE', engine: 'wasm', check: 'pid-call', entries: 1, nsPerEntry: { median: 51 }, overhead: { ns: 1, lo: -2, hi: 3, pct: 2, significant: true } },
      ],
    };
    const t = readmeTables(doc, 'bench/results/x.json') as string;
    expect(t).toContain('| H_PUT_TCE, kernel 5.19 (virtual mode only) | 80.0 |');
    expect(t).toContain('| (a) pid check per call | +1.0 [−2.0, +3.0], +2.00%, n.s. |');
    for (const m of ['(b) pid check per view write', '(c) mm check', '(d) per-entry view lock', '(e) validate-before-write pass', '(f) read side of safe memory reclamation']) expect(t).toContain(m);
  });

  it('come from the newest full run of every section: a --quick run or a --filter run (one section) is passed over', () => {
    const root = mkdtempSync(join(tmpdir(), 'spapr-readme-'));
    try {
      mkdirSync(join(root, 'bench/results'), { recursive: true });
      const put = (name: string, date: string, settings: object): void => writeFileSync(join(root, 'bench/results', name), JSON.stringify({ date, settings }));
      put('a.json', '2026-01-01T00:00:00Z', { mode: 'full', filter: null });
      put('b.json', '2026-01-02T00:00:00Z', { mode: 'full', filter: 'snapshot' });
      put('c.quick.json', '2026-01-03T00:00:00Z', { mode: 'quick', filter: null });
      expect(newestFullRun(root)).toBe('bench/results/a.json');
      put('d.json', '2026-01-04T00:00:00Z', { mode: 'full', filter: null });
      expect(newestFullRun(root)).toBe('bench/results/d.json');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
