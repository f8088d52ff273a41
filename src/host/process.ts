// Processes of the simulated host: a task (src/kernel/task.ts) with the file
// descriptors a VMM holds, VFIO containers and KVM VMs. thread() shares both
// pid and mm, fork() gets a new pid and a copy of the address space (fresh
// page frames: pinning writable pages breaks copy-on-write), clone({vm: true})
// a new pid sharing the mm (CLONE_VM without CLONE_THREAD).
import type { Host } from './host.js';
import type { Mm } from '../kernel/mm.js';
import { Task, type MmapResult } from '../kernel/task.js';
import { Container } from '../vfio/container.js';
import { ContainerFd } from '../vfio/fd.js';
import { Vm } from '../vmm/vm.js';
import * as v from '../core/validate.js';

export type { MmapResult };

/** A task of the simulated host. */
export class Process extends Task {
  declare readonly host: Host;

  /** @internal use host.spawn() */
  constructor(host: Host, pid: number, tid: number, mm: Mm, memlockLimit: bigint | null) {
    super(host, pid, tid, mm, memlockLimit);
  }

  /** The container handles this task holds open. */
  containers(): ContainerFd[] {
    const out: ContainerFd[] = [];
    for (const c of this.host.containers) for (const fd of c.fds) if (fd.process === this) out.push(fd);
    return out;
  }

  /** Another thread of this process: same pid, same mm. */
  thread(): Process {
    return this.host.adoptProcess(new Process(this.host, this.pid, this.host.nextTid(), this.mm, this.memlockLimit));
  }

  /** A forked child: new pid, a copy of the address space at the same addresses. */
  fork(): Process {
    const mm = this.host.newMm();
    for (const m of this.mm.mappings) mm.map(m.size, m.pageShift, m.bytes !== undefined, m);
    const pid = this.host.nextTid();
    return this.host.adoptProcess(new Process(this.host, pid, pid, mm, this.memlockLimit));
  }

  /** clone(2): with {vm: true} a new pid sharing this mm (what KVM's worker threads or a vhost task get). */
  clone(opts?: { vm?: boolean }): Process {
    const o = v.options<{ vm: boolean }>('opts', opts);
    if (!v.bool('opts.vm', o.vm, false)) return this.fork();
    const pid = this.host.nextTid();
    return this.host.adoptProcess(new Process(this.host, pid, pid, this.mm, this.memlockLimit));
  }

  /** Opens a VFIO container (open("/dev/vfio/vfio")): a handle bound to this process. */
  openContainer(): ContainerFd {
    const c = new Container(this.host, this.host.nextId());
    this.host.containers.add(c);
    return c.open(this);
  }

  /** The same container as `fd`, used from this process (what fork() or fd passing gives). */
  inherit(fd: ContainerFd): ContainerFd {
    v.instance('fd', fd, ContainerFd, 'a ContainerFd');
    v.sameHost('fd', fd.container, this.host);
    if (!fd.isOpen) throw new TypeError('inherit(fd): the handle is closed');
    return fd.container.open(this);
  }

  /** KVM_CREATE_VM: a guest whose memory and hypercall lookups use this process's mm. */
  createVm(opts?: { profile?: 'kvm' | 'qemu' }): Vm {
    const o = v.options<{ profile: 'kvm' | 'qemu' }>('opts', opts);
    const vm = new Vm(this, v.oneOf('opts.profile', o.profile, ['kvm', 'qemu'] as const, 'kvm'));
    this.host.vms.add(vm);
    return vm;
  }
}
