// One vCPU on a worker thread for scaling.mjs: H_PUT_TCE on its own entry,
// as fast as it can, once per interval the parent opens. r3 is written as a
// u32 word (it returns the status); nothing else changes per call, so the
// loop does no BigInt arithmetic and allocates nothing. Warmed up once
// before it reports ready; then it waits (Atomics.wait: off the CPU) until
// the parent raises the "go" generation, runs until "stop" reaches the same
// generation, reports, and waits again, so one worker serves every round of
// the interleaved measurement without being created again. A negative "go"
// ends it. Besides wall time it reports how long this thread was on a CPU
// and how long it waited for one (Linux's /proc/thread-self/schedstat: ns on
// CPU, ns runnable but waiting), so each interval says whether every worker
// had a core.
import { readFileSync } from 'node:fs';
import { workerData, parentPort } from 'node:worker_threads';
import { WorkerVcpu } from '../dist/worker.js';

const { vcpu: data, control } = workerData;
const vcpu = WorkerVcpu.attach(data);
const flags = new Int32Array(control); // [0] go generation, [1] stop generation
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

/** [ns on CPU, ns waiting on the run queue] of this thread, or null where the kernel does not say. */
function schedstat() {
  try {
    const [cpu, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    return Number.isFinite(cpu) && Number.isFinite(wait) ? [cpu, wait] : null;
  } catch {
    return null;
  }
}

/** One interval of generation `gen`: calls until the parent's stop reaches `gen`. */
function interval(gen) {
  let bad = 0;
  let calls = 0;
  const s0 = schedstat();
  const t0 = process.hrtime.bigint();
  while (Atomics.load(flags, 1) !== gen) {
    bad += burst();
    calls += 64;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const s1 = schedstat();
  const sched = s0 && s1 ? { cpuSeconds: (s1[0] - s0[0]) / 1e9, waitSeconds: (s1[1] - s0[1]) / 1e9 } : {};
  return { calls, bad, seconds, ...sched };
}

// Warm up before reporting ready, so that the timed part runs optimised code on every worker
// alike; the calls remap the vCPU's own entry to the same page, which changes nothing.
let warmBad = 0;
for (let w = 0; w < 2000; w++) warmBad += burst();
parentPort.postMessage({ ready: true, bad: warmBad });
let gen = 0;
for (;;) {
  Atomics.wait(flags, 0, gen);
  const next = Atomics.load(flags, 0);
  if (next < 0) break;
  if (next === gen) continue; // a spurious wake-up: the generation did not move
  gen = next;
  parentPort.postMessage(interval(gen));
}
