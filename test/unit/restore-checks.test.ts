// The restore's checks one by one (issue 12 item 4): each edit below, given a recomputed checksum,
// was accepted before and is now refused with a SnapshotError naming the field, before any object
// is built; and checkInvariants() terminates on the same corruptions in a live host's memory.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Host, H, InvariantError } from '../../src/index.js';
import { SnapshotError } from '../../src/snapshot/fsck/read.js';
import { MmView, RegView, TblView, SttView, SlotView, VmView } from '../../src/generated/views.js';
import { HEADER_BASE, HEAP_BASE, HDR_ALLOC_TOP, HDR_ALLOC_BLOCKS } from '../../src/generated/layout.js';

const LIOBN = 0x80000000n;

async function host() {
  const h = await Host.create({ ownerCheck: 'mm', maxMemory: 8 << 20 });
  const p = h.spawn();
  const ram = p.mmap(2n << 20n);
  const g = h.addGroup();
  const fd = p.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 16, windowSize: 1n << 28n, levels: 2 });
  fd.createWindow({ pageShift: 16, windowSize: 1n << 24n, levels: 2 });
  fd.mapDma({ iova: 0x10000n, vaddr: ram.ua + 0x20000n, size: 0x20000n, read: true, write: true });
  const vm = p.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 4096n });
  vm.attachGroup(g, LIOBN);
  expect(vm.hcall(H.PUT_TCE, LIOBN, 0x40000n, 0x60000n | 3n).ret).toBe(0);
  h.checkInvariants();
  const table = fd.container.windows[0]!.table;
  const mm = p.mm;
  const region = new MmView(h.mem, mm.desc).regions;
  return { h, p, ram, fd, vm, table, mm, region };
}

type Snap = { format: string; version: number; checksum: string; body: { memory: { pages: [number, string][] } } & Record<string, unknown> };
const snapOf = (h: Host): Snap => JSON.parse(JSON.stringify(h.snapshot()));
const reseal = (s: Snap): Snap => ({ ...s, checksum: createHash('sha256').update(JSON.stringify(s.body)).digest('hex') });

/** Writes a u32 into a snapshot's saved memory at `addr`. */
function poke(s: Snap, addr: number, v: number): void {
  const page = addr & ~4095;
  let e = s.body.memory.pages.find(([off]) => off === page);
  if (!e) {
    e = [page, Buffer.alloc(4096).toString('base64')];
    s.body.memory.pages.push(e);
    s.body.memory.pages.sort((a, b) => a[0] - b[0]);
  }
  const b = Buffer.from(e[1], 'base64');
  b.writeUInt32LE(v >>> 0, addr & 4095);
  e[1] = b.toString('base64');
}

/** The SnapshotError a restore of `s` throws. */
function refusal(s: Snap): SnapshotError {
  try {
    Host.restore(reseal(s));
  } catch (e) {
    if (e instanceof SnapshotError) return e;
    throw e;
  }
  throw new Error('the snapshot was accepted');
}

describe('Host.restore checks every field', () => {
  it('the issue\'s cases: a deleted descriptor, a page shift the memory was not made with, an owner check outside its set', async () => {
    const { h } = await host();
    const s = snapOf(h);
    delete (s.body.mms as Record<string, unknown>[])[0]!.desc;
    expect(refusal(s).message).toMatch(/^Host\.restore: body\.mms\[0\]\.desc: is missing$/);
    const s2 = snapOf(h);
    (s2.body.options as Record<string, unknown>).pageShift = 12;
    expect(refusal(s2).field).toBe('memory: header.sysPageShift');
    const s3 = snapOf(h);
    (s3.body.options as Record<string, unknown>).ownerCheck = 'bogus';
    expect(refusal(s3).message).toMatch(/body\.options\.ownerCheck: must be one of 'none', 'pid', 'mm', got the string "bogus"/);
  });

  it('lists and trees: a region list with a cycle, a tree node shared by two tables, a child pointer into guest RAM', async () => {
    const { h, region, table, fd, mm } = await host();
    const s = snapOf(h);
    poke(s, region + RegView.OFFSET.next, region);
    expect(refusal(s).message).toMatch(/body\.mms\[0\]\.desc \(MM\.regions\) → region 1: the region descriptor at 0x[0-9a-f]+ is already the region descriptor of/);
    const root0 = new TblView(h.mem, table.desc).root;
    const t1 = fd.container.windows[1]!.table;
    const s2 = snapOf(h);
    poke(s2, t1.desc + TblView.OFFSET.root, root0);
    expect(refusal(s2).message).toMatch(/TCE tree (node|root|leaf).* is already/);
    const s3 = snapOf(h);
    poke(s3, root0, mm.mappings[0]!.hostOff);
    expect(refusal(s3).message).toMatch(/TCE tree level 0, slot 0 of 0x[0-9a-f]+\): the TCE tree leaf at 0x[0-9a-f]+ is a block of 2097152 bytes, not the 128/);
  });

  it('a view slot with its lock bit set (every later writer would spin in lockView) and a ua that is not page aligned', async () => {
    const { h, table } = await host();
    const d = new TblView(h.mem, table.desc);
    const leaf = h.mem.getU32(d.uaRoot);
    const ua = h.mem.getU64(leaf + 8);
    expect(ua).not.toBe(0n);
    const s = snapOf(h);
    poke(s, leaf + 8, Number(ua & 0xffffffffn) | 1);
    expect(refusal(s).message).toMatch(/view slot 1: ua 0x[0-9a-f]+ is not aligned to the 2\^16-byte page \(its lock bit is set/);
  });

  it('counters: mapped, used, regionCount, locked_vm, table references, the allocator\'s block count', async () => {
    const { h, region, mm, table } = await host();
    const cases: [number, number, RegExp][] = [
      [region + RegView.OFFSET.mapped, 2, /mapped − 1 = 1, but 3 TCE\(s\) point into it/],
      [region + RegView.OFFSET.used, 0, /REG\.used is 0/],
      [mm.desc + MmView.OFFSET.regionCount, 2, /MM\.regionCount is 2, but its list holds 1 region/],
      [mm.desc + MmView.OFFSET.lockedPages, 7, /locked_vm is 7 pages, but its regions, tables and windows account for/],
      [table.desc + TblView.OFFSET.refs, 1, /table \d+: refs = 1, but 2 hold it/],
      [HEADER_BASE + HDR_ALLOC_BLOCKS, 3, /heapCheck\(\) fails \(-7\)/],
    ];
    for (const [addr, v, re] of cases) {
      const s = snapOf(h);
      poke(s, addr, v);
      expect(refusal(s).message, `poke 0x${addr.toString(16)} = ${v}`).toMatch(re);
    }
  });

  it('memory the allocator owns: bytes above its top, a top moved down, bytes below the header', async () => {
    const { h } = await host();
    const top = h.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP);
    const s = snapOf(h);
    poke(s, top + 4096, 1);
    expect(refusal(s).message).toMatch(/at or above the allocator's top .* are not zero/);
    const s2 = snapOf(h);
    poke(s2, HEADER_BASE + HDR_ALLOC_TOP, top - 4096);
    expect(refusal(s2).message).toMatch(/body\.memory\.pages: bytes in .* at or above the allocator's top|memory: heap: heapCheck\(\) fails/);
    const s3 = snapOf(h);
    poke(s3, 100, 5);
    expect(refusal(s3).message).toMatch(/below the header/);
  });

  it('guest tables and memslots: a page array too short for its pages, a memslot whose bytes lie outside its mapping, a link to no table', async () => {
    const { h, vm } = await host();
    const stt = vm.tables.get(LIOBN)!.desc;
    const s = snapOf(h);
    poke(s, stt + SttView.OFFSET.npages, 1000);
    expect(refusal(s).message).toMatch(/STT\.npages is 1000, but 4096 entries take 1 page/);
    const slot = new VmView(h.mem, vm.desc).slots;
    const s2 = snapOf(h);
    poke(s2, slot + SlotView.OFFSET.hostOff, HEAP_BASE);
    expect(refusal(s2).message).toMatch(/SLOT\.hostOff is 0x[0-9a-f]+, but the slot's bytes are at/);
    const s3 = snapOf(h);
    poke(s3, stt + SttView.OFFSET.stits, HEAP_BASE);
    expect(refusal(s3).message).toMatch(/STT link 0 names 0x[0-9a-f]+, no table of the snapshot/);
  });

  it('checkInvariants() terminates on a live host whose memory has a cyclic list or a shared tree node', async () => {
    const { h, region } = await host();
    h.mem.setU32(region + RegView.OFFSET.next, region);
    expect(() => h.checkInvariants()).toThrow(InvariantError);
    expect(() => h.checkInvariants()).toThrow(/region 1: the region descriptor at 0x[0-9a-f]+ is already/);
    const b = await host();
    const d0 = new TblView(b.h.mem, b.table.desc);
    const leaf = b.h.mem.getU32(d0.root);
    b.h.mem.setU32(d0.root + 4, leaf);
    expect(() => b.h.checkInvariants()).toThrow(/is already the TCE tree leaf of/);
  });
});
