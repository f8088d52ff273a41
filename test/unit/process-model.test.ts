// Process model (README "What it is", docs/semantics.md §5): thread = same pid and mm; fork = new pid, new mm, same addresses, fresh frames; clone({vm:true}) = new pid, same mm; mmap aligns to the (huge) page and gives bytes only when backed.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, regionsOf } from '../../src/index.js';

describe('process model', () => {
  it('thread: same pid and mm, another tid', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const t = p.thread();
    expect(t.pid).toBe(p.pid);
    expect(t.mm).toBe(p.mm);
    expect(t.tid).not.toBe(p.tid);
  });

  it('fork: new pid, new mm, the same mappings at the same addresses with copied bytes and different host frames', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    ram.bytes![5] = 42;
    const c = p.fork();
    expect(c.pid).not.toBe(p.pid);
    expect(c.mm).not.toBe(p.mm);
    expect(c.mm.id).not.toBe(p.mm.id);
    const m = c.mm.findMapping(ram.ua)!;
    expect(m.ua).toBe(ram.ua);
    expect(m.size).toBe(ram.size);
    expect(m.bytes![5]).toBe(42);
    m.bytes![5] = 7;
    expect(ram.bytes![5]).toBe(42);
    expect(c.mm.translate(ram.ua)!.hpa).not.toBe(p.mm.translate(ram.ua)!.hpa);
    // new mappings of the child do not collide with the inherited ones
    const more = c.mmap(1n << 16n);
    expect(more.ua >= ram.ua + ram.size || more.ua + more.size <= ram.ua).toBe(true);
  });

  it('fork does not inherit regions or locked_vm; a thread and a clone({vm:true}) see them', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    preregNew(p, ram.ua, 16n);
    const c = p.fork();
    expect(regionsOf(c.mm)).toHaveLength(0);
    expect(c.mm.lockedPages).toBe(0n);
    const v = p.clone({ vm: true });
    expect(v.pid).not.toBe(p.pid);
    expect(v.mm).toBe(p.mm);
    expect(regionsOf(v.mm)).toHaveLength(1);
    expect(regionsOf(p.thread().mm)).toHaveLength(1);
  });

  it('clone() without vm behaves as fork', async () => {
    const host = await Host.create();
    const p = host.spawn();
    const ram = p.mmap(1n << 16n);
    const c = p.clone();
    expect(c.mm).not.toBe(p.mm);
    expect(c.mm.findMapping(ram.ua)).toBeDefined();
  });

  it('spawn: new pid and a new mm each time', async () => {
    const host = await Host.create();
    const a = host.spawn();
    const b = host.spawn();
    expect(a.pid).not.toBe(b.pid);
    expect(a.mm).not.toBe(b.mm);
  });

  it('mmap: ua aligned to the system page by default, to 2^hugePageShift when given; bytes only when backed', async () => {
    const host = await Host.create();
    const p = host.spawn();
    p.mmap(3n << 16n);
    const a = p.mmap(1n << 16n);
    expect(a.ua % (1n << 16n)).toBe(0n);
    expect(a.bytes?.length).toBe(1 << 16);
    const h = p.mmap(1n << 24n, { hugePageShift: 24 });
    expect(h.ua % (1n << 24n)).toBe(0n);
    expect(h.bytes?.length).toBe(1 << 24);
    const u = p.mmap(1n << 30n, { hugePageShift: 24, backed: false });
    expect(u.ua % (1n << 24n)).toBe(0n);
    expect(u.bytes).toBeUndefined();
    expect(u.size).toBe(1n << 30n);
    expect(p.mm.translate(h.ua + 0x123456n)!.pageShift).toBe(24);
    expect(p.mm.translate(h.ua + 0x123456n)!.hpa & 0xffffffn).toBe(0x123456n);
  });

  it('mmap on a 4K-page host aligns to 4 KiB', async () => {
    const host = await Host.create({ pageShift: 12 });
    const p = host.spawn();
    p.mmap(1n << 12n);
    const b = p.mmap(1n << 12n);
    expect(b.ua % (1n << 12n)).toBe(0n);
    expect(p.mm.translate(b.ua)!.pageShift).toBe(12);
  });

  it('mmap of a size that is not a multiple of the page → EINVAL', async () => {
    const host = await Host.create();
    const p = host.spawn();
    expect(() => p.mmap(0x1000n)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => p.mmap(1n << 16n, { hugePageShift: 24 })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});
