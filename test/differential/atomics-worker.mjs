// Worker of native-binding.test.ts: runs one engine (the native addon or the
// WebAssembly module) on a shared memory it is handed, racing the main
// thread's other engine on the same counters and the same allocator.
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const { memory, engine, addonPath, wasmPath, region, iters } = workerData;
let e;
if (engine === 'native') {
  e = createRequire(import.meta.url)(addonPath).createEngine(new Uint8Array(memory.buffer));
} else {
  e = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasmPath)), { env: { memory } }).exports;
}
const flag = new Int32Array(workerData.go);
Atomics.wait(flag, 0, 0);
for (let i = 0; i < iters; i++) e.regionMappedInc(region);
const blocks = [];
for (let i = 0; i < iters; i++) blocks.push(e.alloc(64) >>> 0);
for (let i = 0; i < iters; i++) e.regionMappedDec(region);
parentPort.postMessage({ blocks });
