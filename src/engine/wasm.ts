// Loads the AssemblyScript build and instantiates it against a host's memory.
import { readFileSync } from 'node:fs';
import type { Engine } from './engine.js';

let cachedModule: WebAssembly.Module | undefined;

/** The compiled module (compiled once per process; workers receive it by message). */
export function wasmModule(): WebAssembly.Module {
  if (!cachedModule) {
    // src/engine/ and dist/engine/ are both two levels below the package root.
    const url = new URL('../../dist/wasm/tce.wasm', import.meta.url);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(url));
    } catch (e) {
      throw new Error(`spapr-tce: ${url.pathname} is missing; run \`npm install\` (or \`npm run build:wasm\`) to build it. (${(e as Error).message})`);
    }
    cachedModule = new WebAssembly.Module(bytes);
  }
  return cachedModule;
}

/** A WebAssembly engine instance over `memory`. */
export function createWasmEngine(memory: WebAssembly.Memory, module: WebAssembly.Module = wasmModule()): Engine {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const x = instance.exports as unknown as Omit<Engine, 'kind'>;
  // The wasm exports already have the Engine signatures: u64 <-> bigint, u32 <-> number.
  return {
    kind: 'wasm',
    init: x.init,
    alloc: (bytes) => x.alloc(bytes) >>> 0,
    free: x.free,
    heapCheck: x.heapCheck,
    regionLookup: (mm, ua, size) => x.regionLookup(mm, ua, size) >>> 0,
    regionUaToHpa: x.regionUaToHpa,
    regionMappedInc: x.regionMappedInc,
    regionMappedDec: x.regionMappedDec,
    tableInit: x.tableInit,
    tableUaAlloc: x.tableUaAlloc,
    tableUaFree: x.tableUaFree,
    tableFree: x.tableFree,
    tableGet: (t, e) => BigInt.asUintN(64, x.tableGet(t, e)),
    tableUaGet: (t, e) => BigInt.asUintN(64, x.tableUaGet(t, e)),
    tableNextValid: x.tableNextValid,
    tableXchg: x.tableXchg,
    tableClearV2: x.tableClearV2,
    tableBuildV2: x.tableBuildV2,
    hcall: x.hcall,
    sttFreePages: x.sttFreePages,
  };
}
