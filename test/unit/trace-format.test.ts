// The trace reader and replay on small hand-written traces (docs/traces.md): what a
// recording other than the two shipped ones may hold is read past or checked, never
// refused for being new (unknown kinds, extra fields), and each record kind the
// replay reads has its check: H_GET_TCE's r4, a translation beyond the window, a
// STUFF that QEMU recorded as failed part way; refusals name the line.
import { describe, expect, it } from 'vitest';
import { parseTrace, TraceError } from '../../src/trace.js';
import { replay } from '../../src/replay.js';

const header = { type: 'header', trace: 'tiny', tables: [{ liobn: '0x80000000', bus_offset: '0x0', window_size: '0x40000000', page_shift: 12, nb_entries: 262144 }] };
const ev = (o: Record<string, unknown>): Record<string, unknown> => ({ type: 'ev', t_us: 0, tid: 1, ...o });
const text = (recs: Record<string, unknown>[]): string => [header, ...recs].map((r) => JSON.stringify(r)).join('\n') + '\n';

const base = [
  ev({ ev: 'new_table', liobn: '0x80000000', fd: -1 }),
  ev({ ev: 'pci_put', hcall: 'H_PUT_TCE', pci: true, liobn: '0x80000000', ioba: '0x1000', tce: '0x20003', ret: 0 }),
];

describe('trace reader and replay: other recordings', () => {
  it('unknown event kinds, unknown record types and extra fields are read past; the rest replays', async () => {
    const t = parseTrace(text([
      ...base,
      ev({ ev: 'ddw_remove', liobn: 'not even hex' }),
      { type: 'mark', t_us: 1, text: 'phase 1' },
      { type: 'note', anything: [1, 2] },
      ev({ ev: 'xlate', liobn: '0x80000000', addr: '0x1010', ioba: '0x1010', xlated: '0x20000', perm: 3, page_shift: 12, in_window: true, new_field: { x: 1 } }),
    ]));
    expect(t.events.map((e) => e.kind)).toEqual(['table', 'hcall', 'other', 'other', 'other', 'xlate']);
    const r = await replay(t);
    expect(r.mismatches).toEqual([]);
    expect([r.hypercalls, r.translations]).toEqual([1, 1]);
  });

  it('H_GET_TCE: the r4 QEMU returned is checked when the record has it', async () => {
    const get = (tce: string): Record<string, unknown> => ev({ ev: 'pci_get', hcall: 'H_GET_TCE', liobn: '0x80000000', ioba: '0x1000', tce, ret: 0 });
    expect((await replay(parseTrace(text([...base, get('0x20003')])))).mismatches).toEqual([]);
    const bad = await replay(parseTrace(text([...base, get('0x30003')])));
    expect(bad.mismatches).toEqual([{ line: 4, expected: 'tce 0x30003', got: 'tce 0x20003' }]);
  });

  it('a translation QEMU found beyond the window expects no page, and is a mismatch when there is one', async () => {
    const beyond = (ioba: string): Record<string, unknown> => ev({ ev: 'xlate', liobn: '0x80000000', addr: ioba, ioba, xlated: '0x0', perm: 0, page_shift: 64, in_window: false });
    expect((await replay(parseTrace(text([...base, beyond('0x40000000')])))).mismatches).toEqual([]);
    const r = await replay(parseTrace(text([...base, beyond('0x1000')])));
    expect(r.mismatches).toHaveLength(1);
    expect(r.mismatches[0]!.line).toBe(4);
  });

  it('a STUFF recorded as failed part way (ioba null) is replayed from where it failed: the same return code', async () => {
    const stuff = ev({ ev: 'pci_stuff', hcall: 'H_STUFF_TCE', liobn: '0x80000000', ioba: null, ioba_traced: '0x40000000', tce_value: '0x0', npages: 4, ret: -4 });
    const r = await replay(parseTrace(text([...base, stuff])));
    expect(r.mismatches).toEqual([]);
    // With ret 0 a null ioba is no start address at all: refused with its line.
    expect(() => parseTrace(text([...base, { ...stuff, ret: 0 }]))).toThrow(/^trace:4: ioba: expected a hex string/);
  });

  it('refusals are TraceErrors naming the line and the field, and the replay refuses what it cannot set up', async () => {
    let e: unknown;
    try {
      parseTrace(text([...base, ev({ ev: 'pci_put', liobn: '0x80000000', ioba: '0x2000', tce: '0x1' + '0'.repeat(16), ret: 0 })]));
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(TraceError);
    expect((e as TraceError).line).toBe(4);
    expect((e as TraceError).message).toBe('trace:4: tce: "0x10000000000000000" does not fit in 64 bits');
    expect((e as TraceError).inFile('f.jsonl').message).toBe('f.jsonl:4: tce: "0x10000000000000000" does not fit in 64 bits');
    // An INDIRECT list beyond the replay's 1 GiB of guest RAM.
    const far = ev({ ev: 'pci_indirect', liobn: '0x80000000', ioba: '0x0', tce_list: '0x80000000', npages: 1, tces: ['0x20003'], ret: 0 });
    await expect(replay(parseTrace(text([...base, far])))).rejects.toThrow(/^trace:4: tce_list 0x80000000: .* outside the 1024 MiB of guest RAM/);
    // A new_table whose LIOBN the header does not describe is a mismatch, not a crash.
    const r = await replay(parseTrace(text([ev({ ev: 'new_table', liobn: '0x80000001', fd: -1 })])));
    expect(r.mismatches).toEqual([{ line: 2, expected: 'window parameters for LIOBN 0x80000001 in the header', got: 'none' }]);
  });
});

describe('trace replay: a window enabled again', () => {
  it('starts empty, as QEMU allocates a new table (spapr_tce_table_enable)', async () => {
    const xlate = (perm: number, xlated: string): Record<string, unknown> => ev({ ev: 'xlate', liobn: '0x80000000', addr: '0x1000', ioba: '0x1000', xlated, perm, page_shift: 12, in_window: true });
    const t = parseTrace(text([...base, xlate(3, '0x20000'), ev({ ev: 'ddw_remove', liobn: '0x80000000' }), ev({ ev: 'new_table', liobn: '0x80000000', fd: -1 }), xlate(0, '0x0')]));
    const r = await replay(t);
    expect(r.mismatches).toEqual([]);
    expect(r.hypercalls).toBe(1);
    // Without the second new_table the old mapping is still there: the check can fail.
    const kept = await replay(parseTrace(text([...base, xlate(3, '0x20000'), xlate(0, '0x0')])));
    expect(kept.mismatches).toHaveLength(1);
  });
});
