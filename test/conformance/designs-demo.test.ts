// Spec: docs/semantics.md §5 (the owner-check designs). `spapr-tce demo designs` (examples/designs.mjs): its cells
// are what the scenarios gave (test/conformance/designs.test.ts checks each behaviour itself), the README's copy
// of the table is the one a run of src/ prints now, and the cost columns read the benchmark results through one
// adapter that tolerates missing fields.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as lib from '../../src/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(root, 'dist/cli.js');

interface Cell { design: string; holder: string; outcome: 'refused' | 'allowed' | 'damage'; text: string; calls: { call: string; result: string }[]; changedByRefusals: boolean }
interface DesignsModule {
  DESIGNS: { key: string }[];
  HOLDERS: { key: string }[];
  runDesigns(l: unknown): Promise<Cell[]>;
  renderTable(cells: Cell[], results: unknown): string;
  findResults(file?: string, dirs?: string[]): { path: string; json: unknown } | undefined;
  isFullRun(json: unknown): boolean;
  benchFigures(json: unknown): { date?: string; figures: Record<string, { putTce: { ns?: number; instructions?: number }; indirectEntry: { ns?: number; instructions?: number } }> };
}
interface ReadmeModule { tableIn(text: string): string }

const designs = (): Promise<DesignsModule> => import('../../examples/designs.mjs' as string) as Promise<DesignsModule>;
const readme = (): Promise<ReadmeModule> => import('../../scripts/gen-designs-readme.mjs' as string) as Promise<ReadmeModule>;

/** What each design does to each holder, as the design says (docs/semantics.md §5). */
const EXPECTED: Record<string, Record<string, string>> = {
  none: { fork: 'damage', passed: 'damage', 'vm-clone': 'allowed', thread: 'allowed' },
  'pid-call': { fork: 'refused EPERM', passed: 'refused EPERM', 'vm-clone': 'refused EPERM', thread: 'allowed' },
  'pid-entry': { fork: 'refused EPERM', passed: 'refused EPERM', 'vm-clone': 'refused EPERM', thread: 'allowed' },
  'fork-close': { fork: 'refused EBADF', passed: 'damage', 'vm-clone': 'allowed', thread: 'allowed' },
  mm: { fork: 'refused EPERM', passed: 'refused EPERM', 'vm-clone': 'allowed', thread: 'allowed' },
};

const summary = (c: Cell): string => (c.outcome === 'refused' ? `refused ${[...new Set(c.calls.filter((x) => x.result !== 'ok').map((x) => x.result))].join('/')}` : c.outcome);

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('spapr-tce demo designs', () => {
  it('the scenarios give the outcome each design promises, in every cell; no refusal changed anything', async () => {
    const d = await designs();
    const cells = await d.runDesigns(lib);
    expect(cells).toHaveLength(d.DESIGNS.length * d.HOLDERS.length);
    for (const c of cells) {
      expect(summary(c), `${c.design} × ${c.holder}: ${c.text}`).toBe(EXPECTED[c.design]![c.holder]);
      expect(c.changedByRefusals).toBe(false);
      if (c.outcome === 'refused') expect(c.text).toMatch(/nothing changed$/);
      if (c.outcome === 'damage') expect(c.text).toMatch(/the owner's region: mapped − 1 = 1 with 0 TCE\(s\).*the owner's unregister: EBUSY/);
    }
  }, 60_000);

  it('the README\'s table is the one a run of src/ prints now (regenerate it with `npm run docs:designs`)', async () => {
    const d = await designs();
    const table = d.renderTable(await d.runDesigns(lib), d.findResults());
    const text = readFileSync(join(root, 'README.md'), 'utf8');
    expect((await readme()).tableIn(text), 'README.md is stale: run `npm run docs:designs`').toBe(table);
  }, 60_000);

  it('the command prints the table (5 designs × 4 holders and the two cost columns) and --json the same cells', async () => {
    const [text, json] = await Promise.all([run(['demo', 'designs']), run(['demo', 'designs', '--json'])]);
    expect(text.code, text.stderr).toBe(0);
    const rows = text.stdout.split('\n').filter((l) => l.startsWith('| `'));
    expect(rows).toHaveLength(5);
    for (const r of rows) expect(r.split(' | ')).toHaveLength(7);
    expect(text.stdout).toMatch(/refused: EBADF at inherit/);
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as { cells: Cell[]; results: { path: string } | null };
    for (const c of out.cells) expect(summary(c), `${c.design} × ${c.holder}`).toBe(EXPECTED[c.design]![c.holder]);
    expect(out.results?.path).toMatch(/^bench\/results\/.*\.json$/);
  }, 120_000);

  it('the cost columns: the figures of the newest full run, read through benchFigures', async () => {
    const d = await designs();
    const found = d.findResults()!;
    expect(found).toBeDefined();
    const dir = join(root, 'bench/results');
    const newest = readdirSync(dir).filter((f) => f.endsWith('.json') && d.isFullRun(JSON.parse(readFileSync(join(dir, f), 'utf8')))).sort().at(-1)!;
    expect(found.path.endsWith(newest)).toBe(true);
    type R = { op: string; engine: string; check: string; entries?: number; overhead?: { ns: number } | null; overheadPerCall?: number | null };
    const json = found.json as { results: R[]; instructions: { results: R[] } };
    const f = d.benchFigures(json).figures;
    const pick = (list: R[], op: string, check: string) => list.find((r) => r.op === op && r.engine === 'wasm' && r.check === check)!;
    // A full run counts instructions of the target cells only (`--instructions` counts every
    // variant): where the file has no count of a check, the table must say so.
    const counted = (op: string, check: string) => json.instructions.results.find((r) => r.op === op && r.engine === 'wasm' && r.check === check);
    for (const check of ['pid-call', 'pid-entry']) {
      expect(f[check]!.putTce.ns).toBe(pick(json.results, 'H_PUT_TCE', check).overhead!.ns);
      expect(f[check]!.indirectEntry.ns).toBeCloseTo(pick(json.results, 'H_PUT_TCE_INDIRECT_512', check).overhead!.ns / 512, 9);
      const put = counted('H_PUT_TCE', check);
      const ind = counted('H_PUT_TCE_INDIRECT_512', check);
      if (put) expect(f[check]!.putTce.instructions).toBe(put.overheadPerCall);
      else expect(f[check]!.putTce.instructions).toBeUndefined();
      if (ind) expect(f[check]!.indirectEntry.instructions).toBeCloseTo(ind.overheadPerCall! / 512, 9);
      else expect(f[check]!.indirectEntry.instructions).toBeUndefined();
    }
    const table = d.renderTable(await d.runDesigns(lib), found);
    if (counted('H_PUT_TCE', 'pid-entry')) {
      // Signed as the table signs it: '+' or the minus sign (a difference of noisy counts may be negative).
      const irPut = Math.round(f['pid-entry']!.putTce.instructions!);
      const shown = `${irPut >= 0 ? '\\+' : '−'}${Math.abs(irPut)}`;
      expect(table).toMatch(new RegExp(`per view write.*${shown} instructions`));
    } else {
      expect(table).toMatch(/per view write.*instructions: not in the file/);
    }
    expect(table).toMatch(/`mm` \(Linux 4\.10\).*\| 0 — checked at ioctl\/link time \|/);
  }, 60_000);

  it('findResults: the newest full run of the first folder that has one; a quick run is no full run', async () => {
    const d = await designs();
    const a = mkdtempSync(join(tmpdir(), 'spapr-tce-results-a-'));
    const b = mkdtempSync(join(tmpdir(), 'spapr-tce-results-b-'));
    try {
      writeFileSync(join(a, 'q.quick.json'), JSON.stringify({ date: '2030-01-01T00:00:00Z', settings: { mode: 'quick' } }));
      writeFileSync(join(a, 'junk.json'), '{');
      expect(d.findResults(undefined, [a])).toBeUndefined();
      writeFileSync(join(b, 'old.json'), JSON.stringify({ date: '2026-01-01T00:00:00Z', settings: { mode: 'full' } }));
      writeFileSync(join(b, 'new.json'), JSON.stringify({ date: '2026-06-01T00:00:00Z', settings: { mode: 'full' } }));
      writeFileSync(join(b, 'later-quick.json'), JSON.stringify({ date: '2027-01-01T00:00:00Z', settings: { mode: 'quick' } }));
      expect(d.findResults(undefined, [a, b])!.path).toBe(join(b, 'new.json'));
      // a run of another schema, without settings.mode, counts as full
      writeFileSync(join(a, 'schemaless.json'), JSON.stringify({ date: '2025-01-01T00:00:00Z' }));
      expect(d.findResults(undefined, [a, b])!.path).toBe(join(a, 'schemaless.json'));
      expect(d.findResults(undefined, [join(a, 'nosuch')])).toBeUndefined();
      const table = d.renderTable(await d.runDesigns(lib), undefined);
      expect(table).toMatch(/`pid`, per call .*\| no full benchmark run found \(run `spapr-tce bench`\) \| no full benchmark run found \|/);
      expect(table).toMatch(/Costs: no full benchmark run was found/);
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  }, 60_000);

  it('benchFigures tolerates a missing field (another schema, a partial run): undefined, and the cell says so', async () => {
    const d = await designs();
    for (const j of [undefined, null, {}, { results: 5 }, { results: [null, { op: 'H_PUT_TCE' }] }, { instructions: {} }]) {
      const f = d.benchFigures(j).figures;
      for (const check of ['pid-call', 'pid-entry']) expect(f[check]).toEqual({ putTce: { ns: undefined, instructions: undefined }, indirectEntry: { ns: undefined, instructions: undefined } });
    }
    const partial = { results: [{ op: 'H_PUT_TCE', engine: 'wasm', check: 'pid-call', overhead: { ns: 2.5 } }] };
    expect(d.benchFigures(partial).figures['pid-call']!.putTce).toEqual({ ns: 2.5, instructions: undefined });
    const dir = mkdtempSync(join(tmpdir(), 'spapr-tce-designs-'));
    try {
      writeFileSync(join(dir, 'partial.json'), JSON.stringify(partial));
      writeFileSync(join(dir, 'bad.json'), 'not json');
      const r = await run(['demo', 'designs', '--results', join(dir, 'partial.json')]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/`pid`, per call .*\| \+2\.5 ns, instructions: not in the file \| no figures in /);
      const bad = await run(['demo', 'designs', '--results', join(dir, 'bad.json')]);
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim()).toMatch(/^spapr-tce demo: --results .*bad\.json: not a JSON file$/);
      const none = await run(['demo', 'designs', '--results', join(dir, 'nosuch.json')]);
      expect(none.code).toBe(2);
      expect(none.stderr.trim()).toMatch(/no such file$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
