// 32-bit ids (docs/semantics.md §1.1): a LIOBN or a hypercall number given to
// the public API is a number or a bigint in [0, 2^32), to the same effect;
// anything else is refused (RangeError or TypeError naming the argument) and
// changes nothing. Register contents (a hypercall's r4) are not ids: they are
// u64 and the hypercall answers them.
import { describe, expect, it } from 'vitest';
import { H } from '../../src/index.js';
import { world, state, refused, any, LIOBN, VIO } from './api-helpers.js';

type World = Awaited<ReturnType<typeof world>>;
type Spell = (x: bigint) => bigint | number;

/** Calls taking a LIOBN, each leaving a state that tells which LIOBN it used. */
const CALLS: { what: string; call: (w: World, N: Spell) => unknown }[] = [
  { what: 'vm.createTceTable({liobn: 0x80000001})', call: (w, N) => w.vm.createTceTable({ liobn: N(0x8000_0001n), pageShift: 12, offset: 0n, size: 16n }) },
  { what: 'vm.createTceTable({liobn: 0xffffffff}) + attachGroup', call: (w, N) => {
    w.vm.createTceTable({ liobn: N(0xffff_ffffn), pageShift: 12, offset: 0n, size: 16n });
    w.vm.attachGroup(w.g, N(0xffff_ffffn));
    expect(w.vm.links(N(0xffff_ffffn))).toHaveLength(1);
  } },
  { what: 'vm.setTceBypass(VIO)', call: (w, N) => {
    w.qvm.setTceBypass(N(VIO), true);
    expect(w.qvm.tceBypass(N(VIO))).toBe(true);
  } },
  { what: 'vm.hcall(nr) and the LIOBN in it', call: (w, N) => {
    expect(w.vm.hcall(N(BigInt(H.PUT_TCE)), LIOBN, 0x3000n, 0x7000n | 3n).ret).toBe(H.SUCCESS);
  } },
];

describe('a 32-bit id takes a number or a bigint, to the same effect', () => {
  for (const c of CALLS) {
    it(c.what, async () => {
      const a = await world();
      const b = await world();
      c.call(a, (x) => x);
      c.call(b, (x) => Number(x));
      expect(state(b.host), 'numbers and bigints gave different states').toBe(state(a.host));
      expect(state(a.host), 'the call changed nothing').not.toBe(state((await world()).host));
    });
  }

  it('LIOBN 0x80000000 as a number finds the bigint-keyed table; results are bigints', async () => {
    const w = await world();
    expect(w.vm.translate(0x8000_0000, 0n)).toEqual(w.vm.translate(LIOBN, 0n));
    expect(w.vm.links(0x8000_0000)).toEqual(w.vm.links(LIOBN));
    expect(w.vm.links(0x8000_0000)).toHaveLength(1);
    expect(w.qvm.dma(Number(VIO)).liobn).toBe(VIO);
    const t = w.vm.createTceTable({ liobn: 0x1234, pageShift: 12, offset: 0n, size: 1n });
    expect(t.liobn).toBe(0x1234n);
    expect(w.vm.tables.has(0x1234n)).toBe(true);
    const seen: bigint[] = [];
    w.qvm.replay(Number(VIO), (e) => seen.push(e.liobn));
    const un = w.qvm.subscribe(Number(VIO), (e) => seen.push(e.liobn));
    w.qvm.hcall(H.PUT_TCE, VIO, 0x2000n, 0x9000n | 3n);
    un();
    expect(seen).toEqual([VIO]);
  });
});

/** Entry points with a LIOBN replaced by `x`, and the name the refusal gives it. */
const ARGS: { where: string; arg: string; call: (w: World, x: unknown) => unknown }[] = [
  { where: 'vm.createTceTable', arg: 'liobn', call: (w, x) => w.vm.createTceTable({ liobn: any(x), pageShift: 12, offset: 0n, size: 16n }) },
  { where: 'vm.attachGroup', arg: 'liobn', call: (w, x) => w.vm.attachGroup(w.g, any(x)) },
  { where: 'vm.links', arg: 'liobn', call: (w, x) => w.vm.links(any(x)) },
  { where: 'vm.translate', arg: 'liobn', call: (w, x) => w.vm.translate(any(x), 0n) },
  { where: 'vm.dma', arg: 'liobn', call: (w, x) => w.qvm.dma(any(x)) },
  { where: 'vm.subscribe', arg: 'liobn', call: (w, x) => w.qvm.subscribe(any(x), () => undefined) },
  { where: 'vm.replay', arg: 'liobn', call: (w, x) => w.qvm.replay(any(x), () => undefined) },
  { where: 'vm.setTceBypass', arg: 'liobn', call: (w, x) => w.qvm.setTceBypass(any(x), true) },
  { where: 'vm.tceBypass', arg: 'liobn', call: (w, x) => w.qvm.tceBypass(any(x)) },
  { where: 'vm.attachContainer', arg: 'opts.liobns[1]', call: (w, x) => w.qvm.attachContainer(w.qfd, { liobns: [VIO, any(x)] }) },
  { where: 'vm.hcall', arg: 'nr', call: (w, x) => w.vm.hcall(any(x), LIOBN, 0n, 0n) },
  { where: 'vm.rtas', arg: 'args[0]', call: (w, x) => w.qvm.rtas('ibm,query-pe-dma-window', [any(x), 0, 0], 5) },
];

const BAD: { what: string; x: unknown; kind: RangeErrorConstructor | TypeErrorConstructor; says: RegExp }[] = [
  { what: '1n << 33n', x: 1n << 33n, kind: RangeError, says: /must be in \[0, 2\^32\), got 8589934592n$/ },
  { what: '2^32 as a number', x: 2 ** 32, kind: RangeError, says: /must be in \[0, 2\^32\), got 4294967296$/ },
  { what: '-1', x: -1, kind: RangeError, says: /must be in \[0, 2\^32\), got -1$/ },
  { what: '-1n', x: -1n, kind: RangeError, says: /must be in \[0, 2\^32\), got -1n$/ },
  { what: 'a fraction', x: 1.5, kind: RangeError, says: /must be an integer, got 1\.5$/ },
  { what: 'a string', x: '0x80000000', kind: TypeError, says: /must be a number or a bigint, got the string "0x80000000"$/ },
  { what: 'null', x: null, kind: TypeError, says: /must be a number or a bigint, got null$/ },
  { what: 'undefined', x: undefined, kind: TypeError, says: /is required$/ },
];

describe('a bad 32-bit id is refused, naming the argument, and changes nothing', () => {
  for (const a of ARGS) {
    it(`${a.where}: ${a.arg}`, async () => {
      const w = await world();
      if (a.where === 'vm.attachContainer') w.sync.detach();
      const esc = a.arg.replace(/[.[\]]/g, '\\$&');
      for (const b of BAD) {
        // vm.subscribe's liobn may also be '*': its type message says so
        const says = a.where === 'vm.subscribe' && b.kind === TypeError && b.x !== undefined ? /must be/ : b.says;
        refused(w.host, () => a.call(w, b.x), b.kind, new RegExp(`^${esc} ${says.source}`));
      }
    });
  }

  it('a hypercall argument is a register, not an id: r4 with bits 32..63 set is answered, not refused', async () => {
    const w = await world();
    // spapr_tce_find_by_liobn matches no table: the call goes to the VMM
    expect(w.vm.hcall(H.PUT_TCE, (1n << 33n) | LIOBN, 0n, 0n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
  });
});
