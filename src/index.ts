// spapr-tce: the POWER sPAPR TCE IOMMU as Linux and KVM implement it.
export { Host } from './host/host.js';
export type { HostOptions, HostStats, OwnerCheck, KernelEra, SpawnOptions, SnapshotOptions, SynchronizeOptions } from './host/host.js';
export type { Snapshot, RestoreOptions } from './snapshot/snapshot.js';
export type { RamSource } from './snapshot/image.js';
export { SnapshotError } from './snapshot/fsck/read.js';
export type { HostContext } from './core/context.js';
export { Process } from './host/process.js';
export type { MmapResult, CloneOptions, VmOptions } from './host/process.js';
export type { MmapOptions } from './kernel/task.js';
export { Task, FdTable } from './kernel/task.js';
export { Mm } from './kernel/mm.js';
export type { Mapping } from './kernel/mm.js';
export { Region, regionsOf, preregNew, preregGet, preregPut } from './kernel/prereg.js';
export { IommuTable } from './kernel/table.js';
export type { BuildOptions } from './kernel/table.js';
export { getTableSize, checkGeometry, MAX_LEVELS } from './kernel/geometry.js';
export type { TableGeometry } from './kernel/geometry.js';
export { Group } from './vfio/group.js';
export type { GroupOptions } from './vfio/group.js';
export { Container } from './vfio/container.js';
export { ContainerFd } from './vfio/fd.js';
export { DDW_BUS_OFFSET } from './vfio/types.js';
export type { Window, TceInfo, DmaMap, DmaUnmap, CreateWindow } from './vfio/types.js';
export { KvmVm } from './kvm/vm.js';
export type { HcallResult, CreateTceTable, VcpuOptions } from './kvm/vm.js';
export { Vm } from './vmm/vm.js';
export type { Memslot, MemslotArgs } from './kvm/memslot.js';
export type { GuestTable, Translation } from './kvm/guest-table.js';
export { DmaFault } from './vmm/dma.js';
export type { DmaAccessor, DmaFaultReason } from './vmm/dma.js';
export type { IommuEvent, IommuListener, WindowEvent, VmEvent, VmListener } from './vmm/events.js';
export { Phb, RTAS_DDW_CALLS, RTAS_CALLS, RTAS_OUT } from './vmm/rtas.js';
export type { PhbOptions, PhbWindow, RtasDdwCall, RtasCall } from './vmm/rtas.js';
export { VfioSync, VfioSyncError } from './vmm/vfio-sync.js';
export type { VfioSyncOptions, VfioSyncStats, VfioSyncWindow, VfioCall, VfioOp, VfioSyncReason } from './vmm/vfio-sync.js';
export { Vcpu } from './kvm/vcpu.js';
export type { HcallStats, Level } from './kvm/vcpu.js';
export { TceError, InvariantError } from './core/errors.js';
export type { ErrnoCode } from './core/errors.js';
export { ERRNO } from './generated/layout.js';
import {
  H_GET_TCE, H_PUT_TCE, H_STUFF_TCE, H_PUT_TCE_INDIRECT, H_SUCCESS, H_HARDWARE, H_FUNCTION,
  H_PARAMETER, H_DEST_PARM, H_CLOSED, H_TOO_HARD, VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU,
  TCE_READ, TCE_WRITE,
} from './generated/layout.js';

/** Hypercall numbers and return codes (PAPR; H_TOO_HARD is KVM-internal). */
export const H = Object.freeze({
  GET_TCE: H_GET_TCE,
  PUT_TCE: H_PUT_TCE,
  STUFF_TCE: H_STUFF_TCE,
  PUT_TCE_INDIRECT: H_PUT_TCE_INDIRECT,
  SUCCESS: H_SUCCESS,
  HARDWARE: H_HARDWARE,
  FUNCTION: H_FUNCTION,
  PARAMETER: H_PARAMETER,
  DEST_PARM: H_DEST_PARM,
  CLOSED: H_CLOSED,
  TOO_HARD: H_TOO_HARD,
});

/**
 * H as the 64-bit register contents a vCPU holds, for `vcpu.regs`: the
 * hypercall numbers r3 takes (`vcpu.regs[3] = H64.PUT_TCE`), and the
 * statuses as vcpu.hcall() leaves them in r3, two's complement
 * (`vcpu.regs[3] === H64.PARAMETER`, 2^64 − 4). vcpu.hcall() itself returns
 * the signed number, to compare with H.
 */
export const H64: { readonly [K in keyof typeof H]: bigint } = Object.freeze(
  Object.fromEntries(Object.entries(H).map(([k, x]) => [k, BigInt.asUintN(64, BigInt(x))])) as { [K in keyof typeof H]: bigint },
);

/** VFIO IOMMU type of the sPAPR TCE v1 container. */
export const SPAPR_TCE_IOMMU = VFIO_SPAPR_TCE_IOMMU;
/** VFIO IOMMU type of the sPAPR TCE v2 (pre-registered memory) container. */
export const SPAPR_TCE_V2_IOMMU = VFIO_SPAPR_TCE_V2_IOMMU;
/** TCE permission bits: the device may read memory / write memory. */
export const TCE = Object.freeze({ READ: TCE_READ, WRITE: TCE_WRITE });
