// A task as the kernel layers see it (the parts of task_struct the IOMMU code
// reads): a pid, a thread id, an mm, RLIMIT_MEMLOCK and its descriptor table
// (files_struct). thread(), fork() and clone() make new tasks of the host's
// own kind (Process, src/host/process.ts, which adds the file descriptors:
// containers and VMs); mmap() is the kernel's.
import type { HostContext } from '../core/context.js';
import type { Mm } from './mm.js';
import * as v from '../core/validate.js';
import { fail } from '../core/errors.js';

/** What mmap() returns: a userspace range and, when backed, its bytes. */
export interface MmapResult {
  ua: bigint;
  size: bigint;
  bytes: Uint8Array | undefined;
}

/**
 * A descriptor table (files_struct): the threads of a process and its
 * clone({vm: true}) children (CLONE_VM | CLONE_FILES) share their creator's;
 * fork() gives the child a copy (dup_fd), which remembers the table it was
 * copied from, so a handle can tell a fork child from an unrelated process.
 */
export class FdTable {
  /** The table fork() copied this one from; undefined for a process's first table. */
  readonly copiedFrom: FdTable | undefined;

  constructor(copiedFrom?: FdTable) {
    this.copiedFrom = copiedFrom;
  }

  /** Whether this table is a copy of `other`, made by fork() directly or through earlier forks. */
  isCopyOf(other: FdTable): boolean {
    for (let t = this.copiedFrom; t; t = t.copiedFrom) if (t === other) return true;
    return false;
  }
}

/** Options of mmap(). */
export interface MmapOptions {
  /** Align to and back with pages of 2^hugePageShift bytes (default the system page). */
  hugePageShift?: number;
  /** Give the range bytes (a Uint8Array over linear memory); default true. */
  backed?: boolean;
}
const MMAP_OPTIONS = v.keys<MmapOptions>('mmap', { hugePageShift: true, backed: true });

/** A task of the simulated host: what VFIO and KVM check a caller by. */
export abstract class Task {
  readonly host: HostContext;
  readonly pid: number;
  readonly tid: number;
  readonly mm: Mm;
  /** RLIMIT_MEMLOCK in bytes (null: unlimited), inherited by threads, forks and clones. */
  readonly memlockLimit: bigint | null;
  /** The descriptor table: shared by threads and vm-clones, copied by fork(). */
  readonly files: FdTable;

  constructor(host: HostContext, pid: number, tid: number, mm: Mm, memlockLimit: bigint | null, files: FdTable = new FdTable()) {
    this.host = host;
    this.pid = pid;
    this.tid = tid;
    this.mm = mm;
    this.memlockLimit = memlockLimit;
    this.files = files;
  }

  /** Another thread of this process: same pid, same mm. */
  abstract thread(): Task;
  /** A forked child: new pid, a copy of the address space at the same addresses. */
  abstract fork(): Task;
  /** clone(2): with {vm: true} a new pid sharing this mm (what KVM's worker threads or a vhost task get). */
  abstract clone(opts?: { vm?: boolean }): Task;

  /** The locked-memory limit in system pages (null: unlimited). */
  get memlockLimitPages(): bigint | null {
    return this.memlockLimit === null ? null : this.memlockLimit >> BigInt(this.host.pageShift);
  }

  /**
   * mmap(size): a new range of this address space, aligned to its page
   * (2^hugePageShift when given, else the system page); `backed` (default
   * true) gives its bytes as a Uint8Array.
   */
  mmap(size: bigint | number, opts?: MmapOptions): MmapResult {
    size = v.u64('size', size);
    const o = v.options('opts', opts, MMAP_OPTIONS);
    const sys = this.host.pageShift;
    const shift = o.hugePageShift === undefined ? sys : v.int('opts.hugePageShift', o.hugePageShift, sys, 34);
    const backed = v.bool('opts.backed', o.backed, true);
    const page = 1n << BigInt(shift);
    if (size === 0n) fail('EINVAL', 'mmap: size must not be 0');
    if (size & (page - 1n)) fail('EINVAL', `mmap: size ${size} is not a multiple of the page size 2^${shift}`);
    if (size > 1n << 46n) fail('ENOMEM', `mmap: size ${size} exceeds the simulated address space`);
    const m = this.mm.map(size, shift, backed);
    return { ua: m.ua, size: m.size, bytes: m.bytes };
  }
}
