// A vCPU of the soak (soak.mjs) on a worker thread: random H_PUT_TCE /
// H_PUT_TCE_INDIRECT / H_STUFF_TCE / H_GET_TCE on the VM's LIOBNs until the
// main thread says stop or its own deadline passes (the loop is bounded
// either way), pausing when asked so the main thread can count at rest.
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../../dist/worker.js';

const { vcpu: data, seed, liobns, entries, pageShift, ramBytes, tceBytes, listGpa, ramHostOff, ctl, deadline } = workerData;
const vcpu = WorkerVcpu.attach(data);
const ram = new DataView(data.memory.buffer, ramHostOff, ramBytes);
// TCEs point into the first tceBytes of guest RAM; the list lives above them.
// ctl: [0] stop, [1] pause requested, [2] vCPUs at rest, [4] vCPUs started.
const c = new Int32Array(ctl);
let s = seed >>> 0;
const rnd = (n) => {
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  return s % n;
};
const page = 1 << pageShift;
const counts = { calls: 0, ok: 0, param: 0, exit: 0 };
const r = vcpu.regs;
Atomics.add(c, 4, 1);
while (Atomics.load(c, 0) === 0 && Date.now() < deadline) {
  if (Atomics.load(c, 1) !== 0) {
    Atomics.add(c, 2, 1);
    // Bounded: the main thread clears the request within a second; the deadline still holds.
    while (Atomics.load(c, 1) !== 0 && Date.now() < deadline) Atomics.wait(c, 1, 1, 50);
    Atomics.sub(c, 2, 1);
    continue;
  }
  for (let k = 0; k < 64; k++) {
    const liobn = liobns[rnd(liobns.length)];
    const entry = rnd(entries);
    const op = rnd(10);
    r[4] = BigInt(liobn);
    r[5] = BigInt(entry * page);
    if (op < 4) {
      r[3] = 0x20n;
      r[6] = op === 0 ? 0n : BigInt(rnd(tceBytes / page) * page) | BigInt(1 + rnd(3));
    } else if (op < 7) {
      const n = 1 + rnd(Math.min(32, entries - entry));
      for (let i = 0; i < n; i++) ram.setBigUint64(listGpa + i * 8, BigInt(rnd(tceBytes / page) * page) | 3n, false);
      r[3] = 0x13cn;
      r[6] = BigInt(listGpa);
      r[7] = BigInt(n);
    } else if (op < 9) {
      r[3] = 0x138n;
      r[6] = 0n;
      r[7] = BigInt(1 + rnd(Math.min(32, entries - entry)));
    } else {
      r[3] = 0x1cn;
    }
    const rc = vcpu.hcall();
    counts.calls++;
    if (rc === 0) counts.ok++;
    else if (rc === -4) counts.param++;
    else counts.exit++;
  }
}
parentPort.postMessage(counts);
