// The engine routines are declared once (src/layout/engine.def.mjs): the
// WebAssembly build exports exactly them with their arities, the native
// engine has each one, the generated adapter refuses a build that lacks one,
// and the generator refuses a declaration it cannot read.
import { describe, expect, it } from 'vitest';
import { wasmModule } from '../../src/engine/wasm.js';
import { loadNative } from '../../src/engine/native.js';
import { ENGINE_ROUTINES, ENGINE_ARITY, wasmRoutines, missingRoutines } from '../../src/generated/engine.js';
import { parseRoutines } from '../../scripts/gen-engine.mjs';
import * as def from '../../src/layout/engine.def.mjs';

describe('engine routines, declared once', () => {
  it('the WebAssembly build exports exactly the declared routines, each with its declared arity', () => {
    const exports = WebAssembly.Module.exports(wasmModule()).filter((e) => e.kind === 'function').map((e) => e.name);
    expect([...exports].sort()).toEqual([...ENGINE_ROUTINES].sort());
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    const instance = new WebAssembly.Instance(wasmModule(), { env: { memory } });
    for (const name of ENGINE_ROUTINES) expect((instance.exports[name] as (...a: unknown[]) => unknown).length).toBe(ENGINE_ARITY[name]);
    expect(missingRoutines(instance.exports, true)).toEqual([]);
  });

  it.skipIf(!loadNative())('the native engine binds every declared routine, and benchLoop besides', () => {
    const addon = loadNative()!;
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    const e = addon.createEngine(new Uint8Array(memory.buffer)) as unknown as Record<string, unknown>;
    expect(Object.keys(e).filter((k) => k !== 'kind').sort()).toEqual([...ENGINE_ROUTINES, 'benchLoop'].sort());
    expect(missingRoutines(e, false)).toEqual([]);
  });

  it('the adapter refuses exports that lack a routine or take other arguments, and makes u32/u64 results unsigned', () => {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    const good = new WebAssembly.Instance(wasmModule(), { env: { memory } }).exports;
    const { hcall: _, ...noHcall } = good;
    expect(() => wasmRoutines(noHcall)).toThrow(/does not export hcall as declared/);
    expect(() => wasmRoutines({ ...good, tableGet: (t: number) => t })).toThrow(/does not export tableGet/);
    // Exports that answer -1 (as WebAssembly returns a u32 of 2^32 - 1, or a u64 of 2^64 - 1).
    const fake: Record<string, unknown> = {};
    for (const n of ENGINE_ROUTINES) {
      const params = Array.from({ length: ENGINE_ARITY[n] }, (_x, i) => `a${i}`);
      fake[n] = new Function(...params, n === 'tableGet' ? 'return -1n' : 'return -1');
    }
    const r = wasmRoutines(fake as WebAssembly.Exports);
    expect(r.alloc(64)).toBe(0xffff_ffff);
    expect(r.tableGet(0, 0n)).toBe((1n << 64n) - 1n);
    expect(r.hcall(0, 0)).toBe(-1);
  });

  it('the generator refuses a declaration it cannot read', () => {
    expect(parseRoutines(def).map((r: { name: string }) => r.name)).toEqual([...ENGINE_ROUTINES]);
    expect(() => parseRoutines({ routines: [['a(x: u32): u32', ''], ['a(y: u64): void', '']] })).toThrow(/declared twice/);
    expect(() => parseRoutines({ routines: [['a(x: f64): u32', '']] })).toThrow(/cannot read the argument/);
    expect(() => parseRoutines({ routines: [['a(x: u32): u16', '']] })).toThrow(/unknown result type/);
    expect(() => parseRoutines({ routines: [['a(x: u32)', '']] })).toThrow(/cannot read the signature/);
  });
});
