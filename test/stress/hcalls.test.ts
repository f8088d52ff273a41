// Stress (issue 4): four vCPUs on worker threads hammer overlapping entries of shared tables
// with H_PUT_TCE / H_PUT_TCE_INDIRECT / H_STUFF_TCE; afterwards every region's mapped − 1
// equals the entries pointing into it and every invariant of docs/semantics.md §3 holds.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Host, type Vm } from '../../src/index.js';

const WORKERS = 4;
const COUNT = 5000;

async function setup() {
  const host = await Host.create({ ownerCheck: 'mm' });
  const qemu = host.spawn();
  const ramBytes = 8 << 20;
  const ram = qemu.mmap(BigInt(ramBytes));
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  // Two regions, so concurrent overwrites move counts between regions.
  fd.registerMemory(ram.ua, ram.size / 2n);
  fd.registerMemory(ram.ua + ram.size / 2n, ram.size / 2n);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 12, windowSize: 1n << 30n, levels: 3 });
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
  const vm: Vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  // A 64 KiB guest page over the 4 KiB hardware table: 16 subpages per guest entry.
  const liobn = 0x80000000n;
  vm.createTceTable({ liobn, pageShift: 16, offset: 0n, size: 1n << 14n });
  vm.attachGroup(group, liobn);
  return { host, qemu, ram, fd, vm, liobn, ramBytes };
}

describe('stress: vCPUs on worker threads', () => {
  it(`${WORKERS} workers × ${COUNT} random hypercalls on overlapping entries keep every count exact`, async () => {
    const { host, qemu, ram, fd, vm, liobn, ramBytes } = await setup();
    const mapping = qemu.mm.findMapping(ram.ua)!;
    const results = await Promise.all(
      Array.from({ length: WORKERS }, (_, w) => {
        const vcpu = vm.vcpu(w, { thread: qemu.thread() });
        return new Promise<{ ok: number; param: number; exit: number }>((resolve, reject) => {
          const worker = new Worker(new URL('./hcall-worker.mjs', import.meta.url), {
            workerData: {
              vcpu: vcpu.workerData(), seed: 1234 + w, count: COUNT, liobns: [Number(liobn)], entries: 64,
              pageShift: 16, ramBytes, listGpa: 0x10000 * (100 + w), ramUaGpa: { hostOff: mapping.hostOff },
            },
          });
          worker.once('message', resolve);
          worker.once('error', reject);
        });
      }),
    );
    const total = results.reduce((a, r) => a + r.ok + r.param + r.exit, 0);
    expect(total).toBe(WORKERS * COUNT);
    expect(results.every((r) => r.ok > COUNT / 2)).toBe(true);
    host.checkInvariants();
    // Independently of checkInvariants: count the hardware entries per region by hand.
    const table = fd.container.windows[0]!.table;
    const [r1, r2] = fd.container.regions;
    let in1 = 0n;
    let in2 = 0n;
    for (const [, , ua] of table.entries()) {
      if (ua >= r1!.ua && ua < r1!.ua + r1!.size) in1++;
      else if (ua >= r2!.ua && ua < r2!.ua + r2!.size) in2++;
    }
    expect(r1!.mapped - 1n).toBe(in1);
    expect(r2!.mapped - 1n).toBe(in2);
    expect(in1 + in2).toBeGreaterThan(0n);
    const s = vm.stats();
    expect(s.H_PUT_TCE.real + s.H_PUT_TCE.virtual).toBeGreaterThan(0);
  });
});
