// The fault a device DMA through a TCE window raises (dma.ts): QEMU's
// dma_memory_rw returns MEMTX_ERROR when spapr_tce_translate_iommu finds no
// permission or the address is beyond the window; here the accessor throws
// before a byte moves.
import { hex } from '../../core/format.js';

/** Why a DMA faulted: translate()'s reasons, or a guest physical address that is not backed guest RAM. */
export type DmaFaultReason = 'no-window' | 'out-of-range' | 'no-permission' | 'not-ram';

/** A DMA the IOMMU refused; nothing was read or written. `iova` is the first address that could not be reached. */
export class DmaFault extends Error {
  readonly liobn: bigint;
  readonly iova: bigint;
  readonly access: 'read' | 'write';
  readonly reason: DmaFaultReason;
  constructor(liobn: bigint, iova: bigint, access: 'read' | 'write', reason: DmaFaultReason) {
    super(`DMA ${access} through LIOBN ${hex(liobn)} faulted at IOVA ${hex(iova)}: ${reason}`);
    this.name = 'DmaFault';
    this.liobn = liobn;
    this.iova = iova;
    this.access = access;
    this.reason = reason;
  }
}
