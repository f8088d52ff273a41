// The native engine's JavaScript face (src/native/engine_binding.cc): argument
// checks, traps mirrored from the WebAssembly build on the same bad input
// (same error class, same bytes left behind), both engines on one memory,
// and both racing from two threads on the same atomics.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable } from '../../src/index.js';
import { loadNative, nativeLoadError, createNativeEngine, type NativeAddon, type NativeEngine } from '../../src/engine/native.js';
import { createWasmEngine } from '../../src/engine/wasm.js';
import type { Engine } from '../../src/engine/engine.js';
import { HEADER_BASE, HEAP_BASE, HDR_ALLOC_BLOCKS, HDR_ALLOC_TOP, HDR_ALLOC_HEADS, HDR_ALLOC_SL_MAP, HDR_ALLOC_FL_MAP, TBL_LEVELS, TBL_ROOT, REG_MAPPED, OP_ALLOC } from '../../src/generated/layout.js';

// Without the addon (it failed to build) engine: 'wasm' still works; these tests then have nothing to compare.
const nativeAvailable = typeof (loadNative() as unknown as { createEngine?: unknown } | undefined)?.createEngine === 'function';

const addon = loadNative() as NativeAddon;

/** Two hosts with the same history, one per engine. */
async function pair(): Promise<Host[]> {
  return [await Host.create({ engine: 'wasm', maxMemory: 2 << 20 }), await Host.create({ engine: 'native', maxMemory: 2 << 20 })];
}

/** The outcome of a call as comparable data: value, or error class and message (without the native engine's detail). */
function outcome(f: () => unknown): unknown {
  try {
    const v = f();
    return { ok: typeof v === 'bigint' ? `${v}n` : v };
  } catch (e) {
    const err = e as Error;
    return { err: err.constructor.name, msg: err.message.replace(/ \(native engine.*$/s, '') };
  }
}

describe.skipIf(!nativeAvailable)('native engine binding', () => {
  it('the addon loads', () => {
    expect(nativeLoadError()).toBeUndefined();
  });

  it('createEngine takes a Uint8Array over a whole memory and nothing else', () => {
    const mem = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    expect(() => (addon.createEngine as unknown as (x: unknown) => unknown)(mem.buffer)).toThrow(TypeError);
    expect(() => (addon.createEngine as unknown as (x: unknown) => unknown)(new Uint16Array(mem.buffer))).toThrow(TypeError);
    expect(() => (addon.createEngine as unknown as () => unknown)()).toThrow(TypeError);
    expect(() => addon.createEngine(new Uint8Array(HEAP_BASE - 1))).toThrow(RangeError);
    expect(() => addon.createEngine(new Uint8Array(mem.buffer, 4))).toThrow(RangeError);
    const e = addon.createEngine(new Uint8Array(mem.buffer));
    expect(e.kind).toBe('native');
    expect(e.init(mem.buffer.byteLength, 16)).toBe(0);
  });

  it('rejects wrong types with TypeError and unrepresentable values with RangeError', async () => {
    const host = await Host.create({ engine: 'native' });
    const e = host.engine as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => e.tableGet!('16', 0n)).toThrow(TypeError);
    expect(() => e.tableGet!(16, 0)).toThrow(TypeError);
    expect(() => e.tableGet!(16)).toThrow(TypeError);
    expect(() => e.tableBuildV2!(1, 2, 0n, 1n, 0n, 3, 0)).toThrow(/pid must be a number/);
    expect(() => e.alloc!(1.5)).toThrow(RangeError);
    expect(() => e.alloc!(NaN)).toThrow(RangeError);
    expect(() => e.alloc!(2 ** 32)).toThrow(RangeError);
    expect(() => e.alloc!(-(2 ** 31) - 1)).toThrow(RangeError);
    expect(() => e.tableGet!(0, 1n << 64n)).toThrow(RangeError);
    expect(() => e.tableGet!(0, -(1n << 63n) - 1n)).toThrow(RangeError);
  });

  it('wraps negative numbers and bigints as the WebAssembly build does', async () => {
    const [a, b] = await pair();
    for (const [name, f] of [
      ['alloc(-1)', (e: Engine) => e.alloc(-1)],
      ['free(-64, 64)', (e: Engine) => e.free(-64, 64)],
      ['tableGet(0, -1n)', (e: Engine) => e.tableGet(0, -1n)],
      ['tableNextValid(0, -5n, -1n)', (e: Engine) => e.tableNextValid(0, -5n, -1n)],
      ['regionLookup(0, -1n, -1n)', (e: Engine) => e.regionLookup(0, -1n, -1n)],
    ] as const) {
      expect(outcome(() => f(b!.engine)), name).toEqual(outcome(() => f(a!.engine)));
    }
    expect(Buffer.compare(a!.mem.u8, b!.mem.u8)).toBe(0);
  });

  it('traps like the WebAssembly build on bad pointers, leaves the same bytes, and recovers', async () => {
    const [a, b] = await pair();
    const setup = (h: Host) => {
      const p = h.spawn();
      const ram = p.mmap(1n << 20n);
      const r = preregNew(p, ram.ua, ram.size >> 16n);
      const t = IommuTable.create(h, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
      t.viewMm = p.mm;
      t.buildV2(p.mm, 3n, 4n, ram.ua, 3);
      return { p, r, t };
    };
    const wa = setup(a!);
    const wb = setup(b!);
    const len = a!.mem.byteLength;
    const calls: [string, (e: Engine, w: typeof wa) => unknown][] = [
      ['tableGet past the end', (e) => e.tableGet(len, 0n)],
      ['tableGet far past the end', (e) => e.tableGet(len + 8000, 5n)],
      ['tableGet at 0 (in bounds)', (e) => e.tableGet(0, 0n)],
      ['unaligned u64 atomic', (e, w) => e.regionMappedInc(w.r.desc + 4)],
      ['unaligned u32 atomic', (e, w) => e.tableNextValid(w.t.desc + 1, 0n, 1n << 20n)],
      ['regionLookup at the last word', (e) => e.regionLookup(len - 4, 0n, 1n)],
      ['tableClearV2 on the last bytes', (e, w) => e.tableClearV2(len - 16, w.p.mm.desc, 0n, 4n, 0, 0)],
      ['regionUaToHpa past the end', (e, w) => e.regionUaToHpa(len - 8, w.r.ua, 16)],
      ['a good call after the traps', (e, w) => e.tableGet(w.t.desc, 4n)],
      ['tableXchg on a table with a bad root', (e, w) => {
        w.t.host.mem.setU32(w.t.desc + TBL_ROOT, len + 64);
        return e.tableXchg(w.t.desc, 5n, 0x10003n, OP_ALLOC);
      }],
    ];
    for (const [name, f] of calls) {
      const oa = outcome(() => f(a!.engine, wa));
      const ob = outcome(() => f(b!.engine, wb));
      expect(ob, name).toEqual(oa);
      expect(Buffer.compare(a!.mem.u8, b!.mem.u8), name).toBe(0);
    }
    expect(outcome(() => b!.engine.tableGet(len, 0n))).toMatchObject({ err: 'RuntimeError', msg: 'memory access out of bounds' });
    expect(() => b!.engine.tableGet(len, 0n)).toThrow(/native engine, tableGet: 8-byte access at 0x/);
  });

  it('stops on a cyclic tree as the WebAssembly build does (stack overflow), freeing nothing', async () => {
    const [a, b] = await pair();
    const corrupt = (h: Host) => {
      const t = IommuTable.create(h, { pageShift: 16, windowSize: 1n << 30n, levels: 2, busOffset: 0n }, true);
      const root = h.mem.getU32(t.desc + TBL_ROOT);
      h.mem.setU32(t.desc + TBL_LEVELS, 0); // levels - 1 wraps: a tree of 2^32 levels
      h.mem.setU32(root, root); // whose first child is itself
      return t;
    };
    const ta = corrupt(a!);
    const tb = corrupt(b!);
    const oa = outcome(() => a!.engine.tableFree(ta.desc));
    const ob = outcome(() => b!.engine.tableFree(tb.desc));
    expect(oa).toMatchObject({ err: 'RangeError', msg: 'Maximum call stack size exceeded' });
    expect(ob).toEqual(oa);
    expect(Buffer.compare(a!.mem.u8, b!.mem.u8)).toBe(0);
  });

  it('methods work detached from the engine object, as the WebAssembly exports do', async () => {
    const host = await Host.create({ engine: 'native' });
    const { alloc, free } = host.engine;
    const p = alloc(100);
    expect(p).toBeGreaterThanOrEqual(HEAP_BASE);
    free(p, 100);
    expect(alloc(128)).toBe(p);
  });

  it('a native engine attaches to a memory the WebAssembly engine initialised, and the two interleave', async () => {
    const host = await Host.create({ engine: 'wasm', pageShift: 12 });
    const native = createNativeEngine(host.memory);
    expect(native.init(host.mem.byteLength, 12)).toBe(0);
    const p = host.spawn();
    const ram = p.mmap(1n << 20n);
    const r = preregNew(p, ram.ua, ram.size >> 12n);
    const t = IommuTable.create(host, { pageShift: 12, windowSize: 1n << 32n, levels: 3, busOffset: 0n }, true);
    t.viewMm = p.mm;
    t.allocView();
    // Native maps, WebAssembly reads; WebAssembly maps, native clears.
    expect(native.tableBuildV2(t.desc, p.mm.desc, 100n, 8n, ram.ua, 3, OP_ALLOC, 0)).toBe(0);
    expect(host.engine.tableUaGet(t.desc, 101n)).toBe(ram.ua + 0x1000n);
    t.buildV2(p.mm, 5000n, 4n, ram.ua + 0x10000n, 1);
    expect(native.tableNextValid(t.desc, 108n, 1n << 20n)).toBe(5000n);
    expect(r.mapped).toBe(13n);
    host.checkInvariants();
    expect(native.tableClearV2(t.desc, p.mm.desc, 0n, t.size, 0, 0)).toBe(0);
    expect(r.mapped).toBe(1n);
    host.checkInvariants();
  });

  for (const [mainKind, workerKind] of [['native', 'wasm'], ['wasm', 'native'], ['native', 'native']] as const) {
    it(`${mainKind} here and ${workerKind} in a worker race on the same counters and allocator without losing an update`, async () => {
      const host = await Host.create({ engine: mainKind });
      const p = host.spawn();
      const ram = p.mmap(1n << 16n);
      const r = preregNew(p, ram.ua, 1n);
      const iters = 20000;
      const go = new SharedArrayBuffer(4);
      const worker = new Worker(fileURLToPath(new URL('./atomics-worker.mjs', import.meta.url)), {
        workerData: {
          memory: host.memory, engine: workerKind, region: r.desc, iters, go,
          addonPath: process.env.SPAPR_TCE_NATIVE_ADDON || fileURLToPath(new URL('../../build/Release/spapr_tce_native.node', import.meta.url)),
          wasmPath: fileURLToPath(new URL('../../dist/wasm/tce.wasm', import.meta.url)),
        },
      });
      const done = new Promise<{ blocks: number[] }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      const blocksBefore = host.mem.getU32(HEADER_BASE + HDR_ALLOC_BLOCKS);
      // Let the worker load, then start both together.
      await new Promise((res) => setTimeout(res, 100));
      Atomics.store(new Int32Array(go), 0, 1);
      Atomics.notify(new Int32Array(go), 0);
      const e = host.engine;
      for (let i = 0; i < iters; i++) e.regionMappedInc(r.desc);
      const mine: number[] = [];
      for (let i = 0; i < iters; i++) mine.push(e.alloc(64));
      for (let i = 0; i < iters; i++) e.regionMappedDec(r.desc);
      const { blocks } = await done;
      await worker.terminate();
      expect(host.mem.getU64(r.desc + REG_MAPPED)).toBe(1n);
      const all = new Set([...mine, ...blocks]);
      expect(all.has(0)).toBe(false);
      expect(all.size).toBe(2 * iters);
      expect(host.mem.getU32(HEADER_BASE + HDR_ALLOC_BLOCKS) - blocksBefore).toBe(2 * iters);
    });
  }

  it('hypercalls run in the native engine; a bad vCPU pointer traps as in WebAssembly', async () => {
    const host = await Host.create({ engine: 'native' });
    // A zeroed block as vCPU: r3 = 0 (no hypercall of ours), VM at 0: H_TOO_HARD, nothing counted.
    expect(host.engine.hcall(HEAP_BASE, 1)).toBe(9999);
    const wasm = createWasmEngine(host.memory);
    expect(wasm.kind).toBe('wasm');
    const len = host.mem.byteLength;
    for (const vcpu of [len, len - 8, 0xffff_ff00]) {
      expect(outcome(() => host.engine.hcall(vcpu, 1))).toEqual(outcome(() => wasm.hcall(vcpu, 1)));
    }
    expect(outcome(() => host.engine.sttFreePages(len))).toEqual(outcome(() => wasm.sttFreePages(len)));
  });

  it('free() and alloc() refuse bad pointers and leave the lock free, in both engines', async () => {
    const [a, b] = await pair();
    for (const h of [a!, b!]) {
      const e = h.engine;
      const top = h.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP);
      for (const p of [HEAP_BASE - 64, HEAP_BASE + 8, top, top + 64, h.mem.byteLength + 64, 0xffff_ffc0]) e.free(p, 64);
      // The lock is free: an allocation completes.
      const p = e.alloc(64);
      expect(p).toBeGreaterThanOrEqual(HEAP_BASE);
      // A corrupt head of the 64-byte free list (listed in the maps) is refused too, and stays for the caller to see.
      const head = HEADER_BASE + HDR_ALLOC_HEADS + 1 * 4;
      const sl = h.mem.getU32(HEADER_BASE + HDR_ALLOC_SL_MAP);
      const fl = h.mem.getU32(HEADER_BASE + HDR_ALLOC_FL_MAP);
      h.mem.setU32(head, h.mem.byteLength + 4096);
      h.mem.setU32(HEADER_BASE + HDR_ALLOC_SL_MAP, sl | 2);
      h.mem.setU32(HEADER_BASE + HDR_ALLOC_FL_MAP, fl | 1);
      expect(e.alloc(64)).toBe(0);
      expect(e.alloc(128)).not.toBe(0);
      h.mem.setU32(head, 0);
      h.mem.setU32(HEADER_BASE + HDR_ALLOC_SL_MAP, sl);
      h.mem.setU32(HEADER_BASE + HDR_ALLOC_FL_MAP, fl);
      expect(e.heapCheck()).toBeGreaterThanOrEqual(0);
    }
    expect(Buffer.compare(a!.mem.u8, b!.mem.u8)).toBe(0);
  });

  it('benchLoop runs the hypercall in C++ and returns nanoseconds', async () => {
    const host = await Host.create({ engine: 'native', ownerCheck: 'mm' });
    const qemu = host.spawn();
    const ram = qemu.mmap(1n << 20n);
    const vm = qemu.createVm({ profile: 'qemu' });
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: 0x80000000n, pageShift: 12, offset: 0n, size: 4096n });
    const vcpu = vm.vcpu(0);
    vcpu.regs[3] = 0x1cn; // H_GET_TCE
    vcpu.regs[4] = 0x80000000n;
    vcpu.regs[5] = 0x1000n;
    const e = host.engine as NativeEngine;
    const ns = e.benchLoop(vcpu.desc, 1, 1000);
    expect(typeof ns).toBe('number');
    expect(ns).toBeGreaterThan(0);
    expect(vcpu.regs[3]).toBe(0n);
    expect(vcpu.regs[4]).toBe(0n);
    expect(vm.stats().H_GET_TCE.exit).toBe(1000);
    expect(e.benchLoop(vcpu.desc, 1, 0)).toBeGreaterThanOrEqual(0);
    expect(() => e.benchLoop(vcpu.desc, 1, -1)).toThrow(RangeError);
    expect(() => e.benchLoop(vcpu.desc, 1, 1.5)).toThrow(RangeError);
    expect(() => e.benchLoop(host.mem.byteLength, 1, 10)).toThrow(WebAssembly.RuntimeError);
  });
});
