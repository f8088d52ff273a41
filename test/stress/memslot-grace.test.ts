// A removed memslot's descriptor waits for a grace period before reuse (src/kvm/memslot.ts): a vCPU
// inside a hypercall at the removal may have matched it and still be loading its ua and gpa, so the
// next addMemslot takes another descriptor until that vCPU has left; the list stays bounded
// (MAX_MEMSLOTS descriptors, live or removed: EBUSY past it), and a VM has at most MAX_MEMSLOTS
// memslots (EINVAL, KVM_USER_MEM_SLOTS).
import { describe, expect, it } from 'vitest';
import { Host, type Vm } from '../../src/index.js';
import { nativeAvailable } from '../differential/support.js';
import { VCPU_RCU_SEQ } from './reclaim-support.js';
import { MAX_MEMSLOTS, slotDesc } from '../../src/kvm/memslot.js';
import { SlotView, VmView } from '../../src/generated/views.js';

const ENGINES = nativeAvailable ? (['wasm', 'native'] as const) : (['wasm'] as const);
const MiB = 1n << 20n;
const B = 16n * MiB;

async function world(engine: 'wasm' | 'native') {
  const host = await Host.create({ engine });
  const qemu = host.spawn();
  const ram = qemu.mmap(4n * MiB);
  const more = qemu.mmap(MiB);
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.addMemslot({ gpa: B, size: more.size, ua: more.ua });
  const vcpu = vm.vcpu(0);
  // What a worker's hypercall entry and exit store (src/core/reclaim.ts): odd inside, even outside.
  const seq = host.mem.getU32(vcpu.desc + VCPU_RCU_SEQ);
  expect(seq % 2).toBe(0);
  const enter = (): void => host.mem.setU32(vcpu.desc + VCPU_RCU_SEQ, host.mem.getU32(vcpu.desc + VCPU_RCU_SEQ) + 1);
  const leave = enter;
  return { host, qemu, ram, more, vm, enter, leave };
}

/** The descriptors in the VM's list, in list order. */
function listed(vm: Vm): SlotView[] {
  const mem = vm.host.mem;
  const out: SlotView[] = [];
  for (let at = new VmView(mem, vm.desc).slots; at !== 0; at = out[out.length - 1]!.next) out.push(new SlotView(mem, at));
  return out;
}

describe('memslot removal: the descriptor is reused only after a grace period', () => {
  for (const engine of ENGINES) {
    it(`${engine}: removed while a vCPU is inside a hypercall, the descriptor keeps its gpa and ua until the vCPU leaves`, async () => {
      const { host, qemu, more, vm, enter, leave } = await world(engine);
      const old = slotDesc(vm, vm.memslots[1]!);
      expect(old.gpa).toBe(B);
      enter();
      vm.removeMemslot(B);
      expect(old.size).toBe(0n);
      const other = qemu.mmap(MiB);
      vm.addMemslot({ gpa: 32n * MiB, size: other.size, ua: other.ua });
      // A new descriptor: the removed one still says what a vCPU that matched it before the removal reads.
      const fresh = slotDesc(vm, vm.memslots[1]!);
      expect(fresh.at).not.toBe(old.at);
      expect([old.gpa, old.ua, old.size]).toEqual([B, more.ua, 0n]);
      expect(listed(vm).map((d) => d.at)).toContain(old.at);
      expect(vm.slotsInGrace.has(old.at)).toBe(true);
      host.checkInvariants();
      // The vCPU leaves: its grace period ends at the next add, which reuses the descriptor.
      leave();
      const third = qemu.mmap(MiB);
      const top = host.stats().memory.heapTop;
      vm.addMemslot({ gpa: 48n * MiB, size: third.size, ua: third.ua });
      expect(host.stats().memory.heapTop).toBe(top);
      expect(slotDesc(vm, vm.memslots[2]!).at).toBe(old.at);
      expect([old.gpa, old.ua, old.size]).toEqual([48n * MiB, third.ua, MiB]);
      expect(vm.slotsInGrace.size).toBe(0);
      expect(listed(vm)).toHaveLength(3);
      host.checkInvariants();
    });

    it(`${engine}: remove and add with a vCPU that never leaves: the list stops at MAX_MEMSLOTS, then EBUSY changes nothing`, async () => {
      const { host, vm, more, enter, leave } = await world(engine);
      enter();
      let busy: unknown;
      let cycles = 0;
      for (; cycles < 2 * MAX_MEMSLOTS; cycles++) {
        vm.removeMemslot(B);
        try {
          vm.addMemslot({ gpa: B, size: more.size, ua: more.ua });
        } catch (e) {
          busy = e;
          break;
        }
      }
      // Two live at first: each cycle took a new descriptor until the list held MAX_MEMSLOTS.
      expect(cycles).toBe(MAX_MEMSLOTS - 2);
      expect((busy as { code?: string }).code).toBe('EBUSY');
      expect(String(busy)).toMatch(/wait for a vCPU to leave the hypercall/);
      expect(listed(vm)).toHaveLength(MAX_MEMSLOTS);
      expect(vm.memslots.map((s) => s.gpa)).toEqual([0n]);
      const blocks = host.stats().memory.heapBlocks;
      expect(() => vm.addMemslot({ gpa: B, size: more.size, ua: more.ua })).toThrow(/EBUSY/);
      expect(host.stats().memory.heapBlocks).toBe(blocks);
      expect(vm.memslots.map((s) => s.gpa)).toEqual([0n]);
      host.checkInvariants();
      // Once the vCPU has left, the add goes through on a descriptor of the list.
      leave();
      vm.addMemslot({ gpa: B, size: more.size, ua: more.ua });
      expect(host.stats().memory.heapBlocks).toBe(blocks);
      expect(listed(vm)).toHaveLength(MAX_MEMSLOTS);
      expect(vm.slotsInGrace.size).toBe(0);
      host.checkInvariants();
    });
  }

  it('a VM has at most MAX_MEMSLOTS memslots (KVM_USER_MEM_SLOTS): one more is EINVAL and changes nothing', async () => {
    const host = await Host.create();
    const qemu = host.spawn();
    const page = 1n << BigInt(host.pageShift);
    const ram = qemu.mmap(page);
    const vm = qemu.createVm();
    for (let i = 0; i < MAX_MEMSLOTS; i++) vm.addMemslot({ gpa: BigInt(i) * page, size: page, ua: ram.ua });
    const blocks = host.stats().memory.heapBlocks;
    expect(() => vm.addMemslot({ gpa: BigInt(MAX_MEMSLOTS) * page, size: page, ua: ram.ua })).toThrow(/EINVAL.*KVM_USER_MEM_SLOTS/);
    expect(vm.memslots).toHaveLength(MAX_MEMSLOTS);
    expect(host.stats().memory.heapBlocks).toBe(blocks);
    vm.removeMemslot(0n);
    vm.addMemslot({ gpa: BigInt(MAX_MEMSLOTS) * page, size: page, ua: ram.ua });
    expect(listed(vm)).toHaveLength(MAX_MEMSLOTS);
    host.checkInvariants();
  });
});
