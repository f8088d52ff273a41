// Spec: docs/semantics.md §3.8 (table references). A hardware table's it_kref
// (iommu_tce_table_get/put) equals its holders: the container window that created it
// (tce_iommu_create_table) or its legacy group, one per KVM link (kvm_spapr_tce_attach_iommu_group,
// put by kvm_spapr_tce_iommu_table_free), and the references taken through the kernel-layer API
// (IommuTable.create, hold). It holds after every attach/link/unlink/remove/destroy sequence, on
// both engines and profiles; a count one too high (a put skipped: the leak the old lower bound let
// through), one too low or 0 makes checkInvariants() throw naming the table, and a restore refuse.
import { describe, expect, it } from 'vitest';
import { Host, H, IommuTable, InvariantError, RTAS_OUT, type Process, type KernelEra } from '../../src/index.js';
import { snapOf, poke, refusal } from './snapshot-edit.js';
import { TblView, VcpuView } from '../../src/generated/views.js';
import { v2Container, linkedVm } from '../fixtures.js';

const LIOBN = 0x80000000n;
const MiB = 1n << 20n;

/** The InvariantError checkInvariants() throws on `h`; fails the test when it throws nothing. */
function broken(h: Host): string[] {
  try {
    h.checkInvariants();
  } catch (e) {
    if (e instanceof InvariantError) return e.problems;
    throw e;
  }
  throw new Error('checkInvariants() did not throw');
}

/** The live tables of `h` as 'id refs'. */
const counts = (h: Host): string[] => [...h.tables].map((t) => `${t.id} ${t.refs}`);

async function kvmHost(engine: 'wasm' | 'native', kernel: KernelEra = '4.19') {
  const h = await Host.create({ engine, kernel, maxMemory: 64 << 20 });
  const p: Process = h.spawn();
  const ram = p.mmap(8n * MiB);
  const { g, fd } = v2Container(h, p, ram, { pageShift: 16, windowSize: 1n << 30n, levels: 2 });
  return { h, p, ram, g, fd };
}


/** A VM with one PHB and a v2 container kept in sync with it (attachContainer); `args` are the PHB's config address words for the DDW RTAS calls. */
async function syncedPhb(engine: 'wasm' | 'native', kernel: KernelEra, profile: 'kvm' | 'qemu') {
  const h = await Host.create({ engine, kernel, maxMemory: 96 << 20 });
  const q = h.spawn();
  const ram = q.mmap(16n * MiB);
  const vm = q.createVm({ profile });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.addPhb({ buid: 0x800000020000000n, index: 0 });
  const g = h.addGroup();
  const fd = q.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  const sync = vm.attachContainer(fd);
  return { h, q, vm, fd, sync, args: [0x10000, 0x8000000, 0x20000000] };
}

describe('table references = holders (§3.8)', () => {
  for (const engine of ['wasm', 'native'] as const) {
    it(`${engine}, kvm profile: links, a second link, window removed under a link, the guest table released, VM destroyed`, async () => {
      const { h, p, ram, g, fd } = await kvmHost(engine);
      const t = fd.container.windows[0]!.table;
      expect(t.refs).toBe(1);
      h.checkInvariants();
      const vm = linkedVm(p, ram, g, { liobn: LIOBN, pageShift: 16, size: 1n << 14n });
      expect(t.refs).toBe(2);
      vm.attachGroup(g, LIOBN); // a second link only counts on the link
      expect(vm.links(LIOBN)).toEqual([{ tableDesc: t.desc, refs: 2 }]);
      expect(t.refs).toBe(2);
      h.checkInvariants();
      expect(vm.hcall(H.PUT_TCE, LIOBN, 0x10000n, 0x20000n | 3n).ret).toBe(0);
      // the window goes; the link keeps the table
      fd.unmapDma({ iova: 0n, size: 1n << 30n });
      fd.removeWindow(0n);
      expect(fd.container.windows[0]).toBeUndefined();
      expect(t.refs).toBe(1);
      expect([...h.tables]).toContain(t);
      h.checkInvariants();
      // a vCPU inside a hypercall: the release's frees wait for a grace period; its put does not
      const vcpu = vm.vcpu(0);
      const vd = new VcpuView(h.mem, vcpu.desc);
      vd.rcuSeq = vd.rcuSeq | 1;
      expect(vm.releaseTable(LIOBN)).toBe(true);
      expect(h.stats().reclaim.pending).toBeGreaterThan(0);
      expect(t.refs).toBe(0);
      expect([...h.tables]).not.toContain(t);
      h.checkInvariants();
      vd.rcuSeq = vd.rcuSeq + 1;
      h.synchronize();
      expect(h.stats().reclaim.pending).toBe(0);
      h.checkInvariants();
      // a new window linked to a new guest table, then the VM destroyed: the link's reference goes
      fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 2 });
      const t2 = fd.container.windows[0]!.table;
      vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 1n << 14n });
      vm.attachGroup(g, LIOBN);
      expect(t2.refs).toBe(2);
      h.checkInvariants();
      vcpu.release();
      vm.destroy();
      expect(t2.refs).toBe(1);
      h.checkInvariants();
      fd.close();
      expect(counts(h)).toEqual([]);
      h.checkInvariants();
    });

    it(`${engine}, kvm profile: attachContainer and the DDW RTAS calls — each host window held by its window and its link`, async () => {
      const { h, vm, fd, sync, args } = await syncedPhb(engine, '5.19', 'kvm');
      const linked = () => fd.container.windows.filter((w) => w).map((w) => w!.table.refs);
      expect(linked()).toEqual([2]);
      h.checkInvariants();
      const created = vm.rtas('ibm,create-pe-dma-window', [...args, 16, 30], 4);
      expect(created[0]).toBe(RTAS_OUT.SUCCESS);
      expect(linked()).toEqual([2, 2]);
      h.checkInvariants();
      expect(vm.rtas('ibm,remove-pe-dma-window', [created[1]!], 1)).toEqual([0]);
      expect(linked()).toEqual([2]);
      h.checkInvariants();
      expect(vm.rtas('ibm,create-pe-dma-window', [...args, 16, 30], 4)[0]).toBe(0);
      expect(vm.rtas('ibm,reset-pe-dma-window', args, 1)).toEqual([0]);
      h.checkInvariants();
      vm.reset();
      h.checkInvariants();
      sync.detach();
      expect(linked().every((n) => n === 1)).toBe(true);
      h.checkInvariants();
      vm.destroy();
      fd.close();
      expect(counts(h)).toEqual([]);
      h.checkInvariants();
    });

    it(`${engine}, qemu profile: attachContainer and the DDW RTAS calls — no links, each table its window's alone; a legacy group's`, async () => {
      const { h, q, vm, fd, sync, args } = await syncedPhb(engine, '4.19', 'qemu');
      const created = vm.rtas('ibm,create-pe-dma-window', [...args, 16, 30], 4);
      expect(created[0]).toBe(0);
      expect(fd.container.windows.filter((w) => w).map((w) => w!.table.refs)).toEqual([1, 1]);
      h.checkInvariants();
      expect(vm.rtas('ibm,remove-pe-dma-window', [created[1]!], 1)).toEqual([0]);
      h.checkInvariants();
      sync.detach();
      vm.destroy();
      fd.close();
      const legacy = h.addGroup({ ddw: false, tce32Size: 1n << 28n });
      const fd1 = q.openContainer();
      fd1.attachGroup(legacy);
      fd1.setIommu('v1');
      fd1.enable();
      expect(legacy.legacyTable!.refs).toBe(1);
      h.checkInvariants();
      fd1.close();
      expect(counts(h)).toEqual([`${legacy.legacyTable!.id} 1`]);
      h.checkInvariants();
    });
  }

  it('a link unlinked while a vCPU is inside a hypercall: its put is done, the vacated slot waits for the grace period', async () => {
    const { h, p, ram, g, fd } = await kvmHost('native');
    const t = fd.container.windows[0]!.table;
    const vm = linkedVm(p, ram, g, { liobn: LIOBN, pageShift: 16, size: 1n << 14n });
    const vcpu = vm.vcpu(0);
    const vd = new VcpuView(h.mem, vcpu.desc);
    vd.rcuSeq = vd.rcuSeq | 1;
    expect(vm.unlinkTable(LIOBN, t.desc)).toBe(true);
    expect(h.stats().reclaim.pending).toBeGreaterThan(0);
    expect([t.refs, vm.links(LIOBN)]).toEqual([1, []]);
    h.checkInvariants();
    // the window goes too: the last put, the free deferred
    fd.removeWindow(0n);
    expect([...h.tables]).not.toContain(t);
    h.checkInvariants();
    vd.rcuSeq = vd.rcuSeq + 1;
    h.synchronize();
    expect(h.stats().reclaim.pending).toBe(0);
    h.checkInvariants();
  });

  it('the kernel-layer API: create and hold are the caller\'s references, release drops them; one it never took is EINVAL', async () => {
    const { h, fd } = await kvmHost('native');
    const t = IommuTable.create(h, { pageShift: 12, windowSize: 1n << 24n, levels: 1, busOffset: 0n }, true);
    expect([t.refs, t.callerRefs]).toEqual([1, 1]);
    t.hold();
    expect([t.refs, t.callerRefs]).toEqual([2, 2]);
    h.checkInvariants();
    // a restore keeps the caller's references
    const r = Host.restore(h.snapshot());
    const rt = [...r.tables].find((x) => x.id === t.id)!;
    expect([rt.refs, rt.callerRefs]).toEqual([2, 2]);
    r.checkInvariants();
    t.release();
    t.release();
    expect([...h.tables]).not.toContain(t);
    const w = fd.container.windows[0]!.table;
    expect(() => w.release()).toThrow(/EINVAL.*release\(\) without a reference/);
    expect(w.refs).toBe(1);
    w.hold();
    w.release();
    expect([w.refs, w.callerRefs]).toEqual([1, 0]);
    h.checkInvariants();
  });

  it('a put skipped, one too many, or a count of 0: checkInvariants() names the table', async () => {
    const { h, p, ram, g, fd } = await kvmHost('wasm');
    const t = fd.container.windows[0]!.table;
    const vm = linkedVm(p, ram, g, { liobn: LIOBN, pageShift: 16, size: 1n << 14n });
    const d = new TblView(h.mem, t.desc);
    d.refs = 3;
    expect(broken(h)).toEqual([`table ${t.id}: refs = 3, but 2 hold it (window or legacy group 1, KVM links 1, kernel-layer API 0)`]);
    d.refs = 1;
    expect(broken(h)).toEqual([`table ${t.id}: refs = 1, but 2 hold it (window or legacy group 1, KVM links 1, kernel-layer API 0)`]);
    d.refs = 0;
    expect(broken(h)).toEqual([`table ${t.id}: refs = 0, but it is live (the last put frees it)`]);
    d.refs = 2;
    h.checkInvariants();
    // The leak: a reference the guest table's release should have dropped (kvm_spapr_tce_iommu_table_free's
    // put) is left on the table; the window goes, and the table outlives every holder.
    t.holdLink();
    expect(vm.releaseTable(LIOBN)).toBe(true);
    expect(broken(h)).toEqual([`table ${t.id}: refs = 2, but 1 hold it (window or legacy group 1, KVM links 0, kernel-layer API 0)`]);
    fd.removeWindow(0n);
    expect([...h.tables]).toContain(t);
    expect(broken(h)).toEqual([`table ${t.id}: refs = 1, but 0 hold it (window or legacy group 0, KVM links 0, kernel-layer API 0)`]);
  });

  it('a restore refuses a snapshot whose count or callerRefs disagrees with the holders, naming the table', async () => {
    const { h, p, ram, g, fd } = await kvmHost('native');
    linkedVm(p, ram, g, { liobn: LIOBN, pageShift: 16, size: 1n << 14n });
    const t = fd.container.windows[0]!.table;
    const i = [...h.tables].indexOf(t);
    for (const v of [0, 1, 3]) {
      const s = snapOf(h);
      poke(s, t.desc + TblView.OFFSET.refs, v);
      const e = refusal(s);
      expect(e.field).toBe(`body.tables[${i}].desc`);
      expect(e.message).toMatch(new RegExp(`table ${t.id}: refs = ${v}, but`));
    }
    const s = snapOf(h);
    expect(s.body.tables[i]).not.toHaveProperty('callerRefs');
    s.body.tables[i]!.callerRefs = 1;
    expect(refusal(s).message).toMatch(new RegExp(`table ${t.id}: refs = 2, but 3 hold it .*kernel-layer API 1`));
    const s0 = snapOf(h);
    s0.body.tables[i]!.callerRefs = 0;
    expect(refusal(s0).field).toBe(`body.tables[${i}].callerRefs`);
    // a caller's reference saved is restored, and its count with it
    t.hold();
    const s1 = snapOf(h);
    expect(s1.body.tables[i]!.callerRefs).toBe(1);
    const r = Host.restore(s1);
    expect([...r.tables][i]!.callerRefs).toBe(1);
    r.checkInvariants();
    delete s1.body.tables[i]!.callerRefs;
    expect(refusal(s1).message).toMatch(new RegExp(`table ${t.id}: refs = 3, but 2 hold it`));
  });
});
