// Conformance: replaying the QEMU traces of traces/ (qemu profile) reproduces every
// recorded return code and every recorded translation (docs/traces.md).
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readTrace } from '../../src/trace.js';
import { replay } from '../../src/replay.js';

const dir = fileURLToPath(new URL('../../traces/', import.meta.url));
const traces = [
  { file: 'trace-a-vio-vscsi-vlan.jsonl.gz', hypercalls: 1319 + 2385 + 4445, translations: 34053 },
  { file: 'trace-b-pci-virtio-ddw.jsonl.gz', hypercalls: 1184 + 65 + 1395, translations: 10530 },
];

describe('trace replay (qemu profile)', () => {
  for (const t of traces) {
    it(`${t.file}: every return code and translation matches`, async () => {
      const trace = readTrace(dir + t.file);
      const r = await replay(trace);
      expect(r.mismatches).toEqual([]);
      expect(r.hypercalls).toBe(t.hypercalls);
      expect(r.translations).toBe(t.translations);
    });
  }

  it('--snapshot-every: snapshots restored into a new host mid-replay still match every return code and translation', async () => {
    const trace = readTrace(dir + traces[1]!.file);
    const r = await replay(trace, { snapshotEvery: 3000 });
    expect(r.mismatches).toEqual([]);
    expect(r.hypercalls).toBe(traces[1]!.hypercalls);
  });

  it('a replay that diverges is reported: one TCE changed shows up in the translations', async () => {
    const trace = readTrace(dir + traces[1]!.file);
    // The last H_PUT_TCE before a translation of the same page: flip one address bit of its TCE.
    let put: (typeof trace.events)[number] | undefined;
    for (const e of trace.events) {
      if (e.kind === 'xlate') {
        const mask = (1n << BigInt(e.pageShift)) - 1n;
        put = [...trace.events.slice(0, trace.events.indexOf(e))].reverse().find((p) => p.kind === 'hcall' && p.nr === 0x20 && p.liobn === e.liobn && p.ioba === (e.ioba & ~mask));
        if (put) break;
      }
    }
    if (!put || put.kind !== 'hcall') throw new Error('trace B has no H_PUT_TCE followed by a translation');
    put.arg ^= 0x1000n;
    const r = await replay(trace);
    expect(r.mismatches.length).toBeGreaterThan(0);
    expect(r.mismatches[0]!.line).toBeGreaterThan(put.line);
  });

  it('a recorded return code beyond 32 bits is compared whole: 2^32 is not H_SUCCESS', async () => {
    const trace = readTrace(dir + traces[1]!.file);
    const ok = trace.events.filter((e) => e.kind === 'hcall' && e.ret === 0);
    for (const e of [ok[10]!, ok[200]!]) if (e.kind === 'hcall') e.ret = 2 ** 32;
    const decoded = await replay(trace, { maxMismatches: 1e6 });
    const perRecord = await replay(trace, { maxMismatches: 1e6, decoded: false });
    expect(decoded.mismatches.map((m) => m.line)).toEqual([ok[10]!.line, ok[200]!.line]);
    expect(decoded.mismatches).toEqual(perRecord.mismatches);
  });

  it('the decoded loop reports exactly what the per-record path reports, on traces with every kind of divergence', async () => {
    for (const t of traces) {
      const trace = readTrace(dir + t.file);
      // Seeded changes: return codes, GET results, translated addresses, permissions, window hits, list TCEs and LIOBNs.
      let seed = 12345;
      const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
      const evs = trace.events;
      for (let k = 0; k < 60; k++) {
        const e = evs[rnd(evs.length)]!;
        const how = rnd(4);
        if (e.kind === 'hcall') {
          if (how === 0) e.ret = e.ret === 0 ? -4 : 0;
          else if (how === 1 && e.tce !== undefined) e.tce ^= 0x10000n;
          else if (how === 2 && e.tces) e.tces[rnd(e.tces.length)]! ^= 0x1000n;
          else e.liobn ^= 1n;
        } else if (e.kind === 'xlate') {
          if (how === 0) e.xlated ^= 0x1000n << BigInt(rnd(20));
          else if (how === 1) e.perm = (e.perm + 1) & 3;
          else if (how === 2) e.inWindow = !e.inWindow;
          else e.ioba += 1n << BigInt(e.pageShift);
        }
      }
      const decoded = await replay(trace, { maxMismatches: 1e6 });
      const perRecord = await replay(trace, { maxMismatches: 1e6, decoded: false });
      expect(decoded.mismatches.length).toBeGreaterThan(10);
      expect(decoded.mismatches).toEqual(perRecord.mismatches);
      expect([decoded.hypercalls, decoded.translations]).toEqual([perRecord.hypercalls, perRecord.translations]);
    }
  });
});
