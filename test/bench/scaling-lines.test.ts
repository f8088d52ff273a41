// The vCPU-scaling setups of bench/scaling.mjs share no written cache line:
// what one vCPU's real-mode H_PUT_TCE writes (found by diffing the linear
// memory around one call that changes its entry) never sits in the 128-byte
// pair (x86's adjacent-line prefetch unit) of a line the other vCPU writes,
// nor of a descriptor either reads on that path: the header, the VM, the mm,
// and the other vCPU's guest table, hardware table, region and memslot. A
// ratio below target on disjoint tables is then not a line the library
// makes them share.
import { describe, expect, it } from 'vitest';
import { setup } from '../../bench/scaling.mjs';
import * as L from '../../dist/generated/layout.js';
import { H, type Vcpu } from '../../dist/index.js';

const PAGE = 0x10000n;
const pair = (a: number) => Math.floor(a / 128);

/** The 64-byte lines one real-mode H_PUT_TCE of `v` writes, remapping its entry to the page after its own and back. */
function writtenLines(mem: WebAssembly.Memory, v: Vcpu): Set<number> {
  const bytes = new Uint8Array(mem.buffer);
  const r = v.regs;
  const [liobn, ioba, tce] = [r[4]!, r[5]!, r[6]!];
  const before = bytes.slice();
  r[3] = BigInt(H.PUT_TCE);
  r[6] = tce + PAGE;
  expect(v.hcall()).toBe(0);
  expect(v.lastLevel).toBe('real');
  const lines = new Set<number>();
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== before[i]) lines.add(i >> 6);
  r[3] = BigInt(H.PUT_TCE); r[4] = liobn; r[5] = ioba; r[6] = tce;
  expect(v.hcall()).toBe(0);
  return lines;
}

/** The descriptors vCPU `v`'s H_PUT_TCE reads that belong to its own table: its guest table, hardware table, region and memslot. */
function ownDescriptors(mem: WebAssembly.Memory, v: Vcpu): number[] {
  const dv = new DataView(mem.buffer);
  const u32 = (a: number) => dv.getUint32(a, true);
  const u64 = (a: number) => dv.getBigUint64(a, true);
  const vm = u32(v.workerData().vcpu + L.VCPU_VM);
  const [liobn, tce] = [v.regs[4]!, v.regs[6]!];
  let stt = u32(vm + L.VM_STTS);
  while (stt && u64(stt + L.STT_LIOBN) !== liobn) stt = u32(stt + L.STT_NEXT);
  const gpa = tce & ~3n;
  let slot = u32(vm + L.VM_SLOTS);
  while (slot && !(gpa >= u64(slot + L.SLOT_GPA) && gpa < u64(slot + L.SLOT_GPA) + u64(slot + L.SLOT_SIZE))) slot = u32(slot + L.SLOT_NEXT);
  const ua = u64(slot + L.SLOT_UA) + gpa - u64(slot + L.SLOT_GPA);
  const shift = BigInt(u32(L.HEADER_BASE + L.HDR_SYS_PAGE_SHIFT));
  let reg = u32(u32(vm + L.VM_MM) + L.MM_REGIONS);
  while (reg && !(ua >= u64(reg + L.REG_UA) && ua < u64(reg + L.REG_UA) + (u64(reg + L.REG_ENTRIES) << shift))) reg = u32(reg + L.REG_NEXT);
  const tbl = u32(stt + L.STT_STITS);
  expect([stt, slot, reg, tbl].every((x) => x !== 0)).toBe(true);
  const out = [];
  const descriptors: [number, number][] = [[stt, L.STT_BYTES], [tbl, L.TBL_BYTES], [reg, L.REG_BYTES], [slot, L.SLOT_BYTES]];
  for (const [d, n] of descriptors) for (let o = 0; o < n; o += 64) out.push(d + o);
  return out;
}

describe('vCPU scaling setups: no shared written line', () => {
  for (const shared of [false, true]) {
    it(`${shared ? 'one shared table' : 'disjoint tables'}: a line one vCPU writes pairs with nothing the other touches`, async () => {
      const { host, vcpus } = await setup('wasm', 'none', 2, shared);
      expect(vcpus).toHaveLength(2);
      const mem = host.memory;
      const writes = vcpus.map((v) => writtenLines(mem, v));
      // The VCPU block (r3, level, stats, rcuSeq), the view and TCE slots, the guest TCE: at least four lines each.
      for (const w of writes) expect(w.size).toBeGreaterThanOrEqual(4);
      const dv = new DataView(mem.buffer);
      const vm = dv.getUint32(vcpus[0]!.workerData().vcpu + L.VCPU_VM, true);
      const common: number[] = [vm, dv.getUint32(vm + L.VM_MM, true)];
      for (let o = 0; o < L.HDR_BYTES; o += 64) common.push(L.HEADER_BASE + o);
      const pairs: [number, number][] = [[0, 1], [1, 0]];
      for (const [a, b] of pairs) {
        const theirs = new Set([...[...writes[b]!].map((l) => pair(l * 64)), ...[...common, ...(shared ? [] : ownDescriptors(mem, vcpus[b]!))].map(pair)]);
        const clash = [...writes[a]!].filter((l) => theirs.has(pair(l * 64))).map((l) => `0x${(l * 64).toString(16)}`);
        expect(clash, `vCPU ${a} writes lines in a 128-byte pair vCPU ${b} touches`).toEqual([]);
      }
      host.checkInvariants();
    });
  }
});
