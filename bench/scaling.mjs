// vCPU scaling: hypercalls per second with 1, 2 and 4 vCPUs on worker
// threads, each issuing H_PUT_TCE on its own entry, either on disjoint
// tables (per vCPU: its own RAM, region, container, hardware table and
// LIOBN) or on one shared table (one LIOBN, one region, one hardware table;
// entries disjoint, counters and table levels shared), and, as the control,
// on separate hosts (one vCPU each on its own Host: its own linear memory,
// so the workers share nothing the library allocates): what disjoint tables
// would reach if nothing in the shared memory were shared, on this machine.
// Each run also says how much of the interval the workers were on a CPU
// (cpuShare: Σ on-CPU time / (workers × interval)): below ~0.95 the machine
// did not give every worker a core, and the ratio measures the machine.
import { Worker } from 'node:worker_threads';
import { Host, H } from '../dist/index.js';
import { hostOptions } from './ops.mjs';

const PAGE = 0x10000;
const CHUNK = 4n << 20n;

/** One VM with `n` vCPUs ready in real mode for H_PUT_TCE; `shared` selects one table for all. */
export async function setup(engine, check, n, shared) {
  const host = await Host.create({ ...hostOptions(engine, check), maxMemory: 64 << 20 });
  const qemu = host.spawn();
  const vm = qemu.createVm({ profile: 'kvm' });
  const tables = shared ? 1 : n;
  const liobns = [];
  for (let t = 0; t < tables; t++) {
    const ram = qemu.mmap(CHUNK);
    const group = host.addGroup();
    const fd = qemu.openContainer();
    fd.attachGroup(group);
    fd.setIommu('v2');
    fd.registerMemory(ram.ua, ram.size);
    fd.removeWindow(0n);
    fd.createWindow({ pageShift: 16, windowSize: 1n << 28n, levels: 2 });
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: BigInt(PAGE), read: true }); // the view exists once something was mapped
    fd.unmapDma({ iova: 0n, size: BigInt(PAGE) });
    vm.addMemslot({ gpa: BigInt(t) * CHUNK, size: CHUNK, ua: ram.ua });
    const liobn = 0x80000000n + BigInt(t);
    vm.createTceTable({ liobn, pageShift: 16, offset: 0n, size: 1n << 12n });
    vm.attachGroup(group, liobn);
    liobns.push({ liobn, gpa: BigInt(t) * CHUNK });
  }
  const vcpus = [];
  for (let w = 0; w < n; w++) {
    const { liobn, gpa } = liobns[shared ? 0 : w];
    const vcpu = vm.vcpu(w, { thread: qemu.thread() });
    const r = vcpu.regs;
    // Entry 8·(w+1) of the table → a page of the table's own RAM.
    const ioba = BigInt(8 * (w + 1) * PAGE);
    const tce = gpa + BigInt((w + 1) * PAGE) | 3n;
    for (let k = 0; k < 2; k++) {
      r[3] = BigInt(H.PUT_TCE); r[4] = liobn; r[5] = ioba; r[6] = tce;
      const rc = vcpu.hcall(); // the first runs in virtual mode and allocates
      if (k === 1 && (rc !== 0 || vcpu.lastLevel !== 'real')) throw new Error(`scaling: vCPU ${w} not in real mode (rc ${rc}, ${vcpu.lastLevel})`);
    }
    r[3] = BigInt(H.PUT_TCE);
    vcpus.push(vcpu);
  }
  return { host, vcpus };
}

/** The hosts and vCPUs of a configuration: one host for 'disjoint' and 'shared', one host per vCPU for 'separate'. */
async function configure(engine, check, n, tables) {
  if (tables !== 'separate') {
    const { host, vcpus } = await setup(engine, check, n, tables === 'shared');
    return { hosts: [host], vcpus };
  }
  const each = [];
  for (let w = 0; w < n; w++) each.push(await setup(engine, check, 1, false));
  return { hosts: each.map((e) => e.host), vcpus: each.map((e) => e.vcpus[0]) };
}

/**
 * One measurement: {rate: Σ calls / the longest worker's time, cpuShare:
 * Σ on-CPU / (workers × that time), or null where schedstat is missing}.
 */
async function once(engine, check, n, tables, durationMs) {
  const { hosts, vcpus } = await configure(engine, check, n, tables);
  const control = new SharedArrayBuffer(8);
  const flags = new Int32Array(control);
  const workers = vcpus.map((v) => new Worker(new URL('./scaling-worker.mjs', import.meta.url), { workerData: { vcpu: v.workerData(), control } }));
  const msgs = workers.map((w) => {
    const q = [];
    const waiters = [];
    w.on('message', (m) => (waiters.length ? waiters.shift().resolve(m) : q.push(m)));
    w.on('error', (e) => waiters.forEach((x) => x.reject(e)));
    return () => (q.length ? Promise.resolve(q.shift()) : new Promise((resolve, reject) => waiters.push({ resolve, reject })));
  });
  try {
    await Promise.all(msgs.map((next) => next())); // ready
    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
    await new Promise((r) => setTimeout(r, durationMs));
    Atomics.store(flags, 1, 1);
    const done = await Promise.all(msgs.map((next) => next()));
    const bad = done.reduce((a, d) => a + d.bad, 0);
    if (bad) throw new Error(`scaling: ${bad} hypercalls did not succeed`);
    const calls = done.reduce((a, d) => a + d.calls, 0);
    const seconds = Math.max(...done.map((d) => d.seconds));
    const cpu = done.every((d) => typeof d.cpuSeconds === 'number') ? done.reduce((a, d) => a + d.cpuSeconds, 0) : null;
    return { rate: calls / seconds, cpuShare: cpu === null ? null : cpu / (n * seconds) };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
    // After the workers stopped (terminate waits for them): the counts they changed hold.
    for (const host of hosts) host.checkInvariants();
  }
}

/** The configurations a run measures, in order: [tables, vcpus]; the control (separate hosts) with two vCPUs only. */
export function scalingPlan(counts = [1, 2, 4]) {
  const out = [];
  for (const tables of ['disjoint', 'shared']) for (const n of counts) out.push([tables, n]);
  if (counts.includes(2)) out.push(['separate', 2]);
  return out;
}

const medianOf = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * Every configuration ({vcpus, tables}) `reps` times; medians of
 * hypercalls/s and of cpuShare, and the ratios to one vCPU (separate hosts:
 * to one vCPU on disjoint tables, which is one vCPU alone on its host).
 */
export async function runScaling({ engine = 'wasm', check = 'none', counts = [1, 2, 4], reps = 3, durationMs = 1000, filter, tick = () => {} }) {
  const out = [];
  for (const [tables, n] of scalingPlan(counts)) {
    if (filter && !filter.test(`scaling/${tables}/${n}`)) continue;
    const runs = [];
    // Alternate configurations would need all hosts at once; repeat instead and take the median.
    for (let i = 0; i < reps; i++) {
      runs.push(await once(engine, check, n, tables, durationMs));
      tick();
    }
    const shares = runs.map((r) => r.cpuShare);
    out.push({
      engine, check, tables, vcpus: n,
      hypercallsPerSecond: medianOf(runs.map((r) => r.rate)),
      runs: runs.map((r) => r.rate),
      cpuShare: shares.every((x) => x !== null) ? medianOf(shares) : null,
      cpuShares: shares,
    });
  }
  for (const r of out) {
    const one = out.find((x) => x.tables === (r.tables === 'separate' ? 'disjoint' : r.tables) && x.vcpus === 1);
    r.ratioToOne = one ? r.hypercallsPerSecond / one.hypercallsPerSecond : null;
  }
  return out;
}
