// A toy block device model. It sees guest memory ONLY through `vm.dma(liobn)`,
// the IOMMU-translated accessor, as a QEMU VIO device does through
// spapr_vio_dma_read / spapr_vio_dma_write (dma_memory_rw on the device's
// address space → spapr_tce_translate_iommu → guest RAM). It never touches
// raw guest RAM, so a guest that hands it an unmapped IOVA gets a fault,
// not a silent write somewhere.
import { DmaFault } from './spapr-tce.mjs';
import { DESC, OP, STATUS } from './guest-driver.mjs';

export const SECTOR = 512;
const H_SUCCESS = 0;
const H_DEST_PARM = -14; // what spapr_vio_dma_* return when the DMA fails
const hex = (x) => '0x' + x.toString(16);

export class BlockDevice {
  /**
   * @param dma vm.dma(liobn): read(iova, length) / write(iova, bytes), throws DmaFault
   * @param disk the disk image
   */
  constructor({ unit, dma, disk, log, counters }) {
    this.unit = unit;
    this.dma = dma;
    this.disk = disk;
    this.log = log;
    this.counters = counters ?? { requests: 0, dmaReadBytes: 0, dmaWriteBytes: 0, faults: 0 };
  }

  /** Device state for a snapshot (QEMU: the device's own vmstate section; the disk would be shared storage). */
  save() {
    return { unit: this.unit, disk: Buffer.from(this.disk).toString('base64'), counters: { ...this.counters } };
  }

  static restore(state, { dma, log }) {
    return new BlockDevice({ unit: state.unit, dma, log, disk: new Uint8Array(Buffer.from(state.disk, 'base64')), counters: { ...state.counters } });
  }

  read(iova, n) {
    const b = this.dma.read(iova, n);
    this.counters.dmaReadBytes += n;
    this.log(`device: DMA read  ${String(n).padStart(5)} B at IOVA ${hex(iova)}`);
    return b;
  }

  write(iova, bytes) {
    this.dma.write(iova, bytes);
    this.counters.dmaWriteBytes += bytes.length;
    this.log(`device: DMA write ${String(bytes.length).padStart(5)} B at IOVA ${hex(iova)}`);
  }

  /**
   * H_SEND_CRQ for this unit (h_send_crq → the device's crq handler): the
   * second doubleword is the descriptor's IOVA. Returns the hcall status:
   * H_DEST_PARM when a DMA faulted (after telling the guest in the
   * descriptor, if that is still reachable).
   */
  crq(hi, lo) {
    if (hi >> 56n !== 0x80n) return -4; // H_PARAMETER: not a valid CRQ element
    this.counters.requests++;
    const descIova = lo;
    try {
      const d = this.read(descIova, DESC.size);
      const dv = new DataView(d.buffer);
      const op = dv.getUint32(DESC.op, false);
      const sector = Number(dv.getBigUint64(DESC.sector, false));
      const bytes = dv.getUint32(DESC.bytes, false);
      const dataIova = dv.getBigUint64(DESC.dataIova, false);
      const at = sector * SECTOR;
      if (at + bytes > this.disk.length) return this.complete(descIova, STATUS.DMA_ERROR, -4);
      if (op === OP.WRITE) {
        // Whole transfer first: a fault leaves the disk untouched.
        this.disk.set(this.read(dataIova, bytes), at);
      } else if (op === OP.READ) {
        this.write(dataIova, this.disk.subarray(at, at + bytes));
      } else {
        return this.complete(descIova, STATUS.DMA_ERROR, -4);
      }
      return this.complete(descIova, STATUS.OK, H_SUCCESS);
    } catch (e) {
      if (!(e instanceof DmaFault)) throw e;
      this.counters.faults++;
      this.log(`device: DmaFault: ${e.access} at IOVA ${hex(e.iova)} through LIOBN ${hex(e.liobn)} (${e.reason}); nothing transferred`);
      try {
        return this.complete(descIova, STATUS.DMA_ERROR, H_DEST_PARM);
      } catch (e2) {
        if (!(e2 instanceof DmaFault)) throw e2;
        return H_DEST_PARM;
      }
    }
  }

  /** Writes the status word back into the guest's descriptor, by DMA too. */
  complete(descIova, status, rc) {
    const s = new Uint8Array(4);
    new DataView(s.buffer).setUint32(0, status, false);
    this.write(descIova + BigInt(DESC.status), s);
    return rc;
  }
}
