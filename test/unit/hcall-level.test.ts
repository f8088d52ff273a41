// The engine routine hcall(vcpu, level) runs only the chain's two levels
// (LEVEL_REAL, LEVEL_VIRTUAL). Any other level, which only a caller of the
// engine API can pass, is H_PARAMETER and changes nothing: before, it ran
// the call and counted it into stats[kind·4 + level], past the 16 counters
// of the vCPU block for a level above 3 (a large level wrapped into another
// structure). Both engines, one valid vCPU, a call that would succeed.
import { describe, expect, it } from 'vitest';
import { Host, H } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';
import { HEAP_BASE, LEVEL_NONE, LEVEL_EXIT, LEVEL_REAL, LEVEL_VIRTUAL, HEADER_BASE, HDR_ALLOC_TOP } from '../../src/generated/layout.js';

const LIOBN = 0x8000_0000n;

async function setup(engine: 'wasm' | 'native') {
  const host = await Host.create({ engine, maxMemory: 16 << 20 });
  const p = host.spawn();
  const ram = p.mmap(1n << 22n);
  const vm = p.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1024n });
  const vcpu = vm.vcpu(0);
  return { host, vm, vcpu };
}

/** The bytes of the heap as it stands (everything a call could have written). */
function heap(host: Host): Uint8Array {
  return host.mem.u8.slice(HEAP_BASE, host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP));
}

describe('hcall(vcpu, level) outside the chain’s two levels', () => {
  for (const engine of ['wasm', 'native'] as const) {
    it.skipIf(engine === 'native' && !nativeAvailable)(`${engine}: H_PARAMETER, no r3, no level, no counter, nothing written`, async () => {
      const { host, vm, vcpu } = await setup(engine);
      // A first call, so that the guest table's page exists and the registers hold a finished call.
      vcpu.regs[3] = BigInt(H.PUT_TCE);
      vcpu.regs[4] = LIOBN;
      vcpu.regs[5] = 0x1000n;
      vcpu.regs[6] = 0x2000n | 3n;
      expect(vcpu.hcall()).toBe(H.SUCCESS);
      const level = vcpu.lastLevel;
      for (const odd of [LEVEL_NONE, LEVEL_EXIT, 4, 7, 0x4000_0000, 0xffff_ffff]) {
        vcpu.regs[3] = BigInt(H.PUT_TCE);
        vcpu.regs[6] = 0x3000n | 3n;
        const before = heap(host);
        const stats = JSON.stringify(vm.stats());
        expect(host.engine.hcall(vcpu.desc, odd), `level ${odd}`).toBe(H.PARAMETER);
        expect(vcpu.regs[3], `level ${odd}: r3`).toBe(BigInt(H.PUT_TCE));
        expect(vcpu.lastLevel).toBe(level);
        expect(JSON.stringify(vm.stats())).toBe(stats);
        expect(Buffer.compare(heap(host), before), `level ${odd}: the heap changed`).toBe(0);
      }
      // The same registers at the two real levels still run: the refusal is about the level alone.
      expect(host.engine.hcall(vcpu.desc, LEVEL_REAL)).toBe(H.SUCCESS);
      expect(vcpu.lastLevel).toBe('real');
      vcpu.regs[3] = BigInt(H.PUT_TCE);
      expect(host.engine.hcall(vcpu.desc, LEVEL_VIRTUAL)).toBe(H.SUCCESS);
      expect(vcpu.lastLevel).toBe('virtual');
      expect(vm.stats().H_PUT_TCE).toEqual({ real: 1, virtual: 2, exit: 0 });
      host.checkInvariants();
    });
  }
});
