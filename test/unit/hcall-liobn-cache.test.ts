// The real-mode H_PUT_TCE path keeps the last LIOBN → guest table lookup of
// its engine instance (assembly/hcall.ts findSttCached, engine_hcall_put.cc twin),
// valid only while HDR.gracePeriods is unchanged. These are the cases where
// a stale entry would act on the wrong table: the table's VM destroyed (its
// descriptors freed and their memory reused), a new VM with the same LIOBN,
// and two VMs of one host with the same LIOBN called alternately. Each call
// must see the table of its own VM as it is now, or none (H_TOO_HARD).
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';
import { HEAP_BASE, HEADER_BASE, HDR_ALLOC_TOP, LEVEL_REAL, VCPU_BYTES } from '../../src/generated/layout.js';
import { v2Container, linkedVm } from '../fixtures.js';

const LIOBN = 0x8000_0000n;
const PAGE = 0x10000n;

/** A VM of `host` with one memslot over `ram`, a guest table at LIOBN linked to a fresh v2 container's window. */
function vmWithTable(host: Host, qemu: ReturnType<Host['spawn']>, ram: { ua: bigint; size: bigint }, size: bigint) {
  const { g, fd } = v2Container(host, qemu, ram, { pageShift: 16, windowSize: 1n << 30n, levels: 2 });
  const vm = linkedVm(qemu, ram, g, { liobn: LIOBN, pageShift: 16, size });
  const t = vm.tables.get(LIOBN)!;
  const vcpu = vm.vcpu(0, { thread: qemu });
  return { vm, fd, t, vcpu };
}

/** H_PUT_TCE(LIOBN, ioba, tce) in the registers of `vcpu`, then the chain (vcpu.hcall()). */
function put(vcpu: { regs: BigUint64Array; hcall(): number }, ioba: bigint, tce: bigint): number {
  vcpu.regs[3] = BigInt(H.PUT_TCE);
  vcpu.regs[4] = LIOBN;
  vcpu.regs[5] = ioba;
  vcpu.regs[6] = tce;
  return vcpu.hcall();
}

/** The heap as it stands, but the register block at `vcpu` (which every call writes: rcuSeq, level). */
function heap(host: Host, vcpu: number): Uint8Array {
  const h = host.mem.u8.slice(HEAP_BASE, host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP));
  h.fill(0, vcpu - HEAP_BASE, vcpu - HEAP_BASE + VCPU_BYTES);
  return h;
}

describe('H_PUT_TCE real mode: the cached LIOBN lookup never outlives its table', () => {
  for (const engine of ['wasm', 'native'] as const) {
    it.skipIf(engine === 'native' && !nativeAvailable)(`${engine}: a destroyed VM's table is not found again; a new VM with the same LIOBN gets its own`, async () => {
      const host = await Host.create({ engine, maxMemory: 32 << 20 });
      const qemu = host.spawn();
      const ram = qemu.mmap(4n << 20n);
      const a = vmWithTable(host, qemu, ram, 1n << 12n);
      // Twice: the first call allocates the guest-table page in virtual mode, the second is real mode
      // (and fills the cache).
      expect(put(a.vcpu, 5n * PAGE, (5n * PAGE) | 3n)).toBe(H.SUCCESS);
      expect(put(a.vcpu, 5n * PAGE, (6n * PAGE) | 3n)).toBe(H.SUCCESS);
      expect(a.vcpu.lastLevel).toBe('real');
      expect(a.vm.guestEntry(a.t, 5n)).toBe((6n * PAGE) | 3n);
      a.vm.destroy();
      // The old vCPU still runs: its VM has no table any more, so real mode defers and nothing changes.
      a.vcpu.regs[3] = BigInt(H.PUT_TCE);
      a.vcpu.regs[6] = (7n * PAGE) | 3n;
      const before = heap(host, a.vcpu.desc);
      expect(host.engine.hcall(a.vcpu.desc, LEVEL_REAL)).toBe(H.TOO_HARD);
      expect(Buffer.compare(heap(host, a.vcpu.desc), before)).toBe(0);
      a.vcpu.release();
      // A new VM, the same LIOBN, a smaller table (entry 3000 was inside the old one, not this one).
      const b = vmWithTable(host, qemu, ram, 1n << 11n);
      expect(put(b.vcpu, 5n * PAGE, (8n * PAGE) | 3n)).toBe(H.SUCCESS);
      expect(put(b.vcpu, 5n * PAGE, (9n * PAGE) | 3n)).toBe(H.SUCCESS);
      expect(b.vcpu.lastLevel).toBe('real');
      expect(b.vm.guestEntry(b.t, 5n)).toBe((9n * PAGE) | 3n);
      expect(put(b.vcpu, 3000n * PAGE, (9n * PAGE) | 3n)).toBe(H.PARAMETER);
      expect(b.vcpu.lastLevel).toBe('real');
      host.checkInvariants();
    });

    it.skipIf(engine === 'native' && !nativeAvailable)(`${engine}: two VMs with the same LIOBN, called in turn, each write their own table`, async () => {
      const host = await Host.create({ engine, maxMemory: 32 << 20 });
      const qemu = host.spawn();
      const ram = qemu.mmap(4n << 20n);
      const a = vmWithTable(host, qemu, ram, 1n << 12n);
      const b = vmWithTable(host, qemu, ram, 1n << 12n);
      for (const s of [a, b]) expect(put(s.vcpu, 3n * PAGE, PAGE | 1n)).toBe(H.SUCCESS);
      for (let i = 1n; i <= 6n; i++) {
        const s = i % 2n === 0n ? a : b;
        expect(put(s.vcpu, 3n * PAGE, (i * PAGE) | 3n)).toBe(H.SUCCESS);
        expect(s.vcpu.lastLevel).toBe('real');
        expect(s.vm.guestEntry(s.t, 3n)).toBe((i * PAGE) | 3n);
      }
      expect(a.vm.guestEntry(a.t, 3n)).toBe((6n * PAGE) | 3n);
      expect(b.vm.guestEntry(b.t, 3n)).toBe((5n * PAGE) | 3n);
      host.checkInvariants();
    });
  }
});
