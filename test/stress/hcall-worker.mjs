// A vCPU on a worker thread: random hypercalls on shared tables (see hcalls.test.ts).
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../../dist/worker.js';

const { vcpu: data, seed, count, liobns, entries, pageShift, ramBytes, listGpa, ramUaGpa } = workerData;
const vcpu = WorkerVcpu.attach(data);
const ram = new DataView(data.memory.buffer, ramUaGpa.hostOff, ramBytes);
let s = seed >>> 0;
const rnd = (n) => {
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  return s % n;
};
const page = 1 << pageShift;
const counts = { ok: 0, param: 0, exit: 0 };
const r = vcpu.regs;
for (let i = 0; i < count; i++) {
  const liobn = liobns[rnd(liobns.length)];
  const entry = rnd(entries);
  const op = rnd(10);
  r[4] = BigInt(liobn);
  r[5] = BigInt(entry * page);
  if (op < 5) {
    r[3] = 0x20n;
    r[6] = op === 0 ? 0n : BigInt(rnd(ramBytes / page) * page) | BigInt(1 + rnd(3));
  } else if (op < 8) {
    const n = 1 + rnd(Math.min(16, entries - entry));
    for (let k = 0; k < n; k++) ram.setBigUint64(listGpa + k * 8, BigInt(rnd(ramBytes / page) * page) | 3n, false);
    r[3] = 0x13cn;
    r[6] = BigInt(listGpa);
    r[7] = BigInt(n);
  } else {
    r[3] = 0x138n;
    r[6] = 0n;
    r[7] = BigInt(1 + rnd(Math.min(32, entries - entry)));
  }
  const rc = vcpu.hcall();
  if (rc === 0) counts.ok++;
  else if (rc === -4) counts.param++;
  else counts.exit++;
}
parentPort.postMessage(counts);
