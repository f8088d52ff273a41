// The descriptor views generated from the layout (src/generated/views.ts):
// every field reads and writes the bytes the layout gives it, the same bytes
// the engines use through the generated constants.
import { describe, expect, it } from 'vitest';
import { LinearMemory } from '../../src/core/memory.js';
import * as views from '../../src/generated/views.js';
import { STRUCTS } from '../../src/generated/layout.js';

const viewOf = (name: string): new (mem: LinearMemory, at: number) => Record<string, unknown> =>
  (views as unknown as Record<string, new (mem: LinearMemory, at: number) => Record<string, unknown>>)[name[0] + name.slice(1).toLowerCase() + 'View']!;

describe('descriptor views', () => {
  it('each field of each struct is the bytes at its layout offset, arrays element by element', () => {
    const mem = LinearMemory.create(1 << 20);
    const at = 8192;
    for (const st of STRUCTS) {
      const View = viewOf(st.name);
      expect((View as unknown as { BYTES: number }).BYTES).toBe(st.size);
      const view = new View(mem, at);
      for (const f of st.fields) {
        if (f.name === 'pad') continue;
        const size = f.type === 'u64' ? 8 : 4;
        for (let i = 0; i < f.count; i++) {
          mem.u8.fill(0, at, at + st.size);
          const value = f.type === 'u64' ? 0x0123_4567_89ab_cdefn : 0x89ab_cdef;
          if (f.count === 1) view[f.name] = value;
          else (view[`set${f.name[0]!.toUpperCase()}${f.name.slice(1)}At`] as (i: number, v: unknown) => void).call(view, i, value);
          const off = at + f.offset + i * size;
          expect(f.type === 'u64' ? mem.getU64(off) : mem.getU32(off), `${st.name}.${f.name}[${i}]`).toBe(value);
          // Nothing else of the struct changed.
          const nonZero = [...mem.u8.subarray(at, at + st.size)].reduce((n, b) => n + (b !== 0 ? 1 : 0), 0);
          expect(nonZero, `${st.name}.${f.name}[${i}] wrote outside its ${size} bytes`).toBe(size);
          const read = f.count === 1 ? view[f.name] : (view[`${f.name}At`] as (i: number) => unknown).call(view, i);
          expect(read).toBe(value);
        }
        if (f.count > 1) {
          expect(() => (view[`${f.name}At`] as (i: number) => unknown).call(view, f.count)).toThrow(RangeError);
          expect((view[`${f.name}Array`] as () => ArrayLike<unknown>).call(view).length).toBe(f.count);
        }
      }
    }
  });

  it('compare-exchange swaps only on the expected value', () => {
    const mem = LinearMemory.create(1 << 20);
    const reg = new views.RegView(mem, 4096);
    reg.mapped = 1n;
    expect(reg.casMapped(2n, 0n)).toBe(1n);
    expect(reg.mapped).toBe(1n);
    expect(reg.casMapped(1n, 0n)).toBe(1n);
    expect(reg.mapped).toBe(0n);
  });
});
