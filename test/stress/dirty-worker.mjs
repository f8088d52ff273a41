// A vCPU on a worker thread running a fixed list of hypercalls (see dirty.test.ts): each op is
// { nr, args: [r4, r5, r6, r7] as strings of bigints, list?: { hostOff, tces } } where `list`
// is written big-endian into guest RAM first. Posts back the status of each call.
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../../dist/worker.js';

const { vcpu: data, ops } = workerData;
const vcpu = WorkerVcpu.attach(data);
const r = vcpu.regs;
const rcs = [];
for (const op of ops) {
  if (op.list) {
    const dv = new DataView(data.memory.buffer, op.list.hostOff, op.list.tces.length * 8);
    op.list.tces.forEach((t, i) => dv.setBigUint64(i * 8, BigInt(t), false));
  }
  r[3] = BigInt(op.nr);
  for (let i = 0; i < 4; i++) r[4 + i] = BigInt(op.args[i] ?? '0');
  rcs.push(vcpu.hcall());
}
parentPort.postMessage(rcs);
