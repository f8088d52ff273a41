// Processes of the simulated host: a task (src/kernel/task.ts) with the file
// descriptors a VMM holds, VFIO containers and KVM VMs. thread() shares pid,
// mm and descriptor table; fork() gets a new pid, a copy of the address space
// (fresh page frames: pinning writable pages breaks copy-on-write) and a copy
// of the descriptor table; clone({vm: true}) a new pid sharing the mm and the
// table (CLONE_VM | CLONE_FILES without CLONE_THREAD).
//
// How a task comes to hold a container handle, each named for what it models:
//   openContainer()  open("/dev/vfio/vfio");
//   inherit(fd)      the copy of `fd` in this task's descriptor table: a fork
//                    child's copy (refused with EBADF under ownerCheck
//                    'fork-close': the descriptor was closed on fork, as with
//                    O_CLOFORK), or, for a thread or vm-clone sharing the
//                    holder's table, a descriptor of its own on the same
//                    container (as dup() gives); for a task with no such tie
//                    it is fd passing, its meaning before receive() existed;
//   receive(fd)      a handle passed over a UNIX socket (SCM_RIGHTS): works in
//                    every mode; mm and pid refuse its use, fork-close does not.
import type { Host } from './host.js';
import type { Mm } from '../kernel/mm.js';
import { Task, FdTable, type MmapResult } from '../kernel/task.js';
import { Container } from '../vfio/container.js';
import { ContainerFd } from '../vfio/fd.js';
import { Vm } from '../vmm/vm.js';
import { fail } from '../core/errors.js';
import * as v from '../core/validate.js';

export type { MmapResult };

/** Options of process.clone(). */
export interface CloneOptions {
  /** CLONE_VM | CLONE_FILES: share this mm and descriptor table (default false: fork()). */
  vm?: boolean;
}
const CLONE_OPTIONS = v.keys<CloneOptions>('process.clone', { vm: true });

/** Options of process.createVm(). */
export interface VmOptions {
  /** Whose hypercall semantics: 'kvm' (the kernel's handlers, default) or 'qemu' (QEMU's emulated ones). */
  profile?: 'kvm' | 'qemu';
}
const VM_OPTIONS = v.keys<VmOptions>('process.createVm', { profile: true });

/** A task of the simulated host. */
export class Process extends Task {
  declare readonly host: Host;

  /** @internal use host.spawn() */
  constructor(host: Host, pid: number, tid: number, mm: Mm, memlockLimit: bigint | null, files?: FdTable) {
    super(host, pid, tid, mm, memlockLimit, files);
  }

  /** The container handles this task holds open. */
  containers(): ContainerFd[] {
    const out: ContainerFd[] = [];
    for (const c of this.host.containers) for (const fd of c.fds) if (fd.process === this) out.push(fd);
    return out;
  }

  /** Another thread of this process: same pid, same mm, same descriptor table. */
  thread(): Process {
    return this.host.adoptProcess(new Process(this.host, this.pid, this.host.nextTid(), this.mm, this.memlockLimit, this.files));
  }

  /** A forked child: new pid, a copy of the address space at the same addresses and of the descriptor table. */
  fork(): Process {
    const mm = this.host.newMm();
    for (const m of this.mm.mappings) mm.map(m.size, m.pageShift, m.bytes !== undefined, m);
    const pid = this.host.nextTid();
    return this.host.adoptProcess(new Process(this.host, pid, pid, mm, this.memlockLimit, new FdTable(this.files)));
  }

  /**
   * clone(2): with {vm: true} a new pid sharing this mm and descriptor table
   * (CLONE_VM | CLONE_FILES: what KVM's worker threads or a vhost task get);
   * without, fork().
   */
  clone(opts?: CloneOptions): Process {
    const o = v.options('opts', opts, CLONE_OPTIONS);
    if (!v.bool('opts.vm', o.vm, false)) return this.fork();
    const pid = this.host.nextTid();
    return this.host.adoptProcess(new Process(this.host, pid, pid, this.mm, this.memlockLimit, this.files));
  }

  /** Opens a VFIO container (open("/dev/vfio/vfio")): a handle bound to this process. */
  openContainer(): ContainerFd {
    const c = new Container(this.host, this.host.nextId());
    this.host.containers.add(c);
    return c.open(this);
  }

  /**
   * The copy of `fd` in this task's descriptor table. A fork child of the
   * holder (directly or through earlier forks) has the copy fork() made,
   * except under ownerCheck 'fork-close', where it was closed on fork: EBADF,
   * nothing changes. A thread or clone({vm: true}) child of the holder shares
   * its table, and gets a descriptor of its own on the same container (as
   * dup() gives: closing one leaves the other open). For a task with neither
   * tie this is fd passing, as receive(fd) (the meaning inherit had before
   * receive existed, kept for its callers).
   */
  inherit(fd: ContainerFd): ContainerFd {
    v.instance('fd', fd, ContainerFd, 'a ContainerFd');
    v.sameHost('fd', fd.container, this.host);
    if (!fd.isOpen) throw new TypeError('inherit(fd): the handle is closed');
    if (this.host.ownerCheck === 'fork-close' && this.files !== fd.process.files && this.files.isCopyOf(fd.process.files)) {
      fail('EBADF', `inherit: the container handle of pid ${fd.process.pid} was closed on fork (ownerCheck 'fork-close'): pid ${this.pid}'s copy of the descriptor table does not have it`);
    }
    return fd.container.open(this);
  }

  /**
   * A handle on `fd`'s container passed to this task over a UNIX socket
   * (sendmsg/recvmsg with SCM_RIGHTS): a new descriptor on the same
   * container, in every mode. Whether it may be used is the owner check's
   * business: mm and pid refuse the calls of another mm or pid (EPERM),
   * fork-close and none let them through. A closed handle cannot be sent: EBADF.
   */
  receive(fd: ContainerFd): ContainerFd {
    v.instance('fd', fd, ContainerFd, 'a ContainerFd');
    v.sameHost('fd', fd.container, this.host);
    if (!fd.isOpen) fail('EBADF', 'receive: the container handle was closed before it was sent');
    return fd.container.open(this);
  }

  /** KVM_CREATE_VM: a guest whose memory and hypercall lookups use this process's mm. */
  createVm(opts?: VmOptions): Vm {
    const o = v.options('opts', opts, VM_OPTIONS);
    const vm = new Vm(this, v.oneOf('opts.profile', o.profile, ['kvm', 'qemu'] as const, 'kvm'));
    this.host.vms.add(vm);
    vm.onDestroy = () => void this.host.vms.delete(vm);
    return vm;
  }
}
