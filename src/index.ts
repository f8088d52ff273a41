// spapr-tce: the POWER sPAPR TCE IOMMU as Linux and KVM implement it.
export { Host } from './host.js';
export type { HostOptions, HostStats, OwnerCheck } from './host.js';
export { Process } from './process.js';
export type { MmapResult } from './process.js';
export { Mm } from './mm.js';
export type { Mapping } from './mm.js';
export { Region, regionsOf, preregNew, preregGet, preregPut } from './prereg.js';
export { IommuTable, getTableSize, checkGeometry, MAX_LEVELS } from './table.js';
export type { TableGeometry } from './table.js';
export { Group } from './group.js';
export type { GroupOptions } from './group.js';
export { Container, ContainerFd, DDW_BUS_OFFSET } from './container.js';
export type { Window, TceInfo, DmaMap, DmaUnmap, CreateWindow } from './container.js';
export { Vm } from './vm.js';
export type { Memslot, GuestTable, Translation } from './vm.js';
export { DmaFault } from './dma.js';
export type { DmaAccessor, DmaFaultReason } from './dma.js';
export type { IommuEvent, IommuListener } from './events.js';
export { Phb, RTAS_DDW_CALLS, RTAS_OUT } from './rtas.js';
export type { PhbOptions, PhbWindow, RtasDdwCall } from './rtas.js';
export { Vcpu } from './vcpu.js';
export type { HcallStats, Level } from './vcpu.js';
export { TceError, InvariantError } from './errors.js';
export type { ErrnoCode } from './errors.js';
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

/** VFIO IOMMU type of the sPAPR TCE v1 container. */
export const SPAPR_TCE_IOMMU = VFIO_SPAPR_TCE_IOMMU;
/** VFIO IOMMU type of the sPAPR TCE v2 (pre-registered memory) container. */
export const SPAPR_TCE_V2_IOMMU = VFIO_SPAPR_TCE_V2_IOMMU;
/** TCE permission bits: the device may read memory / write memory. */
export const TCE = Object.freeze({ READ: TCE_READ, WRITE: TCE_WRITE });
