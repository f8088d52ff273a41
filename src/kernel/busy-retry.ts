// VFIO's side of the per-entry view lock (assembly/table.ts). The engine
// gives up on a held lock after LOCK_SPINS_VFIO tries (a few milliseconds)
// with nothing changed. A holder is a vCPU inside one hypercall, and a
// worker preempted there (three threads on two cores) holds it for a whole
// scheduler slice, longer than those tries. The ioctl paths therefore sleep
// 1 ms and call again, up to VFIO_LOCK_WAIT_MS, so that only a lock that is
// never let go (a worker killed mid-call) reaches the caller as EBUSY. The
// kernel's tce_iommu_clear and tce_iommu_build_v2 take no such lock.
import { EBUSY } from '../generated/layout.js';
import { nap } from '../core/nap.js';

/** How long a VFIO map or unmap keeps retrying an entry whose view lock is held. */
export const VFIO_LOCK_WAIT_MS = 1000;

/** Calls `op` (an engine routine answering 0 or -errno) until it answers other than -EBUSY or the wait is over. */
export function retryWhileBusy(op: () => number): number {
  let rc = op();
  if (rc !== -EBUSY) return rc;
  const t0 = Date.now();
  while (rc === -EBUSY && Date.now() - t0 < VFIO_LOCK_WAIT_MS) {
    nap(1);
    rc = op();
  }
  return rc;
}
