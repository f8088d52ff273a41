// Memory pre-registration through a v2 container
// (VFIO_IOMMU_SPAPR_REGISTER_MEMORY / UNREGISTER_MEMORY, tce_iommu_register_pages
// and tce_iommu_unregister_pages): the container's prereg_list over the
// regions of src/kernel/prereg.ts.
import type { Container } from './container.js';
import type { Task } from '../kernel/task.js';
import { bindsOwner, claim, ctxMm, requireType } from './owner.js';
import { preregGet, preregNew, preregPut, findExact } from '../kernel/prereg.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';

/**
 * VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): claims the mm before checking
 * anything; EINVAL for flags, misalignment or wrap; EBUSY if this container
 * has the region already; otherwise get-or-new (§2.1) and enabled for good.
 */
export function registerMemory(c: Container, caller: Task, vaddr: bigint | number, size: bigint | number, flags: number): void {
  vaddr = v.u64('vaddr', vaddr);
  size = v.u64('size', size);
  v.int('flags', flags, 0, 0xffffffff);
  requireType(c, caller, true, 'registerMemory');
  claim(c, caller);
  if (flags !== 0) fail('EINVAL', `registerMemory: flags must be 0, got ${flags}`);
  const mask = (1n << BigInt(c.host.pageShift)) - 1n;
  if (vaddr & mask || size & mask) fail('EINVAL', `registerMemory: vaddr ${hex(vaddr)} and size ${hex(size)} must be aligned to the 2^${c.host.pageShift} system page`);
  if (vaddr + size > (1n << 64n) - 1n) fail('EINVAL', 'registerMemory: the range wraps around');
  const mm = ctxMm(c, caller);
  const entries = size >> BigInt(c.host.pageShift);
  const existing = findExact(mm, vaddr, entries);
  if (existing && c.prereg.some((p) => p.region.desc === existing.desc)) {
    fail('EBUSY', `registerMemory: ${hex(vaddr)}+${hex(size)} is already registered in this container`);
  }
  const region = preregGet(mm, vaddr, entries) ?? preregNew(caller, vaddr, entries);
  c.prereg.push({ region, mm });
  c.enabled = true;
}

/**
 * VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): EPERM before any claim (modes
 * mm, pid); EINVAL misaligned; ENOENT unless this container registered
 * exactly that range; EBUSY (divergence: the kernel returns 0 and orphans
 * the region) while TCEs still point into it and this is its last user.
 */
export function unregisterMemory(c: Container, caller: Task, vaddr: bigint | number, size: bigint | number, flags: number): void {
  vaddr = v.u64('vaddr', vaddr);
  size = v.u64('size', size);
  v.int('flags', flags, 0, 0xffffffff);
  requireType(c, caller, true, 'unregisterMemory');
  if (bindsOwner(c) && !c.mm) fail('EPERM', 'unregisterMemory: the container has no mm yet');
  if (flags !== 0) fail('EINVAL', `unregisterMemory: flags must be 0, got ${flags}`);
  const mask = (1n << BigInt(c.host.pageShift)) - 1n;
  if (vaddr & mask || size & mask) fail('EINVAL', `unregisterMemory: vaddr ${hex(vaddr)} and size ${hex(size)} must be aligned to the 2^${c.host.pageShift} system page`);
  const mm = ctxMm(c, caller);
  const region = findExact(mm, vaddr, size >> BigInt(c.host.pageShift));
  const i = region ? c.prereg.findIndex((p) => p.region.desc === region.desc) : -1;
  if (!region || i < 0) fail('ENOENT', `unregisterMemory: ${hex(vaddr)}+${hex(size)} is not registered in this container`);
  preregPut(mm, region);
  c.prereg.splice(i, 1);
}
