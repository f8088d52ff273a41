// A vCPU on a worker thread (see vmm-worker-events.test.ts): H_PUT_TCE to `count`
// consecutive IOVAs, each either run here or handed to the main thread, which
// runs it over the same register block and so delivers its events.
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../../dist/worker.js';

const { vcpu: data, flag, count, liobn, gpa, forward } = workerData;
const vcpu = WorkerVcpu.attach(data);
const done = new Int32Array(flag);
const r = vcpu.regs;
const TCE_CALLS = new Set([0x20n, 0x13cn, 0x138n]); // H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE
let ok = 0;
for (let i = 0; i < count; i++) {
  r[3] = 0x20n;
  r[4] = BigInt(liobn);
  r[5] = BigInt(i * 0x1000);
  r[6] = (BigInt(gpa) + BigInt(i * 0x1000)) | 3n;
  let rc;
  if (forward && TCE_CALLS.has(r[3])) {
    Atomics.store(done, 0, 0);
    parentPort.postMessage('hcall');
    Atomics.wait(done, 0, 0);
    rc = Number(BigInt.asIntN(64, r[3]));
  } else {
    rc = vcpu.hcall();
  }
  if (rc === 0) ok++;
}
parentPort.postMessage({ ok });
