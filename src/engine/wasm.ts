// Loads the AssemblyScript build and instantiates it against a host's memory.
import { readFileSync } from 'node:fs';
import type { Engine } from './engine.js';
import { wasmRoutines } from '../generated/engine.js';

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

/** A WebAssembly engine instance over `memory`: its exports, checked against the declared routines. */
export function createWasmEngine(memory: WebAssembly.Memory, module: WebAssembly.Module = wasmModule()): Engine {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return { kind: 'wasm', ...wasmRoutines(instance.exports) };
}
