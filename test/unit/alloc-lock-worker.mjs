// Worker of alloc-lock-bound.test.ts: one H_PUT_TCE on a vCPU of this thread, then its status.
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../../dist/worker.js';

const { vcpu: data, liobn, ioba, tce } = workerData;
const vcpu = WorkerVcpu.attach(data);
vcpu.regs[3] = 0x20n;
vcpu.regs[4] = BigInt(liobn);
vcpu.regs[5] = BigInt(ioba);
vcpu.regs[6] = BigInt(tce);
const t0 = performance.now();
const rc = vcpu.hcall();
parentPort.postMessage({ rc, ms: performance.now() - t0 });
