// Processes of the simulated host: a pid, a thread id and an mm. thread()
// shares both pid and mm, fork() gets a new pid and a copy of the address
// space (fresh page frames: pinning writable pages breaks copy-on-write),
// clone({vm: true}) a new pid sharing the mm (CLONE_VM without CLONE_THREAD).
import type { Host } from './host.js';
import type { Mm } from './mm.js';
import * as v from './validate.js';
import { fail } from './errors.js';
import { Container, ContainerFd } from './container.js';
import { Vm } from './vm.js';

/** What mmap() returns: a userspace range and, when backed, its bytes. */
export interface MmapResult {
  ua: bigint;
  size: bigint;
  bytes: Uint8Array | undefined;
}

/** A task of the simulated host. */
export class Process {
  readonly host: Host;
  readonly pid: number;
  readonly tid: number;
  readonly mm: Mm;
  /** RLIMIT_MEMLOCK in bytes (null: unlimited), inherited by threads, forks and clones. */
  readonly memlockLimit: bigint | null;

  /** @internal use host.spawn() */
  constructor(host: Host, pid: number, tid: number, mm: Mm, memlockLimit: bigint | null) {
    this.host = host;
    this.pid = pid;
    this.tid = tid;
    this.mm = mm;
    this.memlockLimit = memlockLimit;
    host.processes.set(tid, this);
  }

  /** The container handles this task holds open. */
  containers(): ContainerFd[] {
    const out: ContainerFd[] = [];
    for (const c of this.host.containers) for (const fd of c.fds) if (fd.process === this) out.push(fd);
    return out;
  }

  /** The locked-memory limit in system pages (null: unlimited). */
  get memlockLimitPages(): bigint | null {
    return this.memlockLimit === null ? null : this.memlockLimit >> BigInt(this.host.pageShift);
  }

  /** Another thread of this process: same pid, same mm. */
  thread(): Process {
    return new Process(this.host, this.pid, this.host.nextTid(), this.mm, this.memlockLimit);
  }

  /** A forked child: new pid, a copy of the address space at the same addresses. */
  fork(): Process {
    const mm = this.host.newMm();
    for (const m of this.mm.mappings) mm.map(m.size, m.pageShift, m.bytes !== undefined, m);
    const pid = this.host.nextTid();
    return new Process(this.host, pid, pid, mm, this.memlockLimit);
  }

  /** clone(2): with {vm: true} a new pid sharing this mm (what KVM's worker threads or a vhost task get). */
  clone(opts?: { vm?: boolean }): Process {
    const o = v.options<{ vm: boolean }>('opts', opts);
    if (!v.bool('opts.vm', o.vm, false)) return this.fork();
    const pid = this.host.nextTid();
    return new Process(this.host, pid, pid, this.mm, this.memlockLimit);
  }

  /**
   * mmap(size): a new range of this address space, aligned to its page
   * (2^hugePageShift when given, else the system page); `backed` (default
   * true) gives its bytes as a Uint8Array.
   */
  mmap(size: bigint, opts?: { hugePageShift?: number; backed?: boolean }): MmapResult {
    v.u64('size', size);
    const o = v.options<{ hugePageShift: number; backed: boolean }>('opts', opts);
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

  /** Opens a VFIO container (open("/dev/vfio/vfio")): a handle bound to this process. */
  openContainer(): ContainerFd {
    return new ContainerFd(this, new Container(this.host, this.host.nextId()));
  }

  /** The same container as `fd`, used from this process (what fork() or fd passing gives). */
  inherit(fd: ContainerFd): ContainerFd {
    if (!(fd instanceof ContainerFd)) throw new TypeError('inherit(fd): fd must be a ContainerFd');
    if (fd.container.host !== this.host) throw new TypeError('inherit(fd): the container belongs to another host');
    if (!fd.isOpen) throw new TypeError('inherit(fd): the handle is closed');
    return new ContainerFd(this, fd.container);
  }

  /** KVM_CREATE_VM: a guest whose memory and hypercall lookups use this process's mm. */
  createVm(opts?: { profile?: 'kvm' | 'qemu' }): Vm {
    const o = v.options<{ profile: 'kvm' | 'qemu' }>('opts', opts);
    return new Vm(this, v.oneOf('opts.profile', o.profile, ['kvm', 'qemu'] as const, 'kvm'));
  }
}
