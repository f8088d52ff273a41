// What a VfioSync knows, shared by the files of its concerns (prereg.ts,
// windows.ts, listener.ts), and how it makes a container call: counted,
// shown to opts.onCall, and a refusal reported (thrown while attaching), as
// QEMU's VFIO code calls ioctl(2) and error_report()s a failure it cannot
// return to the guest.
import type { Vm } from '../vm.js';
import type { GuestTable } from '../../kvm/guest-table.js';
import type { ContainerFd } from '../../vfio/fd.js';
import type { TceInfo } from '../../vfio/types.js';
import { TceError } from '../../core/errors.js';
import { hex } from '../../core/format.js';
import { VfioSyncError, type VfioCall, type VfioSyncStats } from './types.js';

/** A guest window and the host window mirroring it. */
export interface Mirror {
  liobn: bigint;
  busOffset: bigint;
  windowSize: bigint;
  guestShift: number;
  /** The host window; undefined when none could be made. */
  host: { startAddr: bigint; pageShift: number; levels: number; adopted: boolean; own: boolean } | undefined;
  /**
   * kvm profile: the links the sync holds a reference of (made or adopted),
   * by group id → hardware table, and the guest table they link: once it is
   * no longer the LIOBN's table, its fd was closed and the kernel dropped
   * them (kvm_spapr_tce_release).
   */
  links: { group: number; tableDesc: number; guest: GuestTable }[];
  /**
   * kvm profile: every group of the container is linked, so the kernel
   * updates the host window itself on each guest hypercall it completes and
   * the sync makes no MAP_DMA/UNMAP_DMA for them.
   */
  inKernel: boolean;
}

/** A region the sync registered (or adopted) for a memslot. */
export interface RegionRecord {
  ua: bigint;
  size: bigint;
  /** The memslot it was registered for still exists. */
  live: boolean;
  adopted: boolean;
}

/** @internal a VfioSync's state, private to it and to the files of its concerns. */
export interface SyncState {
  readonly vm: Vm;
  readonly fd: ContainerFd;
  /** opts.liobns as a set; undefined: every LIOBN. */
  readonly only: ReadonlySet<bigint> | undefined;
  readonly onError: ((e: VfioSyncError) => void) | undefined;
  readonly onCall: ((c: VfioCall) => void) | undefined;
  readonly v2: boolean;
  /** The VM is of the kvm profile: host windows are linked to the guest tables (links.ts). */
  readonly kvm: boolean;
  readonly counts: VfioSyncStats;
  /** By guest LIOBN, in the order they were made or adopted. */
  readonly mirrors: Map<bigint, Mirror>;
  readonly regions: RegionRecord[];
  /** The container's GET_INFO, read at attach. */
  readonly info: TceInfo;
  /** v1: the sync enabled the container (and disables it at detach). */
  enabledV1: boolean;
  /** While attaching, a failure is thrown instead of reported. */
  attaching: boolean;
}

/** Whether the sync mirrors the windows of `liobn` (opts.liobns). */
export function follows(s: SyncState, liobn: bigint): boolean {
  return s.only === undefined || s.only.has(liobn);
}

/**
 * Makes one container call and counts it; a refusal (TceError) is
 * reported (thrown while attaching). Returns whether it succeeded.
 */
export function call(s: SyncState, what: Omit<VfioCall, 'error'>, fn: () => void): boolean {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof TceError)) throw e;
    note(s, { ...what, error: e });
    const base = what.op === 'registerMemory' || what.op === 'unregisterMemory' ? what.vaddr : what.iova;
    const range = base === undefined ? '' : what.size !== undefined ? ` [${hex(base)}, +${hex(what.size)})` : ` at ${hex(base)}`;
    const of = what.liobn !== undefined ? ` for LIOBN ${hex(what.liobn)}` : '';
    report(s, new VfioSyncError(e.code, what.op, 'refused', `${what.op}${range}${of}: ${e.message}`, { liobn: what.liobn, iova: what.iova, size: what.size, cause: e }));
    return false;
  }
  note(s, what);
  return true;
}

/** Counts a call made and tells opts.onCall. */
export function note(s: SyncState, c: VfioCall): void {
  s.counts[c.op]++;
  s.onCall?.(c);
}

/** A failure: counted and reported; thrown instead while attaching. */
export function report(s: SyncState, e: VfioSyncError): void {
  s.counts.errors++;
  if (s.attaching) throw e;
  s.onError?.(e);
}
