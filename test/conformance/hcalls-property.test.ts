// Spec: docs/semantics.md §2.6 (KVM hcall checks and effects), §3 (invariants), §4 (real → virtual → exit); deliberate divergences: whole-range ioba check, check-everything-before-writing.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host, H } from '../../src/index.js';
import { MiB, snap } from './helpers.js';

const L = 0x80000000n; // linked to the VFIO table, page shift = the run's guest page shift, bus 0, 16 MiB
const L2 = 0x80000001n; // not linked: 4K pages, offset 256 (bus 1 MiB), 512 entries
const UNKNOWN = [0x80000002n, 0x180000000n];
const RAM = 1n * MiB; // gpa 0: pre-registered
const RAM2_GPA = 0x1000_0000n; // 256 KiB memslot, NOT pre-registered
const RAM2 = 256n * 1024n;
const NOMEM_GPA = 0x4000_0000n; // outside every memslot
const HW_SHIFT = 12;
const HW_WINDOW = 16n * MiB;

type TceGen =
  | { t: 'ok'; p: number; pg: number }
  | { t: 'zero' }
  | { t: 'poison'; a: bigint }
  | { t: 'mis'; p: number; pg: number; m: number }
  | { t: 'unreg'; p: number; pg: number }
  | { t: 'nomem'; p: number };
type IobaGen = { t: 'in'; i: number } | { t: 'end'; d: number } | { t: 'mis'; i: number; m: number } | { t: 'raw'; v: bigint };
type Op = {
  liobn: number; // 0..7: 0–4 → L, 5 → L2, 6, 7 → unknown
  realOnly: boolean;
  ioba: IobaGen;
} & (
  | { k: 'put'; tce: TceGen }
  | { k: 'indirect'; tces: TceGen[]; n: 'len' | 0 | 512 | 513; where: 'ram' | 'mis' | 'unreg' | 'outside' }
  | { k: 'stuff'; value: TceGen; n: number | 'big' | 'size' }
  | { k: 'get' }
);

const perm = fc.integer({ min: 1, max: 3 });
const pg = fc.nat(1 << 20);
const tceArb: fc.Arbitrary<TceGen> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('ok' as const), p: perm, pg }) },
  { weight: 2, arbitrary: fc.constant({ t: 'zero' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('poison' as const), a: fc.bigInt({ min: 0n, max: (1n << 62n) - 1n }).map((x) => x << 2n) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('mis' as const), p: perm, pg, m: fc.integer({ min: 1, max: 1 << 13 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('unreg' as const), p: perm, pg }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('nomem' as const), p: perm }) },
);
/** Entries of INDIRECT lists: mostly valid, so that whole lists succeed often enough. */
const listTceArb: fc.Arbitrary<TceGen> = fc.oneof(
  { weight: 30, arbitrary: fc.record({ t: fc.constant('ok' as const), p: perm, pg }) },
  { weight: 6, arbitrary: fc.constant({ t: 'zero' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('poison' as const), a: fc.bigInt({ min: 0n, max: (1n << 62n) - 1n }).map((x) => x << 2n) }) },
  { weight: 1, arbitrary: tceArb },
);
const iobaArb: fc.Arbitrary<IobaGen> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('in' as const), i: fc.nat(1 << 20) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('end' as const), d: fc.integer({ min: -3, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('mis' as const), i: fc.nat(1 << 20), m: fc.integer({ min: 1, max: 0xffff }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('raw' as const), v: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }) },
);
const common = { liobn: fc.integer({ min: 0, max: 7 }), realOnly: fc.integer({ min: 0, max: 3 }).map((x) => x === 0), ioba: iobaArb };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ ...common, k: fc.constant('put' as const), tce: tceArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      ...common,
      k: fc.constant('indirect' as const),
      tces: fc.array(listTceArb, { maxLength: 12 }),
      n: fc.oneof({ weight: 8, arbitrary: fc.constant('len' as const) }, { weight: 1, arbitrary: fc.constantFrom(0 as const, 512 as const, 513 as const) }),
      where: fc.oneof({ weight: 6, arbitrary: fc.constant('ram' as const) }, { weight: 1, arbitrary: fc.constantFrom('mis' as const, 'unreg' as const, 'outside' as const) }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      ...common,
      k: fc.constant('stuff' as const),
      value: fc.oneof({ weight: 4, arbitrary: fc.constant({ t: 'zero' as const }) }, { weight: 2, arbitrary: tceArb }),
      n: fc.oneof({ weight: 6, arbitrary: fc.nat(40) }, { weight: 1, arbitrary: fc.constantFrom('big' as const, 'size' as const) }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ ...common, k: fc.constant('get' as const) }) },
);

interface Table {
  liobn: bigint;
  shift: number;
  offset: bigint;
  size: bigint;
  linked: boolean;
}

/** The model's iobaOk (kvmppc_ioba_validate over the whole range: the deliberate divergence). */
function iobaOk(t: Table, ioba: bigint, n: bigint): boolean {
  if (ioba & ((1n << BigInt(t.shift)) - 1n)) return false;
  const idx = ioba >> BigInt(t.shift);
  return idx >= t.offset && n <= t.size && idx - t.offset <= t.size - n;
}

/** What kvmppc_tce_validate (+ the stit checks) answers for one TCE: null = fine. */
function tceCheck(t: Table, tce: bigint): number | null {
  if ((tce & 3n) === 0n) return null;
  const gpa = tce & ~3n;
  const psz = 1n << BigInt(t.shift);
  if (gpa & (psz - 1n)) return H.PARAMETER;
  const inRam = gpa < RAM;
  const inRam2 = gpa >= RAM2_GPA && gpa < RAM2_GPA + RAM2;
  if (!inRam && !inRam2) return H.TOO_HARD;
  if (t.linked && !(inRam && gpa + psz <= RAM)) return H.TOO_HARD; // not pre-registered
  return null;
}


async function world(guestShift: number) {
  const host = await Host.create({ ownerCheck: 'mm', maxMemory: 16 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(RAM);
  const ram2 = qemu.mmap(RAM2);
  const g = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: HW_SHIFT, windowSize: HW_WINDOW, levels: 2 });
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true });
  fd.unmapDma({ iova: 0n, size: 0x1000n });
  const hw = fd.container.windows[0]!.table;
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: RAM, ua: ram.ua });
  vm.addMemslot({ gpa: RAM2_GPA, size: RAM2, ua: ram2.ua });
  const tL: Table = { liobn: L, shift: guestShift, offset: 0n, size: HW_WINDOW >> BigInt(guestShift), linked: true };
  const tL2: Table = { liobn: L2, shift: 12, offset: 256n, size: 512n, linked: false };
  for (const t of [tL, tL2]) vm.createTceTable({ liobn: t.liobn, pageShift: t.shift, offset: t.offset, size: t.size });
  vm.attachGroup(g, L);
  const vcpu = vm.vcpu(0);
  return { host, qemu, ram, ram2, fd, hw, vm, vcpu, tL, tL2 };
}

describe('hypercall property (kvm profile, one VFIO-linked table)', () => {
  for (const guestShift of [12, 16]) {
    it(`random PUT / INDIRECT / STUFF / GET sequences, guest page 2^${guestShift} over 4K HW: invariants, untouched memory on error, GET = model`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 30, size: 'max' }), async (ops) => {
          const w = await world(guestShift);
          const { host, vcpu, hw, ram, ram2, qemu } = w;
          const tables = [w.tL, w.tL, w.tL, w.tL, w.tL, w.tL2];
          const model = new Map<bigint, Map<bigint, bigint>>([[L, new Map()], [L2, new Map()]]);
          const sub = 1n << BigInt(guestShift - HW_SHIFT);
          const regs = vcpu.regs;

          const tceOf = (t: Table, g: TceGen): bigint => {
            const psz = 1n << BigInt(t.shift);
            switch (g.t) {
              case 'ok': return (BigInt(g.pg) % (RAM / psz)) * psz | BigInt(g.p);
              case 'zero': return 0n;
              case 'poison': return g.a;
              case 'mis': return ((BigInt(g.pg) % (RAM / psz)) * psz + BigInt(g.m % Number(psz / 4n) || 1) * 4n) | BigInt(g.p);
              case 'unreg': return (RAM2_GPA + (BigInt(g.pg) % (RAM2 / psz)) * psz) | BigInt(g.p);
              case 'nomem': return NOMEM_GPA | BigInt(g.p);
            }
          };
          const iobaOf = (t: Table, g: IobaGen): bigint => {
            const s = BigInt(t.shift);
            switch (g.t) {
              case 'in': return (t.offset + (BigInt(g.i) % t.size)) << s;
              case 'end': return BigInt.asUintN(64, (t.offset + t.size + BigInt(g.d)) << s);
              case 'mis': return ((t.offset + (BigInt(g.i) % t.size)) << s) + BigInt(g.m % Number(1n << s) || 1);
              case 'raw': return g.v;
            }
          };

          for (const [step, op] of ops.entries()) {
            const known = op.liobn < 6;
            const t = known ? tables[op.liobn]! : w.tL;
            const liobn = known ? t.liobn : UNKNOWN[op.liobn - 6]!;
            const ioba = iobaOf(t, op.ioba);
            const m = model.get(t.liobn)!;
            const relIdx = (ioba >> BigInt(t.shift)) - t.offset;
            let expected: number;
            const writes: [bigint, bigint][] = [];
            let misTce = false;
            let args: bigint[];
            let nr: number;
            if (op.k === 'put') {
              nr = H.PUT_TCE;
              const tce = tceOf(t, op.tce);
              args = [liobn, ioba, tce];
              expected = !iobaOk(t, ioba, 1n) ? H.PARAMETER : tceCheck(t, tce) ?? H.SUCCESS;
              misTce = iobaOk(t, ioba, 1n) && tceCheck(t, tce) === H.PARAMETER;
              writes.push([relIdx, tce]);
            } else if (op.k === 'indirect') {
              nr = H.PUT_TCE_INDIRECT;
              const base = op.tces.map((g) => tceOf(t, g));
              const n = op.n === 'len' ? base.length : op.n;
              const tces = Array.from({ length: n }, (_, i) => (base.length ? base[i % base.length]! : 0n));
              // the list: in pre-registered RAM (4K aligned), misaligned, in the unregistered slot, or nowhere
              let listGpa: bigint;
              let bytes: Uint8Array | undefined;
              let off = 0;
              if (op.where === 'ram' || op.where === 'mis') {
                off = 0xe0000 + (op.where === 'mis' ? 8 : 0);
                listGpa = BigInt(off);
                bytes = ram.bytes;
              } else if (op.where === 'unreg') {
                off = 0x10000;
                listGpa = RAM2_GPA + BigInt(off);
                bytes = ram2.bytes;
              } else listGpa = NOMEM_GPA + 0x3000n;
              if (bytes) {
                const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
                tces.forEach((v, i) => dv.setBigUint64(off + i * 8, v, false));
              }
              args = [liobn, ioba, listGpa, BigInt(n)];
              if (n > 512 || listGpa & 0xfffn) expected = H.PARAMETER;
              else if (!iobaOk(t, ioba, BigInt(n))) expected = H.PARAMETER;
              else if (!bytes) expected = H.TOO_HARD; // the list must translate even when empty (kvmppc_rm_tce_to_ua)
              else {
                expected = tces.map((v) => tceCheck(t, v)).find((x) => x !== null) ?? H.SUCCESS;
                misTce = expected === H.PARAMETER;
              }
              tces.forEach((v, i) => writes.push([relIdx + BigInt(i), v]));
            } else if (op.k === 'stuff') {
              nr = H.STUFF_TCE;
              const value = tceOf(t, op.value);
              const n = op.n === 'big' ? 1n << 40n : op.n === 'size' ? t.size : BigInt(op.n);
              args = [liobn, ioba, value, n];
              expected = !iobaOk(t, ioba, n) || value & 3n ? H.PARAMETER : H.SUCCESS;
              if (expected === H.SUCCESS) for (let i = 0n; i < n; i++) writes.push([relIdx + i, value]);
            } else {
              nr = H.GET_TCE;
              args = [liobn, ioba];
              expected = iobaOk(t, ioba, 1n) ? H.SUCCESS : H.PARAMETER;
            }
            if (!known) expected = H.TOO_HARD;

            const what = `step ${step}: ${op.k} liobn 0x${liobn.toString(16)} ${args.slice(1).map((a) => '0x' + a.toString(16)).join(' ')}${op.realOnly ? ' (real mode only)' : ''}`;
            const before = snap(host, [vcpu]);
            regs[3] = BigInt(nr);
            for (let i = 0; i < 4; i++) regs[4 + i] = args[i] ?? 0n;
            const ret = op.realOnly ? vcpu.hcallRealMode() : vcpu.hcall();
            // A misaligned TCE that real mode did not reach (it deferred first) is virtual mode's to answer:
            // H_TOO_HARD, an exit, from 4.19 (kvmppc_tce_validate, 42de7b9e2167; docs/semantics.md §4.1).
            if (misTce && known && ret === H.TOO_HARD && vcpu.lastLevel === 'exit') expected = H.TOO_HARD;
            if (op.realOnly && ret === H.TOO_HARD) {
              // real mode may always defer; it then changed nothing
            } else {
              expect(ret, what).toBe(expected);
              expect(regs[3], what).toBe(BigInt.asUintN(64, BigInt(ret)));
            }
            if (ret === H.PARAMETER || ret === H.TOO_HARD) {
              const after = snap(host, [vcpu]);
              if (!after.equals(before)) {
                let i = 0;
                while (i < before.length && before[i] === after[i]) i++;
                expect.fail(`${what} → ${ret} changed linear memory at offset ${i} (top ${before.length} → ${after.length})`);
              }
            } else {
              for (const [idx, v] of writes) {
                if (v === 0n) m.delete(idx);
                else m.set(idx, v);
              }
              if (nr === H.GET_TCE) expect(regs[4], `${what}: r4`).toBe(m.get(relIdx) ?? 0n);
            }
            host.checkInvariants();

            // The HW table agrees with the model of L: each valid guest entry maps its `sub` HW entries from its ua.
            const seen = new Set<bigint>();
            for (const [e, tce, ua] of hw.entries()) {
              const gi = e / sub;
              const v = model.get(L)!.get(gi);
              expect(v !== undefined && (v & 3n) !== 0n, `${what}: HW entry 0x${e.toString(16)} is valid (0x${tce.toString(16)}) but guest entry ${gi} holds ${v}`).toBe(true);
              const gpa = (v! & ~3n) + (e % sub) * 0x1000n;
              expect(ua, `${what}: HW entry 0x${e.toString(16)} ua`).toBe(ram.ua + gpa);
              const p = v! & 3n;
              expect(tce, `${what}: HW entry 0x${e.toString(16)}`).toBe(qemu.mm.translate(ram.ua + gpa)!.hpa | (p & 2n ? 3n : p));
              seen.add(e);
            }
            for (const [gi, v] of model.get(L)!) {
              if ((v & 3n) === 0n) continue;
              for (let k = 0n; k < sub; k++) expect(seen.has(gi * sub + k), `${what}: guest entry ${gi} (0x${v.toString(16)}) lacks HW entry ${gi * sub + k}`).toBe(true);
            }
          }

          // Finally every model entry reads back through H_GET_TCE, and a sample of others read 0.
          for (const t of [w.tL, w.tL2]) {
            const m = model.get(t.liobn)!;
            const probe = new Set<bigint>([...m.keys(), 0n, 1n, t.size - 1n, t.size / 2n]);
            for (const idx of probe) {
              regs[3] = BigInt(H.GET_TCE);
              regs[4] = t.liobn;
              regs[5] = (t.offset + idx) << BigInt(t.shift);
              expect(vcpu.hcall()).toBe(H.SUCCESS);
              expect(regs[4], `final GET ${t.liobn.toString(16)}[${idx}]`).toBe(m.get(idx) ?? 0n);
            }
          }
        }),
        { numRuns: 60 },
      );
    });
  }
});
