// The public shapes of a VfioSync (../vfio-sync.ts): its options, the calls
// it makes on the container as opts.onCall sees them, its counts, its
// windows, and the error a host-side failure is reported with.
import { TceError, type ErrnoCode } from '../../core/errors.js';

/**
 * The calls a VfioSync makes (the ioctls of QEMU's sPAPR VFIO code): on the
 * container, and in the kvm profile on the VM, the link of a group's
 * hardware table to a guest table (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE) and
 * the drop of that link's reference.
 */
export type VfioOp = 'registerMemory' | 'unregisterMemory' | 'createWindow' | 'removeWindow' | 'mapDma' | 'unmapDma' | 'linkGroup' | 'unlinkGroup';

/** stats(): calls made by op (refused ones included), and failures. */
export interface VfioSyncStats {
  mapDma: number;
  unmapDma: number;
  registerMemory: number;
  unregisterMemory: number;
  createWindow: number;
  removeWindow: number;
  /** kvm profile: links made (vm.attachGroup: KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), one per group and window. */
  linkGroup: number;
  /** kvm profile: link references dropped (at a window's removal and at detach). */
  unlinkGroup: number;
  /** Refused calls, plus events that could not be mirrored at all (a map of a non-RAM address, a window the host could not provide). */
  errors: number;
}

/** One call made on the container, as opts.onCall sees it after it ran (QEMU's trace points). */
export interface VfioCall {
  op: VfioOp;
  /** The guest LIOBN the call is for (windows, mappings and links). */
  liobn?: bigint;
  /** linkGroup/unlinkGroup: the group's id. */
  group?: number;
  /** mapDma/unmapDma: the IOVA and size; removeWindow: startAddr in iova. */
  iova?: bigint;
  size?: bigint;
  /** mapDma: the userspace address and whether the device may write; registerMemory/unregisterMemory: the region. */
  vaddr?: bigint;
  write?: boolean;
  /** createWindow: the request. */
  pageShift?: number;
  levels?: number;
  windowSize?: bigint;
  /** createWindow: the start address the container returned. */
  startAddr?: bigint;
  /** mapDma/unmapDma: how many guest entries the call stands for. */
  entries?: number;
  /** The container's refusal; undefined when the call succeeded. */
  error?: TceError;
}

/** Why a VfioSync could not mirror something: a refused call (reason 'refused'), or a problem it found before making one. */
export type VfioSyncReason = 'refused' | 'not-ram' | 'no-host-window' | 'window-start' | 'page-size' | 'outside-host-window';

/** A host-side failure of a VfioSync, reported through opts.onError (or thrown by attachContainer). `code` is the errno. */
export class VfioSyncError extends TceError {
  /** The call that failed, or the one that could not be made. */
  readonly op: VfioOp;
  readonly reason: VfioSyncReason;
  readonly liobn: bigint | undefined;
  readonly iova: bigint | undefined;
  readonly size: bigint | undefined;
  /** The container's TceError when reason is 'refused'. */
  override readonly cause: TceError | undefined;
  constructor(code: ErrnoCode, op: VfioOp, reason: VfioSyncReason, message: string, at: { liobn?: bigint; iova?: bigint; size?: bigint; cause?: TceError } = {}) {
    super(code, message);
    this.name = 'VfioSyncError';
    this.op = op;
    this.reason = reason;
    this.liobn = at.liobn;
    this.iova = at.iova;
    this.size = at.size;
    this.cause = at.cause;
  }
}

/** Options of vm.attachContainer(). */
export interface VfioSyncOptions {
  /** The LIOBNs whose windows the container mirrors (the device's DMA address space; a PHB's `liobns`); default every LIOBN of the VM, later ones included. */
  liobns?: readonly (bigint | number)[];
  /** Called with every host-side failure after attach. */
  onError?: (error: VfioSyncError) => void;
  /** Called after every call made on the container, refused ones included. */
  onCall?: (call: VfioCall) => void;
}

/** A host window mirroring a guest window. */
export interface VfioSyncWindow {
  liobn: bigint;
  /** The guest window (bus offset = the host window's start address). */
  busOffset: bigint;
  windowSize: bigint;
  /** The host IOMMU page shift (≤ the guest's). */
  pageShift: number;
  levels: number;
  /** Whether the sync found it on the container (after a restore) rather than creating it. */
  adopted: boolean;
}
