// DMA for device models: an accessor with the shape of a plain guest-memory
// accessor (v86's read_blob/write_blob) that goes through a LIOBN's TCE
// window first, as QEMU's dma_memory_rw does through the sPAPR IOMMU region
// (spapr_tce_translate_iommu, then address_space_rw on guest RAM). A device
// model that took raw memory becomes IOMMU-aware by taking this instead.
// This file is the accessor itself: its arguments, the common case and the
// copies; what it caches of the window and how it reads TCEs is
// dma/window.ts, how it plans a transfer into pieces of linear memory (and
// faults) dma/plan.ts, the fault dma/fault.ts.
//
// Speed. An IOVA below 2^53 is a number from validation on (v.u64Safe: a
// number argument is never made a BigInt, a bigint one is converted once).
// The common transfer (a number IOVA, pages contiguous in guest memory, the
// memslot of the last access: one IOMMU page or a run of them) skips the
// plan: oneRun() gives its offset, and it is one view and one set() (and,
// for a write, one mark of the dirty log). read() allocates its result
// once: a small one-piece read is a slice() of linear memory; otherwise the
// result is not zero-filled (every byte is then copied over: the pieces
// cover the length exactly), instead of a zero-fill and a copy. The copy
// itself is V8's: a set() that touches a SharedArrayBuffer is a relaxed
// (word by word) memmove, as is the plain Uint8Array copy the benchmark
// compares against.
//
// Writes mark the dirty log of each memslot they land in (dirty.ts), as
// KVM's mark_page_dirty does for a write by the VMM.
import type { Vm } from './vm.js';
import type { DirtyLog } from './dirty.js';
import * as v from '../core/validate.js';
import { Mode, Access, Bound } from './dma/window.js';
import { DmaPlan, Piece } from './dma/plan.js';

export { DmaFault, type DmaFaultReason } from './dma/fault.js';

/** What vm.dma(liobn) returns: device-side reads and writes of guest memory through the LIOBN's window. */
export interface DmaAccessor {
  readonly liobn: bigint;
  /** The device reads `length` bytes at `iova` (needs the TCE READ bit on every page); a fresh copy. */
  read(iova: bigint | number, length: number): Uint8Array;
  /** The device reads `dst.length` bytes at `iova` into `dst` (as read(), without allocating); a fault leaves `dst` untouched. */
  readInto(iova: bigint | number, dst: Uint8Array): void;
  /** The device writes `bytes` at `iova` (needs the TCE WRITE bit on every page); marks the pages in the dirty log. */
  write(iova: bigint | number, bytes: Uint8Array): void;
}

/** Largest single transfer: a Uint8Array of it must be allocatable. */
const MAX_LENGTH = 0x7fff_ffff;
/** Up to this many bytes V8 keeps a typed array's elements on its heap (typed_array_max_size_in_heap). */
const ON_HEAP = 64;
/**
 * From this length on, read() allocates without zero-filling and copies
 * (uninitialized()); below it a one-piece read is a slice(). Measured on
 * Node 20 (V8 11.3) against a shared WebAssembly.Memory: slice() is the
 * faster up to about 8 KiB, where the zero-fill starts to cost more than
 * a second allocation step.
 */
const UNINITIALIZED_FROM = 8192;

/**
 * Scratch of iovaOf(): a bigint's two 32-bit halves through a BigUint64Array,
 * whose store optimised code does inline, where Number(bigint) is a runtime
 * call (about a hundred instructions more per call, callgrind). The word
 * order is the platform's, as it is for every typed array.
 */
const SCRATCH64 = new BigUint64Array(1);
const SCRATCH32 = new Uint32Array(SCRATCH64.buffer);
const LO_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HI_WORD = 1 - LO_WORD;

/** v.u64Safe('iova', at), with a bigint in [0, 2^53) converted without Number(bigint): the same results and errors. */
function iovaOf(at: bigint | number): number | bigint {
  if (typeof at === 'bigint' && BigInt.asUintN(64, at) === at) {
    SCRATCH64[0] = at;
    const hi = SCRATCH32[HI_WORD]!;
    // Below 2^53 the number is exact; above, u64Safe would give the bigint itself.
    return hi < Bound.HiSafe ? hi * Bound.Two32 + SCRATCH32[LO_WORD]! : at;
  }
  return v.u64Safe('iova', at);
}

/** @internal the accessor of vm.dma(liobn): DmaPlan's cache and plan, with the calls a device model makes. */
class Dma extends DmaPlan implements DmaAccessor {
  private readonly dirty: DirtyLog;

  constructor(vm: Vm, liobn: bigint, dirty: DirtyLog) {
    super(vm, liobn);
    this.dirty = dirty;
  }

  // The methods are bound (arrow properties): a device model may take `read` or `write` alone, as it takes a raw accessor's functions.
  readonly read = (at: bigint | number, length: number): Uint8Array => {
    const iova = iovaOf(at);
    v.int('length', length, 0, MAX_LENGTH);
    // The common case, as readInto takes it: one run, no plan.
    const off = this.oneRun(iova, length, Access.Read);
    if (off >= 0) {
      if (length < UNINITIALIZED_FROM) return this.u8.slice(off, off + length);
      const out = uninitialized(length);
      out.set(new Uint8Array(this.buf, this.base + off, length));
      return out;
    }
    const n = this.plan(iova, length, Access.Read);
    // One piece of a small read: slice() allocates and copies in one builtin, the cheapest below a few KiB.
    if (n === Piece.Stride && length < UNINITIALIZED_FROM) return this.u8.slice(this.pieces[0]!, this.pieces[0]! + length);
    const out = uninitialized(length);
    this.copyPieces(n, out);
    return out;
  };

  readonly readInto = (at: bigint | number, dst: Uint8Array): void => {
    const iova = iovaOf(at);
    v.instance('dst', dst, Uint8Array, 'a Uint8Array');
    const length = dst.length;
    const off = this.oneRun(iova, length, Access.Read);
    // The common case: one view and one set(), no plan.
    if (off >= 0) dst.set(new Uint8Array(this.buf, this.base + off, length));
    else this.copyPieces(this.plan(iova, length, Access.Read), dst);
  };

  readonly write = (at: bigint | number, bytes: Uint8Array): void => {
    const iova = iovaOf(at);
    v.instance('bytes', bytes, Uint8Array, 'a Uint8Array');
    const length = bytes.length;
    if (length > MAX_LENGTH) throw new RangeError(`bytes must be at most ${MAX_LENGTH} bytes long, got ${length}`);
    const off = this.oneRun(iova, length, Access.Write);
    if (off >= 0) {
      this.u8.set(bytes, off);
      const s = this.lastSlot;
      this.dirty.markDma(s, off - this.slotHost[s]!, length);
      return;
    }
    const n = this.plan(iova, length, Access.Write);
    const p = this.pieces;
    const u8 = this.u8;
    if (n === Piece.Stride) {
      // One piece, the common case: no subarray of the source.
      u8.set(bytes, p[0]!);
    } else {
      let pos = 0;
      for (let i = 0; i < n; i += Piece.Stride) {
        const len = p[i + 1]!;
        // set() copies through a clone when `bytes` is itself a view of guest memory.
        u8.set(bytes.subarray(pos, pos + len), p[i]!);
        pos += len;
      }
    }
    for (let i = 0; i < n; i += Piece.Stride) this.dirty.markDma(p[i + 2]!, p[i + 3]!, p[i + 1]!);
  };

  /**
   * The linear-memory offset of `length` bytes at `iova` when the access is
   * the common case: a number IOVA, a cached table window, IOMMU pages whose
   * TCEs all grant the access and map consecutive guest pages (one page, or
   * a run: runPages()), inside the memslot the last access hit. Else -1, and
   * plan() decides, faults included: nothing is thrown here.
   */
  private oneRun(iova: number | bigint, length: number, access: number): number {
    if (typeof iova !== 'number' || length === 0 || this.gen !== this.vm.generation || this.mode !== Mode.Table) return -1;
    const rel = iova - this.busSafe;
    if (this.busSafe < 0 || rel < 0 || rel >= this.span) return -1;
    const pageBytes = this.pageBytes;
    const idx = Math.floor(rel * this.invPage);
    const inPage = rel - idx * pageBytes;
    const base = this.pageBase(idx, access);
    if (base < 0) return -1;
    if (inPage + length > pageBytes) {
      // A run past the window's end is plan()'s out-of-range fault. The count of pages after the first is exact: powers of two.
      if (rel + length > this.span) return -1;
      const more = Math.ceil((inPage + length) * this.invPage) - 1;
      if (this.runPages(idx + 1, more, base + pageBytes, access) !== more) return -1;
    }
    const gpa = base + inPage;
    const s = this.lastSlot;
    const start = this.slotStart[s]!;
    const host = this.slotHost[s]!;
    // Positive tests: with no memslot at all the loads are undefined and every test fails.
    if (gpa >= start && gpa + length <= this.slotEnd[s]! && host >= 0) return host + (gpa - start);
    return -1;
  }

  /** Copies the `n` numbers of planned pieces into `dst`: one set() per piece. */
  private copyPieces(n: number, dst: Uint8Array): void {
    const p = this.pieces;
    let pos = 0;
    for (let i = 0; i < n; i += Piece.Stride) {
      const len = p[i + 1]!;
      dst.set(new Uint8Array(this.buf, this.base + p[i]!, len), pos);
      pos += len;
    }
  }
}

/**
 * A Uint8Array of `length` bytes over its own ArrayBuffer, not zero-filled:
 * the caller overwrites every byte. Small arrays live on V8's heap, where
 * new Uint8Array is cheapest; larger ones come from Buffer.allocUnsafeSlow
 * (never pooled) and are returned as a plain Uint8Array over that buffer.
 */
function uninitialized(length: number): Uint8Array {
  if (length <= ON_HEAP) return new Uint8Array(length);
  const b = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(b.buffer, b.byteOffset, length);
}

/** @internal use vm.dma(liobn). */
export function createDma(vm: Vm, liobn: bigint | number, dirty: DirtyLog): DmaAccessor {
  return new Dma(vm, v.liobn('liobn', liobn), dirty);
}
