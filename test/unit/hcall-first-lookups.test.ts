// The real-mode H_PUT_TCE path tests the VM's first memslot and the mm's
// first region inline before walking their lists (assembly/guest.ts
// gpaToUaFirst, assembly/region.ts regionLookupFirst): the same tests as
// findSlot's and regionLookup's, written apart for the code they compile
// to. Here TCEs land in each memslot and region, at their last page, and
// just past their ends, where the next userspace address belongs to another
// registered region: real mode must give what the walks give (the view's
// userspace address, the region counted) or refuse with nothing changed.
// Both list orders run, so each memslot and region is once the one tested
// inline and once one the walk finds.
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';
import { LEVEL_REAL, VCPU_BYTES } from '../../src/generated/layout.js';

const LIOBN = 0x8000_0000n;
const PAGE = 0x10000n;
const MiB = 1n << 20n;

/** A linked VM over one 6 MiB mapping cut in three 2 MiB parts a, m, b: regions [a, a + 1 MiB), m and b; memslots gpa 0 → a (2 MiB) and gpa 4 MiB → b. */
async function setup(engine: 'wasm' | 'native', reversed: boolean) {
  const host = await Host.create({ engine, maxMemory: 32 << 20 });
  const qemu = host.spawn();
  // Adjacent parts: the address just past slot A's memory, or past region A, is another region's.
  const ram = qemu.mmap(6n * MiB);
  const part = (i: bigint) => ({ ua: ram.ua + i * 2n * MiB });
  const [a, m, b] = [part(0n), part(1n), part(2n)];
  const g = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  const regions: [bigint, bigint][] = [[a.ua, MiB], [m.ua, 2n * MiB], [b.ua, 2n * MiB]];
  for (const [ua, size] of reversed ? [...regions].reverse() : regions) fd.registerMemory(ua, size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
  fd.mapDma({ iova: 0n, vaddr: a.ua, size: PAGE, read: true });
  fd.unmapDma({ iova: 0n, size: PAGE });
  const vm = qemu.createVm({ profile: 'kvm' });
  const slots = [{ gpa: 0n, size: 2n * MiB, ua: a.ua }, { gpa: 4n * MiB, size: 2n * MiB, ua: b.ua }];
  for (const s of reversed ? [...slots].reverse() : slots) vm.addMemslot(s);
  vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 1n << 12n });
  vm.attachGroup(g, LIOBN);
  const vcpu = vm.vcpu(0, { thread: qemu });
  const region = (ua: bigint) => fd.container.regions.find((r) => r.ua === ua)!;
  return { host, vcpu, table: fd.container.windows[0]!.table, a, b, ra: region(a.ua), rm: region(m.ua), rb: region(b.ua) };
}

describe('H_PUT_TCE real mode: the first memslot and region tested inline, the others walked', () => {
  for (const engine of ['wasm', 'native'] as const) {
    for (const reversed of [false, true]) {
      it.skipIf(engine === 'native' && !nativeAvailable)(`${engine}, lists ${reversed ? 'reversed' : 'in order'}: each memslot and region, their last pages, and just past their ends`, async () => {
        const { host, vcpu, table, a, b, ra, rm, rb } = await setup(engine, reversed);
        const counts = () => [ra.mapped, rm.mapped, rb.mapped];
        const regs = (entry: bigint, gpa: bigint): void => {
          vcpu.regs[3] = BigInt(H.PUT_TCE);
          vcpu.regs[4] = LIOBN;
          vcpu.regs[5] = entry * PAGE;
          vcpu.regs[6] = gpa | 3n;
        };
        // The guest-table page of these entries is allocated in virtual mode by the first call.
        regs(0n, 0n);
        expect(vcpu.hcall()).toBe(H.SUCCESS);
        const hits = [
          { gpa: 0n, ua: a.ua, at: 0 },
          { gpa: MiB - PAGE, ua: a.ua + MiB - PAGE, at: 0 },
          { gpa: 4n * MiB, ua: b.ua, at: 2 },
          { gpa: 6n * MiB - PAGE, ua: b.ua + 2n * MiB - PAGE, at: 2 },
        ];
        for (const [i, c] of hits.entries()) {
          const entry = BigInt(i + 1);
          const before = counts();
          regs(entry, c.gpa);
          expect(vcpu.hcall(), `gpa ${c.gpa}`).toBe(H.SUCCESS);
          expect(vcpu.lastLevel, `gpa ${c.gpa}`).toBe('real');
          expect(table.getUa(entry)).toBe(c.ua);
          expect(counts()).toEqual(before.map((n, k) => (k === c.at ? n + 1n : n)));
        }
        host.checkInvariants();
        // Past region A's end inside slot A (the next address is region m's), past slot A's end (a
        // gap in guest memory; slot A's next userspace address is m's), past slot B's end: refused.
        for (const gpa of [MiB, 2n * MiB, 6n * MiB]) {
          regs(7n, gpa);
          const before = counts();
          const mem = Buffer.from(host.mem.u8);
          expect(host.engine.hcall(vcpu.desc, LEVEL_REAL), `gpa ${gpa}`).toBe(H.TOO_HARD);
          expect(table.getUa(7n)).toBe(0n);
          expect(counts()).toEqual(before);
          // Only the vCPU's own block may differ (its read-side counter, its status).
          const now = Buffer.from(host.mem.u8);
          now.fill(0, vcpu.desc, vcpu.desc + VCPU_BYTES);
          mem.fill(0, vcpu.desc, vcpu.desc + VCPU_BYTES);
          expect(now.equals(mem), `gpa ${gpa}`).toBe(true);
        }
        host.checkInvariants();
      });
    }
  }
});
