// vm.hcall() arity (docs/semantics.md §1.1): each TCE hypercall takes exactly
// its arguments (PAPR: H_PUT_TCE liobn, ioba, tce; H_PUT_TCE_INDIRECT and
// H_STUFF_TCE four; H_GET_TCE two). Too few or too many is a TypeError naming
// the hypercall and its arguments, and nothing runs: no register written, no
// statistics, no event, no vCPU made. Another number takes up to r4..r11.
import { describe, expect, it } from 'vitest';
import { H } from '../../src/index.js';
import type { VmEvent } from '../../src/index.js';
import { world, state, refused, LIOBN, VIO } from './api-helpers.js';

const ARITY: { nr: number; name: string; args: string[] }[] = [
  { nr: H.PUT_TCE, name: 'H_PUT_TCE', args: ['liobn', 'ioba', 'tce'] },
  { nr: H.PUT_TCE_INDIRECT, name: 'H_PUT_TCE_INDIRECT', args: ['liobn', 'ioba', 'tce_list', 'npages'] },
  { nr: H.STUFF_TCE, name: 'H_STUFF_TCE', args: ['liobn', 'ioba', 'tce_value', 'npages'] },
  { nr: H.GET_TCE, name: 'H_GET_TCE', args: ['liobn', 'ioba'] },
];

describe('vm.hcall checks the arity of each TCE hypercall; a wrong count runs nothing', () => {
  for (const a of ARITY) {
    it(`${a.name} takes ${a.args.length}`, async () => {
      const w = await world();
      const seen: VmEvent[] = [];
      w.qvm.subscribe('*', (e) => seen.push(e));
      const msg = (got: number): RegExp =>
        new RegExp(`^vm\\.hcall\\(${a.name}\\) takes ${a.args.length} arguments \\(${a.args.join(', ')}\\), got ${got}$`);
      for (const vm of [w.vm, w.qvm]) {
        const l = vm === w.vm ? LIOBN : VIO;
        const full = [l, 0x1000n, 0x3000n | 3n, 1n].slice(0, a.args.length);
        for (const n of [0, 1, a.args.length - 1]) refused(w.host, () => vm.hcall(a.nr, ...full.slice(0, n)), TypeError, msg(n));
        refused(w.host, () => vm.hcall(a.nr, ...full, 0n), TypeError, msg(a.args.length + 1));
        // the number as a bigint is the same hypercall, checked the same way
        refused(w.host, () => vm.hcall(BigInt(a.nr), ...full.slice(1)), TypeError, msg(a.args.length - 1));
        expect(vm.friendly, 'a refused call made the friendly vCPU').toBeUndefined();
      }
      expect(seen).toEqual([]);
      // the exact count runs: the hypercall answers (whatever its status) and the state moves
      const before = state(w.host);
      const full = [LIOBN, 0x1000n, 0x3000n | 3n, 1n].slice(0, a.args.length);
      const r = w.vm.hcall(a.nr, ...full);
      expect(typeof r.ret).toBe('number');
      expect(w.vm.friendly).toBeDefined();
      expect(state(w.host)).not.toBe(before);
    });
  }

  it('the right count does what the hypercall does: H_PUT_TCE then H_GET_TCE reads it back', async () => {
    const w = await world();
    expect(w.vm.hcall(H.PUT_TCE, LIOBN, 0x5000n, 0x8000n | 3n)).toMatchObject({ ret: H.SUCCESS });
    expect(w.vm.hcall(H.GET_TCE, LIOBN, 0x5000n)).toEqual({ ret: H.SUCCESS, out: [0x8000n | 3n], level: 'real' });
  });

  it('a hypercall this library does not implement takes up to 8 arguments (r4..r11) and exits to the VMM', async () => {
    const w = await world();
    const args = [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n];
    refused(w.host, () => w.vm.hcall(0x104, ...args, 9n), TypeError, /^vm\.hcall\(0x104\) takes at most 8 arguments \(r4\.\.r11\), got 9$/);
    expect(w.vm.friendly).toBeUndefined();
    expect(w.vm.hcall(0x104, ...args)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
    expect(w.vm.hcall(0x104)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
  });

  it('an argument is checked as a register (u64, named after the argument) before anything runs', async () => {
    const w = await world();
    refused(w.host, () => w.vm.hcall(H.PUT_TCE, LIOBN, -1n, 3n), RangeError, /^ioba must be in \[0, 2\^64\), got -1n$/);
    refused(w.host, () => w.vm.hcall(H.PUT_TCE, LIOBN, 0n, '3' as never), TypeError, /^tce must be a bigint or a number, got the string "3"$/);
    refused(w.host, () => w.vm.hcall(H.STUFF_TCE, LIOBN, 0n, 0n, undefined as never), TypeError, /^npages is required$/);
    expect(w.vm.friendly).toBeUndefined();
  });
});
