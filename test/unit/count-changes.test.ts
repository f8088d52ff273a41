// countChanges (src/kvm/vm.ts): the one structure behind the VM's LIOBN → table map and the VMM's
// VIO bypass set. Every change bumps the VM's generation (what cached DMA translations compare);
// reads do not, and the collection behaves as a plain Map or Set.
import { describe, expect, it } from 'vitest';
import { countChanges } from '../../src/kvm/vm.js';
import { Host } from '../../src/index.js';

describe('countChanges: a Map or Set of LIOBNs that counts its changes', () => {
  it('a Map: set, delete (even of an absent key) and clear count; get, has and iteration do not', () => {
    let n = 0;
    const m = countChanges(new Map<bigint, string>(), () => n++);
    expect(m.set(1n, 'a')).toBe(m);
    m.set(2n, 'b');
    expect(n).toBe(2);
    expect([m.get(1n), m.has(2n), m.size, [...m.keys()]]).toEqual(['a', true, 2, [1n, 2n]]);
    expect(n).toBe(2);
    expect(m.delete(1n)).toBe(true);
    expect(m.delete(9n)).toBe(false);
    expect(n).toBe(4);
    m.clear();
    expect([n, m.size]).toEqual([5, 0]);
  });

  it('a Set: add, delete and clear count; has and iteration do not', () => {
    let n = 0;
    const s = countChanges(new Set<bigint>(), () => n++);
    expect(s.add(7n)).toBe(s);
    expect([s.has(7n), [...s], n]).toEqual([true, [7n], 1]);
    expect(s.delete(7n)).toBe(true);
    s.clear();
    expect([n, s.size]).toEqual([3, 0]);
  });

  it("a VM's tables and bypass bump its generation", async () => {
    const host = await Host.create();
    const vm = host.spawn().createVm({ profile: 'qemu' });
    const g0 = vm.generation;
    vm.bypass.add(0x71000000n);
    expect(vm.generation).toBe(g0 + 1);
    vm.tables.delete(0x71000000n);
    expect(vm.generation).toBe(g0 + 2);
  });
});
