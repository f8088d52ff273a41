// Spec: docs/semantics.md §8.2 (PUT notifies before returning), §8.5 (per-entry events, absolute IOVAs, replay), §9 V17–V18, in both profiles.
import { describe, expect, it, vi } from 'vitest';
import { H, type IommuEvent, type VmEvent } from '../../src/index.js';
import { MiB, guestSetup, isIommuEvent } from './helpers.js';

const L0 = 0x80000000n;
const L1 = 0x80000001n;
const ENTRIES = 262144n;
const G = 0x200000n;
const DDW = 1n << 59n;

async function setup(profile: 'qemu' | 'kvm') {
  const { host, vm, vcpu, list, run: hc } = await guestSetup(profile, L0);
  const events: VmEvent[] = [];
  const record = (liobn: bigint | '*' = '*') => vm.subscribe(liobn, (e) => events.push(e));
  return { host, vm, vcpu, list, hc, events, record };
}

const map = (iova: bigint, gpa: bigint, perm: number, liobn = L0, size = 0x1000n): IommuEvent => ({ liobn, kind: 'map', iova, size, gpa, perm });
const unmap = (iova: bigint, gpa = 0n, liobn = L0, size = 0x1000n): IommuEvent => ({ liobn, kind: 'unmap', iova, size, gpa, perm: 0 });

for (const profile of ['qemu', 'kvm'] as const) {
  const qemuP = profile === 'qemu';
  describe(`vmm §5 map/unmap events, profile ${profile}`, () => {
    it('row 17: PUT RW → MAP (absolute IOVA, 4K); PUT 0 → UNMAP; INDIRECT n → n events; STUFF n → n events; the same value twice → 2 events', async () => {
      const { hc, list, events, record } = await setup(profile);
      record();
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toBe(H.SUCCESS);
      expect(events).toEqual([map(0x1000n, G, 3)]);
      events.length = 0;
      expect(hc(H.PUT_TCE, L0, 0x1000n, 0n)).toBe(H.SUCCESS);
      expect(events).toEqual([unmap(0x1000n)]);
      events.length = 0;
      const tces = [G | 3n, (G + 0x1000n) | 1n, 0n, (G + 0x3000n) | 2n];
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x4000n, list(tces), 4n)).toBe(H.SUCCESS);
      expect(events).toEqual([map(0x4000n, G, 3), map(0x5000n, G + 0x1000n, 1), unmap(0x6000n), map(0x7000n, G + 0x3000n, 2)]);
      events.length = 0;
      expect(hc(H.STUFF_TCE, L0, 0x4000n, 0n, 3n)).toBe(H.SUCCESS);
      expect(events).toEqual([unmap(0x4000n), unmap(0x5000n), unmap(0x6000n)]);
      events.length = 0;
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n)).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n)).toBe(H.SUCCESS);
      expect(events).toEqual([map(0x2000n, G, 3), map(0x2000n, G, 3)]);
    });

    it('row 17: events carry absolute IOVAs (a window at 1<<59 with 64K pages) and are delivered before hcall() returns', async () => {
      const { vm, hc, list, events, record, vcpu } = await setup(profile);
      vm.createTceTable({ liobn: L1, pageShift: 16, offset: DDW >> 16n, size: 1n << 20n });
      let seenR3: bigint | undefined;
      vm.subscribe(L1, () => {
        seenR3 ??= vcpu.regs[3];
      });
      record(L1);
      expect(hc(H.PUT_TCE, L1, DDW + 0x30000n, 0x10000n | 3n)).toBe(H.SUCCESS);
      expect(seenR3).toBe(0n); // the status is already in r3 when the event arrives, and hcall() has not returned yet
      expect(hc(H.PUT_TCE_INDIRECT, L1, DDW + 0x50000n, list([0x20000n | 1n, 0x30000n | 3n]), 2n)).toBe(H.SUCCESS);
      expect(events).toEqual([map(DDW + 0x30000n, 0x10000n, 3, L1, 0x10000n), map(DDW + 0x50000n, 0x20000n, 1, L1, 0x10000n), map(DDW + 0x60000n, 0x30000n, 3, L1, 0x10000n)]);
    });

    it('the gpa is the TCE with the page bits cleared; a cleared entry keeps its raw address (QEMU translated_addr)', async () => {
      const { hc, events, record } = await setup(profile);
      record();
      expect(hc(H.PUT_TCE, L0, 0x9000n, G | 3n)).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x9000n, G)).toBe(H.SUCCESS); // no permission: poison, kept raw
      expect(events).toEqual([map(0x9000n, G, 3), unmap(0x9000n, G)]);
    });

    it(`a partial failure: INDIRECT at the last page with n=2 and STUFF past the end → ${qemuP ? 'events only for the entries written' : 'no events (nothing written)'}`, async () => {
      const { hc, list, events, record } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x3fff0000n, G | 3n)).toBe(H.SUCCESS); // the last guest-table page exists (kvm real mode)
      record();
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x3ffff000n, list([G | 3n, (G + 0x1000n) | 3n]), 2n)).toBe(H.PARAMETER);
      expect(hc(H.STUFF_TCE, L0, 0x3fffd000n, 0n, 5n)).toBe(H.PARAMETER);
      if (qemuP) expect(events).toEqual([map(0x3ffff000n, G, 3), unmap(0x3fffd000n), unmap(0x3fffe000n), unmap(0x3ffff000n)]);
      else expect(events).toEqual([]);
    });

    it('failed calls send nothing: out of range, unknown LIOBN, n=513, a misaligned list, n=0, GET', async () => {
      const { hc, list, events, record } = await setup(profile);
      record();
      const at = list([G | 3n]);
      hc(H.PUT_TCE, L0, 0x40000000n, G | 3n);
      hc(H.PUT_TCE, 0x71000000n, 0x1000n, G | 3n);
      hc(H.PUT_TCE, L0 | (1n << 32n), 0x1000n, G | 3n);
      hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, at, 513n);
      hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, at + 8n, 1n);
      hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, at, 0n);
      hc(H.STUFF_TCE, L0, 0x1000n, 0n, 0n);
      hc(H.STUFF_TCE, L0, 0n, 0n, ENTRIES + 1n);
      hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, 64n * MiB, 1n); // the list is not in RAM
      hc(H.GET_TCE, L0, 0x1000n);
      expect(events).toEqual([]);
    });

    if (!qemuP) {
      it('kvm: a call that exits to the VMM (H_TOO_HARD) wrote nothing and sends nothing', async () => {
        const { hc, events, record } = await setup(profile);
        record();
        expect(hc(H.PUT_TCE, L0, 0x1000n, (64n * MiB) | 3n)).toBe(H.TOO_HARD);
        expect(hc(H.PUT_TCE, 0x1234n, 0x1000n, G | 3n)).toBe(H.TOO_HARD);
        expect(events).toEqual([]);
      });
    }

    it('subscribe(liobn) sees only that LIOBN, "*" sees all, in subscription order; unsubscribe stops delivery', async () => {
      const { vm, hc } = await setup(profile);
      vm.createTceTable({ liobn: L1, pageShift: 12, offset: 0n, size: 1024n });
      const seen: string[] = [];
      const offAll = vm.subscribe('*', (e) => seen.push(`all ${e.liobn.toString(16)}`));
      const off0 = vm.subscribe(L0, (e) => seen.push(`L0 ${isIommuEvent(e) ? e.iova.toString(16) : e.kind}`));
      vm.subscribe(0x12345n, () => seen.push('never'));
      expect(vm.events.active).toBe(true);
      hc(H.PUT_TCE, L0, 0x1000n, G | 3n);
      hc(H.PUT_TCE, L1, 0x2000n, G | 3n);
      expect(seen).toEqual(['all 80000000', 'L0 1000', 'all 80000001']);
      off0();
      off0(); // idempotent
      hc(H.PUT_TCE, L0, 0x3000n, G | 3n);
      expect(seen.slice(3)).toEqual(['all 80000000']);
      offAll();
      hc(H.PUT_TCE, L0, 0x3000n, G | 3n);
      expect(seen.length).toBe(4);
    });

    it('the fast path: with no subscriber left, events.active is false and hcall() takes the plain chain', async () => {
      const { vm, hc } = await setup(profile);
      expect(vm.events.active).toBe(false);
      const off = vm.subscribe('*', () => {});
      expect(vm.events.active).toBe(true);
      off();
      expect(vm.events.active).toBe(false);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toBe(H.SUCCESS);
    });

    it('a subscriber that throws does not stop the others; the call is complete and the first error is rethrown', async () => {
      const { vm, vcpu, hc } = await setup(profile);
      const seen: (bigint | string)[] = [];
      vm.subscribe('*', () => {
        throw new Error('listener failed');
      });
      vm.subscribe('*', (e) => seen.push(isIommuEvent(e) ? e.iova : e.kind));
      expect(() => hc(H.STUFF_TCE, L0, 0x1000n, 0n, 2n)).toThrow('listener failed');
      expect(seen).toEqual([0x1000n, 0x2000n]);
      expect(vcpu.regs[3]).toBe(0n);
    });

    it('vm.hcall() (the friendly form) notifies too', async () => {
      const { vm, events, record } = await setup(profile);
      record(L0);
      expect(vm.hcall(H.PUT_TCE, L0, 0x7000n, G | 1n).ret).toBe(H.SUCCESS);
      expect(events).toEqual([map(0x7000n, G, 1)]);
    });

    it('row 18: subscribe, then replay with entries {1:RW, 2:0, 5:RO} → MAP 0x1000, then MAP 0x5000', async () => {
      const { vm, hc, events, record } = await setup(profile);
      hc(H.PUT_TCE, L0, 0x5000n, (G + 0x5000n) | 1n);
      hc(H.PUT_TCE, L0, 0x2000n, G | 3n);
      hc(H.PUT_TCE, L0, 0x2000n, 0n);
      hc(H.PUT_TCE, L0, 0x1000n, (G + 0x1000n) | 3n);
      record();
      const replayed: IommuEvent[] = [];
      vm.replay(L0, (e) => replayed.push(e));
      expect(replayed).toEqual([map(0x1000n, G + 0x1000n, 3), map(0x5000n, G + 0x5000n, 1)]);
      expect(events).toEqual([]); // replay goes to its callback only
    });

    it('replay on a sparse 2^24-entry window at 1<<59: ascending IOVA, only the mapped entries, reading only the guest-table pages that exist', async () => {
      const { host, vm, hc } = await setup(profile);
      vm.createTceTable({ liobn: L1, pageShift: 16, offset: DDW >> 16n, size: 1n << 24n });
      const idxs = [0xfffffen, 3n, 0x800000n, 0x2000n, 0x1fffn, 0xffffffn];
      for (const i of idxs) expect(hc(H.PUT_TCE, L1, DDW + (i << 16n), (i & 0xffn) << 16n | 2n)).toBe(H.SUCCESS);
      hc(H.PUT_TCE, L1, DDW + (0x800000n << 16n), 0n); // cleared again
      const got: IommuEvent[] = [];
      // The walk's cost, counted rather than timed: the entries it reads (one low word each).
      const reads = vi.spyOn(host.mem, 'lowWordAt');
      vm.replay(L1, (e) => got.push(e));
      const entryReads = reads.mock.calls.length;
      reads.mockRestore();
      const want = [...idxs].filter((i) => i !== 0x800000n).sort((a, b) => (a < b ? -1 : 1));
      expect(got.map((e) => e.iova)).toEqual(want.map((i) => DDW + (i << 16n)));
      expect(got.every((e) => e.kind === 'map' && e.perm === 2 && e.size === 0x10000n && e.liobn === L1)).toBe(true);
      // The six PUTs touched 4 of the table's 2048 pages of 8192 entries (host pages of 64 KiB):
      // a walk of the pages that exist reads at most 4 × 8192 entries; one of every entry, 2^24.
      // At least each mapping is read: a walk that stopped reading through mem.lowWordAt must be recounted here.
      const perPage = (1 << host.pageShift) / 8;
      expect(perPage).toBe(8192);
      expect(entryReads).toBeGreaterThanOrEqual(got.length);
      expect(entryReads).toBeLessThanOrEqual(4 * perPage);
    });

    it('replay of an unknown LIOBN gives nothing; arguments are validated', async () => {
      const { vm } = await setup(profile);
      const got: IommuEvent[] = [];
      vm.replay(0x1234n, (e) => got.push(e));
      expect(got).toEqual([]);
      expect(() => vm.replay('1' as unknown as bigint, () => {})).toThrow(TypeError);
      expect(() => vm.replay(L0, 'f' as unknown as () => void)).toThrow(/fn/);
      expect(() => vm.subscribe(L0, undefined as unknown as () => void)).toThrow(TypeError);
      expect(() => vm.subscribe('all' as '*', () => {})).toThrow(/liobn/);
      expect(() => vm.subscribe(-1n, () => {})).toThrow(RangeError);
    });
  });
}
