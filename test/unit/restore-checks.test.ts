// The restore's checks one by one (issue 12 item 4): each edit below, given a recomputed checksum,
// was accepted before and is now refused with a SnapshotError naming the field, before any object
// is built; and checkInvariants() terminates on the same corruptions in a live host's memory.
import { describe, expect, it } from 'vitest';
import { Host, H, InvariantError } from '../../src/index.js';
import { snapOf, reseal, poke, refusal, type Snap } from './snapshot-edit.js';
import { MmView, RegView, TblView, SttView, SlotView, VmView, VcpuView } from '../../src/generated/views.js';
import { HEADER_BASE, HEAP_BASE, HDR_ALLOC_TOP, HDR_ALLOC_BLOCKS, HDR_KERNEL, HDR_ABLATE, HDR_LOCK_TAGS, ABLATE_VIEW_LOCK, KERNEL_4_12, KERNEL_4_19 } from '../../src/generated/layout.js';

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
    expect(refusal(s3).message).toMatch(/body\.options\.ownerCheck: must be one of 'none', 'pid', 'mm', 'fork-close', got the string "bogus"/);
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

  it('the kernel era: an option outside its set, one the header does not carry, a header word of another era', async () => {
    const h = await Host.create({ kernel: '5.19', maxMemory: 4 << 20 });
    h.spawn().openContainer();
    const s = snapOf(h);
    (s.body.options as Record<string, unknown>).kernel = '6.1';
    expect(refusal(s).message).toMatch(/^Host\.restore: body\.options\.kernel: must be one of '4\.12', '4\.19', '5\.19', got the string "6\.1"$/);
    const s2 = snapOf(h);
    (s2.body.options as Record<string, unknown>).kernel = '4.19';
    const e2 = refusal(s2);
    expect(e2.field).toBe('memory: header.kernel');
    expect(e2.reason).toMatch(/is 519, but options\.kernel '4\.19' is KERNEL_4_19 \(419\)/);
    const s3 = snapOf(h);
    poke(s3, HEADER_BASE + HDR_KERNEL, KERNEL_4_12);
    expect(refusal(s3).field).toBe('memory: header.kernel');
    // Without the option the snapshot is an older one, of a '4.12' host: a header of another era is refused.
    const s4 = snapOf(h);
    delete (s4.body.options as Record<string, unknown>).kernel;
    expect(refusal(s4).reason).toMatch(/is 519, but options\.kernel '4\.12'/);
  });

  it('the kernel era: a 4.19 window table has its userspace view from TCE_CREATE; a 4.12 one may not have it yet', async () => {
    const h = await Host.create({ kernel: '4.12', maxMemory: 8 << 20 });
    const p = h.spawn();
    const fd = p.openContainer();
    fd.attachGroup(h.addGroup());
    fd.setIommu('v2');
    fd.removeWindow(0n);
    fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 });
    expect(fd.container.windows[0]!.table.hasView).toBe(false);
    Host.restore(reseal(snapOf(h))).checkInvariants();
    const s = snapOf(h);
    (s.body.options as Record<string, unknown>).kernel = '4.19';
    poke(s, HEADER_BASE + HDR_KERNEL, KERNEL_4_19);
    const e = refusal(s);
    expect(e.field).toBe('body.containers[0].windows[0].table');
    expect(e.reason).toMatch(/has no userspace view, but kernel '4\.19' allocates it with the table/);
  });

  it('descriptor tables: an index outside the list, a thread or a vm-clone moved to another table, a bad ancestry, a table nobody holds', async () => {
    const h = await Host.create({ ownerCheck: 'fork-close', maxMemory: 4 << 20 });
    const p = h.spawn();
    const fd = p.openContainer();
    const t = p.thread();
    t.inherit(fd);
    const c = p.clone({ vm: true });
    const child = p.fork();
    const grandchild = child.fork();
    const at = (x: { tid: number }): number => [...h.processes.keys()].indexOf(x.tid);
    type P = { files?: unknown; pid: number };
    const procs = (s: Snap): P[] => s.body.processes as P[];
    const tables = (s: Snap): unknown[] => s.body.fdTables as unknown[];
    const mms = (s: Snap): { mm: number }[] => s.body.processes as { mm: number }[];
    expect(tables(snapOf(h))).toEqual([null, 0, 1]);
    const cases: [string, (s: Snap) => void, string, RegExp][] = [
      ['files past the list', (s) => void (procs(s)[at(c)]!.files = 3), `body.processes[${at(c)}].files`, /descriptor table 3 is not in fdTables \(3 table\(s\)\)/],
      ['files not a number', (s) => void (procs(s)[at(t)]!.files = '0'), `body.processes[${at(t)}].files`, /must be a whole number/],
      ['files missing', (s) => void delete procs(s)[at(child)]!.files, `body.processes[${at(child)}].files`, /is missing \(the body has fdTables/],
      ['files without fdTables', (s) => void delete s.body.fdTables, 'body.processes[0].files', /names a descriptor table, but the body has no fdTables/],
      ['fdTables not an array', (s) => void (s.body.fdTables = { 0: null }), 'body.fdTables', /must be an array/],
      ['a thread on another table', (s) => void (procs(s)[at(t)]!.files = 1), `body.processes[${at(t)}].files`, /the threads of pid \d+ share one descriptor table \(0\), got 1/],
      ['a vm-clone on the fork child\'s table', (s) => void (procs(s)[at(c)]!.files = 1), `body.processes[${at(child)}].files`, /descriptor table 1 is also tid \d+'s, on mm \d+: tasks sharing a table share their mm/],
      ['a table copied from itself', (s) => void (tables(s)[1] = 1), 'body.fdTables[1]', /does not come before it/],
      ['a table copied from a later one', (s) => void (tables(s)[1] = 2), 'body.fdTables[1]', /does not come before it/],
      ['a fork copy on its source\'s mm', (s) => void (mms(s)[at(grandchild)]!.mm = mms(s)[at(child)]!.mm), 'body.fdTables[2]', /table 2 \(tid \d+\) and table 1 it was copied from \(tid \d+\) are on the same mm \d+: fork\(\) gives the child a copy/],
      ['a table nobody holds', (s) => void tables(s).push(null), 'body.fdTables[3]', /is held by no task and no table was copied from it/],
    ];
    for (const [what, edit, field, re] of cases) {
      const s = snapOf(h);
      edit(s);
      const e = refusal(s);
      expect(e.field, what).toBe(field);
      expect(e.reason, what).toMatch(re);
    }
  });

  it('view-lock tags and ablations: a vCPU without a tag, two with one, a tag not marked taken, tag 0 marked, an ablation left on', async () => {
    const { h, vm } = await host();
    const a = vm.vcpu(0);
    const b = vm.vcpu(1);
    const tagOf = (c: { desc: number }): number => h.mem.getU32(c.desc + VcpuView.OFFSET.lockTag);
    expect(tagOf(a)).not.toBe(tagOf(b));
    Host.restore(reseal(snapOf(h))).checkInvariants();
    const field = (s: Snap, c: { desc: number }): string => `body.vms[0].vcpus[${(s.body.vms as { vcpus: { desc: number }[] }[])[0]!.vcpus.findIndex((x) => x.desc === c.desc)}].desc`;
    const cases: [(s: Snap) => void, (s: Snap) => string, RegExp][] = [
      [(s) => poke(s, a.desc + VcpuView.OFFSET.lockTag, 0), (s) => field(s, a), /VCPU\.lockTag is 0, not a vCPU's view-lock tag \(1\.\.2047; 0 is the VFIO path's\)/],
      [(s) => poke(s, b.desc + VcpuView.OFFSET.lockTag, tagOf(a)), (s) => field(s, b), /VCPU\.lockTag \d+ is also body\.vms\[0\]\.vcpus\[\d\]'s/],
      [(s) => poke(s, HEADER_BASE + HDR_LOCK_TAGS, h.mem.getU32(HEADER_BASE + HDR_LOCK_TAGS) & ~(1 << tagOf(a))), (s) => field(s, a), /VCPU\.lockTag \d+ is not marked taken in HDR\.lockTags/],
      [(s) => poke(s, HEADER_BASE + HDR_LOCK_TAGS, h.mem.getU32(HEADER_BASE + HDR_LOCK_TAGS) | 1), () => 'memory: header.lockTags', /bit 0 is set/],
      [(s) => poke(s, HEADER_BASE + HDR_ABLATE, ABLATE_VIEW_LOCK), () => 'memory: header.ablate', /a benchmark ablation was on when the snapshot was taken/],
      [(s) => poke(s, HEADER_BASE + HDR_ABLATE, 0x80), () => 'memory: header.ablate', /must be ABLATE_\* bits, got 0x80/],
    ];
    for (const [edit, want, re] of cases) {
      const s = snapOf(h);
      edit(s);
      const e = refusal(s);
      expect(e.field).toBe(want(s));
      expect(e.reason).toMatch(re);
    }
    // On a live host an ablation is bench/'s to set: checkInvariants() accepts the known bits, not others.
    h.mem.setU32(HEADER_BASE + HDR_ABLATE, ABLATE_VIEW_LOCK);
    h.checkInvariants();
    h.mem.setU32(HEADER_BASE + HDR_ABLATE, 0x80);
    expect(() => h.checkInvariants()).toThrow(/header\.ablate: must be ABLATE_\* bits/);
    h.mem.setU32(HEADER_BASE + HDR_ABLATE, 0);
    h.checkInvariants();
  });

  it('handles: one held by no task of the snapshot, a closed container that kept its groups, a task naming a table of no list', async () => {
    const h = await Host.create({ ownerCheck: 'fork-close', kernel: '4.12', maxMemory: 4 << 20 });
    const p = h.spawn();
    const fd = p.openContainer();
    fd.attachGroup(h.addGroup());
    p.fork().receive(fd);
    Host.restore(reseal(snapOf(h))).checkInvariants();
    type C = { fds: number[] };
    const cases: [(s: Snap) => void, string, RegExp][] = [
      [(s) => void (s.body.containers as C[])[0]!.fds.push(4242), 'body.containers[0].fds[2]', /no task 4242/],
      [(s) => void ((s.body.containers as C[])[0]!.fds = []), 'body.containers[0].fds', /a container whose last handle closed was released/],
      [(s) => void ((s.body.processes as { files: number }[])[1]!.files = 7), 'body.processes[1].files', /descriptor table 7 is not in fdTables \(2 table\(s\)\)/],
    ];
    for (const [edit, field, re] of cases) {
      const s = snapOf(h);
      edit(s);
      const e = refusal(s);
      expect(e.field).toBe(field);
      expect(e.reason).toMatch(re);
    }
  });

  it('VIO bypass: a PHB window, a LIOBN of no table, one twice, an empty list, not hex', async () => {
    const h = await Host.create({ maxMemory: 4 << 20 });
    const p = h.spawn();
    const ram = p.mmap(1n << 20n);
    const vm = p.createVm({ profile: 'qemu' });
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: 0x71000002n, pageShift: 12, offset: 0n, size: 4096n });
    vm.addPhb({ buid: 0x800000020000000n, index: 0 });
    vm.setTceBypass(0x71000002n, true);
    Host.restore(reseal(snapOf(h))).checkInvariants();
    type V = { bypass?: unknown };
    const cases: [unknown, string, RegExp][] = [
      [['0x80000000'], 'body.vms[0].bypass[0]', /LIOBN 0x80000000 is a PHB window: PCI has no TCE bypass/],
      [['0x71000099'], 'body.vms[0].bypass[0]', /LIOBN 0x71000099 is no VIO table of the VM/],
      [['0x71000002', '0x71000002'], 'body.vms[0].bypass[1]', /appears twice/],
      [[], 'body.vms[0].bypass', /is absent when no table is in bypass, never an empty list/],
      [['71000002'], 'body.vms[0].bypass[0]', /must be a 64-bit value in 0x-hex/],
      ['0x71000002', 'body.vms[0].bypass', /must be an array/],
    ];
    for (const [bypass, field, re] of cases) {
      const s = snapOf(h);
      (s.body.vms as V[])[0]!.bypass = bypass;
      const e = refusal(s);
      expect(e.field, JSON.stringify(bypass)).toBe(field);
      expect(e.reason, JSON.stringify(bypass)).toMatch(re);
    }
  });

  it('ownerCheck \'fork-close\' binds no container: a snapshot of an mm-bound one with the option changed is refused', async () => {
    const { h } = await host();
    const s = snapOf(h);
    (s.body.options as Record<string, unknown>).ownerCheck = 'fork-close';
    const e = refusal(s);
    expect(e.field).toBe('body.containers[0].mm');
    expect(e.reason).toBe("ownerCheck 'fork-close' never binds a container to an owner");
  });

  it('a vCPU on a task of another mm: refused under every owner check but none, as vm.vcpu() refuses it (EIO)', async () => {
    // Made under 'none', the one mode that lets a stranger run a vCPU; no container, so nothing else is bound.
    async function made(stranger: boolean): Promise<Host> {
      const h = await Host.create({ ownerCheck: 'none', maxMemory: 8 << 20 });
      const p = h.spawn();
      const ram = p.mmap(1n << 20n);
      const vm = p.createVm();
      vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
      vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 4096n });
      vm.vcpu(0, { thread: p.clone({ vm: true }) });
      if (stranger) vm.vcpu(1, { thread: h.spawn().thread() });
      h.checkInvariants();
      return h;
    }
    const bad = await made(true);
    const good = await made(false);
    for (const mode of ['mm', 'pid', 'fork-close'] as const) {
      const s = snapOf(bad);
      (s.body.options as Record<string, unknown>).ownerCheck = mode;
      const e = refusal(s);
      expect(e.field, mode).toBe('body.vms[0].vcpus[1].thread');
      expect(e.reason, mode).toMatch(new RegExp(`not the VM's mm .*ownerCheck '${mode}'`));
      // A vCPU on a vm-clone of the VM's process (its mm) restores in every mode.
      const t = snapOf(good);
      (t.body.options as Record<string, unknown>).ownerCheck = mode;
      const r = Host.restore(reseal(t));
      expect([...r.vms][0]!.vcpus.size, mode).toBe(1);
      r.checkInvariants();
    }
    // Under 'none' the stranger's vCPU restores, as vm.vcpu() made it.
    expect([...Host.restore(bad.snapshot()).vms][0]!.vcpus.size).toBe(2);
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
