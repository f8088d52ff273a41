// The v1 container (VFIO_SPAPR_TCE_IOMMU): ENABLE charges the whole 32-bit
// window to locked_vm up front, and every map pins its pages one by one
// (tce_iommu_enable, tce_iommu_build).
import type { Container } from './container.js';
import type { Window } from './types.js';
import type { Task } from '../kernel/task.js';
import { chargeKey } from '../kernel/mm.js';
import { claim, ctxMm, requireType } from './owner.js';
import { clearV1 } from './tables.js';
import { fail } from '../core/errors.js';
import { hex } from '../core/format.js';
import { TCE_PERM_MASK } from '../generated/layout.js';

/** VFIO_IOMMU_ENABLE (v1): EBUSY / ENODEV / EPERM (no 32-bit window); claims; charges tce32_size pages (ENOMEM). */
export function enable(c: Container, caller: Task): void {
  requireType(c, caller, false, 'enable');
  if (c.enabled) fail('EBUSY', 'enable: the container is already enabled');
  const g = c.groups[0];
  if (!g) fail('ENODEV', 'enable: no group attached');
  if (g.tce32Size === 0n) fail('EPERM', 'enable: the group has no 32-bit window');
  claim(c, caller);
  const mm = ctxMm(c, caller);
  const pages = g.tce32Size >> BigInt(c.host.pageShift);
  mm.account(chargeKey.v1(c.id), pages, caller.memlockLimitPages);
  c.lockedPages = pages;
  c.v1ChargedMm = mm;
  c.enabled = true;
}

/** VFIO_IOMMU_DISABLE (v1): always succeeds; returns the ENABLE charge. */
export function disable(c: Container, caller: Task): void {
  requireType(c, caller, false, 'disable');
  disableV1(c);
}

/** tce_iommu_disable: the ENABLE charge given back (release does it too). */
export function disableV1(c: Container): void {
  if (!c.enabled || c.v2 !== false) return;
  c.enabled = false;
  c.v1ChargedMm?.unaccount(chargeKey.v1(c.id), c.lockedPages);
  c.v1ChargedMm = undefined;
  c.lockedPages = 0n;
}

/** tce_iommu_build: pin each system page (EFAULT), exchange, unpin the old page; roll back on error. */
export function buildV1(c: Container, caller: Task, w: Window, entry: bigint, n: bigint, vaddr: bigint, perm: number): void {
  const ps = 1n << BigInt(w.pageShift);
  const mm = ctxMm(c, caller);
  let i = 0n;
  try {
    for (; i < n; i++) {
      const ua = vaddr + i * ps;
      const t = mm.translate(ua);
      if (!t) fail('EFAULT', `mapDma: vaddr ${hex(ua)} is not mapped`);
      c.host.pin(t.hpa);
      const old = w.table.xchg(entry + i, (t.hpa & ~((1n << BigInt(w.pageShift)) - 1n)) | BigInt(perm));
      if (old & BigInt(TCE_PERM_MASK)) c.host.unpin(old & ~BigInt(TCE_PERM_MASK));
    }
  } catch (e) {
    clearV1(c, w, entry, i);
    throw e;
  }
}
