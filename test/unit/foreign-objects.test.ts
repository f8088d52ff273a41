// Bad input (design: wrong JavaScript types throw TypeError naming the argument): objects of another
// host, or not the right objects at all, are refused before they can reach linear memory.
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/index.js';

describe('foreign and mistyped objects', () => {
  it('vm.attachGroup refuses a group of another host and a non-group, and links nothing', async () => {
    const a = await Host.create({ ownerCheck: 'pid' });
    const b = await Host.create({ ownerCheck: 'pid' });
    const vm = a.spawn().createVm();
    vm.createTceTable({ liobn: 1n, pageShift: 12, offset: 0n, size: 1024n });
    expect(() => vm.attachGroup(b.addGroup(), 1n)).toThrow(/another host/);
    expect(() => vm.attachGroup({} as never, 1n)).toThrow(TypeError);
    expect(() => vm.attachGroup({} as never, 1n)).toThrow(/group must be a Group/);
    expect(vm.links(1n)).toEqual([]);
  });

  it('fd.attachGroup / detachGroup name a missing group; vm.vcpu refuses a thread that is not a Process of this host', async () => {
    const a = await Host.create();
    const p = a.spawn();
    const fd = p.openContainer();
    expect(() => fd.attachGroup(undefined as never)).toThrow(/group must be a Group/);
    expect(() => fd.detachGroup('g' as never)).toThrow(/group must be a Group/);
    const vm = p.createVm();
    expect(() => vm.vcpu(0, { thread: 'x' as never })).toThrow(/opts.thread must be a Process/);
    const other = await Host.create();
    expect(() => vm.vcpu(0, { thread: other.spawn() })).toThrow(/another host/);
    expect(vm.vcpu(0, { thread: p.thread() }).thread.pid).toBe(p.pid);
  });
});
