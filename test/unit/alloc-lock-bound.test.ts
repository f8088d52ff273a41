// The allocator lock is bounded: while a holder never lets go (a worker
// killed inside alloc, say), alloc answers 0 — ENOMEM through the API,
// H_TOO_HARD for a vCPU's virtual mode on a worker — after ALLOC_LOCK_SPINS
// tries, free gives up and leaves the block allocated, heapCheck says busy;
// nothing hangs, and each give-up is counted in HDR_ALLOC_BUSY. Released,
// everything works again.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Host, H, TceError } from '../../src/index.js';
import { HEADER_BASE, HDR_ALLOC_LOCK, HDR_ALLOC_BUSY } from '../../src/generated/layout.js';
import { ENGINES, counters, snapshotHeap } from './alloc-heap.js';

const LIOBN = 0x80000000n;

/** A v2 container window (its userspace view made by one map) linked to a KVM guest table: an H_PUT_TCE far from that map must allocate levels. */
async function setup(engine: 'wasm' | 'native') {
  const host = await Host.create({ engine, ownerCheck: 'mm' });
  const qemu = host.spawn();
  const ram = qemu.mmap(1n << 20n);
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 12, windowSize: 1n << 30n, levels: 3 });
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1n << 18n });
  vm.attachGroup(group, LIOBN);
  return { host, qemu, vm };
}

function runOnWorker(data: unknown, ioba: bigint, tce: bigint): Promise<{ rc: number; ms: number }> {
  const worker = new Worker(new URL('./alloc-lock-worker.mjs', import.meta.url), {
    workerData: { vcpu: data, liobn: Number(LIOBN), ioba: Number(ioba), tce: Number(tce) },
  });
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

describe('allocator lock: bounded', () => {
  for (const { engine, skip, name } of ENGINES) {
    it.skipIf(skip !== undefined)(`${name}: a lock that is never released makes alloc fail, free give up and vCPUs exit, without hanging`, async () => {
      const { host, qemu, vm } = await setup(engine);
      const e = host.engine;
      const vcpu = vm.vcpu(0, { thread: qemu.thread() });
      const p = e.alloc(4096);
      const check = e.heapCheck();
      expect(check).toBeGreaterThanOrEqual(0);
      // A holder that never returns.
      host.mem.setU32(HEADER_BASE + HDR_ALLOC_LOCK, 1);
      const busy0 = counters(host).busy;
      let t = performance.now();
      expect(e.alloc(64)).toBe(0);
      const ms = performance.now() - t;
      expect(counters(host).busy).toBe(busy0 + 1);
      // free gives up: the block stays allocated, nothing but the counter changes.
      const before = snapshotHeap(host);
      e.free(p, 4096);
      const after = snapshotHeap(host);
      after.writeBigUInt64LE(before.readBigUInt64LE(HEADER_BASE + HDR_ALLOC_BUSY), HEADER_BASE + HDR_ALLOC_BUSY);
      expect(Buffer.compare(after, before)).toBe(0);
      expect(e.heapCheck()).toBe(-1);
      // Through the API: ENOMEM.
      let err: unknown;
      try {
        qemu.mmap(1n << 16n);
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(TceError);
      expect((err as TceError).code).toBe('ENOMEM');
      // A vCPU on a worker: real mode finds the levels missing, virtual mode cannot allocate them, the call exits.
      const busy1 = counters(host).busy;
      t = performance.now();
      const stuck = await runOnWorker(vcpu.workerData(), 0x2000_0000n, 0x3000n | 3n);
      expect(stuck.rc).toBe(H.TOO_HARD);
      expect(counters(host).busy).toBeGreaterThan(busy1);
      console.log(`${name}: one give-up ${ms.toFixed(0)} ms; the worker's H_PUT_TCE exited after ${stuck.ms.toFixed(0)} ms (${(performance.now() - t).toFixed(0)} ms with the worker's start)`);
      // Released: the same call completes, and the block frees.
      host.mem.setU32(HEADER_BASE + HDR_ALLOC_LOCK, 0);
      expect(e.heapCheck()).toBe(check);
      expect((await runOnWorker(vcpu.workerData(), 0x2000_0000n, 0x3000n | 3n)).rc).toBe(H.SUCCESS);
      e.free(p, 4096);
      expect(e.heapCheck()).toBeGreaterThanOrEqual(0);
      host.checkInvariants();
    });
  }
});
