// Dirty tracking done by the engines (assembly/dirty.ts, engine_dirty.cc twin; src/vmm/dirty.ts): with
// vm.trackDmaWritable(true), a page a vCPU on a WORKER thread maps writable and unmaps again
// between two reads of the log is still dirty (the worker's hypercalls emit no events on the host
// thread: only the engine's mark in the memslot's log in linear memory sees them). Read-only
// mappings never mark; tracking off allocates no log and marks nothing; a clear keeps what is
// still mapped writable; removing a memslot or switching tracking off frees the logs; snapshots
// (JSON, binary, RAM-less) carry the log, and the restore check refuses a bad one. On both
// engines, through the real-mode fast paths (one linked v2 table) and the general passes (an
// unlinked table).
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Host, H, SnapshotError, type Vm, type Process, type MmapResult } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';
import { VmView, SlotView } from '../../src/generated/views.js';
import { DIRTY_LOG_HEADER } from '../../src/generated/layout.js';
import { v2Container } from '../fixtures.js';

const ENGINES = nativeAvailable ? (['wasm', 'native'] as const) : (['wasm'] as const);
const MiB = 1n << 20n;
const L = 0x80000000n; // linked to one v2 table of its page size: the real-mode fast paths
const BARE = 0x80000001n; // no hardware table: the general passes
const G = 0x200000n; // guest page 512 (4 KiB system pages)
const LIST = 0x100000; // where the worker writes its INDIRECT lists (guest physical = offset in RAM)

/** The page numbers whose bit is set, read as KVM's little-endian 64-bit words. */
function dirtyPages(bm: Uint8Array): number[] {
  const dv = new DataView(bm.buffer, bm.byteOffset, bm.byteLength);
  const out: number[] = [];
  for (let w = 0; w < bm.length / 8; w++) {
    const word = dv.getBigUint64(w * 8, true);
    for (let b = 0; b < 64; b++) if ((word >> BigInt(b)) & 1n) out.push(w * 64 + b);
  }
  return out;
}

async function setup(engine: 'wasm' | 'native', profile: 'kvm' | 'qemu' = 'kvm') {
  const host = await Host.create({ engine, pageShift: 12, maxMemory: 64 << 20 });
  const qemu: Process = host.spawn();
  const ram: MmapResult = qemu.mmap(16n * MiB);
  const vm: Vm = qemu.createVm({ profile });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: L, pageShift: 12, offset: 0n, size: 65536n });
  vm.createTceTable({ liobn: BARE, pageShift: 12, offset: 0n, size: 65536n });
  if (profile === 'kvm') {
    const { g } = v2Container(host, qemu, ram, { pageShift: 12, windowSize: 1n << 28n, levels: 2 });
    vm.attachGroup(g, L);
  }
  const vcpu = vm.vcpu(0, { thread: qemu.thread() });
  const hostOff = qemu.mm.findMapping(ram.ua)!.hostOff;
  type Op = { nr: number; args: bigint[]; list?: bigint[] };
  /** Runs `ops` on the vCPU from a worker thread; resolves with their statuses. */
  const onWorker = (ops: Op[]): Promise<number[]> =>
    new Promise((resolve, reject) => {
      const w = new Worker(new URL('./dirty-worker.mjs', import.meta.url), {
        workerData: {
          vcpu: vcpu.workerData(),
          ops: ops.map((o) => ({ nr: o.nr, args: o.args.map(String), list: o.list && { hostOff: hostOff + LIST, tces: o.list.map(String) } })),
        },
      });
      w.once('message', resolve);
      w.once('error', reject);
    });
  const log = (gpa = 0n): number[] => dirtyPages(vm.dirtyLog(gpa));
  /** The memslot descriptor at `gpa` (SLOT.dirtyLog is what the engines mark). */
  const slotDesc = (gpa = 0n): SlotView => {
    for (let at = new VmView(host.mem, vm.desc).slots; at !== 0; at = new SlotView(host.mem, at).next) {
      const d = new SlotView(host.mem, at);
      if (d.gpa === gpa && d.size !== 0n) return d;
    }
    throw new Error(`no memslot at ${gpa}`);
  };
  return { host, qemu, ram, vm, vcpu, onWorker, log, slotDesc };
}

const PUT = H.PUT_TCE;
const IND = H.PUT_TCE_INDIRECT;
const STUFF = H.STUFF_TCE;

for (const engine of ENGINES) {
  describe(`dirty tracking by the ${engine} engine, vCPU on a worker`, () => {
    it('a page mapped writable and unmapped again between two reads of the log is dirty (PUT, INDIRECT, STUFF; fast and general paths); read-only ones are not', async () => {
      const s = await setup(engine);
      s.vm.trackDmaWritable(true);
      expect(s.log()).toEqual([]);
      const rcs = await s.onWorker([
        { nr: PUT, args: [L, 0x1000n, G | 3n] }, // putOne (real mode, one table)
        { nr: PUT, args: [L, 0x1000n, 0n] },
        { nr: IND, args: [L, 0x10000n, BigInt(LIST), 3n], list: [(G + 0x10000n) | 3n, (G + 0x11000n) | 1n, (G + 0x12000n) | 2n] }, // putFast
        { nr: STUFF, args: [L, 0x10000n, 0n, 3n] },
        { nr: PUT, args: [BARE, 0x2000n, (G + 0x20000n) | 3n] }, // putEntries (no hardware table)
        { nr: PUT, args: [BARE, 0x2000n, 0n] },
        { nr: IND, args: [BARE, 0x20000n, BigInt(LIST), 2n], list: [(G + 0x30000n) | 2n, (G + 0x31000n) | 1n] },
        { nr: STUFF, args: [BARE, 0x20000n, 0n, 2n] },
        { nr: PUT, args: [L, 0x3000n, (G + 0x40000n) | 1n] }, // read-only, left mapped
      ]);
      expect(rcs.every((rc) => rc === H.SUCCESS), `statuses ${rcs}`).toBe(true);
      // Nothing is mapped writable any more, and the host thread saw none of these calls: only the engine's marks.
      expect(s.log()).toEqual([512, 528, 530, 544, 560]);
      s.vm.clearDirtyLog(0n);
      expect(s.log()).toEqual([]);
      s.host.checkInvariants();
    });

    it('read-only mappings never set a bit', async () => {
      const s = await setup(engine);
      s.vm.trackDmaWritable(true);
      const list = Array.from({ length: 64 }, (_, i) => (G + BigInt(i) * 0x1000n) | 1n);
      expect(await s.onWorker([
        { nr: IND, args: [L, 0n, BigInt(LIST), 64n], list },
        { nr: IND, args: [BARE, 0n, BigInt(LIST), 64n], list },
        { nr: PUT, args: [L, 0x100000n, G | 1n] },
      ])).toEqual([0, 0, 0]);
      expect(s.log()).toEqual([]);
    });

    it('tracking off: no log is allocated and nothing is marked', async () => {
      const s = await setup(engine);
      expect(await s.onWorker([
        { nr: PUT, args: [L, 0x1000n, G | 3n] },
        { nr: PUT, args: [BARE, 0x1000n, G | 3n] },
        { nr: IND, args: [L, 0x10000n, BigInt(LIST), 2n], list: [(G + 0x10000n) | 3n, (G + 0x11000n) | 3n] },
      ])).toEqual([0, 0, 0]);
      expect(s.slotDesc().dirtyLog).toBe(0);
      expect(s.log()).toEqual([]);
      expect(s.slotDesc().dirtyLog).toBe(0); // reading the log allocates none either
      // Reading the log allocates nothing either: the heap is the same after another read.
      const after = s.host.stats().memory;
      s.log();
      expect(s.host.stats().memory.heapUsedBytes).toBe(after.heapUsedBytes);
    });

    it('clearDirtyLog keeps a page still mapped writable; once unmapped it stays dirty until the next clear', async () => {
      const s = await setup(engine);
      s.vm.trackDmaWritable(true);
      expect(await s.onWorker([{ nr: PUT, args: [L, 0x5000n, (G + 0x5000n) | 3n] }])).toEqual([0]);
      expect(s.log()).toEqual([517]);
      s.vm.clearDirtyLog(0n);
      expect(s.log()).toEqual([517]); // still mapped: the device may write it at any time
      // A mask that does not name the page leaves it; one that does is re-marked at once.
      const mask = new Uint8Array(s.vm.dirtyLog(0n).length);
      mask[0] = 0xff;
      s.vm.clearDirtyLog(0n, mask);
      expect(s.log()).toEqual([517]);
      expect(await s.onWorker([{ nr: PUT, args: [L, 0x5000n, 0n] }])).toEqual([0]);
      expect(s.log()).toEqual([517]);
      s.vm.clearDirtyLog(0n);
      expect(s.log()).toEqual([]);
    });

    it('a memslot added while tracking gets a log, removing it frees it, and switching tracking off frees them all', async () => {
      const s = await setup(engine);
      const base = s.host.stats().memory.heapUsedBytes;
      s.vm.trackDmaWritable(true);
      const logBytes = (pages: number): number => Math.ceil((DIRTY_LOG_HEADER + Math.ceil(pages / 64) * 8) / 64) * 64;
      expect(s.host.stats().memory.heapUsedBytes).toBe(base + logBytes(4096));
      expect(s.slotDesc().dirtyLog).not.toBe(0);
      const extra = s.qemu.mmap(1n * MiB);
      const X = 64n * MiB;
      const beforeAdd = s.host.stats().memory.heapUsedBytes;
      s.vm.addMemslot({ gpa: X, size: extra.size, ua: extra.ua });
      expect(s.slotDesc(X).dirtyLog).not.toBe(0);
      const afterAdd = s.host.stats().memory.heapUsedBytes;
      expect(afterAdd - beforeAdd).toBe(64 + logBytes(256)); // the descriptor and its log
      expect(await s.onWorker([{ nr: PUT, args: [BARE, 0x1000n, (X + 0x3000n) | 3n] }])).toEqual([0]);
      expect(s.log(X)).toEqual([3]);
      const beforeRemove = s.host.stats().memory.heapUsedBytes; // the call allocated a guest-table page
      s.vm.removeMemslot(X);
      s.host.synchronize();
      // The log is freed; the descriptor stays listed for reuse (memslot.ts).
      expect(s.host.stats().memory.heapUsedBytes).toBe(beforeRemove - logBytes(256));
      expect(s.host.engine.heapCheck()).toBeGreaterThanOrEqual(0);
      s.vm.addMemslot({ gpa: X, size: extra.size, ua: extra.ua });
      expect(s.log(X)).toEqual([]); // a fresh log, not the old one's bits
      expect(s.host.stats().memory.heapUsedBytes).toBe(beforeRemove);
      s.vm.trackDmaWritable(false);
      s.host.synchronize();
      expect(s.slotDesc().dirtyLog).toBe(0);
      expect(s.slotDesc(X).dirtyLog).toBe(0);
      expect(s.host.stats().memory.heapUsedBytes).toBe(beforeRemove - logBytes(256) - logBytes(4096));
      expect(s.host.engine.heapCheck()).toBeGreaterThanOrEqual(0);
      s.host.checkInvariants();
    });

    it('the qemu profile marks too (put_tce_emu, H_STUFF_TCE of a writable value)', async () => {
      const s = await setup(engine, 'qemu');
      s.vm.trackDmaWritable(true);
      expect(await s.onWorker([
        { nr: PUT, args: [L, 0x1000n, G | 3n] },
        { nr: PUT, args: [L, 0x1000n, 0n] },
        { nr: IND, args: [L, 0x10000n, BigInt(LIST), 2n], list: [(G + 0x10000n) | 2n, (G + 0x11000n) | 1n] },
        { nr: STUFF, args: [L, 0x20000n, (G + 0x20000n) | 3n, 4n] },
        { nr: STUFF, args: [L, 0n, 0n, 64n] },
      ])).toEqual([0, 0, 0, 0, 0]);
      expect(s.log()).toEqual([512, 528, 544]);
    });

    it('snapshots (JSON, binary, RAM-less) carry the log and the tracking; the restored host reports the same log and keeps marking', async () => {
      const s = await setup(engine);
      s.vm.trackDmaWritable(true);
      expect(await s.onWorker([
        { nr: PUT, args: [L, 0x1000n, G | 3n] },
        { nr: PUT, args: [L, 0x1000n, 0n] },
        { nr: PUT, args: [L, 0x2000n, (G + 0x7000n) | 2n] },
      ])).toEqual([0, 0, 0]);
      s.vm.dma(L).write(0x2000n, Uint8Array.of(1)); // a DMA write marks the same log
      const want = s.log();
      expect(want).toEqual([512, 519]);
      const restored = [
        Host.restore(JSON.parse(JSON.stringify(s.host.snapshot()))),
        Host.restore(s.host.snapshot({ format: 'binary' })),
        Host.restore(s.host.snapshot({ ram: false })),
      ];
      for (const h of restored) {
        const vm = [...h.vms][0]! as Vm;
        expect(dirtyPages(vm.dirtyLog(0n))).toEqual(want);
        vm.trackDmaWritable(true); // already on: nothing changes
        expect(dirtyPages(vm.dirtyLog(0n))).toEqual(want);
        // The restored engine marks in the restored log.
        expect(vm.hcall(H.PUT_TCE, BARE, 0x9000n, (G + 0x9000n) | 3n).ret).toBe(H.SUCCESS);
        expect(vm.hcall(H.PUT_TCE, BARE, 0x9000n, 0n).ret).toBe(H.SUCCESS);
        expect(dirtyPages(vm.dirtyLog(0n))).toEqual([...want, 521]);
        h.checkInvariants();
      }
    });
  });
}

describe('the restore check refuses a bad dirty log', () => {
  /** A tracking host with a mapped writable page and a second memslot of 257 pages (its log's last word half used). */
  async function tracked() {
    const s = await setup('wasm');
    const odd = s.qemu.mmap(257n * 4096n);
    s.vm.addMemslot({ gpa: 64n * MiB, size: odd.size, ua: odd.ua });
    s.vm.trackDmaWritable(true);
    expect(s.vm.hcall(H.PUT_TCE, L, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
    return s;
  }

  /** Snapshots of the host after `corrupt`, in every format: each restore is refused with a message matching `field`. */
  async function bad(corrupt: (s: Awaited<ReturnType<typeof setup>>) => void, field: RegExp): Promise<void> {
    const s = await tracked();
    corrupt(s);
    for (const snap of [s.host.snapshot({ format: 'binary' }), s.host.snapshot({ ram: false }), s.host.snapshot()]) {
      let err: unknown;
      try {
        Host.restore(snap);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SnapshotError);
      expect((err as SnapshotError).message).toMatch(field);
    }
  }

  it('a sound one restores in every format (what the corruptions below start from)', async () => {
    const s = await tracked();
    for (const snap of [s.host.snapshot({ format: 'binary' }), s.host.snapshot({ ram: false }), s.host.snapshot()]) {
      const vm = [...Host.restore(snap).vms][0]! as Vm;
      expect(dirtyPages(vm.dirtyLog(0n))).toEqual([512]);
    }
  });

  it('a pointer out of range, into another block, or to a block of the wrong size', async () => {
    await bad((s) => (s.slotDesc().dirtyLog = 0x7fff_fff0), /SLOT\.dirtyLog.*outside the heap/);
    await bad((s) => (s.slotDesc().dirtyLog = s.vm.desc), /SLOT\.dirtyLog.*(already|block of)/);
    await bad((s) => {
      // A log of the right size for a smaller memslot.
      const d = s.slotDesc();
      d.dirtyLog = s.host.engine.alloc(DIRTY_LOG_HEADER + 8);
    }, /SLOT\.dirtyLog.*block of 64 bytes/);
  });

  it('a header that disagrees with the memslot, or a bit past its last page', async () => {
    await bad((s) => s.host.mem.setU32(s.slotDesc().dirtyLog, 8192), /dirty log's header says 8192 pages/);
    await bad((s) => s.host.mem.setU32(s.slotDesc().dirtyLog + 4, 1), /dirty log's header/);
    // Bits 257..319 of the second slot's log lie past its 257 pages: bit 300 is in its last 32-bit word.
    await bad((s) => s.host.mem.setU32(s.slotDesc(64n * MiB).dirtyLog + DIRTY_LOG_HEADER + 36, 1 << (300 - 288)), /bit 300 set, past the memslot's 257 pages/);
  });

  it('tracking on with a memslot that has no log, or a flag that is not 0 or 1', async () => {
    await bad((s) => (s.slotDesc().dirtyLog = 0), /no dirty log: its marks would be lost/);
    await bad((s) => (new VmView(s.host.mem, s.vm.desc).dirtyTrack = 2), /VM\.dirtyTrack is 2/);
  });
});
