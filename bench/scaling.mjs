// vCPU scaling: hypercalls per second of H_PUT_TCE from vCPUs on worker
// threads, each on its own entry: one vCPU alone (the baseline), two and
// four on disjoint tables (per vCPU: its own RAM, region, container,
// hardware table and LIOBN), two and four on one shared table (one LIOBN,
// one region, one hardware table; entries disjoint, counters and table
// levels shared), and, as the control, two on separate hosts (one vCPU each
// on its own Host: its own linear memory, so the workers share nothing the
// library allocates): what disjoint tables would reach on this machine if
// nothing in the shared memory were shared.
//
// The configurations are measured interleaved: every configuration is set
// up once, its workers stay parked between intervals, and each round runs
// every configuration for one short interval in a balanced order. Each
// ratio is taken within a round (the configuration's rate over the one-vCPU
// rate of the same round) and the row reports the median of those paired
// ratios with a bootstrap interval. A 2-core VM shared with other guests
// changes speed over seconds; measured one configuration after another, the
// baseline and each configuration ran on different machines (ratios above
// the 2× two cores allow were recorded that way).
//
// Each interval also says how much of it the workers were on a CPU
// (cpuShare: Σ on-CPU time / (workers × interval)): below ~0.95 the machine
// did not give every worker a core, and the ratio measures the machine.
import { Worker } from 'node:worker_threads';
import { Host, H } from '../dist/index.js';
import { hostOptions } from './ops.mjs';
import { median, medianBootstrap } from './stats.mjs';

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
    fd.mapDma({ iova: 0n, vaddr: ram.ua, size: BigInt(PAGE), read: true }); // the first leaf level (and under '4.12' the view) made before the link, as in bench/ops.mjs
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

/** The hosts and vCPUs of a configuration: one host for 'single', 'disjoint' and 'shared', one host per vCPU for 'separate'. */
async function configure(engine, check, n, tables) {
  if (tables !== 'separate') {
    const { host, vcpus } = await setup(engine, check, n, tables === 'shared');
    return { hosts: [host], vcpus };
  }
  const each = [];
  for (let w = 0; w < n; w++) each.push(await setup(engine, check, 1, false));
  return { hosts: each.map((e) => e.host), vcpus: each.map((e) => e.vcpus[0]) };
}

/** The baseline every ratio is paired with: one vCPU alone on its host (one table: shared and disjoint coincide). */
export const BASELINE = ['single', 1];

/**
 * The configurations a run measures, as [tables, vcpus], baseline first;
 * the control (separate hosts) with two vCPUs only. Their names for
 * --filter are scaling/<tables>/<vcpus>.
 */
export function scalingPlan(counts = [1, 2, 4]) {
  const out = counts.includes(1) ? [BASELINE] : [];
  for (const tables of ['shared', 'disjoint']) for (const n of counts) if (n > 1) out.push([tables, n]);
  if (counts.includes(2)) out.push(['separate', 2]);
  return out;
}

const nameOf = ([tables, n]) => `scaling/${tables}/${n}`;

/**
 * The configurations selected by `filter` (a RegExp or undefined), with the
 * baseline added whenever anything else is selected: no ratio without it.
 */
export function selectedConfigs(filter, counts) {
  const plan = scalingPlan(counts);
  const picked = plan.filter((c) => !filter || filter.test(nameOf(c)));
  if (picked.length && !picked.some((c) => c === BASELINE)) picked.unshift(BASELINE);
  return picked;
}

/** Rounds and interval per profile: the full run keeps the section near its former ~23 s. */
export function scalingSchedule({ quick = false, tiny = false } = {}) {
  if (tiny) return { rounds: 3, intervalMs: 30 };
  if (quick) return { rounds: 12, intervalMs: 50 };
  return { rounds: 30, intervalMs: 100 };
}

/**
 * The order of the configurations 0..count−1 in round `round`: a Williams
 * design (a balanced Latin square; for an odd count each row followed by
 * its mirror image), so over one cycle (count rounds, 2·count when count is
 * odd) every configuration runs equally often in every position and right
 * after every other: neither a drift within the round nor what ran just
 * before favours any of them.
 */
export function roundOrder(round, count) {
  const first = [0];
  for (let lo = 1, hi = count - 1, k = 1; k < count; k++) first.push(k % 2 ? lo++ : hi--);
  const r = round % (count % 2 ? 2 * count : count);
  const row = first.map((c) => (c + r) % count);
  return r >= count ? row.reverse() : row;
}

/**
 * The rows of a run from its rounds (pure: the unit tests feed it synthetic
 * rates). `configs` are [tables, vcpus]; `rounds[r][i]` is configuration i's
 * interval in round r: {rate, cpuShare and cpuRate (or null), perVcpu: [rate of each
 * vCPU]}. Each row has the medians over rounds (hypercallsPerSecond,
 * cpuShare), the per-round values (runs, cpuShares), and `ratioToOne`: the
 * median over rounds of rate / the baseline's rate in the same round, with
 * its bootstrap interval (`ratioInterval`) and the per-round ratios
 * (`ratios`); `perCpuToOne`: the same pairing of hypercalls per on-CPU
 * second, which the machine's load does not move. The two-vCPU disjoint row also gets `control`: the separate
 * hosts' paired ratio over the same rounds, and `vsSeparate`: disjoint /
 * separate per round (1 when the shared memory costs nothing).
 * @param configs [tables, vcpus] of each configuration
 * @param rounds rounds[r][i], configuration i's interval in round r
 * @param {{ engine?: string, check?: string, intervalMs?: number | null }} [options] what the rows record of the run
 */
export function scalingRows(configs, rounds, { engine = 'wasm', check = 'none', intervalMs = null } = {}) {
  const base = configs.findIndex(([t, n]) => t === BASELINE[0] && n === BASELINE[1]);
  const paired = (i, j, k = 'rate') => rounds.filter((r) => r[i] && r[j] && r[i][k] > 0 && r[j][k] > 0).map((r) => r[i][k] / r[j][k]);
  const iv = (xs) => {
    const b = medianBootstrap(xs);
    return { lo: b.lo, hi: b.hi };
  };
  const rows = configs.map(([tables, vcpus], i) => {
    const mine = rounds.map((r) => r[i]).filter(Boolean);
    const shares = mine.map((x) => x.cpuShare);
    const row = {
      engine, check, tables, vcpus,
      hypercallsPerSecond: median(mine.map((x) => x.rate)),
      runs: mine.map((x) => x.rate),
      cpuShare: shares.length && shares.every((x) => typeof x === 'number') ? median(shares) : null,
      cpuShares: shares,
      rounds: mine.length,
      intervalMs,
    };
    if (base < 0) {
      row.ratioToOne = null;
    } else {
      const ratios = paired(i, base);
      row.ratioToOne = ratios.length ? median(ratios) : null;
      row.ratioInterval = ratios.length ? iv(ratios) : null;
      row.ratios = ratios;
      // Per vCPU: the configuration's rate per worker against the baseline's, same round (1: no slowdown).
      row.perVcpuToOne = row.ratioToOne === null ? null : row.ratioToOne / vcpus;
      // Hypercalls per on-CPU second against the baseline's, same round: what the vCPUs cost each other
      // (a bounced line, a shared lock) whatever share of the cores the machine gave them.
      const cpu = paired(i, base, 'cpuRate');
      row.perCpuToOne = cpu.length ? { median: median(cpu), ...iv(cpu) } : null;
    }
    return row;
  });
  const sep = configs.findIndex(([t, n]) => t === 'separate' && n === 2);
  const dis = configs.findIndex(([t, n]) => t === 'disjoint' && n === 2);
  if (sep >= 0 && dis >= 0 && base >= 0) {
    const vs = paired(dis, sep);
    rows[dis].control = { tables: 'separate', vcpus: 2, ratioToOne: rows[sep].ratioToOne, ratioInterval: rows[sep].ratioInterval };
    rows[dis].vsSeparate = vs.length ? { median: median(vs), ...iv(vs) } : null;
  }
  return rows;
}

/** A configuration set up with its workers started, warmed up and parked. */
async function start(engine, check, [tables, n]) {
  const { hosts, vcpus } = await configure(engine, check, n, tables);
  const control = new SharedArrayBuffer(8);
  const flags = new Int32Array(control);
  const workers = vcpus.map((v) => new Worker(new URL('./scaling-worker.mjs', import.meta.url), { workerData: { vcpu: v.workerData(), control } }));
  let failed = null;
  const msgs = workers.map((w) => {
    const q = [];
    const waiters = [];
    w.on('message', (m) => (waiters.length ? waiters.shift().resolve(m) : q.push(m)));
    w.on('error', (e) => {
      failed = e;
      waiters.splice(0).forEach((x) => x.reject(e));
    });
    return () => (failed ? Promise.reject(failed) : q.length ? Promise.resolve(q.shift()) : new Promise((resolve, reject) => waiters.push({ resolve, reject })));
  });
  const ready = await Promise.all(msgs.map((next) => next()));
  const bad = ready.reduce((a, d) => a + d.bad, 0);
  const c = { tables, n, hosts, workers, flags, msgs, gen: 0 };
  if (bad) {
    await stop(c);
    throw new Error(`scaling: ${bad} warm-up hypercalls did not succeed (${tables}/${n})`);
  }
  return c;
}

/**
 * One interval of configuration `c`: {rate: Σ calls / the longest worker's
 * time, cpuShare: Σ on-CPU / (workers × that time), or null where
 * schedstat is missing, cpuRate: Σ calls / Σ on-CPU seconds, or null,
 * perVcpu: each worker's calls / its time}.
 */
async function measure(c, intervalMs) {
  const gen = ++c.gen;
  Atomics.store(c.flags, 0, gen);
  Atomics.notify(c.flags, 0);
  await new Promise((r) => setTimeout(r, intervalMs));
  Atomics.store(c.flags, 1, gen);
  const done = await Promise.all(c.msgs.map((next) => next()));
  const bad = done.reduce((a, d) => a + d.bad, 0);
  if (bad) throw new Error(`scaling: ${bad} hypercalls did not succeed (${c.tables}/${c.n})`);
  const calls = done.reduce((a, d) => a + d.calls, 0);
  const seconds = Math.max(...done.map((d) => d.seconds));
  const cpu = done.every((d) => typeof d.cpuSeconds === 'number') ? done.reduce((a, d) => a + d.cpuSeconds, 0) : null;
  return { rate: calls / seconds, cpuShare: cpu === null ? null : cpu / (c.n * seconds), cpuRate: cpu ? calls / cpu : null, perVcpu: done.map((d) => d.calls / d.seconds) };
}

/** Ends the workers of `c`, then checks every host's invariants (after the workers stopped, the counts they changed hold). */
async function stop(c) {
  Atomics.store(c.flags, 0, -1);
  Atomics.notify(c.flags, 0);
  await Promise.all(c.workers.map((w) => w.terminate()));
  for (const host of c.hosts) host.checkInvariants();
}

/**
 * Every selected configuration (selectedConfigs) over `rounds` rounds of
 * one `intervalMs` interval each, interleaved (roundOrder); the rows of
 * scalingRows. `tick` is called once per interval.
 */
export async function runScaling({ engine = 'wasm', check = 'none', counts = [1, 2, 4], rounds = 30, intervalMs = 100, filter, tick = () => {} }) {
  const configs = selectedConfigs(filter, counts);
  if (configs.length === 0) return [];
  const started = [];
  const data = [];
  let failure = null;
  try {
    for (const cfg of configs) started.push(await start(engine, check, cfg));
    for (let r = 0; r < rounds; r++) {
      const row = new Array(configs.length);
      for (const i of roundOrder(r, configs.length)) {
        row[i] = await measure(started[i], intervalMs);
        tick();
      }
      data.push(row);
    }
  } catch (e) {
    failure = e;
  }
  // Every configuration's workers end and its hosts are checked, even after a failure (which is
  // then the error reported: a broken invariant it caused comes second).
  for (const c of started) {
    try {
      await stop(c);
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
  return scalingRows(configs, data, { engine, check, intervalMs });
}

/** How many intervals runScaling runs (the progress bar's share). */
export function scalingIntervals(filter, rounds, counts) {
  return selectedConfigs(filter, counts).length * rounds;
}
