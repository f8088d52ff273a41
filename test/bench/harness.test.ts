// The benchmark harness in a tiny configuration: few samples, a filter, a
// temporary --json file. Checks the shape of the results JSON (the names in
// issue 6 are a contract other tools read), never its timings.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../bench/run.mjs';

const OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'MAP_UNMAP_1', 'MAP_UNMAP_512', 'H_PUT_TCE_64K_OVER_4K'];
const ENGINES = ['wasm', 'native', 'js', 'c-floor'];
const VARIANTS = ['none', 'pid-call', 'pid-entry', 'mm', 'no-view-lock', 'one-pass', 'no-smr-read', 'k5.19'];

const interval = expect.objectContaining({ median: expect.any(Number), lo: expect.any(Number), hi: expect.any(Number) });

describe('bench harness (tiny configuration)', () => {
  it('writes the results JSON in the contract shape', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spapr-bench-'));
    try {
      const json = join(dir, 'out.json');
      const filter = '^H_PUT_TCE/(wasm|js)/(none|pid-call|k5.19)$|^H_PUT_TCE_INDIRECT_512/(native/none|wasm/(none|one-pass))$|^MAP_UNMAP_1/wasm/none$|^trace/trace-b[^/]*/none$|^scaling/disjoint/2$';
      const code = (await main({ profile: 'tiny', quiet: true, filter, json, resultsDir: dir })) as number;
      expect(code).toBe(0);
      const doc = JSON.parse(readFileSync(json, 'utf8'));

      expect(doc.machine).toEqual({ cpu: expect.any(String), cores: expect.any(Number), os: expect.any(String) });
      expect(doc.node).toBe(process.versions.node);
      expect(doc.v8).toBe(process.versions.v8);
      expect(Number.isNaN(Date.parse(doc.date))).toBe(false);
      expect(Array.isArray(doc.results)).toBe(true);

      const keys = doc.results.map((r: { op: string; engine: string; check: string }) => `${r.op}/${r.engine}/${r.check}`);
      // `none` is always sampled with a check; what the filter selects is there.
      expect(keys).toEqual(expect.arrayContaining(['H_PUT_TCE/wasm/none', 'H_PUT_TCE/wasm/pid-call', 'H_PUT_TCE/js/none', 'H_PUT_TCE/js/pid-call', 'MAP_UNMAP_1/wasm/none', 'H_PUT_TCE_INDIRECT_512/wasm/one-pass']));
      // Kernel 5.19 beside 4.19: its own host, every call in virtual mode; the JavaScript baseline has no era.
      expect(keys).toContain('H_PUT_TCE/wasm/k5.19');
      expect(doc.skipped.some((x: { op: string; engine: string; check: string }) => x.op === 'H_PUT_TCE' && x.engine === 'js' && x.check === 'k5.19')).toBe(true);
      // An ablation row says what the mechanism costs: none − the run without it.
      const onePass = doc.results.find((r: { op: string; engine: string; check: string }) => r.op === 'H_PUT_TCE_INDIRECT_512' && r.engine === 'wasm' && r.check === 'one-pass');
      expect(onePass.cost).toEqual(expect.objectContaining({ mechanism: '(e) validate-before-write pass', ns: -onePass.overhead.ns, lo: -onePass.overhead.hi, hi: -onePass.overhead.lo }));
      expect(keys.every((k: string) => new RegExp(filter).test(k))).toBe(true);
      for (const r of doc.results) {
        expect(OPS).toContain(r.op);
        expect(ENGINES).toContain(r.engine);
        expect(VARIANTS).toContain(r.check);
        expect(r.nsPerCall).toEqual(interval);
        expect(r.nsPerEntry).toEqual(interval);
        expect(r.nsPerCall.lo).toBeLessThanOrEqual(r.nsPerCall.median);
        expect(r.nsPerCall.median).toBeLessThanOrEqual(r.nsPerCall.hi);
        expect(Number.isInteger(r.samples) && r.samples > 0).toBe(true);
        if (r.check === 'none') expect(r.overhead).toBeNull();
        else {
          expect(r.overhead).toEqual(expect.objectContaining({ ns: expect.any(Number), pct: expect.any(Number), lo: expect.any(Number), hi: expect.any(Number), significant: expect.any(Boolean) }));
        }
      }
      // The one verdict: significant exactly when the overhead's interval excludes 0.
      for (const r of doc.results.filter((x: { overhead: unknown }) => x.overhead)) {
        expect(r.overhead.significant).toBe(r.overhead.lo > 0 || r.overhead.hi < 0);
      }
      // Every target of issue 10 with PASS/FAIL (or why it was not measured) and its figure.
      expect(doc.targets.length).toBeGreaterThanOrEqual(12);
      for (const t of doc.targets) {
        expect(t).toEqual(expect.objectContaining({ what: expect.any(String), target: expect.any(String) }));
        if (t.pass === null) expect(t.why).toEqual(expect.any(String));
        else expect(typeof t.value).toBe('string');
      }
      // A cell an engine cannot run is skipped with its reason, or measured: never both, never silent.
      const native = keys.includes('H_PUT_TCE_INDIRECT_512/native/none');
      const nativeSkipped = doc.skipped.some((s: { op: string; engine: string; reason: string }) => s.op === 'H_PUT_TCE_INDIRECT_512' && s.engine === 'native' && s.reason.length > 0);
      expect(native !== nativeSkipped).toBe(true);

      // Extra keys: trace replay and vCPU scaling.
      // The recorded traces of traces/: the filter selects trace B with check none.
      expect(doc.traces).toEqual([expect.objectContaining({ trace: expect.stringMatching(/^trace-b/), check: 'none', hypercallsPerSecond: expect.any(Number), mismatches: 0 })]);
      // The one-vCPU baseline comes with whatever the filter selects: every ratio is paired with it, round by round.
      expect(doc.scaling.map((s: { tables: string; vcpus: number }) => `${s.tables}/${s.vcpus}`)).toEqual(['single/1', 'disjoint/2']);
      for (const s of doc.scaling) expect(s.hypercallsPerSecond).toBeGreaterThan(0);
      const two = doc.scaling[1];
      expect(two.ratios).toHaveLength(two.rounds);
      expect(two.ratioInterval.lo).toBeLessThanOrEqual(two.ratioToOne);
      expect(two.ratioInterval.hi).toBeGreaterThanOrEqual(two.ratioToOne);

      // The dated copy and its chart next to it.
      const files = readdirSync(dir);
      expect(files.some((f) => /^\d{4}-\d\d-\d\dT.*\.tiny\.json$/.test(f))).toBe(true);
      const svg = files.find((f) => f.endsWith('.svg'));
      expect(readFileSync(join(dir, svg!), 'utf8')).toMatch(/^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
