// DMA for device models: an accessor with the shape of a plain guest-memory
// accessor (v86's read_blob/write_blob) that goes through a LIOBN's TCE
// window first, as QEMU's dma_memory_rw does through the sPAPR IOMMU region
// (spapr_tce_translate_iommu, then address_space_rw on guest RAM). A device
// model that took raw memory becomes IOMMU-aware by taking this instead.
import type { KvmVm } from '../kvm/vm.js';
import { guestRamOffset } from '../kvm/memslot.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';

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

/** What vm.dma(liobn) returns: device-side reads and writes of guest memory through the LIOBN's window. */
export interface DmaAccessor {
  readonly liobn: bigint;
  /** The device reads `length` bytes at `iova` (needs the TCE READ bit on every page); a fresh copy. */
  read(iova: bigint | number, length: number): Uint8Array;
  /** The device writes `bytes` at `iova` (needs the TCE WRITE bit on every page). */
  write(iova: bigint | number, bytes: Uint8Array): void;
}

/** Largest single transfer: a Uint8Array of it must be allocatable. */
const MAX_LENGTH = 0x7fff_ffff;
const U64_END = 1n << 64n;

/**
 * The linear-memory pieces ([offset, length] pairs, flattened) behind a DMA of
 * `length` bytes at `iova`, or a DmaFault. Everything is translated before
 * anything is copied, so a fault touches nothing.
 */
function plan(vm: KvmVm, liobn: bigint, iova: bigint, length: number, access: 'read' | 'write'): number[] {
  const pieces: number[] = [];
  let at = iova;
  let left = length;
  while (left > 0) {
    // A window never contains the last page below 2^64 (createTceTable's bound), so this is defensive.
    if (at >= U64_END) throw new DmaFault(liobn, BigInt.asUintN(64, at), access, 'out-of-range');
    const t = vm.translate(liobn, at, access);
    if (!t.ok) throw new DmaFault(liobn, at, access, t.fault);
    // Page by page: the next page may map anywhere, or nowhere.
    const inPage = t.pageIova + t.pageSize - at;
    const chunk = inPage < BigInt(left) ? Number(inPage) : left;
    // One IOMMU page (up to 16 GiB) may span several memslots.
    let gpa = t.gpa;
    let c = chunk;
    while (c > 0) {
      const slot = vm.memslots.find((s) => gpa >= s.gpa && gpa - s.gpa < s.size);
      const off = slot ? guestRamOffset(vm, gpa, 1) : -1;
      if (!slot || off < 0) throw new DmaFault(liobn, at + (gpa - t.gpa), access, 'not-ram');
      const inSlot = slot.size - (gpa - slot.gpa);
      const n = inSlot < BigInt(c) ? Number(inSlot) : c;
      pieces.push(off, n);
      gpa += BigInt(n);
      c -= n;
    }
    at += BigInt(chunk);
    left -= chunk;
  }
  return pieces;
}

/** @internal use vm.dma(liobn). */
export function createDma(vm: KvmVm, liobn: bigint | number): DmaAccessor {
  const l = v.liobn('liobn', liobn);
  const u8 = vm.host.mem.u8;
  return {
    liobn: l,
    read(iova: bigint | number, length: number): Uint8Array {
      iova = v.u64('iova', iova);
      v.int('length', length, 0, MAX_LENGTH);
      const pieces = plan(vm, l, iova, length, 'read');
      const out = new Uint8Array(length);
      let pos = 0;
      for (let i = 0; i < pieces.length; i += 2) {
        const off = pieces[i]!;
        const n = pieces[i + 1]!;
        out.set(u8.subarray(off, off + n), pos);
        pos += n;
      }
      return out;
    },
    write(iova: bigint | number, bytes: Uint8Array): void {
      iova = v.u64('iova', iova);
      v.instance('bytes', bytes, Uint8Array, 'a Uint8Array');
      if (bytes.length > MAX_LENGTH) throw new RangeError(`bytes must be at most ${MAX_LENGTH} bytes long, got ${bytes.length}`);
      const pieces = plan(vm, l, iova, bytes.length, 'write');
      let pos = 0;
      for (let i = 0; i < pieces.length; i += 2) {
        const n = pieces[i + 1]!;
        // set() copies through a clone when `bytes` is itself a view of guest memory.
        u8.set(bytes.subarray(pos, pos + n), pieces[i]!);
        pos += n;
      }
    },
  };
}
