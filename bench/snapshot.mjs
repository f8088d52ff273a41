// The `snapshot` section of the bench (issue 13 item 5): how fast the
// binary format saves and restores non-zero memory, how fast it skips zero
// memory, what a RAM-less snapshot + restore of the replay host (1 GiB of
// guest RAM) costs, and how fast `spapr-tce replay --snapshot-every 500`
// runs trace A. Wall time on a shared machine: medians of several runs,
// reported against the targets, never asserted.
import { randomFillSync } from 'node:crypto';
import { join } from 'node:path';
import { Host } from '../dist/index.js';
import { adviseHugePages } from '../dist/snapshot/binary.js';
// Not re-exported by the package index: the CLI's own modules.
import { readTrace } from '../dist/trace.js';
import { replay } from '../dist/replay.js';
import { TRACE_DIR, traceFiles } from './traces.mjs';

const GIB = 1 << 30;
const MIB = 1 << 20;

/** The targets of issue 13 item 5. */
export const SNAPSHOT_TARGETS = Object.freeze({
  nonZeroGBps: 1,
  zeroSkipGBps: 10,
  ramlessMs: 10,
  replaySnapshotEvery500Hps: 5000,
});

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : null;
};
const seconds = (f) => {
  const t = process.hrtime.bigint();
  const r = f();
  return [Number(process.hrtime.bigint() - t) / 1e9, r];
};
/** Like seconds(), and the process's system CPU time meanwhile (ms): mostly the kernel faulting in fresh pages. */
const timed = (f) => {
  const c = process.cpuUsage();
  const [s, r] = seconds(f);
  return [s, r, process.cpuUsage(c).system / 1e3];
};

/** A host with `bytes` of guest RAM (one backed mapping in a qemu-profile VM, as the replay has it). */
async function ramHost(bytes, extra = 64 * MIB) {
  const host = await Host.create({ maxMemory: bytes + extra });
  const p = host.spawn();
  const ram = p.mmap(BigInt(bytes));
  const vm = p.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.vcpu(0, { thread: p });
  return { host, ram };
}

/**
 * Non-zero memory: `bytes` of random guest RAM, snapshot and restore rates in
 * GB/s of that memory. Beside each restore, in the same run, the control:
 * the least any restore does, a fresh memory of the restored host's size
 * (huge pages advised, as a restore does) written with the same bytes by
 * one copy. Both write memory this process has not touched, so both pay the
 * kernel's page faults, and on a VM whose balloon reports free pages back to
 * the hypervisor (virtio-balloon free page reporting) memory freed more than
 * a few seconds ago faults again in the hypervisor too: the rates are
 * bimodal with the machine, which the control shows run by run.
 */
async function nonZero(bytes, reps, tick) {
  const { host, ram } = await ramHost(bytes);
  for (let off = 0; off < bytes; off += 64 * MIB) randomFillSync(ram.bytes, off, Math.min(64 * MIB, bytes - off));
  host.snapshot({ format: 'binary' }); // warm-up
  const pages = host.mem.byteLength / 65536;
  const save = [];
  const load = [];
  const control = [];
  const sys = { snapshot: [], restore: [], control: [] };
  let size = 0;
  for (let i = 0; i < reps; i++) {
    const [ts, snap, ss] = timed(() => host.snapshot({ format: 'binary' }));
    const restore = () => timed(() => Host.restore(snap));
    const fresh = () =>
      timed(() => {
        const u8 = new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer);
        adviseHugePages(u8);
        u8.set(snap.subarray(snap.length - bytes));
      });
    // Alternately first: whichever runs second may get the memory the first one's garbage gave back.
    let r;
    let c;
    if (i % 2) {
      r = restore();
      c = fresh();
    } else {
      c = fresh();
      r = restore();
    }
    const [tr, , sr] = r;
    const [tc, , sc] = c;
    size = snap.length;
    save.push(bytes / ts / 1e9);
    load.push(bytes / tr / 1e9);
    control.push(bytes / tc / 1e9);
    sys.snapshot.push(ss);
    sys.restore.push(sr);
    sys.control.push(sc);
    tick();
  }
  return {
    nonZeroBytes: bytes,
    snapshotBytes: size,
    snapshotGBps: median(save),
    restoreGBps: median(load),
    controlFreshWriteGBps: median(control),
    runs: { snapshot: save, restore: load, controlFreshWrite: control },
    systemMs: sys,
  };
}

/**
 * Zero memory: `bytes` of guest RAM that is all zero, once written and
 * zeroed again (real pages, as a guest leaves freed memory) and once never
 * touched (the kernel's zero page); GB/s of zero memory the snapshot skips.
 */
async function zeroSkip(bytes, reps, tick) {
  const out = {};
  for (const touched of [true, false]) {
    const { host, ram } = await ramHost(bytes);
    if (touched) {
      for (let off = 0; off < bytes; off += 4096) ram.bytes[off] = 1;
      ram.bytes.fill(0);
    }
    const rates = [];
    let size = 0;
    for (let i = 0; i < reps; i++) {
      const [t, snap] = seconds(() => host.snapshot({ format: 'binary' }));
      size = snap.length;
      rates.push(bytes / t / 1e9);
      tick();
    }
    out[touched ? 'touched' : 'untouched'] = { zeroBytes: bytes, snapshotBytes: size, GBps: median(rates), runs: rates };
  }
  return out;
}

/** The replay host of trace A after its hypercalls (1 GiB of guest RAM, the trace's tables): RAM-less snapshot + restore, ms. */
async function ramless(traceA, reps, tick) {
  const trace = readTrace(traceA);
  const { host } = await ramHost(GIB, 256 * MIB);
  const vm = [...host.vms][0];
  for (const t of trace.tables) vm.createTceTable({ liobn: t.liobn, pageShift: t.pageShift, offset: t.busOffset >> BigInt(t.pageShift), size: t.entries });
  const regs = vm.vcpu(0).regs;
  for (const ev of trace.events) {
    if (ev.kind !== 'hcall' || ev.tces) continue;
    regs[3] = BigInt(ev.nr);
    regs[4] = ev.liobn;
    regs[5] = ev.ioba;
    regs[6] = ev.arg;
    regs[7] = ev.npages;
    vm.vcpu(0).hcall();
  }
  let h = host;
  const save = [];
  const load = [];
  let size = 0;
  for (let i = 0; i < reps + 3; i++) {
    const [ts, snap] = seconds(() => h.snapshot({ ram: false }));
    const [tr, next] = seconds(() => Host.restore(snap));
    h = next;
    size = snap.length;
    if (i >= 3) {
      save.push(ts * 1e3);
      load.push(tr * 1e3);
      tick();
    }
  }
  const total = save.map((s, i) => s + load[i]);
  return { guestRamBytes: GIB, linearMemoryBytes: host.mem.byteLength, snapshotBytes: size, snapshotMs: median(save), restoreMs: median(load), totalMs: median(total), runs: { snapshot: save, restore: load } };
}

/** `spapr-tce replay --snapshot-every 500` of trace A (replay() is what the command runs). */
async function replayEvery(traceA, every, reps, tick) {
  const trace = readTrace(traceA);
  await replay(trace, { snapshotEvery: every }); // warm-up
  const rates = [];
  let r;
  for (let i = 0; i < reps; i++) {
    r = await replay(trace, { snapshotEvery: every });
    rates.push(r.hypercallsPerSecond);
    tick();
  }
  return { trace: trace.name, snapshotEvery: every, hypercalls: r.hypercalls, mismatches: r.mismatches.length, hypercallsPerSecond: median(rates), runs: rates };
}

/** How many timed runs runSnapshot() makes for these options (for the progress bar). */
export function snapshotRuns({ quick, tiny }) {
  const reps = tiny ? 1 : quick ? 3 : 7;
  return { reps, total: reps * (tiny ? 3 : 5) };
}

/**
 * The section: {nonZero, zeroSkip, ramless, replay, targets, met}. `tiny`
 * (the bench's own test) uses small memories and skips the replay.
 */
export async function runSnapshot({ quick = false, tiny = false, dir = TRACE_DIR, tick = () => {} } = {}) {
  const { reps } = snapshotRuns({ quick, tiny });
  const files = traceFiles(dir);
  const traceA = files.find((f) => /trace-a/.test(f)) ?? files[0] ?? join(TRACE_DIR, 'trace-a-vio-vscsi-vlan.jsonl.gz');
  const section = {
    method: 'binary format (host.snapshot({ format: \'binary\' }) / Host.restore); wall time, medians; GB = 1e9 bytes of guest RAM',
    nonZero: await nonZero(tiny ? 16 * MIB : quick ? 128 * MIB : 512 * MIB, reps, tick),
    zeroSkip: await zeroSkip(tiny ? 16 * MIB : GIB, reps, tick),
    ramless: tiny ? null : await ramless(traceA, reps, tick),
    replay: tiny ? null : await replayEvery(traceA, 500, reps, tick),
    targets: SNAPSHOT_TARGETS,
  };
  section.met = {
    nonZeroSnapshot: section.nonZero.snapshotGBps >= SNAPSHOT_TARGETS.nonZeroGBps,
    nonZeroRestore: section.nonZero.restoreGBps >= SNAPSHOT_TARGETS.nonZeroGBps,
    zeroSkip: section.zeroSkip.touched.GBps >= SNAPSHOT_TARGETS.zeroSkipGBps,
    ramless: section.ramless ? section.ramless.totalMs <= SNAPSHOT_TARGETS.ramlessMs : null,
    replay: section.replay ? section.replay.hypercallsPerSecond >= SNAPSHOT_TARGETS.replaySnapshotEvery500Hps : null,
  };
  return section;
}

const f = (x, d = 1) => (x === null || x === undefined ? '' : x.toFixed(d));

/** The terminal table of the section. */
export function snapshotTable(s) {
  const t = s.targets;
  const rows = [
    ['snapshot, non-zero memory', `${f(s.nonZero.snapshotGBps, 2)} GB/s`, `≥ ${t.nonZeroGBps} GB/s`, s.met.nonZeroSnapshot],
    ['restore, non-zero memory', `${f(s.nonZero.restoreGBps, 2)} GB/s`, `≥ ${t.nonZeroGBps} GB/s`, s.met.nonZeroRestore],
    ['  control: one copy into fresh memory', `${f(s.nonZero.controlFreshWriteGBps, 2)} GB/s`, '', null],
    ['skipping zero memory (touched)', `${f(s.zeroSkip.touched.GBps, 1)} GB/s`, `≥ ${t.zeroSkipGBps} GB/s`, s.met.zeroSkip],
    ['skipping zero memory (never touched)', `${f(s.zeroSkip.untouched.GBps, 1)} GB/s`, '', null],
    ...(s.ramless ? [['RAM-less snapshot + restore, 1 GiB guest', `${f(s.ramless.totalMs, 2)} ms`, `≤ ${t.ramlessMs} ms`, s.met.ramless]] : []),
    ...(s.replay ? [['replay --snapshot-every 500, trace A', `${Math.round(s.replay.hypercallsPerSecond).toLocaleString('en-US')} hcalls/s`, `≥ ${t.replaySnapshotEvery500Hps.toLocaleString('en-US')}`, s.met.replay]] : []),
  ];
  const w = [40, 22, 12];
  return [['', 'measured', 'target'], ...rows].map((r) => `${String(r[0]).padEnd(w[0])}  ${String(r[1]).padStart(w[1])}  ${String(r[2]).padStart(w[2])}${r[3] === undefined || r[3] === null ? '' : r[3] ? '  met' : '  NOT met'}`).join('\n');
}
