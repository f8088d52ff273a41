// Spec: docs/semantics.md §8.5 (host VFIO kept in sync by vm.attachContainer), §9 V35–V39, V42–V45, V50:
// QEMU's prereg listener and sPAPR VFIO listener (vfio_prereg_listener_region_add/del,
// vfio_spapr_create_window/remove_window, vfio_iommu_map_notify, replay on attach), with
// contiguous runs of one operation coalesced into one MAP_DMA/UNMAP_DMA.
import { describe, expect, it } from 'vitest';
import { Host, H, TceError, VfioSyncError, type VfioCall, type ContainerFd, type Vm, type GroupOptions } from '../../src/index.js';
import { MiB, expectErr, containerView, expectRegionCounts, hostEntries } from './helpers.js';

const BUID = 0x800000020000000n;
const HI = Number(BUID >> 32n);
const LO = Number(BUID & 0xffffffffn);
const L0 = 0x80000000n;
const L1 = 0x80000001n;
const VIO = 0x71000003n;
const DDW = 1n << 59n;
const G = 0x400000n; // guest RAM at 4 MiB
const LIST = 0x100000; // where the guest writes TCE lists

/** A qemu-profile guest (16 MiB RAM at gpa 0, a PHB with its default 1 GiB window of 4K pages) and a v2 container of the VMM. */
async function setup(o: { group?: GroupOptions; ramMiB?: bigint; phb?: boolean; maxMemory?: number; memlockLimit?: bigint; engine?: 'wasm' | 'native' } = {}) {
  const host = await Host.create({ engine: o.engine, maxMemory: o.maxMemory ?? 96 << 20 });
  const qemu = host.spawn(o.memlockLimit === undefined ? undefined : { memlockLimit: o.memlockLimit });
  const ram = qemu.mmap((o.ramMiB ?? 16n) * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  if (o.phb !== false) vm.addPhb({ buid: BUID, index: 0 });
  const group = host.addGroup(o.group);
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  const calls: VfioCall[] = [];
  const errors: VfioSyncError[] = [];
  const attach = (extra: Parameters<Vm['attachContainer']>[1] = {}) => vm.attachContainer(fd, { onCall: (c) => calls.push(c), onError: (e) => errors.push(e), ...extra });
  const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
  /** Writes a big-endian TCE list at guest physical `at` and returns its address. */
  const list = (tces: bigint[], at = LIST): bigint => {
    tces.forEach((t, i) => dv.setBigUint64(at + i * 8, t, false));
    return BigInt(at);
  };
  const hc = (nr: number, ...args: bigint[]): number => vm.hcall(nr, ...args).ret;
  const rtas = (name: string, args: number[], nret: number) => vm.rtas(name, args, nret);
  const ops = () => calls.map((c) => `${c.op}${c.error ? ` ${c.error.code}` : ''}`);
  return { host, qemu, ram, vm, group, fd, calls, errors, attach, list, hc, rtas, ops };
}

/** What the host window at `start` must hold for the guest's mappings of `liobn` (host pages of 2^hostShift). */
function expectedEntries(vm: Vm, liobn: bigint, hostShift: number): string[] {
  const out: string[] = [];
  const hp = 1n << BigInt(hostShift);
  vm.replay(liobn, (e) => {
    const s = vm.memslots.find((m) => e.gpa >= m.gpa && e.gpa < m.gpa + m.size);
    if (!s) return;
    for (let off = 0n; off < e.size; off += hp) out.push(`${(e.iova + off).toString(16)} ${(s.ua + e.gpa - s.gpa + off).toString(16)} ${e.perm & 2 ? 'RW' : 'R'}`);
  });
  return out;
}

describe('vm.attachContainer: QEMU\'s sPAPR VFIO and prereg listeners', () => {
  it('attach: every memslot registered, the pending default window removed, a host window at the guest window\'s bus offset', async () => {
    const { fd, ram, attach, ops, calls } = await setup();
    const sync = attach();
    expect(ops()).toEqual(['registerMemory', 'removeWindow', 'createWindow']);
    expect(calls[0]).toMatchObject({ op: 'registerMemory', vaddr: ram.ua, size: ram.size });
    // 1 GiB of 4K guest pages: the host page is 4K (largest supported ≤ 4K), 2^18 entries → 1 level
    expect(calls[2]).toMatchObject({ op: 'createWindow', liobn: L0, pageShift: 12, levels: 1, windowSize: 1n << 30n, startAddr: 0n });
    expect(sync.windows()).toEqual([{ liobn: L0, busOffset: 0n, windowSize: 1n << 30n, pageShift: 12, levels: 1, adopted: false }]);
    expect(fd.container.regions.map((r) => [r.ua, r.size, r.used])).toEqual([[ram.ua, ram.size, 1]]);
    expect(fd.container.windows.map((w) => w?.startAddr)).toEqual([0n, undefined]);
    expect(sync.stats()).toEqual({ mapDma: 0, unmapDma: 0, registerMemory: 1, unregisterMemory: 0, createWindow: 1, removeWindow: 1, linkGroup: 0, unlinkGroup: 0, errors: 0 });
  });

  it('row 38: a contiguous 512-entry H_PUT_TCE_INDIRECT is one MAP_DMA, and the host window\'s entries equal the guest\'s', async () => {
    const { vm, fd, attach, list, hc, calls } = await setup();
    const sync = attach();
    calls.length = 0;
    const tces = Array.from({ length: 512 }, (_, i) => (G + BigInt(i) * 0x1000n) | 3n);
    expect(hc(H.PUT_TCE_INDIRECT, L0, 0x200000n, list(tces), 512n)).toBe(H.SUCCESS);
    expect(calls).toEqual([{ op: 'mapDma', liobn: L0, iova: 0x200000n, size: 512n * 0x1000n, vaddr: vm.memslots[0]!.ua + G, write: true, entries: 512 }]);
    expect(sync.stats().mapDma).toBe(1);
    const host = hostEntries(fd, 0n);
    expect(host).toHaveLength(512);
    expect(host).toEqual(expectedEntries(vm, L0, 12));
    // and the 512-entry clear is one UNMAP_DMA
    calls.length = 0;
    expect(hc(H.STUFF_TCE, L0, 0x200000n, 0n, 512n)).toBe(H.SUCCESS);
    expect(calls).toEqual([{ op: 'unmapDma', liobn: L0, iova: 0x200000n, size: 512n * 0x1000n, entries: 512 }]);
    expect(hostEntries(fd, 0n)).toEqual([]);
    expect(sync.stats()).toMatchObject({ mapDma: 1, unmapDma: 1, errors: 0 });
  });

  it('row 39: runs break where the userspace address, the permission or the kind changes; a write-only TCE is RW on the host', async () => {
    const { vm, fd, attach, list, hc, calls } = await setup();
    attach();
    calls.length = 0;
    // RW, RW | gap in guest memory | RW, W (write-only → RW on the host, same run) | R (permission changes) | unmap | RW
    const tces = [G | 3n, (G + 0x1000n) | 3n, (G + 0x5000n) | 3n, (G + 0x6000n) | 2n, (G + 0x7000n) | 1n, 0n, (G + 0x9000n) | 3n];
    expect(hc(H.PUT_TCE_INDIRECT, L0, 0x10000n, list(tces), BigInt(tces.length))).toBe(H.SUCCESS);
    const ua = vm.memslots[0]!.ua;
    expect(calls.map((c) => [c.op, c.iova, c.size, c.vaddr, c.write, c.entries])).toEqual([
      ['mapDma', 0x10000n, 0x2000n, ua + G, true, 2],
      ['mapDma', 0x12000n, 0x2000n, ua + G + 0x5000n, true, 2],
      ['mapDma', 0x14000n, 0x1000n, ua + G + 0x7000n, false, 1],
      ['unmapDma', 0x15000n, 0x1000n, undefined, undefined, 1],
      ['mapDma', 0x16000n, 0x1000n, ua + G + 0x9000n, true, 1],
    ]);
    expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L0, 12));
    // separate hypercalls are separate calls, even when contiguous (nothing is deferred past the hypercall)
    calls.length = 0;
    expect(hc(H.PUT_TCE, L0, 0x20000n, G | 3n)).toBe(H.SUCCESS);
    expect(hc(H.PUT_TCE, L0, 0x21000n, (G + 0x1000n) | 3n)).toBe(H.SUCCESS);
    expect(calls.map((c) => c.op)).toEqual(['mapDma', 'mapDma']);
  });

  it('the host is updated before the hypercall returns, after the call\'s per-event subscribers (they still see the host without the entry)', async () => {
    const { vm, fd, attach, hc } = await setup();
    attach();
    const seen: string[][] = [];
    vm.subscribe(L0, () => seen.push(hostEntries(fd, 0n)));
    expect(hc(H.PUT_TCE, L0, 0x3000n, G | 1n)).toBe(H.SUCCESS);
    // per-event subscribers run first, the sync right after, all before hcall() returns
    expect(seen).toEqual([[]]);
    expect(hostEntries(fd, 0n)).toEqual([`3000 ${(vm.memslots[0]!.ua + G).toString(16)} R`]);
  });

  it('row 35: a map of a non-RAM address: H_SUCCESS for the guest, nothing mapped, onError fires and errors counts it', async () => {
    const { fd, attach, list, hc, calls, errors } = await setup();
    const sync = attach();
    calls.length = 0;
    expect(hc(H.PUT_TCE, L0, 0x1000n, (64n * MiB) | 3n)).toBe(H.SUCCESS);
    expect(calls).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(VfioSyncError);
    expect(errors[0]).toBeInstanceOf(TceError);
    expect(errors[0]).toMatchObject({ op: 'mapDma', reason: 'not-ram', code: 'EFAULT', liobn: L0, iova: 0x1000n, size: 0x1000n });
    expect(sync.stats()).toMatchObject({ mapDma: 0, errors: 1 });
    expect(hostEntries(fd, 0n)).toEqual([]);
    // inside an INDIRECT, the non-RAM entry splits the run and the rest is still mapped
    errors.length = 0;
    const tces = [G | 3n, (G + 0x1000n) | 3n, (64n * MiB) | 3n, (G + 0x3000n) | 3n];
    expect(hc(H.PUT_TCE_INDIRECT, L0, 0x10000n, list(tces), 4n)).toBe(H.SUCCESS);
    expect(calls.map((c) => [c.op, c.iova, c.entries])).toEqual([['mapDma', 0x10000n, 2], ['mapDma', 0x13000n, 1]]);
    expect(errors.map((e) => [e.reason, e.iova])).toEqual([['not-ram', 0x12000n]]);
    expect(sync.stats()).toMatchObject({ mapDma: 2, errors: 2 });
  });

  it('a call the container refuses is counted and reported with the kernel\'s errno, never dropped', async () => {
    const { fd, ram, attach, hc, errors } = await setup();
    const sync = attach();
    // the VMM unregisters the memory behind the sync's back (nothing is mapped yet: allowed)
    fd.unregisterMemory(ram.ua, ram.size);
    expect(hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toBe(H.SUCCESS);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ op: 'mapDma', reason: 'refused', code: 'EINVAL', iova: 0x1000n });
    expect(errors[0]!.cause).toBeInstanceOf(TceError);
    expect(sync.stats()).toMatchObject({ mapDma: 1, errors: 1 });
  });

  it('replay on attach: mappings made before are mapped, coalesced', async () => {
    const { vm, fd, attach, list, hc, calls } = await setup();
    const tces = Array.from({ length: 64 }, (_, i) => (G + BigInt(i) * 0x1000n) | 3n);
    expect(hc(H.PUT_TCE_INDIRECT, L0, 0x40000n, list(tces), 64n)).toBe(H.SUCCESS);
    expect(hc(H.PUT_TCE, L0, 0x100000n, G | 1n)).toBe(H.SUCCESS);
    attach();
    expect(calls.filter((c) => c.op === 'mapDma').map((c) => [c.iova, c.size, c.entries])).toEqual([[0x40000n, 64n * 0x1000n, 64], [0x100000n, 0x1000n, 1]]);
    expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L0, 12));
  });

  for (const engine of ['wasm', 'native'] as const) {
    it(`${engine}: DDW: create → a host window at 1<<59; remove → vfio_listener_region_del: one UNMAP over the whole window (the dropped mappings make no call), then TCE_REMOVE`, async () => {
      const { host, vm, fd, attach, list, hc, rtas, calls } = await setup({ engine });
      // what the host window holds when each call has returned
      const seen: string[] = [];
      const sync = attach({
        onCall: (c) => {
          calls.push(c);
          const w = fd.container.windows.find((x) => x?.startAddr === DDW);
          seen.push(`${c.op} ${w ? `${[...w.table.entries()].length} entries` : 'no window'}`);
        },
      });
      calls.length = 0;
      expect(rtas('ibm,create-pe-dma-window', [0, HI, LO, 16, 36], 4)).toEqual([0, Number(L1), 0x08000000, 0]);
      expect(calls).toEqual([{ op: 'createWindow', liobn: L1, pageShift: 16, levels: 1, windowSize: 1n << 36n, startAddr: DDW }]);
      const tces = Array.from({ length: 8 }, (_, i) => (BigInt(i) * 0x10000n) | 3n);
      expect(hc(H.PUT_TCE_INDIRECT, L1, DDW + 0x100000n, list(tces), 8n)).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L1, DDW + 0x200000n, 0x80000n | 1n)).toBe(H.SUCCESS);
      expect(hc(H.PUT_TCE, L0, 0x3000n, G | 3n)).toBe(H.SUCCESS);
      expect(hostEntries(fd, DDW)).toEqual(expectedEntries(vm, L1, 16));
      expectRegionCounts(fd);
      const before = sync.stats();
      calls.length = 0;
      seen.length = 0;
      expect(rtas('ibm,remove-pe-dma-window', [Number(L1)], 1)).toEqual([0]);
      // QEMU hears no unmap for the 9 mappings (spapr_tce_table_disable notifies nothing): one UNMAP over the window, then TCE_REMOVE
      expect(calls).toEqual([{ op: 'unmapDma', liobn: L1, iova: DDW, size: 1n << 36n }, { op: 'removeWindow', liobn: L1, iova: DDW }]);
      expect(seen).toEqual(['unmapDma 0 entries', 'removeWindow no window']);
      expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 1, removeWindow: before.removeWindow + 1 });
      expect(fd.container.windows.map((w) => w?.startAddr)).toEqual([0n, undefined]);
      expect(sync.windows().map((w) => w.liobn)).toEqual([L0]);
      // the other window keeps its mapping; the region counts it and its registration only
      expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L0, 12));
      expect(fd.container.regions[0]!.mapped).toBe(2n);
      expectRegionCounts(fd);
      host.checkInvariants();
      // an empty window: the kernel's UNMAP over it clears nothing and succeeds (tce_iommu_clear returns 0)
      expect(rtas('ibm,create-pe-dma-window', [0, HI, LO, 16, 36], 4)[0]).toBe(0);
      calls.length = 0;
      expect(rtas('ibm,remove-pe-dma-window', [Number(L1)], 1)).toEqual([0]);
      expect(calls).toEqual([{ op: 'unmapDma', liobn: L1, iova: DDW, size: 1n << 36n }, { op: 'removeWindow', liobn: L1, iova: DDW }]);
      expect(sync.stats()).toMatchObject({ createWindow: 3, removeWindow: 3, mapDma: 3, unmapDma: 2, errors: 0 });
      expectRegionCounts(fd);
      host.checkInvariants();
    });
  }

  it('row 36: a 16M-page DDW with host page sizes 4K|64K → host window of 64K pages; one 16M MAP_DMA per TCE, contiguous ones coalesced', async () => {
    const { vm, fd, attach, list, hc, rtas, calls } = await setup({ group: { pageShifts: [12, 16] }, ramMiB: 64n, maxMemory: 160 << 20 });
    attach();
    calls.length = 0;
    expect(rtas('ibm,create-pe-dma-window', [0, HI, LO, 24, 36], 4)).toEqual([0, Number(L1), 0x08000000, 0]);
    expect(calls[0]).toMatchObject({ op: 'createWindow', pageShift: 16, windowSize: 1n << 36n, startAddr: DDW });
    calls.length = 0;
    const M16 = 16n * MiB;
    // three TCEs: 16M→gpa 0, 16M→gpa 32M (not contiguous), then gpa 48M right after it (contiguous)
    expect(hc(H.PUT_TCE_INDIRECT, L1, DDW, list([0n | 3n, (2n * M16) | 3n, (3n * M16) | 3n]), 3n)).toBe(H.SUCCESS);
    expect(calls.map((c) => [c.op, c.iova, c.size, c.entries])).toEqual([['mapDma', DDW, M16, 1], ['mapDma', DDW + M16, 2n * M16, 2]]);
    const host = hostEntries(fd, DDW);
    expect(host).toHaveLength(3 * 256); // 16M / 64K host entries per TCE
    expect(host).toEqual(expectedEntries(vm, L1, 16));
  });

  it('the host page also stays at or below the RAM backing page (qemu_minrampagesize)', async () => {
    // a 64K-page guest window over 4K-page RAM on a 4K host: 4K host pages
    const host = await Host.create({ maxMemory: 64 << 20, pageShift: 12 });
    const qemu = host.spawn();
    const ram = qemu.mmap(4n * MiB);
    const vm = qemu.createVm({ profile: 'qemu' });
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: VIO, pageShift: 16, offset: 0n, size: 1n << 12n });
    const fd = qemu.openContainer();
    fd.attachGroup(host.addGroup());
    fd.setIommu('v2');
    const sync = vm.attachContainer(fd);
    expect(sync.windows()).toMatchObject([{ liobn: VIO, pageShift: 12, windowSize: 1n << 28n }]);
    expect(vm.hcall(H.PUT_TCE, VIO, 0x10000n, 0x20000n | 3n).ret).toBe(H.SUCCESS);
    expect(hostEntries(fd, 0n)).toHaveLength(16);
    expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, VIO, 12));
  });

  it('row 37: the host places a window elsewhere than the guest\'s bus offset → removed again; thrown at attach, reported later', async () => {
    // two guest windows at bus 0 (a VIO table and the PHB's default window): only one host window can be at 0
    const a = await setup();
    a.vm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0n, size: 1n << 16n });
    const before = JSON.stringify(containerView(a.fd), (_k, x) => (typeof x === 'bigint' ? `${x}` : x));
    const err = expectErr(() => a.attach(), 'EINVAL');
    expect(err).toBeInstanceOf(VfioSyncError);
    expect(err).toMatchObject({ op: 'createWindow', reason: 'window-start', liobn: VIO, iova: 0n });
    // the failed attach undid what it made: the region, its window; the default window stays removed (QEMU's setup did that)
    expect(a.fd.container.regions).toEqual([]);
    expect(a.fd.container.windows).toEqual([undefined, undefined]);
    expect(before).toMatch(/"defWindowPending":true/);
    // and the container can be attached once the clash is gone (a sync for the PHB's LIOBNs only)
    const sync = a.attach({ liobns: [L0, Number(L1)] });
    expect(sync.windows().map((w) => w.liobn)).toEqual([L0]);
    sync.detach();

    // later: the guest's window appears after attach; the host window lands at 1<<59 and is removed, onError says so
    const b = await setup({ phb: false });
    b.vm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0n, size: 1n << 16n });
    const s = b.attach();
    b.calls.length = 0;
    b.vm.addPhb({ buid: BUID, index: 0 });
    expect(b.ops()).toEqual(['createWindow', 'removeWindow']);
    expect(b.calls[0]!.startAddr).toBe(DDW);
    expect(b.errors.map((e) => [e.reason, e.code, e.liobn])).toEqual([['window-start', 'EINVAL', L0]]);
    expect(s.windows().map((w) => w.liobn)).toEqual([VIO]);
    // maps through the window the host could not provide: reported, never silently dropped
    expect(b.hc(H.PUT_TCE, L0, 0x1000n, G | 3n)).toBe(H.SUCCESS);
    expect(b.errors.map((e) => e.reason)).toEqual(['window-start', 'no-host-window']);
    expect(s.stats().errors).toBe(2);
  });

  it('row 42: memslots: one added later is registered; one removed is unregistered, refused while TCEs point in (reported), retried by detach', async () => {
    const { host, qemu, vm, fd, attach, hc, calls, errors } = await setup();
    const sync = attach();
    const more = qemu.mmap(4n * MiB);
    calls.length = 0;
    vm.addMemslot({ gpa: 0x4000000n, size: more.size, ua: more.ua });
    expect(calls).toEqual([{ op: 'registerMemory', vaddr: more.ua, size: more.size }]);
    vm.removeMemslot(0x4000000n);
    expect(calls[1]).toEqual({ op: 'unregisterMemory', vaddr: more.ua, size: more.size });
    expect(fd.container.regions).toHaveLength(1);
    // again, with a live mapping into it
    vm.addMemslot({ gpa: 0x4000000n, size: more.size, ua: more.ua });
    expect(hc(H.PUT_TCE, L0, 0x1000n, 0x4010000n | 3n)).toBe(H.SUCCESS);
    calls.length = 0;
    vm.removeMemslot(0x4000000n);
    expect(calls.map((c) => `${c.op} ${c.error?.code}`)).toEqual(['unregisterMemory EBUSY']);
    expect(errors.map((e) => [e.op, e.code])).toEqual([['unregisterMemory', 'EBUSY']]);
    const r = fd.container.regions.find((x) => x.ua === more.ua)!;
    expect(r.mapped).toBe(2n); // pinned while the hardware TCE points in
    expect(sync.stats()).toMatchObject({ registerMemory: 3, unregisterMemory: 2, errors: 1 });
    // detach: the windows unmapped first, so both regions go
    sync.detach();
    expect(fd.container.regions).toEqual([]);
    expect(qemu.mm.lockedPages).toBe(0n);
    host.checkInvariants();
  });

  it('row 43: detach undoes what the sync made: one UNMAP per window, TCE_REMOVE, UNREGISTER; then nothing follows the guest', async () => {
    const { host, qemu, vm, fd, attach, list, hc, rtas, calls } = await setup();
    const sync = attach();
    rtas('ibm,create-pe-dma-window', [0, HI, LO, 16, 36], 4);
    hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, list([G | 3n, (G + 0x1000n) | 3n]), 2n);
    hc(H.PUT_TCE, L1, DDW, 0x10000n | 3n);
    expect(vm.events.active).toBe(true);
    calls.length = 0;
    sync.detach();
    expect(calls.map((c) => [c.op, c.iova, c.size])).toEqual([
      ['unmapDma', 0n, 1n << 30n], ['removeWindow', 0n, undefined],
      ['unmapDma', DDW, 1n << 36n], ['removeWindow', DDW, undefined],
      ['unregisterMemory', undefined, 16n * MiB],
    ]);
    expect(fd.container.windows).toEqual([undefined, undefined]);
    expect(fd.container.regions).toEqual([]);
    expect(qemu.mm.lockedPages).toBe(0n);
    expect(sync.isAttached).toBe(false);
    expect(vm.events.active).toBe(false); // the hot path is back to one boolean
    const st = sync.stats();
    expect(hc(H.PUT_TCE, L0, 0x9000n, G | 3n)).toBe(H.SUCCESS);
    vm.addMemslot({ gpa: 0x4000000n, size: MiB, ua: qemu.mmap(MiB).ua });
    expect(sync.stats()).toEqual(st);
    sync.detach(); // idempotent
    expect(sync.stats()).toEqual(st);
    host.checkInvariants();
    // the container is free for another sync
    const again = vm.attachContainer(fd);
    expect(hostEntries(fd, 0n)).toEqual(expectedEntries(vm, L0, 12));
    again.detach();
  });

  for (const engine of ['wasm', 'native'] as const) {
    it(`${engine}: reset-pe-dma-window and vm.reset(): each PHB window's region_del (one UNMAP over it, TCE_REMOVE) in window order, then the default window's region_add; a non-PHB table's unmaps are mirrored`, async () => {
      const { host, vm, fd, attach, list, hc, rtas, calls } = await setup({ engine });
      const seen: string[] = [];
      const sync = attach({
        onCall: (c) => {
          calls.push(c);
          seen.push(`${c.op} ${fd.container.windows.map((w) => (w ? [...w.table.entries()].length : '-')).join(',')}`);
        },
      });
      rtas('ibm,create-pe-dma-window', [0, HI, LO, 16, 36], 4);
      hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, list([G | 3n, (G + 0x1000n) | 3n]), 2n);
      hc(H.PUT_TCE, L1, DDW, 0x10000n | 3n);
      expectRegionCounts(fd);
      let before = sync.stats();
      calls.length = 0;
      seen.length = 0;
      expect(rtas('ibm,reset-pe-dma-window', [0, HI, LO], 1)).toEqual([0]);
      expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
        ['unmapDma', L0, 0n, 1n << 30n], ['removeWindow', L0, 0n, undefined],
        ['unmapDma', L1, DDW, 1n << 36n], ['removeWindow', L1, DDW, undefined],
        ['createWindow', L0, undefined, undefined],
      ]);
      // after each call, the entries of the container's two windows ('-': none)
      expect(seen).toEqual(['unmapDma 0,1', 'removeWindow -,1', 'unmapDma -,0', 'removeWindow -,-', 'createWindow 0,-']);
      expect(calls[4]).toMatchObject({ startAddr: 0n, pageShift: 12 });
      expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 2, removeWindow: before.removeWindow + 2, createWindow: before.createWindow + 1 });
      expect(fd.container.windows.map((w) => w?.startAddr)).toEqual([0n, undefined]);
      expect(hostEntries(fd, 0n)).toEqual([]);
      expect(fd.container.regions[0]!.mapped).toBe(1n);
      host.checkInvariants();
      // vm.reset() with a table no PHB owns: spapr_tce_reset's unmaps (a divergence: QEMU notifies none) are mirrored; the PHB's window goes by region_del
      // (its host window goes in the second slot, at 1<<59, where the kernel places it)
      vm.createTceTable({ liobn: VIO, pageShift: 12, offset: DDW >> 12n, size: 16n });
      hc(H.PUT_TCE, VIO, DDW + 0x2000n, G | 3n);
      hc(H.PUT_TCE, L0, 0x5000n, G | 3n);
      expect(hostEntries(fd, DDW)).toHaveLength(1);
      before = sync.stats();
      calls.length = 0;
      vm.reset();
      expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
        ['unmapDma', VIO, DDW + 0x2000n, 0x1000n],
        ['unmapDma', L0, 0n, 1n << 30n], ['removeWindow', L0, 0n, undefined],
        ['createWindow', L0, undefined, undefined],
      ]);
      expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 2, removeWindow: before.removeWindow + 1, createWindow: before.createWindow + 1 });
      expect(hostEntries(fd, 0n)).toEqual([]);
      expect(hostEntries(fd, DDW)).toEqual([]);
      expect(fd.container.regions[0]!.mapped).toBe(1n);
      expectRegionCounts(fd);
      expect(sync.stats().errors).toBe(0);
      host.checkInvariants();
    });
  }

  for (const engine of ['wasm', 'native'] as const) {
    it(`${engine}: vm.destroy(): every window's region_del (one UNMAP over it, TCE_REMOVE), then the prereg listener's UNREGISTER (vfio_disconnect_container, then vfio_spapr_container_release)`, async () => {
      const { host, vm, fd, attach, hc, rtas, calls, errors } = await setup({ engine });
      const sync = attach();
      rtas('ibm,create-pe-dma-window', [0, HI, LO, 16, 36], 4);
      hc(H.PUT_TCE, L0, 0x2000n, G | 3n);
      hc(H.PUT_TCE, L1, DDW + 0x10000n, G | 1n);
      calls.length = 0;
      vm.destroy();
      expect(calls.map((c) => [c.op, c.liobn, c.iova, c.size])).toEqual([
        ['unmapDma', L0, 0n, 1n << 30n], ['removeWindow', L0, 0n, undefined],
        ['unmapDma', L1, DDW, 1n << 36n], ['removeWindow', L1, DDW, undefined],
        ['unregisterMemory', undefined, undefined, 16n * MiB],
      ]);
      expect(fd.container.windows).toEqual([undefined, undefined]);
      expect(fd.container.regions).toEqual([]);
      expect(errors).toEqual([]);
      sync.detach();
      host.checkInvariants();
    });
  }

  it('row 45: after Host.restore, re-attaching adopts the registered region and the mirroring window, empties it and replays: host = guest', async () => {
    const { host, qemu, vm, fd, attach, list, hc } = await setup();
    const sync = attach();
    hc(H.PUT_TCE_INDIRECT, L0, 0x1000n, list([G | 3n, (G + 0x1000n) | 3n, (G + 0x8000n) | 1n]), 3n);
    const snap = host.snapshot();
    sync.detach();
    const hostB = Host.restore(snap);
    const qemuB = hostB.processes.get(qemu.tid)!;
    const vmB = [...hostB.vms].find((x) => x.process === qemuB)!;
    const fdB = qemuB.containers()[0]!;
    expect(hostEntries(fdB, 0n)).toHaveLength(3); // the host window came with the snapshot
    // a stale host entry the guest no longer has (as if the source had missed an unmap)
    fdB.mapDma({ iova: 0x40000n, vaddr: vmB.memslots[0]!.ua, size: 0x1000n, read: true });
    const calls: VfioCall[] = [];
    const syncB = vmB.attachContainer(fdB, { onCall: (c) => calls.push(c) });
    expect(calls.map((c) => [c.op, c.iova, c.size])).toEqual([['unmapDma', 0n, 1n << 30n], ['mapDma', 0x1000n, 0x2000n], ['mapDma', 0x3000n, 0x1000n]]);
    expect(syncB.windows()).toEqual([{ liobn: L0, busOffset: 0n, windowSize: 1n << 30n, pageShift: 12, levels: 1, adopted: true }]);
    expect(hostEntries(fdB, 0n)).toEqual(expectedEntries(vmB, L0, 12));
    expect(fdB.container.regions.map((r) => [r.used, r.mapped])).toEqual([[1, 4n]]);
    hostB.checkInvariants();
    syncB.detach();
    expect(fdB.container.regions).toEqual([]);
    expect(fdB.container.windows).toEqual([undefined, undefined]);
    void vm;
    void fd;
  });

  it('a window that mirrors no guest window (left on the container) is removed at attach', async () => {
    const { fd, ram, attach, ops } = await setup();
    fd.registerMemory(ram.ua, ram.size);
    fd.removeWindow(0n);
    fd.createWindow({ pageShift: 16, windowSize: 1n << 30n, levels: 1 }); // 64K pages: the sync would pick 4K
    attach();
    expect(ops()).toEqual(['removeWindow', 'createWindow']); // the region was adopted: no second REGISTER
    expect(fd.container.windows.map((w) => w && [w.startAddr, w.pageShift])).toEqual([[0n, 12], undefined]);
  });

  it('a v1 container: ENABLE, no prereg or window calls; guest windows must lie in the 32-bit window', async () => {
    const host = await Host.create({ maxMemory: 96 << 20 });
    const qemu = host.spawn();
    const ram = qemu.mmap(16n * MiB);
    const vm = qemu.createVm({ profile: 'qemu' });
    vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
    vm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0n, size: 1n << 16n }); // 256 MiB at 0
    const fd = qemu.openContainer();
    fd.attachGroup(host.addGroup({ ddw: false, tce32Size: 256n * MiB }));
    fd.setIommu('v1');
    const calls: VfioCall[] = [];
    const errors: VfioSyncError[] = [];
    const sync = vm.attachContainer(fd, { onCall: (c) => calls.push(c), onError: (e) => errors.push(e) });
    expect(fd.container.enabled).toBe(true);
    expect(calls).toEqual([]);
    expect(vm.hcall(H.PUT_TCE, VIO, 0x2000n, 0x30000n | 3n).ret).toBe(H.SUCCESS);
    expect(calls.map((c) => [c.op, c.iova, c.size])).toEqual([['mapDma', 0x2000n, 0x1000n]]);
    // v1 pins page by page and keeps no userspace view: the hardware entry holds the page, RW
    expect(hostEntries(fd, 0n)).toEqual(['2000 0 RW']);
    expect(fd.container.windows[0]!.table.get(2n) & ~0xfffn).toBe(qemu.mm.translate(ram.ua + 0x30000n)!.hpa);
    // a table past the 32-bit window cannot be mirrored
    vm.createTceTable({ liobn: VIO + 1n, pageShift: 12, offset: 1n << 20n, size: 16n });
    expect(errors.map((e) => [e.reason, e.liobn])).toEqual([['outside-host-window', VIO + 1n]]);
    sync.detach();
    expect(hostEntries(fd, 0n)).toEqual([]);
    expect(fd.container.enabled).toBe(false);
    host.checkInvariants();
  });

  for (const engine of ['wasm', 'native'] as const) {
    it(`${engine}: a v1 container: a window's region_del is one UNMAP over the guest window and no TCE_REMOVE (vfio_spapr_container_del_section_window is v2 only)`, async () => {
      const host = await Host.create({ engine, maxMemory: 96 << 20 });
      const qemu = host.spawn();
      const ram = qemu.mmap(16n * MiB);
      const vm = qemu.createVm({ profile: 'qemu' });
      vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
      vm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0x1000n, size: 1n << 12n }); // 16 MiB at 16 MiB
      const fd = qemu.openContainer();
      fd.attachGroup(host.addGroup({ ddw: false, tce32Size: 256n * MiB }));
      fd.setIommu('v1');
      const calls: VfioCall[] = [];
      const errors: VfioSyncError[] = [];
      const sync = vm.attachContainer(fd, { onCall: (c) => calls.push(c), onError: (e) => errors.push(e) });
      expect(vm.hcall(H.PUT_TCE, VIO, 0x1002000n, 0x30000n | 3n).ret).toBe(H.SUCCESS);
      expect(vm.hcall(H.PUT_TCE, VIO, 0x1005000n, 0x40000n | 1n).ret).toBe(H.SUCCESS);
      // a mapping the VMM made itself elsewhere in the host window, outside the guest window: not the sync's to clear
      fd.mapDma({ iova: 0x8000000n, vaddr: ram.ua, size: 0x1000n, read: true });
      const before = sync.stats();
      calls.length = 0;
      vm.destroy();
      expect(calls).toEqual([{ op: 'unmapDma', liobn: VIO, iova: 0x1000000n, size: 16n * MiB }]);
      expect(sync.stats()).toEqual({ ...before, unmapDma: before.unmapDma + 1 });
      expect(hostEntries(fd, 0n)).toEqual(['8000000 0 R']);
      expect(errors).toEqual([]);
      sync.detach();
      expect(fd.container.enabled).toBe(false);
      host.checkInvariants();
    });
  }

  it('row 44: refused: a second sync, another mm, a closed or unset container, bad options (the kvm profile: vmm-vfio-sync-kvm.test.ts)', async () => {
    const { host, qemu, vm, fd, group, attach } = await setup();
    const s = attach();
    expectErr(() => vm.attachContainer(fd), 'EBUSY');
    s.detach();
    const other = host.spawn();
    expectErr(() => vm.attachContainer(other.inherit(fd)), 'EINVAL');
    const fresh = qemu.openContainer();
    expectErr(() => vm.attachContainer(fresh), 'ENXIO');
    fresh.attachGroup(host.addGroup());
    expectErr(() => vm.attachContainer(fresh), 'ENXIO'); // no IOMMU type yet
    fresh.close();
    expectErr(() => vm.attachContainer(fresh), 'EBADF');
    expect(() => vm.attachContainer({} as ContainerFd)).toThrow(TypeError);
    expect(() => vm.attachContainer(fd, { onError: 1 as unknown as () => void })).toThrow(/opts.onError/);
    expect(() => vm.attachContainer(fd, { liobns: ['x' as unknown as bigint] })).toThrow(/opts.liobns\[0\]/);
    expect(() => vm.attachContainer(fd, { liobns: [-1] })).toThrow(RangeError);
    const otherHost = await Host.create();
    const alien = otherHost.spawn().openContainer();
    expect(() => vm.attachContainer(alien)).toThrow(/another host/);
    // none of that changed the container
    expect(fd.container.windows.map((w) => w?.startAddr)).toEqual([undefined, undefined]);
    expect(fd.container.regions).toEqual([]);
    void group;
  });

  it('a failed REGISTER at attach (RLIMIT_MEMLOCK) throws and leaves the container as it was', async () => {
    const { fd, qemu, attach } = await setup({ memlockLimit: 1n * MiB });
    const view = () => JSON.stringify({ ...(containerView(fd) as object), mm: undefined, ownerPid: undefined }, (_k, x) => (typeof x === 'bigint' ? `${x}` : x));
    const before = view();
    expectErr(() => attach(), 'ENOMEM');
    // REGISTER claims the container for the caller's mm before its checks (tce_iommu_ioctl, E3); nothing else changed
    expect(fd.container.mm).toBe(qemu.mm);
    expect(view()).toBe(before);
    expect(qemu.mm.lockedPages).toBe(0n);
    // a second try after the limit problem is the same refusal, not EBUSY: nothing is left attached
    expectErr(() => attach(), 'ENOMEM');
  });
});
