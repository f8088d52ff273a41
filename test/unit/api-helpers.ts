// Shared by the api-* tests (the argument rules of docs/semantics.md §1.1): a
// host with one of everything the public API makes, a digest of all its
// state, and the assertion that a refused call throws the right error, naming
// the right thing, and changes nothing.
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { Host } from '../../src/index.js';
import type { ContainerFd, Vm } from '../../src/index.js';
import { digest } from '../conformance/helpers.js';
import { v2Container, linkedVm } from '../fixtures.js';

const MiB = 1n << 20n;
/** The kvm-profile guest's LIOBN and the qemu-profile VIO unit's. */
export const LIOBN = 0x8000_0000n;
export const VIO = 0x7100_0000n;

/**
 * A host with a process, guest RAM, a v2 container (a window, a mapping), a
 * kvm-profile VM linked to it (memslot, table, vCPU) and a qemu-profile VM of
 * a second process (memslot, a PHB, a VIO table, a container kept in sync).
 */
export async function world(opts: { kernel?: '4.12' | '4.19' | '5.19' } = {}) {
  const host = await Host.create({ maxMemory: 32 << 20, ...opts });
  const p = host.spawn();
  const ram = p.mmap(4n * MiB);
  const { g, fd } = v2Container(host, p, ram, { pageShift: 12, windowSize: 1n << 30n, levels: 1 });
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true, write: true });
  const vm = linkedVm(p, ram, g, { liobn: LIOBN, pageShift: 12, size: 1n << 18n });
  const vcpu = vm.vcpu(0);

  const q = host.spawn();
  const qram = q.mmap(4n * MiB);
  const qvm = q.createVm({ profile: 'qemu' });
  qvm.addMemslot({ gpa: 0n, size: qram.size, ua: qram.ua });
  const phb = qvm.addPhb({ buid: 0x800000020000000n, index: 0 });
  qvm.createTceTable({ liobn: VIO, pageShift: 12, offset: 0n, size: 1024n });
  const qg = host.addGroup();
  const qfd = q.openContainer();
  qfd.attachGroup(qg);
  qfd.setIommu('v2');
  const sync = qvm.attachContainer(qfd, { liobns: [VIO] });
  return { host, p, ram, g, fd, vm, vcpu, q, qram, qvm, phb, qg, qfd, sync };
}

const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);

/** The objects around the linear memory: VMs (memslots, tables, PHBs, vCPUs, bypass), processes, id counters. */
function objects(host: Host): string {
  const vms = [...host.vms].map((vm: Vm) => ({
    profile: vm.profile,
    memslots: vm.memslots,
    tables: [...vm.tables.values()],
    phbs: vm.phbs.map((ph) => ({ buid: ph.buid, windows: ph.windows(), defWin: ph.defWin })),
    vcpus: [...vm.vcpus.keys()],
    friendly: vm.friendly?.desc,
    bypass: [...vm.bypass],
    stats: vm.stats(),
  }));
  const procs = [...host.processes.values()].map((p) => [p.pid, p.tid, p.mm.id, p.memlockLimit, p.containers().length]);
  return JSON.stringify({ vms, procs, counters: host.idCounters(), mms: [...host.mms].map((m) => [m.id, m.mappings.length, m.nextUa]) }, big);
}

/** A digest of everything observable: linear memory, stats, mms, groups, every container, and objects(). */
export function state(host: Host): string {
  const fds: ContainerFd[] = [];
  for (const c of host.containers) for (const fd of c.fds) fds.push(fd);
  return createHash('sha256').update(digest(host, fds)).update(objects(host)).digest('hex');
}

/**
 * `fn` must throw an error of class `kind` whose message matches `message`,
 * and leave state(host) as it was. Returns the error.
 */
export function refused(host: Host, fn: () => unknown, kind: ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor, message: RegExp): Error {
  const before = state(host);
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a ${kind.name} matching ${message}, nothing was thrown`).toBeDefined();
  expect(caught, `expected a ${kind.name}, got ${String(caught)}`).toBeInstanceOf(kind);
  expect((caught as Error).message).toMatch(message);
  expect(state(host), `the refused call (${(caught as Error).message}) changed the state`).toBe(before);
  return caught as Error;
}

/** Bypasses the compiler's checks, for calls a JavaScript caller could make. */
export const any = <T = never>(x: unknown): T => x as T;
