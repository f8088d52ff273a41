// The silent loss (issue 12): with memory exhausted, virtual-mode H_PUT_TCE, H_PUT_TCE_INDIRECT
// and H_STUFF_TCE of a non-zero value cannot allocate the guest-table page their TCE goes to. The
// kernel's kvmppc_tce_put drops the TCE and answers H_SUCCESS; here the call exits (H_TOO_HARD)
// before anything is written: guest table, hardware table and region counts as they were.
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';

const ENGINES = nativeAvailable ? (['wasm', 'native'] as const) : (['wasm'] as const);
const LIOBN = 0x80000000n;

async function exhausted(engine: 'wasm' | 'native') {
  const host = await Host.create({ ownerCheck: 'mm', engine, maxMemory: 16 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(2n << 20n);
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 12, windowSize: 1n << 30n, levels: 3 });
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1n << 18n });
  vm.attachGroup(group, LIOBN);
  // Guest-table pages hold 2^(pageShift-3) TCEs; entry `far` starts a page never touched.
  const far = 1n << BigInt(host.pageShift - 3);
  // The hardware levels and view levels of [far, far + 16) exist (a VFIO map next to them), so
  // only the guest-table page is missing.
  fd.mapDma({ iova: (far + 15n) << 12n, vaddr: ram.ua, size: 0x1000n, read: true });
  const vcpu = vm.vcpu(0);
  // Guest page 0 and the hardware leaf of entries 0..15 exist: a TCE at entry 5.
  expect(vm.hcall(H.PUT_TCE, LIOBN, 5n << 12n, 0x2000n | 3n).ret).toBe(H.SUCCESS);
  // Exhaust the heap: big blocks, then small ones.
  for (const size of [1 << 20, 1 << 16, 1 << 12, 64]) {
    for (;;) {
      if (host.tryAlloc(size) === 0) break;
    }
  }
  return { host, fd, vm, vcpu, ram, far };
}

describe('silent loss: a TCE the guest table cannot hold is refused, not dropped', () => {
  for (const engine of ENGINES) {
    it(`${engine}: H_PUT_TCE, H_PUT_TCE_INDIRECT and H_STUFF_TCE(value ≠ 0) exit with nothing changed`, async () => {
      const { host, fd, vm, vcpu, ram, far } = await exhausted(engine);
      const table = fd.container.windows[0]!.table;
      const region = fd.container.regions[0]!;
      const mapped = region.mapped;
      const t = vm.tables.get(LIOBN)!;
      const r = vcpu.regs;
      // H_PUT_TCE
      r[3] = BigInt(H.PUT_TCE); r[4] = LIOBN; r[5] = far << 12n; r[6] = 0x3000n | 3n;
      expect(vcpu.hcall()).toBe(H.TOO_HARD);
      expect(vcpu.lastLevel).toBe('exit');
      expect(vm.guestEntry(t, far)).toBe(0n);
      expect(table.get(far)).toBe(0n);
      expect(region.mapped).toBe(mapped);
      // H_PUT_TCE_INDIRECT of 4 entries from far: the list in guest RAM (big-endian).
      const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
      for (let i = 0; i < 4; i++) dv.setBigUint64(0x100000 + i * 8, BigInt(0x4000 + i * 0x1000) | 3n, false);
      r[3] = BigInt(H.PUT_TCE_INDIRECT); r[4] = LIOBN; r[5] = far << 12n; r[6] = 0x100000n; r[7] = 4n;
      expect(vcpu.hcall()).toBe(H.TOO_HARD);
      for (let i = 0n; i < 4n; i++) {
        expect(vm.guestEntry(t, far + i)).toBe(0n);
        expect(table.get(far + i)).toBe(0n);
      }
      expect(region.mapped).toBe(mapped);
      // H_STUFF_TCE of a value without permission bits stores it (KVM allows no others).
      r[3] = BigInt(H.STUFF_TCE); r[4] = LIOBN; r[5] = far << 12n; r[6] = 0x5000n; r[7] = 2n;
      expect(vcpu.hcall()).toBe(H.TOO_HARD);
      expect(vm.guestEntry(t, far)).toBe(0n);
      // Clearing needs no page: it still succeeds.
      r[3] = BigInt(H.STUFF_TCE); r[4] = LIOBN; r[5] = far << 12n; r[6] = 0n; r[7] = 2n;
      expect(vcpu.hcall()).toBe(H.SUCCESS);
      // An entry whose guest page and hardware levels exist still maps.
      r[3] = BigInt(H.PUT_TCE); r[4] = LIOBN; r[5] = 6n << 12n; r[6] = 0x3000n | 3n;
      expect(vcpu.hcall()).toBe(H.SUCCESS);
      expect(vm.guestEntry(t, 6n)).toBe(0x3000n | 3n);
      expect(table.get(6n)).not.toBe(0n);
      host.checkInvariants();
    });
  }
});
