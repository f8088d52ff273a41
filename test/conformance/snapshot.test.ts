// Snapshot/restore (issue 7, docs/semantics.md §8.6): a host restored from a JSON round trip of its
// snapshot holds its invariants and gives every answer the original gives, now and after the
// same further calls; other versions and corrupted snapshots are refused before anything is built.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host, H, TceError, type Vm } from '../../src/index.js';
import { HEADER_BASE, HDR_ALLOC_TOP } from '../../src/generated/layout.js';
import { richHost as sharedRichHost, RICH_LIOBN, RICH_QLIOBN } from '../fixtures.js';

const LIOBN = RICH_LIOBN;
const QLIOBN = RICH_QLIOBN;

/** richHost (test/fixtures.ts) in mm mode, with a second TCE in the kvm VM's table. */
async function richHost() {
  const w = await sharedRichHost({ ownerCheck: 'mm', maxMemory: 64 << 20 });
  expect(w.vm.hcall(H.PUT_TCE, LIOBN, 0x40000n, 0x70000n | 1n).ret).toBe(0);
  return w;
}

/** The bytes of linear memory in use (up to the allocator's top). */
function memoryOf(host: Host): Buffer {
  return Buffer.from(host.mem.u8.subarray(0, host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP)));
}

function vmsOf(host: Host): { kvm: Vm; qemu: Vm } {
  const vms = [...host.vms];
  return { kvm: vms.find((v) => v.profile === 'kvm')!, qemu: vms.find((v) => v.profile === 'qemu')! };
}

const roundTrip = (host: Host): Host => Host.restore(JSON.parse(JSON.stringify(host.snapshot())));

describe('snapshot and restore', () => {
  it('a JSON round trip gives a host with the same memory, invariants, counters and answers', async () => {
    const a = await richHost();
    const b = roundTrip(a.host);
    b.checkInvariants();
    expect(memoryOf(b).equals(memoryOf(a.host))).toBe(true);
    expect(b.stats()).toEqual(a.host.stats());
    const bq = b.processes.get(a.qemu.tid)!;
    const bfd = bq.containers()[0]!;
    expect(bfd.container.regions.map((r) => [r.ua, r.used, r.mapped])).toEqual(a.fd.container.regions.map((r) => [r.ua, r.used, r.mapped]));
    expect(bq.mm.lockedPages).toBe(a.qemu.mm.lockedPages);
    expect([...bfd.container.windows[0]!.table.entries()]).toEqual([...a.fd.container.windows[0]!.table.entries()]);
    const { kvm, qemu } = vmsOf(b);
    for (const ioba of [0n, 0x10000n, 0x40000n, 0x50000n]) {
      expect(kvm.hcall(H.GET_TCE, LIOBN, ioba)).toEqual(a.vm.hcall(H.GET_TCE, LIOBN, ioba));
    }
    expect(qemu.translate(QLIOBN, 0x5010n, 'write')).toEqual(a.qvm.translate(QLIOBN, 0x5010n, 'write'));
    expect(kvm.stats()).toEqual(a.vm.stats());
  });

  it('the next errors are the same: EBUSY re-registration, EBUSY unregister while mapped, EPERM from another mm, ENOSPC', async () => {
    const a = await richHost();
    const b = roundTrip(a.host);
    const bq = b.processes.get(a.qemu.tid)!;
    const bfd = bq.containers()[0]!;
    const codes = (fd: typeof a.fd, stranger: typeof a.other) => {
      const out: string[] = [];
      const code = (f: () => unknown) => {
        try {
          f();
          out.push('ok');
        } catch (e) {
          out.push(e instanceof TceError ? e.code : String(e));
        }
      };
      code(() => fd.registerMemory(a.ram.ua, a.ram.size));
      code(() => fd.unregisterMemory(a.ram.ua, a.ram.size));
      code(() => stranger.inherit(fd).getInfo());
      code(() => fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 }));
      code(() => fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 }));
      return out;
    };
    const expected = codes(a.fd, a.other);
    expect(expected).toEqual(['EBUSY', 'EBUSY', 'EPERM', 'ok', 'ENOSPC']);
    expect(codes(bfd, b.processes.get(a.other.tid)!)).toEqual(expected);
    b.checkInvariants();
  });

  it('both hosts go on identically: the same calls give the same results and the same memory', async () => {
    const a = await richHost();
    const b = roundTrip(a.host);
    const { kvm } = vmsOf(b);
    const bfd = b.processes.get(a.qemu.tid)!.containers()[0]!;
    for (const [h, vm, fd] of [[a.host, a.vm, a.fd], [b, kvm, bfd]] as const) {
      expect(vm.hcall(H.PUT_TCE, LIOBN, 0x80000n, 0x90000n | 3n)).toMatchObject({ ret: 0 });
      expect(vm.hcall(H.STUFF_TCE, LIOBN, 0x10000n, 0n, 2n)).toMatchObject({ ret: 0 });
      fd.unmapDma({ iova: 0x30000n, size: 0x20000n });
      h.checkInvariants();
    }
    expect(memoryOf(b).equals(memoryOf(a.host))).toBe(true);
  });

  it('refuses another version, a corrupted snapshot and a non-snapshot, without building anything', async () => {
    const a = await richHost();
    const snap = JSON.parse(JSON.stringify(a.host.snapshot()));
    expect(() => Host.restore({ ...snap, version: 3 })).toThrow(/version 3 is not supported/);
    const corrupt = JSON.parse(JSON.stringify(snap));
    corrupt.body.memory.pages[0][1] = corrupt.body.memory.pages[0][1].replace(/^./, (c: string) => (c === 'A' ? 'B' : 'A'));
    expect(() => Host.restore(corrupt)).toThrow(/corrupted/);
    const edited = JSON.parse(JSON.stringify(snap));
    edited.body.counters.lastId += 1;
    expect(() => Host.restore(edited)).toThrow(/corrupted/);
    expect(() => Host.restore(null)).toThrow(TypeError);
    expect(() => Host.restore({ format: 'something else' })).toThrow(/not a spapr-tce-snapshot/);
  });

  it('property: random hypercalls, snapshot, restore, then the same calls on both hosts give identical answers', async () => {
    type Call = { nr: number; ioba: bigint; arg: bigint; n: bigint };
    const call = fc.record({
      nr: fc.constantFrom(H.PUT_TCE, H.PUT_TCE, H.STUFF_TCE, H.GET_TCE, H.PUT_TCE_INDIRECT),
      ioba: fc.bigInt({ min: 0n, max: 80n }).map((x) => x << 16n),
      arg: fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 100n }).map((x) => (x << 16n) | 3n), fc.bigInt({ min: 0n, max: 1n << 20n })),
      n: fc.bigInt({ min: 0n, max: 20n }),
    });
    const run = (vm: Vm, c: Call) => {
      // INDIRECT reads its list from a fixed 4K-aligned page of guest RAM: 0x700000.
      const args = [LIOBN, c.ioba, c.nr === H.PUT_TCE_INDIRECT ? 0x700000n : c.arg, c.n];
      // vm.hcall takes exactly each hypercall's arguments: H_PUT_TCE 3, H_GET_TCE 2, the others 4
      const r = vm.hcall(c.nr, ...args.slice(0, c.nr === H.PUT_TCE ? 3 : c.nr === H.GET_TCE ? 2 : 4));
      return [r.ret, r.out[0], r.level];
    };
    await fc.assert(
      fc.asyncProperty(fc.array(call, { maxLength: 25 }), fc.array(call, { maxLength: 25 }), async (before, after) => {
        const a = await richHost();
        for (const c of before) run(a.vm, c);
        const b = roundTrip(a.host);
        const { kvm } = vmsOf(b);
        for (const c of after) expect(run(kvm, c)).toEqual(run(a.vm, c));
        b.checkInvariants();
        expect(memoryOf(b).equals(memoryOf(a.host))).toBe(true);
      }),
      { numRuns: 25 },
    );
  });
});
