// The c-floor ≤ native verdict of bench/summary.mjs on synthetic results:
// time decides through the bootstrap interval of c-floor − native
// (`vsNative`), callgrind's counts decide where time cannot.
import { describe, expect, it } from 'vitest';
import { cFloorVerdict, targets } from '../../bench/summary.mjs';

const OP = 'H_PUT_TCE_INDIRECT_512';
const iv = (median: number) => ({ median, lo: median * 0.99, hi: median * 1.01 });

/** A results document with one op timed on native and c-floor, and optional instruction counts. */
function doc(vsNative: { ns: number; lo: number; hi: number; significant: boolean } | undefined, ir?: { cf: number; native: number }) {
  return {
    results: [
      { op: OP, engine: 'native', check: 'none', entries: 512, nsPerCall: iv(5864), nsPerEntry: iv(11.45) },
      { op: OP, engine: 'c-floor', check: 'none', entries: 512, nsPerCall: iv(5898), nsPerEntry: iv(11.52), ...(vsNative ? { vsNative } : {}) },
    ],
    instructions: ir ? { results: [
      { op: OP, engine: 'c-floor', check: 'none', irPerCall: ir.cf, irPerEntry: ir.cf / 512 },
      { op: OP, engine: 'native', check: 'none', irPerCall: ir.native, irPerEntry: ir.native / 512 },
    ] } : undefined,
  };
}
const NS = { ns: 33.7, lo: -12, hi: 170, significant: false };
const SLOWER = { ns: 33.7, lo: 5, hi: 60, significant: true };
const FASTER = { ns: -150, lo: -170, hi: -120, significant: true };
const row = (d: object) => targets(d).find((t: { what: string }) => /^c-floor/.test(t.what));

describe('c-floor ≤ native verdict', () => {
  it('passes when the difference is not significant and c-floor counts fewer instructions, printing both figures', () => {
    const v = cFloorVerdict(doc(NS, { cf: 87_360, native: 94_288 }));
    expect(v.pass).toBe(true);
    expect(v.value).toContain('+33.7 ns/call [−12.0, +170.0], not significant');
    expect(v.value).toContain('87,360 vs 94,288 instr/call');
    expect(row(doc(NS, { cf: 87_360, native: 94_288 }))).toEqual(expect.objectContaining({ pass: true, value: v.value }));
  });

  it('fails when c-floor is significantly slower, whatever the instructions', () => {
    const v = cFloorVerdict(doc(SLOWER, { cf: 87_360, native: 94_288 }));
    expect(v.pass).toBe(false);
    expect(v.value).toContain('significantly slower');
    expect(row(doc(SLOWER)).pass).toBe(false);
  });

  it('fails when c-floor counts more instructions, even when time cannot tell them apart', () => {
    const v = cFloorVerdict(doc(NS, { cf: 94_289, native: 94_288 }));
    expect(v.pass).toBe(false);
    expect(v.value).toContain('94,289 vs 94,288 instr/call');
    expect(cFloorVerdict(doc(FASTER, { cf: 94_289, native: 94_288 })).pass).toBe(false);
  });

  it('is not measured when time does not resolve it and nothing was counted; time alone passes a significantly faster c-floor', () => {
    const open = cFloorVerdict(doc(NS));
    expect(open.pass).toBeNull();
    expect(open.why).toMatch(/not significant in time, and callgrind did not count both/);
    expect(row(doc(NS)).pass).toBeNull();
    expect(cFloorVerdict(doc(FASTER)).pass).toBe(true);
    // A file recorded before the verdict had an interval says so, and decides nothing from its medians.
    expect(cFloorVerdict(doc(undefined)).why).toMatch(/no bootstrap interval/);
    expect(cFloorVerdict({ results: [] }).pass).toBeNull();
  });
});

describe('instruction counts not linear in K', () => {
  const nonLinear = { linear: false, worst: 0.48 };
  it('are not taken as a cost: the c-floor verdict and the instruction targets say not measured, with the reason', () => {
    const d = doc(NS, { cf: 87_360, native: 94_288 });
    d.instructions!.results[1] = { ...d.instructions!.results[1], linearity: nonLinear } as never;
    expect(cFloorVerdict(d).pass).toBeNull();
    const t = targets(d).find((x: { what: string }) => x.what === 'native H_PUT_TCE_INDIRECT(512): instructions per entry');
    expect(t.pass).toBeNull();
    expect(t.why).toContain('not linear in K (worst slope 48.0% off)');
  });

  it('are taken when linear', () => {
    const d = doc(NS, { cf: 87_360, native: 94_288 });
    d.instructions!.results[1] = { ...d.instructions!.results[1], linearity: { linear: true, worst: 0.001 } } as never;
    expect(cFloorVerdict(d).pass).toBe(true);
    expect(targets(d).find((x: { what: string }) => x.what === 'native H_PUT_TCE_INDIRECT(512): instructions per entry').pass).toBe(true);
  });
});
