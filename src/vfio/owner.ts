// The owner check of a container, in four modes (Host.create's ownerCheck):
//   none       — the 2015 patch as posted: nothing; lookups and accounting use
//                the calling process's mm (current->mm).
//   pid        — the owner's pid, claimed where `mm` claims, is required for
//                every call that changes state; it is also stored in each
//                table next to the userspace view for the real-mode path.
//   mm         — Linux ≥ 4.10 (bc82d122ae4a): the container is bound to the
//                first mm that needs one; every other mm gets EPERM (except
//                CHECK_EXTENSION).
//   fork-close — the review's other proposal: the handles are not inherited
//                across fork() (src/host/process.ts refuses the child's copy
//                with EBADF), and nothing else is checked: here it is `none`.
// Also the driver checks every ioctl makes before anything else.
import type { Container } from './container.js';
import type { Window } from './types.js';
import type { Task } from '../kernel/task.js';
import type { Mm } from '../kernel/mm.js';
import { fail } from '../core/errors.js';

/** The common first check of tce_iommu_ioctl: another mm (mode mm) or pid (mode pid, for changes) → EPERM. */
export function guard(c: Container, caller: Task, changes: boolean): void {
  const mode = c.host.ownerCheck;
  if (mode === 'mm' && c.mm && c.mm !== caller.mm) {
    fail('EPERM', `container ${c.id} belongs to mm ${c.mm.id}; pid ${caller.pid} uses mm ${caller.mm.id}`);
  }
  if (mode === 'pid' && changes && c.ownerPid !== 0 && caller.pid !== c.ownerPid) {
    fail('EPERM', `container ${c.id} belongs to pid ${c.ownerPid}; refused for pid ${caller.pid}`);
  }
}

/** Whether the mode binds a container to an owner (tce_iommu_mm_set): mm and pid do; none and fork-close do not. */
export function bindsOwner(c: Container): boolean {
  const mode = c.host.ownerCheck;
  return mode === 'mm' || mode === 'pid';
}

/** tce_iommu_mm_set: binds the container to the caller on first need (modes mm and pid). */
export function claim(c: Container, caller: Task): void {
  const mode = c.host.ownerCheck;
  if (!bindsOwner(c) || c.mm) return;
  c.mm = caller.mm;
  if (mode === 'pid') {
    c.ownerPid = caller.pid;
    for (const w of c.windows) if (w && w.chargedMm) w.table.ownerPid = caller.pid;
  }
}

/** The mm that lookups and accounting use: the bound one, or the caller's (modes none and fork-close: current->mm). */
export function ctxMm(c: Container, caller: Task): Mm {
  return bindsOwner(c) ? c.mm ?? caller.mm : caller.mm;
}

/** The mm a window's entries were mapped in, for clearing outside any caller (release, detach). */
export function storedMm(c: Container, w: Window): Mm | undefined {
  return c.mm ?? w.table.viewMm ?? w.chargedMm;
}

/** Ioctls that only the IOMMU driver answers: EINVAL before SET_IOMMU (vfio_fops_unl_ioctl). */
export function requireDriver(c: Container, what: string): void {
  if (!c.iommuSet) fail('EINVAL', `${what}: no IOMMU type set on container ${c.id} (setIommu first)`);
}

/**
 * The entry of a v1-only or v2-only ioctl, in tce_iommu_ioctl's order:
 * requireDriver (EINVAL), then the owner check (guard: EPERM from another
 * mm), and only then the type (ENOTTY for a v1 ioctl on v2 and the
 * reverse): the kernel's mm check precedes the switch whose `if
 * (container->v2) break;` falls through to -ENOTTY.
 */
export function requireType(c: Container, caller: Task, v2: boolean, what: string): void {
  requireDriver(c, what);
  guard(c, caller, true);
  if (c.v2 !== v2) fail('ENOTTY', `${what} is a ${v2 ? 'v2' : 'v1'} ioctl; this container is ${c.v2 ? 'v2' : 'v1'}`);
}
