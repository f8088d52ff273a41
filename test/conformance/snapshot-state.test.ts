// The state that came with the kernel eras, the descriptor tables and the VIO bypass, kept by every
// snapshot format: a '5.19' host under ownerCheck 'fork-close' with threads, a vm-clone, forks of
// forks and the container handles they hold, and a VM with a VIO table in bypass. Each format
// restores the same era (option and HDR.kernel), the same table sharing and fork() ancestry (so a
// restored fork child is still refused at inherit), the same handles and the same bypass; a body
// without these fields (an older snapshot) restores with the defaults of those versions.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Host, H, type Process, type Vm, type ContainerFd, type KernelEra, type VfioCall } from '../../src/index.js';
import { describeHost } from '../../src/snapshot/state.js';
import { encodeBody } from '../../src/snapshot/body.js';
import { HEADER_BASE, HDR_KERNEL, KERNEL_4_12, KERNEL_4_19, KERNEL_5_19 } from '../../src/generated/layout.js';
import { MiB } from './helpers.js';

const LIOBN = 0x80000000n;
const VIO = 0x71000002n;
const CODES: Record<KernelEra, number> = { '4.12': KERNEL_4_12, '4.19': KERNEL_4_19, '5.19': KERNEL_5_19 };

/** The tasks of the host, by role, and what they hold. */
async function family(kernel: KernelEra) {
  const host = await Host.create({ kernel, ownerCheck: 'fork-close', maxMemory: 32 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(4n * MiB);
  const g = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 16, windowSize: 1n << 28n, levels: 2 });
  fd.mapDma({ iova: 0x10000n, vaddr: ram.ua, size: 0x20000n, read: true, write: true });
  const thread = qemu.thread();
  const threadFd = thread.inherit(fd);
  const clone = qemu.clone({ vm: true });
  const cloneFd = clone.inherit(fd);
  const child = qemu.fork();
  const childThread = child.thread();
  const grandchild = child.fork();
  // A fork child has no copy of the handle under fork-close; one passed over a socket it may hold.
  const received = child.receive(fd);
  const vm = qemu.createVm();
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 4096n });
  vm.attachGroup(g, LIOBN);
  expect(vm.hcall(H.PUT_TCE, LIOBN, 0x40000n, 0x60000n | 3n).ret).toBe(H.SUCCESS);
  const qvm = qemu.createVm({ profile: 'qemu' });
  qvm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  qvm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0n, size: 4096n });
  qvm.addPhb({ buid: 0x800000020000000n, index: 0 });
  qvm.setTceBypass(VIO, true);
  host.checkInvariants();
  return { host, qemu, thread, clone, child, childThread, grandchild, fd, threadFd, cloneFd, received, ram };
}

type Family = Awaited<ReturnType<typeof family>>;

const objects = (h: Host): string => createHash('sha256').update(JSON.stringify(encodeBody(describeHost(h), []))).digest('hex');

/** The state of the three fields on `b`, a host restored from a snapshot of `a` (read only). */
function expectSame(a: Family, b: Host, era: KernelEra): void {
  b.checkInvariants();
  expect(b.kernel).toBe(era);
  expect(b.stats().kernel).toBe(era);
  expect(b.mem.getU32(HEADER_BASE + HDR_KERNEL)).toBe(CODES[era]);
  expect(b.idCounters()).toEqual(a.host.idCounters());
  const [q, t, c, ch, cht, gc] = [a.qemu, a.thread, a.clone, a.child, a.childThread, a.grandchild].map((x) => b.processes.get(x.tid)!) as Process[];
  expect(t!.files).toBe(q!.files);
  expect(c!.files).toBe(q!.files);
  expect(cht!.files).toBe(ch!.files);
  expect(ch!.files).not.toBe(q!.files);
  expect(ch!.files.isCopyOf(q!.files)).toBe(true);
  expect(gc!.files.isCopyOf(ch!.files)).toBe(true);
  expect(gc!.files.isCopyOf(q!.files)).toBe(true);
  expect(q!.files.isCopyOf(ch!.files)).toBe(false);
  // The handles: one each for the owner, its thread, its vm-clone and the fork child that received one.
  for (const x of [a.qemu, a.thread, a.clone, a.child]) expect(b.processes.get(x.tid)!.containers().length, `tid ${x.tid}`).toBe(1);
  expect(b.processes.get(a.grandchild.tid)!.containers()).toEqual([]);
  expect((q!.containers()[0] as ContainerFd).container.handles).toBe(4);
  const qvm = [...b.vms].find((v) => v.profile === 'qemu') as Vm;
  expect(qvm.tceBypass(VIO)).toBe(true);
  expect(qvm.tceBypass(LIOBN)).toBe(false);
}

/**
 * The same calls on any host of the family (the original or a restore): what
 * the descriptor tables, the bypass, the era and the owner check decide. The
 * answers, and the host's state afterwards, must not depend on whether the
 * host was restored.
 */
function act(a: Family, b: Host): unknown[] {
  const out: unknown[] = [];
  const try_ = (f: () => unknown): unknown => {
    try {
      return f();
    } catch (e) {
      return `${(e as { code?: string }).code ?? (e as Error).name}`;
    }
  };
  const q = b.processes.get(a.qemu.tid)!;
  const fd = q.containers()[0] as ContainerFd;
  // A fork child's copy was closed on fork; a thread's descriptor is its own; the received handle works.
  out.push(try_(() => b.processes.get(a.grandchild.tid)!.inherit(fd).container.id));
  out.push(try_(() => b.processes.get(a.thread.tid)!.inherit(fd).container.id));
  out.push(try_(() => fd.mapDma({ iova: 0x80000n, vaddr: a.ram.ua + 0x80000n, size: 0x10000n, read: true, write: false })));
  // The received handle reaches the container (fork-close checks nothing per call); the child's mm has no region.
  const got = b.processes.get(a.child.tid)!.containers()[0] as ContainerFd;
  out.push(try_(() => got.mapDma({ iova: 0x90000n, vaddr: a.ram.ua + 0x90000n, size: 0x10000n, read: true, write: false })));
  out.push(fd.container.handles);
  const qvm = [...b.vms].find((v) => v.profile === 'qemu') as Vm;
  out.push(qvm.translate(VIO, 0x123456n, 'write'));
  // The era decides the hypercall path: '5.19' has no real mode; a misaligned TCE is answered per era.
  const kvm = [...b.vms].find((v) => v.profile === 'kvm') as Vm;
  const vcpu = kvm.vcpu(0);
  for (const tce of [0x70000n | 1n, 0x71000n | 1n]) {
    vcpu.regs[3] = BigInt(H.PUT_TCE);
    vcpu.regs[4] = LIOBN;
    vcpu.regs[5] = 0x50000n;
    vcpu.regs[6] = tce;
    out.push([vcpu.hcall(), vcpu.lastLevel]);
  }
  out.push(kvm.hcall(H.GET_TCE, LIOBN, 0x50000n));
  b.checkInvariants();
  out.push(b.idCounters(), objects(b));
  return out;
}

describe('snapshots keep the kernel era, the descriptor tables and the VIO bypass', () => {
  for (const era of ['5.19', '4.12'] as const) {
    it(`${era}: JSON, binary, incremental and RAM-less round trips restore the same era, tables, handles, bypass and counters; the same calls then give the same answers as on the original`, async () => {
      const a = await family(era);
      const before = objects(a.host);
      const base = a.host.snapshot({ format: 'binary' });
      const fromBase = Host.restore(base);
      expect(objects(fromBase)).toBe(before);
      expectSame(a, fromBase, era);

      // Changed after the base, so the incremental snapshot has pages and objects to carry.
      a.qemu.mmap(MiB).bytes!.fill(7, 0, 4096);
      const want = objects(a.host);
      const json = a.host.snapshot();
      expect(json.body.options.kernel).toBe(era);
      expect(json.body.fdTables).toEqual([null, 0, 1]);
      const restored: [string, Host][] = [
        ['json', Host.restore(JSON.parse(JSON.stringify(json)))],
        ['binary', Host.restore(a.host.snapshot({ format: 'binary' }))],
        ['incremental', Host.restore(a.host.snapshot({ format: 'binary', since: base }), { base })],
        ['ram: false', Host.restore(a.host.snapshot({ ram: false }), { ram: (m) => [...a.host.mms].find((x) => x.id === m.mm)!.findMapping(m.ua)!.bytes })],
      ];
      expect(restored[0]![1].snapshot().checksum).toBe(json.checksum);
      for (const [how, b] of restored) {
        expect(objects(b), how).toBe(want);
        expectSame(a, b, era);
      }
      const answers = restored.map(([, b]) => act(a, b));
      const original = act(a, a.host);
      expect(original[0]).toBe('EBADF');
      expect(original[2]).toBeUndefined();
      expect(original[3]).toBe('EINVAL');
      if (era === '5.19') expect((original[6] as unknown[])[1]).toBe('virtual');
      restored.forEach(([how], i) => expect(answers[i], how).toEqual(original));
    });
  }

  it('bypass off is absent from the body; the VM keeps its other state', async () => {
    const a = await family('4.19');
    const qvm = [...a.host.vms].find((v) => v.profile === 'qemu') as Vm;
    expect(a.host.snapshot().body.vms.find((v) => v.profile === 'qemu')!.bypass).toEqual([`0x${VIO.toString(16)}`]);
    qvm.setTceBypass(VIO, false);
    const s = a.host.snapshot();
    expect(s.body.vms.every((v) => !('bypass' in v))).toBe(true);
    const b = Host.restore(s);
    expect(([...b.vms].find((v) => v.profile === 'qemu') as Vm).tceBypass(VIO)).toBe(false);
  });

  it('a body without the three fields (an older snapshot) restores as 4.12, one table per pid, no bypass', async () => {
    const a = await family('4.19');
    const s = structuredClone(a.host.snapshot());
    const body = s.body as unknown as Record<string, unknown> & typeof s.body;
    delete (body.options as { kernel?: string }).kernel;
    delete body.fdTables;
    for (const p of body.processes) delete p.files;
    for (const v of body.vms) delete v.bypass;
    // Before eras, HDR.kernel was padding: 0.
    const page = body.memory.pages.find(([off]) => off === HEADER_BASE)!;
    const bytes = Buffer.from(page[1], 'base64');
    bytes.writeUInt32LE(0, HDR_KERNEL);
    page[1] = bytes.toString('base64');
    // The v2 window was made with its view (4.19); a 4.12 host may have that too once it mapped, so it restores.
    const b = Host.restore({ ...s, checksum: createHash('sha256').update(JSON.stringify(body)).digest('hex') });
    b.checkInvariants();
    expect(b.kernel).toBe('4.12');
    expect(b.mem.getU32(HEADER_BASE + HDR_KERNEL)).toBe(KERNEL_4_12);
    const [q, t, c, ch] = [a.qemu, a.thread, a.clone, a.child].map((x) => b.processes.get(x.tid)!);
    expect(t!.files).toBe(q!.files);
    expect(c!.files).not.toBe(q!.files);
    expect(ch!.files.isCopyOf(q!.files)).toBe(false);
    expect(([...b.vms].find((v) => v.profile === 'qemu') as Vm).tceBypass(VIO)).toBe(false);
    // Snapshotted again it carries the fields, with what it restored.
    const again = b.snapshot();
    expect(again.body.options.kernel).toBe('4.12');
    expect(again.body.fdTables!.length).toBe(new Set(body.processes.map((p) => p.pid)).size);
  });
  it('a VfioSync is the VMM\'s, not the host\'s: snapshots taken with one attached restore without it; the restored VM re-attaches and the host window equals the guest\'s', async () => {
    const host = await Host.create({ kernel: '4.12', ownerCheck: 'fork-close', maxMemory: 64 << 20 });
    const qemu = host.spawn();
    const ram = qemu.mmap(8n * MiB);
    const vm = qemu.createVm({ profile: 'qemu' });
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.addPhb({ buid: 0x800000020000000n, index: 0 });
    const fd = qemu.openContainer();
    fd.attachGroup(host.addGroup());
    fd.setIommu('v2');
    const calls: VfioCall[] = [];
    const sync = vm.attachContainer(fd, { onCall: (c) => calls.push(c) });
    for (let i = 0n; i < 4n; i++) expect(vm.hcall(H.PUT_TCE, LIOBN, 0x10000n + i * 0x1000n, (0x200000n + i * 0x1000n) | 3n).ret).toBe(H.SUCCESS);
    const entries = (f: ContainerFd): string[] => [...f.container.windows[0]!.table.entries()].map(([e, tce, ua]) => `${e} ${tce & 3n} ${ua.toString(16)}`);
    const guest = (v: Vm): string[] => {
      const out: string[] = [];
      v.replay(LIOBN, (e) => void out.push(`${e.iova >> 12n} ${BigInt(e.perm)} ${(ram.ua + e.gpa).toString(16)}`));
      return out;
    };
    expect(entries(fd)).toEqual(guest(vm));
    const stats = sync.stats();
    const snaps: [string, () => Host][] = [
      ['json', () => Host.restore(JSON.parse(JSON.stringify(host.snapshot())))],
      ['binary', () => Host.restore(host.snapshot({ format: 'binary' }))],
      ['ram: false', () => Host.restore(host.snapshot({ ram: false }), { ram: () => ram.bytes })],
    ];
    const made = calls.length;
    for (const [how, restore] of snaps) {
      const b = restore();
      b.checkInvariants();
      const vmB = [...b.vms][0]!;
      const fdB = b.processes.get(qemu.tid)!.containers()[0] as ContainerFd;
      // The container's state came with the host (its region, its window and the entries the sync made) ...
      expect(entries(fdB), how).toEqual(entries(fd));
      expect(fdB.container.regions.map((r) => [r.used, r.mapped]), how).toEqual([[1, 5n]]);
      // ... but no sync: a guest call on the restored VM reaches neither the original's sync nor the restored container.
      expect(vmB.hcall(H.PUT_TCE, LIOBN, 0x20000n, 0x300000n | 3n).ret, how).toBe(H.SUCCESS);
      expect(calls.length, how).toBe(made);
      expect(sync.stats(), how).toEqual(stats);
      expect(entries(fdB), how).toEqual(entries(fd));
      b.checkInvariants();
      // Re-attached (what the VMM does after a restore), the sync adopts the region and window, and catches up.
      const callsB: VfioCall[] = [];
      const syncB = vmB.attachContainer(fdB, { onCall: (c) => callsB.push(c) });
      expect(callsB.some((c) => c.op === 'registerMemory'), how).toBe(false);
      expect(syncB.windows().map((w) => w.adopted), how).toEqual([true]);
      expect(entries(fdB), how).toEqual(guest(vmB));
      expect(guest(vmB), how).toHaveLength(5);
      expect(syncB.stats().errors, how).toBe(0);
      b.checkInvariants();
      syncB.detach();
      expect(fdB.container.regions, how).toEqual([]);
      b.checkInvariants();
    }
    // Detached on the original after the snapshot: the restore of it is the same host as before.
    const snap = host.snapshot({ format: 'binary' });
    sync.detach();
    host.checkInvariants();
    const b = Host.restore(snap);
    b.checkInvariants();
    expect(entries(b.processes.get(qemu.tid)!.containers()[0] as ContainerFd)).toEqual(guest([...b.vms][0]!));
  });
});
