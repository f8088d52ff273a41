// Hypercall numbers into vcpu.regs (docs/semantics.md §1.1): the registers are
// a BigUint64Array, so they take bigints; H64 holds H's values as the 64-bit
// register contents (numbers for r3, statuses in two's complement as
// vcpu.hcall() leaves them in r3), so no conversion is left to the user.
import { describe, expect, it } from 'vitest';
import { H, H64 } from '../../src/index.js';
import { world, LIOBN } from './api-helpers.js';

describe('H64: H as register contents', () => {
  it('has every key of H, each the u64 a register holds for it', () => {
    expect(Object.keys(H64)).toEqual(Object.keys(H));
    for (const [k, x] of Object.entries(H)) {
      const r = H64[k as keyof typeof H];
      expect(typeof r).toBe('bigint');
      expect(BigInt.asIntN(64, r), k).toBe(BigInt(x));
      expect(r >= 0n && r < 1n << 64n, k).toBe(true);
    }
    expect(H64.PUT_TCE).toBe(0x20n);
    expect(H64.PARAMETER).toBe((1n << 64n) - 4n);
    expect(Object.isFrozen(H64)).toBe(true);
  });

  it('vcpu.regs[3] = H.PUT_TCE throws (the BigUint64Array), vcpu.regs[3] = H64.PUT_TCE runs it', async () => {
    const w = await world();
    const r = w.vcpu.regs;
    expect(() => { r[3] = H.PUT_TCE as never; }).toThrow(/Cannot convert 32 to a BigInt/);
    r[3] = H64.PUT_TCE;
    r[4] = LIOBN;
    r[5] = 0x4000n;
    r[6] = 0x6000n | 3n;
    expect(w.vcpu.hcall()).toBe(H.SUCCESS);
    expect(r[3]).toBe(H64.SUCCESS);
    // the same call through vm.hcall leaves the same state in a twin world
    const b = await world();
    expect(b.vm.hcall(H.PUT_TCE, LIOBN, 0x4000n, 0x6000n | 3n).ret).toBe(H.SUCCESS);
    expect(w.vm.translate(LIOBN, 0x4000n, 'write')).toEqual(b.vm.translate(LIOBN, 0x4000n, 'write'));
    expect(w.vm.translate(LIOBN, 0x4000n, 'write')).toMatchObject({ ok: true, gpa: 0x6000n });
  });

  it('a status left in r3 compares with H64 (two\'s complement), the returned one with H', async () => {
    const w = await world();
    const r = w.vcpu.regs;
    r[3] = H64.PUT_TCE;
    r[4] = LIOBN;
    r[5] = 0x4001n; // misaligned ioba: H_PARAMETER, nothing written
    r[6] = 0x6000n | 3n;
    expect(w.vcpu.hcall()).toBe(H.PARAMETER);
    expect(r[3]).toBe(H64.PARAMETER);
    expect(r[3]).not.toBe(BigInt(H.PARAMETER));
    r[3] = H64.GET_TCE;
    r[4] = LIOBN;
    r[5] = 0x4000n;
    expect(w.vcpu.hcall()).toBe(H.SUCCESS);
    expect(r[4]).toBe(0n);
    expect(w.vm.translate(LIOBN, 0x4000n, 'read')).toEqual({ ok: false, fault: 'no-permission' });
  });
});
