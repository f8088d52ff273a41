// Spec: docs/semantics.md §8.7 "Events on worker vCPUs": a worker vCPU's hypercalls deliver no
// events (its hot path checks nothing), and the pattern the docs give a VMM that subscribes —
// hand the TCE calls to the main thread, which runs them over the same register block — keeps a
// VfioSync exactly in step.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Host, type VmEvent } from '../../src/index.js';
import { MiB } from './helpers.js';

const LIOBN = 0x71000002n;
const COUNT = 64;
const G = 0x100000;

async function run(forward: boolean) {
  const host = await Host.create({ maxMemory: 64 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(4n * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1n << 16n });
  const fd = qemu.openContainer();
  fd.attachGroup(host.addGroup());
  fd.setIommu('v2');
  const sync = vm.attachContainer(fd);
  const events: VmEvent[] = [];
  vm.subscribe(LIOBN, (e) => events.push(e));
  const vcpu = vm.vcpu(0, { thread: qemu.thread() });
  const flag = new SharedArrayBuffer(4);
  const done = new Int32Array(flag);
  const result = await new Promise<{ ok: number }>((resolve, reject) => {
    const worker = new Worker(new URL('./vmm-worker.mjs', import.meta.url), {
      workerData: { vcpu: vcpu.workerData(), flag, count: COUNT, liobn: Number(LIOBN), gpa: G, forward },
    });
    worker.on('message', (m: unknown) => {
      if (m !== 'hcall') return resolve(m as { ok: number });
      // The worker waits: run its hypercall here, over its registers, and wake it.
      vcpu.hcall();
      Atomics.store(done, 0, 1);
      Atomics.notify(done, 0);
    });
    worker.once('error', reject);
  });
  const guest: bigint[] = [];
  vm.replay(LIOBN, (e) => guest.push(e.iova));
  const w = fd.container.windows.find((x) => x?.startAddr === 0n)!;
  const hostIovas = [...w.table.entries()].map(([e]) => e << 12n);
  return { result, events, guest, hostIovas, stats: sync.stats(), host };
}

describe('events and vCPUs on worker threads', () => {
  it('a worker vCPU\'s own hypercalls deliver no events: a sync misses them', async () => {
    const { result, events, guest, hostIovas, stats } = await run(false);
    expect(result.ok).toBe(COUNT);
    expect(guest).toHaveLength(COUNT);
    expect(events).toEqual([]);
    expect(hostIovas).toEqual([]);
    expect(stats.mapDma).toBe(0);
  });

  it('handed to the main thread, the same calls deliver every event and the host window equals the guest\'s', async () => {
    const { result, events, guest, hostIovas, stats, host } = await run(true);
    expect(result.ok).toBe(COUNT);
    expect(events.map((e) => e.kind)).toEqual(new Array(COUNT).fill('map'));
    expect(hostIovas).toEqual(guest);
    expect(stats).toMatchObject({ mapDma: COUNT, errors: 0 });
    host.checkInvariants();
  });
});
