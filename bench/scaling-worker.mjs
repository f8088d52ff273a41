// One vCPU on a worker thread for scaling.mjs: H_PUT_TCE on its own entry,
// as fast as it can, from the "go" flag to the "stop" flag. r3 is written
// as a u32 word (it returns the status); nothing else changes per call, so
// the loop does no BigInt arithmetic and allocates nothing.
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../dist/worker.js';

const { vcpu: data, control } = workerData;
const vcpu = WorkerVcpu.attach(data);
const flags = new Int32Array(control); // [0] go, [1] stop
const r = vcpu.regs;
const r32 = new Uint32Array(r.buffer, r.byteOffset, 64);
const nr = Number(r[3]);
parentPort.postMessage({ ready: true });
Atomics.wait(flags, 0, 0);
let calls = 0;
let bad = 0;
const t0 = process.hrtime.bigint();
while (Atomics.load(flags, 1) === 0) {
  for (let i = 0; i < 64; i++) {
    r32[6] = nr;
    r32[7] = 0;
    if (vcpu.hcall() !== 0) bad++;
  }
  calls += 64;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
parentPort.postMessage({ calls, bad, seconds });
