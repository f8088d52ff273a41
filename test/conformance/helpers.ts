// Shared helpers for the container conformance tests (docs/semantics.md §2.3–§2.5, §3, §7).
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { Host, TceError, ERRNO, type OwnerCheck } from '../../src/index.js';
import type { ContainerFd, Group, IommuEvent, Process, Vcpu, Vm, VmEvent } from '../../src/index.js';
import { HEAP_BASE, HEADER_BASE, HDR_ALLOC_TOP, VCPU_BYTES } from '../../src/generated/layout.js';

export const KiB = 1n << 10n;
export const MiB = 1n << 20n;
export const GiB = 1n << 30n;
export const DDW_BASE = 1n << 59n;

/** Asserts that fn throws a TceError with `code` (and the matching positive Linux errno). */
export function expectErr(fn: () => unknown, code: keyof typeof ERRNO): TceError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}, nothing was thrown`).toBeDefined();
  expect(err, `expected a TceError ${code}, got ${String(err)}`).toBeInstanceOf(TceError);
  const te = err as TceError;
  expect(te.code, te.message).toBe(code);
  expect(te.errno).toBe(ERRNO[code]);
  expect(te.errno).toBeGreaterThan(0);
  return te;
}

/**
 * pnv_pci_ioda2_get_table_size, re-derived from docs/semantics.md §2.2 independently of src:
 * E = log2(win) − sh; node = 2^max(ceil(E/L)+3, PAGE_SHIFT) bytes; per level the
 * bytes rounded up to whole nodes (leaf at least 4 KiB); ×2 for HW tree + userspace view.
 */
export function specTableSize(sh: number, win: bigint, levels: number, pageShift: number): bigint {
  if (levels < 1 || levels > 5 || win <= 0n || (win & (win - 1n)) !== 0n) return 0n;
  const E = win.toString(2).length - 1 - sh;
  const nodeShift = Math.max(Math.ceil(E / levels) + 3, pageShift);
  const node = 1n << BigInt(nodeShift);
  let levelBytes = 1n << BigInt(E + 3);
  if (levelBytes < 4096n) levelBytes = 4096n;
  let total = 0n;
  for (let l = 0; l < levels; l++) {
    total += ((levelBytes + node - 1n) / node) * node;
    levelBytes = (levelBytes / node) * 8n;
    if (levelBytes < node) levelBytes = node;
  }
  return 2n * total;
}

/** Pages of locked_vm a window of this geometry costs (§3.1: it_allocated_size / PAGE_SIZE). */
export function specTablePages(sh: number, win: bigint, levels: number, pageShift = 16): bigint {
  return specTableSize(sh, win, levels, pageShift) >> BigInt(pageShift);
}

const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);

/** Everything observable about a container, for "nothing changed" comparisons. */
export function containerView(fd: ContainerFd): unknown {
  const c = fd.container;
  return {
    v2: c.v2,
    enabled: c.enabled,
    mm: c.mm?.id,
    ownerPid: c.ownerPid,
    defWindowPending: c.defWindowPending,
    lockedPages: c.lockedPages,
    groups: c.groups.map((g) => g.id),
    windows: c.windows.map((w) => w && { startAddr: w.startAddr, windowSize: w.windowSize, pageShift: w.pageShift, levels: w.levels, table: w.table.id, hasView: w.table.hasView }),
    regions: c.regions.map((r) => ({ ua: r.ua, entries: r.entries, used: r.used, mapped: r.mapped })),
  };
}

/**
 * A digest of the whole observable host state: the linear memory up to the
 * allocator top, host.stats(), every mm's locked_vm, groups, and the given containers.
 */
export function digest(host: Host, fds: ContainerFd[] = [], procs: Process[] = []): string {
  const st = host.stats();
  const top = HEAP_BASE + st.memory.heapTop;
  const h = createHash('sha256');
  h.update(host.mem.u8.slice(0, top));
  h.update(JSON.stringify(st, big));
  h.update(JSON.stringify([...host.mms].map((mm) => [mm.id, mm.lockedPages, [...mm.charges]]), big));
  h.update(JSON.stringify([...host.groups].map((g) => [g.id, g.owned, g.hostWindow, g.container?.id, g.slots.map((t) => t?.id)]), big));
  h.update(JSON.stringify(fds.map(containerView), big));
  h.update(JSON.stringify(procs.map((p) => p.mm.lockedPages), big));
  return h.digest('hex');
}

/** A host, an owner process, 1 MiB of RAM (and a second 1 MiB) and a v2 container with one DDW group. */
export async function v2Setup(ownerCheck: OwnerCheck = 'mm', opts: { memlockLimit?: bigint; tce32Size?: bigint; pageShift?: 12 | 16 } = {}) {
  const host = await Host.create({ ownerCheck, pageShift: opts.pageShift });
  const p = host.spawn(opts.memlockLimit === undefined ? undefined : { memlockLimit: opts.memlockLimit });
  const ram = p.mmap(MiB);
  const ram2 = p.mmap(MiB);
  const g = host.addGroup(opts.tce32Size === undefined ? {} : { tce32Size: opts.tce32Size });
  const fd = p.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  return { host, p, ram, ram2, g, fd };
}

/** A host, owner process and a v1 container with one legacy group. */
export async function v1Setup(ownerCheck: OwnerCheck = 'mm', opts: { memlockLimit?: bigint; tce32Size?: bigint } = {}) {
  const host = await Host.create({ ownerCheck });
  const p = host.spawn(opts.memlockLimit === undefined ? undefined : { memlockLimit: opts.memlockLimit });
  const ram = p.mmap(MiB);
  const g = host.addGroup({ ddw: false, tce32Size: opts.tce32Size ?? 256n * MiB });
  const fd = p.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v1');
  return { host, p, ram, g, fd };
}

/** The region of fd's container registered at `ua`. */
export function regionAt(fd: ContainerFd, ua: bigint) {
  const r = fd.container.regions.find((x) => x.ua === ua);
  if (!r) throw new Error(`no region at 0x${ua.toString(16)} in container`);
  return r;
}

/** §3: every region's `mapped` is its registration (1) plus the live host TCEs pointing into it. */
export function expectRegionCounts(fd: ContainerFd): void {
  const c = fd.container;
  const uas = c.windows.flatMap((w) => (w ? [...w.table.entries()].map(([, , ua]) => ua) : []));
  for (const r of c.regions) expect(r.mapped, `region at 0x${r.ua.toString(16)}`).toBe(1n + BigInt(uas.filter((ua) => ua >= r.ua && ua < r.ua + r.size).length));
}

/** §3.6: every window of the container is programmed in every attached DDW group at its slot. */
export function expectProgrammed(fd: ContainerFd, groups: Group[]): void {
  for (const g of groups) {
    for (let i = 0; i < 2; i++) expect(g.slots[i], `group ${g.id} slot ${i}`).toBe(fd.container.windows[i]?.table);
  }
}

/** A copy of linear memory up to the allocator top, with the given vCPU register blocks (r3, level, stats) blanked. */
export function snap(host: Host, skip: Vcpu[]): Buffer {
  const top = host.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP);
  const b = Buffer.from(host.mem.u8.slice(0, top));
  for (const c of skip) b.fill(0, c.desc, c.desc + VCPU_BYTES);
  return b;
}

/** Fails, naming the first changed byte, unless linear memory still equals `before` (a snap()). */
export function expectUnchanged(host: Host, before: Buffer, skip: Vcpu[], what = 'the call'): void {
  const after = snap(host, skip);
  if (after.equals(before)) return;
  let i = 0;
  while (i < before.length && i < after.length && before[i] === after[i]) i++;
  expect.fail(`${what} changed linear memory: first difference at offset ${i} (allocator top ${before.length} → ${after.length})`);
}

/** The guest of docs/semantics.md §9: 16 MiB of RAM at gpa 0, LIOBN `liobn` with 1 GiB of 4K pages at bus 0, one vCPU. */
export async function guestSetup(profile: 'qemu' | 'kvm', liobn = 0x80000000n) {
  const host = await Host.create({ maxMemory: 48 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn, pageShift: 12, offset: 0n, size: 262144n });
  const vcpu = vm.vcpu(0);
  const dv = new DataView(ram.bytes!.buffer, ram.bytes!.byteOffset, ram.bytes!.byteLength);
  /** Writes a big-endian TCE list at guest physical `at` (4K aligned) and returns its address. */
  const list = (tces: bigint[], at = 0x100000): bigint => {
    tces.forEach((t, i) => dv.setBigUint64(at + i * 8, t, false));
    return BigInt(at);
  };
  /** Runs hypercall `nr` with arguments r4.. through the vCPU's whole chain. */
  const run = (nr: number, ...args: bigint[]): number => {
    vcpu.regs[3] = BigInt(nr);
    for (let i = 0; i < 4; i++) vcpu.regs[4 + i] = args[i] ?? 0n;
    return vcpu.hcall();
  };
  return { host, qemu, ram, vm, vcpu, dv, list, run };
}


/** Whether a VM event is a map/unmap, not a window event: each member's `kind` has two values, so `===` on one of them does not narrow the union. */
export function isIommuEvent(e: VmEvent): e is IommuEvent {
  return e.kind === 'map' || e.kind === 'unmap';
}

/** The host window at `start`: 'iova ua R|RW' for every entry. */
export function hostEntries(fd: ContainerFd, start: bigint): string[] {
  const w = fd.container.windows.find((x) => x?.startAddr === start);
  if (!w) return [];
  return [...w.table.entries()].map(([e, tce, ua]) => `${(e << BigInt(w.pageShift)).toString(16)} ${ua.toString(16)} ${tce & 2n ? 'RW' : 'R'}`);
}

/** What a host window of 2^hostShift pages must hold for the guest's mappings of `liobn`, in hostEntries' form. */
export function expectedEntries(vm: Vm, liobn: bigint, hostShift = 12): string[] {
  const out: string[] = [];
  const hp = 1n << BigInt(hostShift);
  vm.replay(liobn, (e) => {
    const s = vm.memslots.find((m) => e.gpa >= m.gpa && e.gpa < m.gpa + m.size)!;
    for (let off = 0n; off < e.size; off += hp) out.push(`${(e.iova + off).toString(16)} ${(s.ua + e.gpa - s.gpa + off).toString(16)} ${e.perm & 2 ? 'RW' : 'R'}`);
  });
  return out;
}
