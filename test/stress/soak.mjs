// The soak (issue 12): worker vCPUs hammer the TCE tables of a VM while the
// main thread tears down what they read: it unregisters and re-registers
// memory the tables do not use (so freed region descriptors and page arrays
// are handed out again), removes and creates a second window, and ends every
// round by detaching the group, closing the container or destroying the VM
// with the vCPUs still running. At rest (workers paused) and at the end:
// checkInvariants() holds, the heap checks, every region's mapped − 1 equals
// the live TCEs pointing into it, and every worker has joined before its
// deadline. Used by test/stress/soak.test.ts (a few seconds) and by
// `npm run soak -- --seconds N` (scripts/soak.mjs).
import { Worker } from 'node:worker_threads';
import { Host, DDW_BUS_OFFSET, regionsOf, preregPut } from '../../dist/index.js';

const MiB = 1 << 20;
const RAM = 8 * MiB;
/** The workers' TCEs point anywhere in RAM, also into [6, 8) MiB, whose regions the main thread churns. */
const TCE_BYTES = RAM;
const PAGE_SHIFT = 16;
const LIOBN = 0x80000000n;
const LIOBN2 = 0x80000001n;
/** How long a worker may take to join after it is told to stop. */
const JOIN_MS = 10_000;

/** A seeded generator (LCG) for the main thread's choices. */
function rng(seed) {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

/** Sets up one round: a v2 container with two windows, a VM whose two LIOBNs link them. */
function round(host, qemu, ram) {
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, 4n * BigInt(MiB));
  fd.registerMemory(ram.ua + 4n * BigInt(MiB), 2n * BigInt(MiB));
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: PAGE_SHIFT, windowSize: 1n << 30n, levels: 2 });
  fd.createWindow({ pageShift: PAGE_SHIFT, windowSize: 1n << 28n, levels: 2 });
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: BigInt(RAM), ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: PAGE_SHIFT, offset: 0n, size: 1n << 14n });
  vm.createTceTable({ liobn: LIOBN2, pageShift: PAGE_SHIFT, offset: DDW_BUS_OFFSET >> BigInt(PAGE_SHIFT), size: 1n << 12n });
  vm.attachGroup(group, LIOBN);
  vm.attachGroup(group, LIOBN2);
  return { group, fd, vm };
}

/** mapped − 1 of every region of `mm` against the TCEs of every live table pointing into it. */
function exactCounts(host, mm) {
  const regions = regionsOf(mm);
  const pointing = new Map(regions.map((r) => [r, 0n]));
  for (const t of host.tables) {
    for (const [, tce, ua] of t.entries()) {
      if ((tce & 3n) === 0n) continue;
      const r = regions.find((x) => ua >= x.ua && ua < x.ua + x.size);
      if (r) pointing.set(r, pointing.get(r) + 1n);
    }
  }
  for (const [r, n] of pointing) {
    if (r.mapped - 1n !== n) throw new Error(`region at 0x${r.ua.toString(16)}: mapped − 1 = ${r.mapped - 1n}, but ${n} TCE(s) point into it`);
  }
}

/** Everything that must hold at rest. */
function atRest(host, qemu) {
  host.checkInvariants();
  const heap = host.engine.heapCheck();
  if (heap < 0) throw new Error(`heapCheck() = ${heap}`);
  exactCounts(host, qemu.mm);
}

/** Asks the workers to pause and waits (bounded) until they all are. */
function pause(ctl, n) {
  Atomics.store(ctl, 1, 1);
  const until = Date.now() + JOIN_MS;
  while (Atomics.load(ctl, 2) < n) {
    if (Date.now() > until) throw new Error('the workers did not pause within 10 s');
    Atomics.wait(ctl, 3, 0, 1);
  }
}

/** Waits (bounded) until `n` workers have entered their loop; a worker's error is thrown as it is. */
async function started(ctl, n, joined) {
  const until = Date.now() + JOIN_MS;
  const failed = Promise.all(joined).then(() => new Error('a worker ended before the round started'));
  let failure;
  failed.then((e) => { failure = e; }, (e) => { failure = e; });
  while (Atomics.load(ctl, 4) < n) {
    if (failure) throw failure;
    if (Date.now() > until) throw new Error(`the workers did not start within ${JOIN_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function resume(ctl) {
  Atomics.store(ctl, 1, 0);
  Atomics.notify(ctl, 1);
}

/**
 * Runs the soak on one engine for about `seconds`, and for at least
 * `minRounds` rounds however slow the machine is (so a loaded machine cannot
 * skip a kind of teardown), and returns its figures; throws on the first
 * broken check (a worker's trap is its error).
 */
export async function soak({ engine, seconds, workers = 2, seed = 1, roundMs = 600, minRounds = 1 }) {
  const host = await Host.create({ ownerCheck: 'mm', engine });
  const qemu = host.spawn();
  const ram = qemu.mmap(BigInt(RAM));
  const hostOff = qemu.mm.findMapping(ram.ua).hostOff;
  const rnd = rng(seed);
  const end = Date.now() + seconds * 1000;
  const fig = { engine, rounds: 0, hcalls: 0, churn: 0, refused: 0, teardown: { detach: 0, close: 0, destroy: 0 } };
  let longestJoinMs = 0;
  while (fig.rounds < minRounds || Date.now() < end) {
    const { group, fd, vm } = round(host, qemu, ram);
    // ctl: [0] stop, [1] pause requested, [2] vCPUs at rest, [3] the main thread's wait word, [4] vCPUs started.
    const ctlBuf = new SharedArrayBuffer(32);
    const ctl = new Int32Array(ctlBuf);
    const deadline = Date.now() + roundMs + JOIN_MS;
    const vcpus = [];
    const joined = [];
    for (let w = 0; w < workers; w++) {
      const vcpu = vm.vcpu(w, { thread: qemu.thread() });
      vcpus.push(vcpu);
      const worker = new Worker(new URL('./soak-worker.mjs', import.meta.url), {
        workerData: {
          vcpu: vcpu.workerData(), seed: seed * 7919 + fig.rounds * 31 + w, liobns: [Number(LIOBN), Number(LIOBN2)], entries: 256,
          pageShift: PAGE_SHIFT, ramBytes: RAM, tceBytes: TCE_BYTES, listGpa: 7 * MiB + w * 0x10000, ramHostOff: hostOff, ctl: ctlBuf, deadline,
        },
      });
      joined.push(new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
      }));
    }
    // The round starts when every vCPU is in its loop: on a loaded machine a worker can take longer
    // to start than the round lasts, and the teardown would then meet no running vCPU.
    await started(ctl, workers, joined);
    // Churn while the vCPUs run: memory the tables do not use, and the second window.
    const base = ram.ua + 6n * BigInt(MiB);
    let churnRegions = [];
    const t0 = Date.now();
    let rested = false;
    while (Date.now() - t0 < roundMs) {
      const op = rnd(4);
      try {
        if (op < 2) {
          for (const [ua, size] of churnRegions) fd.unregisterMemory(ua, size);
          churnRegions = [];
          // A different split each time, so the freed blocks are reused by other sizes.
          const pieces = 1 + rnd(32);
          const step = (2n * BigInt(MiB)) / BigInt(pieces) & ~0xffffn;
          for (let i = 0; i < pieces; i++) {
            fd.registerMemory(base + BigInt(i) * step, step);
            churnRegions.push([base + BigInt(i) * step, step]);
          }
        } else if (op === 2) {
          fd.removeWindow(DDW_BUS_OFFSET);
          fd.createWindow({ pageShift: PAGE_SHIFT, windowSize: 1n << BigInt(26 + rnd(3)), levels: 1 + rnd(2) });
        } else {
          fd.unregisterMemory(ram.ua + 4n * BigInt(MiB), 2n * BigInt(MiB));
          fd.registerMemory(ram.ua + 4n * BigInt(MiB), 2n * BigInt(MiB));
        }
        fig.churn++;
      } catch (e) {
        if (!/EBUSY|ENOENT|EINVAL/.test(String(e?.message))) throw e;
        fig.refused++;
      }
      if (!rested && Date.now() - t0 > roundMs / 2) {
        rested = true;
        pause(ctl, workers);
        try {
          atRest(host, qemu);
        } finally {
          resume(ctl);
        }
      }
    }
    // End the round with the vCPUs still running.
    const how = ['detach', 'close', 'destroy'][fig.rounds % 3];
    if (how === 'detach') fd.detachGroup(group);
    else if (how === 'close') fd.close();
    else vm.destroy();
    fig.teardown[how]++;
    Atomics.wait(ctl, 3, 0, 20);
    Atomics.store(ctl, 0, 1);
    resume(ctl);
    const j0 = Date.now();
    let timer;
    const results = await Promise.race([
      Promise.all(joined),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`a worker did not join within ${JOIN_MS} ms`)), JOIN_MS); }),
    ]).finally(() => clearTimeout(timer));
    longestJoinMs = Math.max(longestJoinMs, Date.now() - j0);
    for (const r of results) fig.hcalls += r.calls;
    if (fd.isOpen) fd.close();
    vm.destroy();
    for (const v of vcpus) v.release();
    // The tables the links held were freed (and cleared) after a grace period; wait for it.
    host.synchronize();
    atRest(host, qemu);
    // What the mm's exit does to regions whose container is gone (mm_iommu_cleanup): with the VM
    // destroyed no TCE points into them, so each goes at once; EBUSY here is a leaked count.
    for (const r of regionsOf(qemu.mm)) preregPut(qemu.mm, r);
    fig.rounds++;
  }
  host.synchronize();
  atRest(host, qemu);
  const st = host.stats();
  return { ...fig, longestJoinMs, reclaim: st.reclaim };
}
