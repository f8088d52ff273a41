// The argument and result shapes of the VFIO sPAPR TCE ioctls (the structs
// of include/uapi/linux/vfio.h, as objects) and a container's windows.
import type { Mm } from '../kernel/mm.js';
import type { IommuTable } from '../kernel/table.js';

/** VFIO_DMA_MAP_FLAG_READ: the device may read memory. */
export const MAP_READ = 1;
/** VFIO_DMA_MAP_FLAG_WRITE: the device may write memory. */
export const MAP_WRITE = 2;
/** Bus address of window slot 1 on IODA2 (slot 0 sits at the group's tce32_start). */
export const DDW_BUS_OFFSET = 1n << 59n;

/** A DMA window of a container. */
export interface Window {
  readonly startAddr: bigint;
  readonly windowSize: bigint;
  readonly pageShift: number;
  readonly levels: number;
  readonly table: IommuTable;
  /** The mm charged for the table and its view; undefined for a borrowed legacy table. */
  readonly chargedMm: Mm | undefined;
  readonly tablePages: bigint;
}

/** What getInfo() returns (struct vfio_iommu_spapr_tce_info). */
export interface TceInfo {
  dma32WindowStart: bigint;
  dma32WindowSize: bigint;
  /** 1 (VFIO_IOMMU_SPAPR_INFO_DDW) when ddw is present. */
  flags: number;
  ddw?: { pgSizes: bigint; maxDynamicWindowsSupported: number; levels: number };
}

/** Arguments of mapDma (struct vfio_iommu_type1_dma_map); addresses and size as bigint or safe-integer number. */
export interface DmaMap {
  iova: bigint | number;
  vaddr: bigint | number;
  size: bigint | number;
  read?: boolean;
  write?: boolean;
  /** Raw VFIO flags (READ 1, WRITE 2), instead of read/write. */
  flags?: number;
}

/** Arguments of unmapDma. */
export interface DmaUnmap {
  iova: bigint | number;
  size: bigint | number;
  flags?: number;
}

/** Arguments of createWindow (struct vfio_iommu_spapr_tce_create). */
export interface CreateWindow {
  pageShift: number;
  windowSize: bigint | number;
  levels: number;
  flags?: number;
}
