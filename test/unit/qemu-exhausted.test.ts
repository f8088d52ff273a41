// The qemu profile with the heap exhausted. QEMU allocates a guest TCE table whole when it is
// created (spapr_tce_alloc_table), so its put_tce_emu cannot fail for want of memory; this
// profile allocates guest-table pages on first use. When the page a non-zero TCE needs cannot be
// allocated, the guest gets H_HARDWARE and that TCE is not stored (never H_SUCCESS with the TCE
// dropped); entries before it in an H_PUT_TCE_INDIRECT or H_STUFF_TCE stay written, as QEMU's
// loops stop at the first entry that fails. Clearing needs no page and still succeeds.
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';

const ENGINES = nativeAvailable ? (['wasm', 'native'] as const) : (['wasm'] as const);
const LIOBN = 0x71000000n;

async function exhausted(engine: 'wasm' | 'native') {
  const host = await Host.create({ engine, maxMemory: 16 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(2n << 20n);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1n << 18n });
  const vcpu = vm.vcpu(0);
  const r = vcpu.regs;
  // Entries per guest-table page; entry `far` starts a page never touched.
  const perPage = 1n << BigInt(host.pageShift - 3);
  const far = 4n * perPage;
  r[3] = BigInt(H.PUT_TCE); r[4] = LIOBN; r[5] = 5n << 12n; r[6] = 0x2000n | 3n;
  expect(vcpu.hcall()).toBe(H.SUCCESS);
  // Bounded: 16 MiB holds at most 2^18 blocks of 64 bytes.
  for (const size of [1 << 20, 1 << 16, 1 << 12, 64]) {
    let n = 0;
    while (host.tryAlloc(size) !== 0) expect(++n).toBeLessThan(1 << 18);
  }
  return { host, vm, vcpu, ram, far, perPage };
}

describe('qemu profile, heap exhausted: a TCE with no guest-table page is H_HARDWARE, not dropped', () => {
  for (const engine of ENGINES) {
    it(`${engine}: H_PUT_TCE, H_PUT_TCE_INDIRECT and H_STUFF_TCE`, async () => {
      const { host, vm, vcpu, ram, far, perPage } = await exhausted(engine);
      const t = vm.tables.get(LIOBN)!;
      const r = vcpu.regs;
      r[3] = BigInt(H.PUT_TCE); r[4] = LIOBN; r[5] = far << 12n; r[6] = 0x3000n | 3n;
      expect(vcpu.hcall()).toBe(H.HARDWARE);
      expect(r[3]).toBe(BigInt.asUintN(64, BigInt(H.HARDWARE)));
      expect(vm.guestEntry(t, far)).toBe(0n);
      // INDIRECT of 4 entries straddling the end of the present page 0: the first two land, the third fails.
      const start = perPage - 2n;
      const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
      for (let i = 0; i < 4; i++) dv.setBigUint64(0x100000 + i * 8, BigInt(0x4000 + i * 0x1000) | 3n, false);
      r[3] = BigInt(H.PUT_TCE_INDIRECT); r[4] = LIOBN; r[5] = start << 12n; r[6] = 0x100000n; r[7] = 4n;
      expect(vcpu.hcall()).toBe(H.HARDWARE);
      expect(vm.guestEntry(t, start)).toBe(0x4000n | 3n);
      expect(vm.guestEntry(t, start + 1n)).toBe(0x5000n | 3n);
      expect(vm.guestEntry(t, start + 2n)).toBe(0n);
      expect(vm.guestEntry(t, start + 3n)).toBe(0n);
      // STUFF over the same straddle: page 0's entries filled, then H_HARDWARE.
      r[3] = BigInt(H.STUFF_TCE); r[4] = LIOBN; r[5] = start << 12n; r[6] = 0x9000n | 1n; r[7] = 4n;
      expect(vcpu.hcall()).toBe(H.HARDWARE);
      expect(vm.guestEntry(t, start)).toBe(0x9000n | 1n);
      expect(vm.guestEntry(t, start + 1n)).toBe(0x9000n | 1n);
      expect(vm.guestEntry(t, start + 2n)).toBe(0n);
      expect(vm.guestEntry(t, start + 3n)).toBe(0n);
      // Clearing needs no page.
      r[3] = BigInt(H.STUFF_TCE); r[4] = LIOBN; r[5] = start << 12n; r[6] = 0n; r[7] = 4n;
      expect(vcpu.hcall()).toBe(H.SUCCESS);
      expect(vm.guestEntry(t, start)).toBe(0n);
      r[3] = BigInt(H.PUT_TCE); r[4] = LIOBN; r[5] = far << 12n; r[6] = 0n;
      expect(vcpu.hcall()).toBe(H.SUCCESS);
      expect(vm.guestEntry(t, far)).toBe(0n);
      // A page that exists still takes a TCE.
      r[3] = BigInt(H.PUT_TCE); r[4] = LIOBN; r[5] = 6n << 12n; r[6] = 0x3000n | 3n;
      expect(vcpu.hcall()).toBe(H.SUCCESS);
      expect(vm.guestEntry(t, 6n)).toBe(0x3000n | 3n);
      host.checkInvariants();
    });
  }
});
