// Spec: docs/semantics.md §8.1 (guest-visible model), §8.2 (QEMU hcalls; KVM's handlers differ), §9 V1–V17, in both profiles.
import { describe, expect, it } from 'vitest';
import { H, DmaFault } from '../../src/index.js';
import { MiB, guestSetup, snap, expectUnchanged, isIommuEvent } from './helpers.js';

const L0 = 0x80000000n;
const ENTRIES = 262144n; // 1 GiB of 4K pages at bus 0
const G = 0x200000n; // a page-aligned guest physical address in RAM
const LIST = 0x100000; // where INDIRECT lists go (guest physical, 4K aligned)
const PARAM_R3 = BigInt.asUintN(64, -4n);


async function setup(profile: 'qemu' | 'kvm') {
  const { host, vm, vcpu, ram, dv, list, run } = await guestSetup(profile, L0);
  const hc = (nr: number, ...args: bigint[]) => {
    const ret = run(nr, ...args);
    return { ret, r3: vcpu.regs[3]!, r4: vcpu.regs[4]!, level: vcpu.lastLevel };
  };
  const get = (ioba: bigint): bigint => {
    const r = hc(H.GET_TCE, L0, ioba);
    expect(r.ret, `GET_TCE 0x${ioba.toString(16)}`).toBe(H.SUCCESS);
    return r.r4;
  };
  const unchanged = () => {
    const before = snap(host, [vcpu]);
    return (what?: string) => expectUnchanged(host, before, [vcpu], what);
  };
  return { host, vm, vcpu, ram, dv, list, hc, get, unchanged };
}

for (const profile of ['qemu', 'kvm'] as const) {
  const qemuP = profile === 'qemu';
  describe(`vmm §8 conformance scenarios, profile ${profile}${qemuP ? '' : ' (no HW table linked)'}`, () => {
    it('row 1: PUT(liobn0, 0x1000, G|3), then GET → SUCCESS; r4 = G|3', async () => {
      const { hc } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toMatchObject({ ret: H.SUCCESS, r3: 0n });
      expect(hc(H.GET_TCE, L0, 0x1000n)).toMatchObject({ ret: H.SUCCESS, r3: 0n, r4: G | 3n });
      // the neighbours are untouched
      expect(hc(H.GET_TCE, L0, 0n).r4).toBe(0n);
      expect(hc(H.GET_TCE, L0, 0x2000n).r4).toBe(0n);
    });

    it('row 2: GET on an entry never written → SUCCESS, r4 = 0', async () => {
      const { hc } = await setup(profile);
      for (const ioba of [0n, 0x1000n, 0x3ffff000n, 0x12345000n]) expect(hc(H.GET_TCE, L0, ioba)).toMatchObject({ ret: H.SUCCESS, r4: 0n });
    });

    it(`row 3: PUT to an unknown LIOBN, or to 0x1_80000000 → ${qemuP ? 'H_PARAMETER' : 'H_TOO_HARD (exit to the VMM)'}`, async () => {
      const { hc, get, unchanged } = await setup(profile);
      const same = unchanged();
      for (const liobn of [0x80000001n, 0x180000000n, 0x71000000n]) {
        const r = hc(H.PUT_TCE, liobn, 0x1000n, G | 3n);
        if (qemuP) expect(r).toMatchObject({ ret: H.PARAMETER, r3: PARAM_R3, level: 'exit' });
        else expect(r).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
      }
      same();
      expect(get(0x1000n)).toBe(0n);
    });

    it('row 4: PUT at ioba 0x40000000 → H_PARAMETER; at 0x3FFFF000 → SUCCESS', async () => {
      const { hc, get, unchanged } = await setup(profile);
      const same = unchanged();
      expect(hc(H.PUT_TCE, L0, 0x40000000n, G | 3n).ret).toBe(H.PARAMETER);
      expect(hc(H.PUT_TCE, L0, 0x40000fffn, G | 3n).ret).toBe(H.PARAMETER);
      expect(hc(H.PUT_TCE, L0, (1n << 64n) - 0x1000n, G | 3n).ret).toBe(H.PARAMETER);
      same();
      expect(hc(H.PUT_TCE, L0, 0x3ffff000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(get(0x3ffff000n)).toBe(G | 3n);
    });

    it(`row 5: PUT at ioba 0x1234 → ${qemuP ? 'SUCCESS, entry 1 set (ioba rounded down)' : 'H_PARAMETER (misaligned)'}`, async () => {
      const { hc, get, unchanged } = await setup(profile);
      const same = unchanged();
      const r = hc(H.PUT_TCE, L0, 0x1234n, G | 3n);
      if (qemuP) {
        expect(r.ret).toBe(H.SUCCESS);
        expect(get(0x1000n)).toBe(G | 3n);
        expect(get(0n)).toBe(0n);
        expect(get(0x2000n)).toBe(0n);
      } else {
        expect(r.ret).toBe(H.PARAMETER);
        same();
        expect(get(0x1000n)).toBe(0n);
      }
    });

    it(`row 6: PUT G|0x7FC|3 → ${qemuP ? 'GET returns the raw value' : 'kvm: the gpa is misaligned → an error (H_PARAMETER in real mode), nothing stored'}`, async () => {
      const { hc, get, unchanged } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x5000n, G | 3n).ret).toBe(H.SUCCESS); // the guest-table page exists from here on
      if (qemuP) {
        expect(hc(H.PUT_TCE, L0, 0x1000n, G | 0x7fcn | 3n).ret).toBe(H.SUCCESS);
        expect(get(0x1000n)).toBe(G | 0x7fcn | 3n);
      } else {
        const same = unchanged();
        expect(hc(H.PUT_TCE, L0, 0x1000n, G | 0x7fcn | 3n)).toMatchObject({ ret: H.PARAMETER, level: 'real' });
        // a TCE gpa outside RAM cannot be handled in the kernel: exit
        expect(hc(H.PUT_TCE, L0, 0x1000n, (64n * MiB) | 3n)).toMatchObject({ ret: H.TOO_HARD, level: 'exit' });
        same();
        expect(get(0x1000n)).toBe(0n);
        // without permission bits the raw bits are kept (poison)
        expect(hc(H.PUT_TCE, L0, 0x1000n, G | 0x7fcn).ret).toBe(H.SUCCESS);
        expect(get(0x1000n)).toBe(G | 0x7fcn);
      }
    });
    it(`row 6 (${profile}): the translation of ${qemuP ? 'G|0x7FC|3 gives G (the ignored bits are kept, not used)' : 'a poisoned entry G|0x7FC (no permission) is a fault'}`, async () => {
      const { hc, vm } = await setup(profile);
      if (qemuP) {
        expect(hc(H.PUT_TCE, L0, 0x1000n, G | 0x7fcn | 3n).ret).toBe(H.SUCCESS);
        expect(vm.translate(L0, 0x1000n, 'read')).toEqual({ ok: true, gpa: G, pageIova: 0x1000n, pageSize: 0x1000n, perm: 3 });
        expect(vm.translate(L0, 0x1abcn, 'write')).toMatchObject({ ok: true, gpa: G + 0xabcn });
      } else {
        expect(hc(H.PUT_TCE, L0, 0x1000n, G | 0x7fcn).ret).toBe(H.SUCCESS);
        expect(vm.translate(L0, 0x1000n, 'read')).toEqual({ ok: false, fault: 'no-permission' });
      }
    });

    it('row 7 (what exists): after row 1, the entry covering 0x1010 holds G|3', async () => {
      const { hc, get } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(get(0x1000n)).toBe(G | 3n);
      const r = hc(H.GET_TCE, L0, 0x1010n);
      if (qemuP) expect(r).toMatchObject({ ret: H.SUCCESS, r4: G | 3n }); // rounded down
      else expect(r.ret).toBe(H.PARAMETER);
    });
    it(`row 7 (${profile}): translate(liobn0, 0x1010) → GPA G+0x10, page IOVA 0x1000`, async () => {
      const { hc, vm } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(vm.translate(L0, 0x1010n, 'read')).toEqual({ ok: true, gpa: G + 0x10n, pageIova: 0x1000n, pageSize: 0x1000n, perm: 3 });
    });

    it('row 8 (what exists): bit0-only, bit1-only and 0 TCEs are stored as written', async () => {
      const { hc, get } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 1n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x2000n, (G + 0x1000n) | 2n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x3000n, 0n).ret).toBe(H.SUCCESS);
      expect(get(0x1000n)).toBe(G | 1n);
      expect(get(0x2000n)).toBe((G + 0x1000n) | 2n); // the guest table keeps W without R (only the HW TCE gets R added)
      expect(get(0x3000n)).toBe(0n);
    });
    it(`row 8 (${profile}): DMA read/write through bit0-only / bit1-only / 0 TCEs: ok/fault, fault/ok, fault/fault`, async () => {
      const { hc, vm, ram } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 1n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x2000n, (G + 0x1000n) | 2n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x3000n, 0n).ret).toBe(H.SUCCESS);
      const dma = vm.dma(L0);
      ram.bytes![Number(G)] = 0x5a;
      expect([...dma.read(0x1000n, 1)]).toEqual([0x5a]);
      expect(() => dma.write(0x1000n, Uint8Array.of(1))).toThrow(DmaFault);
      expect(() => dma.read(0x2000n, 1)).toThrow(DmaFault);
      dma.write(0x2000n, Uint8Array.of(0xa5));
      expect(ram.bytes![Number(G + 0x1000n)]).toBe(0xa5);
      expect(() => dma.read(0x3000n, 1)).toThrow(DmaFault);
      expect(() => dma.write(0x3000n, Uint8Array.of(1))).toThrow(DmaFault);
      expect(vm.translate(L0, 0x1000n, 'write')).toEqual({ ok: false, fault: 'no-permission' });
      expect(vm.translate(L0, 0x2000n, 'read')).toEqual({ ok: false, fault: 'no-permission' });
    });

    it('row 9 (what exists): outside the window there is no entry: GET → H_PARAMETER', async () => {
      const { hc } = await setup(profile);
      for (const ioba of [0x40000000n, 1n << 59n, 0x400_0000_0000n]) expect(hc(H.GET_TCE, L0, ioba).ret).toBe(H.PARAMETER);
    });
    it(`row 9 (${profile}): translate outside every window → fault`, async () => {
      const { vm } = await setup(profile);
      for (const iova of [0x40000000n, 1n << 59n, 0x400_0000_0000n]) expect(vm.translate(L0, iova, 'read')).toEqual({ ok: false, fault: 'out-of-range' });
      expect(vm.translate(0x80000001n, 0n, 'read')).toEqual({ ok: false, fault: 'no-window' });
    });

    it('row 10: GET out of range → H_PARAMETER; r4 unchanged', async () => {
      const { hc, vcpu, unchanged } = await setup(profile);
      const same = unchanged();
      for (const ioba of [0x40000000n, 0x7fffffff000n, (1n << 64n) - 1n]) {
        const r = hc(H.GET_TCE, L0, ioba);
        expect(r).toMatchObject({ ret: H.PARAMETER, r3: PARAM_R3, r4: L0 });
        expect(vcpu.regs[5]).toBe(ioba);
      }
      same();
    });

    it('row 11: INDIRECT with n=513, or the list at 4K+8 → H_PARAMETER, nothing changed', async () => {
      const { hc, list, get, unchanged } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x8000n, G | 3n).ret).toBe(H.SUCCESS);
      const at = list(Array.from({ length: 513 }, (_, i) => (G + BigInt(i) * 0x1000n) | 3n));
      const same = unchanged();
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x8000n, at, 513n).ret).toBe(H.PARAMETER);
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x8000n, at + 8n, 4n).ret).toBe(H.PARAMETER);
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x8000n, at + 0x800n, 1n).ret).toBe(H.PARAMETER);
      same();
      expect(get(0x8000n)).toBe(G | 3n);
      expect(get(0x9000n)).toBe(0n);
    });

    it('row 12: INDIRECT, 3 big-endian entries at a 4K-aligned address → SUCCESS; 3 consecutive entries set', async () => {
      const { hc, list, get, ram } = await setup(profile);
      const tces = [0x0000000000201003n, 0x0000000000305001n, 0x0000000000407002n];
      const at = list(tces);
      expect(ram.bytes![LIST + 7]).toBe(0x03); // big-endian in guest memory
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x5000n, at, 3n).ret).toBe(H.SUCCESS);
      expect([get(0x5000n), get(0x6000n), get(0x7000n)]).toEqual(tces);
      expect(get(0x4000n)).toBe(0n);
      expect(get(0x8000n)).toBe(0n);
    });

    it(`row 13: INDIRECT at the last page, n=2 → ${qemuP ? '1st entry written, then H_PARAMETER' : 'H_PARAMETER, nothing written'}`, async () => {
      const { hc, list, get, unchanged } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x3fff0000n, G | 3n).ret).toBe(H.SUCCESS); // the last guest-table page exists
      const at = list([G | 3n, (G + 0x1000n) | 3n]);
      const same = unchanged();
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x3ffff000n, at, 2n).ret).toBe(H.PARAMETER);
      if (qemuP) expect(get(0x3ffff000n)).toBe(G | 3n);
      else {
        same();
        expect(get(0x3ffff000n)).toBe(0n);
      }
    });

    it(`row 14: INDIRECT or STUFF with n=0 → ${qemuP ? 'H_PARAMETER' : 'SUCCESS'}, nothing changed`, async () => {
      const { hc, list, get, unchanged } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
      const at = list([(G + 0x1000n) | 3n]);
      const same = unchanged();
      const want = qemuP ? H.PARAMETER : H.SUCCESS;
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, at, 0n).ret).toBe(want);
      expect(hc(H.STUFF_TCE, L0, 0x1000n, 0n, 0n).ret).toBe(want);
      same();
      expect(get(0x1000n)).toBe(G | 3n);
    });

    it('row 15: STUFF(0, 0, 262144) → all cleared; n=262145 → H_PARAMETER with no change', async () => {
      const { hc, list, get, unchanged, vcpu } = await setup(profile);
      const written = [0n, 0x1000n, 0x2000n, 0x10000000n, 0x3ffff000n];
      for (const ioba of written) expect(hc(H.PUT_TCE, L0, ioba, G | 1n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x20000000n, list([G | 3n, G | 2n, G | 1n]), 3n).ret).toBe(H.SUCCESS);
      const same = unchanged();
      expect(hc(H.STUFF_TCE, L0, 0n, 0n, ENTRIES + 1n).ret).toBe(H.PARAMETER);
      same();
      // n fits the table but runs past its end: qemu clears up to the end, then fails (partial); kvm checks the whole range first
      expect(hc(H.STUFF_TCE, L0, 0x3fffe000n, 0n, 3n).ret).toBe(H.PARAMETER);
      if (qemuP) expect(get(0x3ffff000n)).toBe(0n);
      else {
        same();
        expect(get(0x3ffff000n)).toBe(G | 1n);
      }
      expect(hc(H.STUFF_TCE, L0, 0n, 0n, ENTRIES).ret).toBe(H.SUCCESS);
      // every entry reads 0
      let nonzero = 0;
      for (let i = 0n; i < ENTRIES; i++) {
        vcpu.regs[3] = BigInt(H.GET_TCE);
        vcpu.regs[4] = L0;
        vcpu.regs[5] = i << 12n;
        if (vcpu.hcall() !== H.SUCCESS || vcpu.regs[4] !== 0n) nonzero++;
      }
      expect(nonzero).toBe(0);
    });

    it(`row 16: STUFF with value G|3, n=4 → ${qemuP ? '4 entries hold G|3' : 'H_PARAMETER, nothing changed (clearing only)'}`, async () => {
      const { hc, get, unchanged } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x10000n, (G + 0x5000n) | 1n).ret).toBe(H.SUCCESS);
      const same = unchanged();
      const r = hc(H.STUFF_TCE, L0, 0x10000n, G | 3n, 4n);
      if (qemuP) {
        expect(r.ret).toBe(H.SUCCESS);
        for (let i = 0n; i < 4n; i++) expect(get(0x10000n + (i << 12n))).toBe(G | 3n);
        expect(get(0x14000n)).toBe(0n);
      } else {
        expect(r.ret).toBe(H.PARAMETER);
        same();
        expect(get(0x10000n)).toBe((G + 0x5000n) | 1n);
        expect(get(0x11000n)).toBe(0n);
      }
    });
    if (qemuP) {
      it('row 16 (qemu): the 4 IOVA pages translate to G', async () => {
        const { hc, vm } = await setup(profile);
        expect(hc(H.STUFF_TCE, L0, 0x10000n, G | 3n, 4n).ret).toBe(H.SUCCESS);
        for (let i = 0n; i < 4n; i++) expect(vm.translate(L0, 0x10000n + (i << 12n) + 8n, 'write')).toMatchObject({ ok: true, gpa: G + 8n });
        expect(vm.translate(L0, 0x14000n, 'read')).toEqual({ ok: false, fault: 'no-permission' });
      });
    }

    it('row 17 (what exists): the entries after PUT RW, PUT 0, INDIRECT n, STUFF n, and the same value twice', async () => {
      const { hc, list, get } = await setup(profile);
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(get(0x1000n)).toBe(G | 3n);
      expect(hc(H.PUT_TCE, L0, 0x1000n, 0n).ret).toBe(H.SUCCESS);
      expect(get(0x1000n)).toBe(0n);
      const tces = [G | 3n, (G + 0x1000n) | 1n, (G + 0x2000n) | 2n, (G + 0x3000n) | 3n];
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x4000n, list(tces), 4n).ret).toBe(H.SUCCESS);
      expect([get(0x4000n), get(0x5000n), get(0x6000n), get(0x7000n)]).toEqual(tces);
      expect(hc(H.STUFF_TCE, L0, 0x4000n, 0n, 3n).ret).toBe(H.SUCCESS);
      expect([get(0x4000n), get(0x5000n), get(0x6000n), get(0x7000n)]).toEqual([0n, 0n, 0n, tces[3]]);
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(get(0x2000n)).toBe(G | 3n);
    });
    it(`row 17 (${profile}): MAP/UNMAP events (absolute IOVA, 4K), one per PUT / INDIRECT entry / STUFF entry, twice for the same value twice`, async () => {
      const { hc, list, vm } = await setup(profile);
      const ev: string[] = [];
      vm.subscribe(L0, (e) => ev.push(isIommuEvent(e) ? `${e.kind} ${e.iova.toString(16)} ${e.size.toString(16)} ${e.gpa.toString(16)} ${e.perm}` : e.kind));
      expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x1000n, 0n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE_INDIRECT, L0, 0x4000n, list([G | 3n, (G + 0x1000n) | 1n]), 2n).ret).toBe(H.SUCCESS);
      expect(hc(H.STUFF_TCE, L0, 0x4000n, 0n, 2n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x2000n, G | 3n).ret).toBe(H.SUCCESS);
      expect(ev).toEqual([
        'map 1000 1000 200000 3', 'unmap 1000 1000 0 0',
        'map 4000 1000 200000 3', 'map 5000 1000 201000 1',
        'unmap 4000 1000 0 0', 'unmap 5000 1000 0 0',
        'map 2000 1000 200000 3', 'map 2000 1000 200000 3',
      ]);
    });

    it(`§2: every call is completed by ${qemuP ? 'the VMM (level exit)' : 'the kernel (real or virtual mode)'} and counted in vm.stats()`, async () => {
      const { vm, hc } = await setup(profile);
      const r1 = hc(H.PUT_TCE, L0, 0x1000n, G | 3n);
      const r2 = hc(H.PUT_TCE, L0, 0x2000n, G | 3n);
      const r3 = hc(H.GET_TCE, L0, 0x2000n);
      if (qemuP) {
        expect([r1.level, r2.level, r3.level]).toEqual(['exit', 'exit', 'exit']);
        expect(vm.stats().H_PUT_TCE).toEqual({ real: 0, virtual: 0, exit: 2 });
        expect(vm.stats().H_GET_TCE).toEqual({ real: 0, virtual: 0, exit: 1 });
      } else {
        // the first PUT allocates the guest-table page (virtual mode); the rest is real mode
        expect([r1.level, r2.level, r3.level]).toEqual(['virtual', 'real', 'real']);
        expect(vm.stats().H_PUT_TCE).toEqual({ real: 1, virtual: 1, exit: 0 });
        expect(vm.stats().H_GET_TCE).toEqual({ real: 1, virtual: 0, exit: 0 });
      }
    });
  });
}
