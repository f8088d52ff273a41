// One vCPU on a worker thread for scaling.mjs: H_PUT_TCE on its own entry,
// as fast as it can, from the "go" flag to the "stop" flag. r3 is written
// as a u32 word (it returns the status); nothing else changes per call, so
// the loop does no BigInt arithmetic and allocates nothing. Warmed up before
// it reports ready; timed from the shared "go" to the shared "stop".
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../dist/worker.js';

const { vcpu: data, control } = workerData;
const vcpu = WorkerVcpu.attach(data);
const flags = new Int32Array(control); // [0] go, [1] stop
const r = vcpu.regs;
const r32 = new Uint32Array(r.buffer, r.byteOffset, 64);
const nr = Number(r[3]);

/** 64 calls; how many did not succeed. A function, so that TurboFan optimises it (top-level code stays in the baseline tier). */
function burst() {
  let bad = 0;
  for (let i = 0; i < 64; i++) {
    r32[6] = nr;
    r32[7] = 0;
    if (vcpu.hcall() !== 0) bad++;
  }
  return bad;
}

// Warm up before reporting ready, so that the timed part runs optimised code on every worker
// alike; the calls remap the vCPU's own entry to the same page, which changes nothing.
let bad = 0;
for (let w = 0; w < 2000; w++) bad += burst();
parentPort.postMessage({ ready: true });
Atomics.wait(flags, 0, 0);
let calls = 0;
const t0 = process.hrtime.bigint();
while (Atomics.load(flags, 1) === 0) {
  bad += burst();
  calls += 64;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
parentPort.postMessage({ calls, bad, seconds });
