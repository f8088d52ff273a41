// The shared linear memory and typed access to it. TypeScript reads and
// writes descriptors only through the views generated from the layout
// (src/generated/views.ts, over this class), arrays of words through the
// indexed accessors here, and byte ranges (guest RAM, snapshots) through
// `bytes`: no file computes a field offset by hand.
import type { Words } from '../generated/views.js';

/** WebAssembly page size. */
export const WASM_PAGE = 65536;

/** The one shared WebAssembly.Memory of a host, with its views. */
export class LinearMemory implements Words {
  readonly memory: WebAssembly.Memory;
  readonly byteLength: number;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly u64: BigUint64Array;

  constructor(memory: WebAssembly.Memory) {
    this.memory = memory;
    // The memory is created with initial = maximum, so the buffer never grows.
    const buf = memory.buffer;
    this.byteLength = buf.byteLength;
    this.u8 = new Uint8Array(buf);
    this.u32 = new Uint32Array(buf);
    this.u64 = new BigUint64Array(buf);
  }

  /** A new fixed-size shared memory of `bytes` (rounded up to whole pages, at most 4 GiB − 64 KiB). */
  static create(bytes: number): LinearMemory {
    const pages = Math.ceil(bytes / WASM_PAGE);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    return new LinearMemory(memory);
  }

  /** The memory's buffer (shared, never detached). */
  get buffer(): ArrayBufferLike {
    return this.memory.buffer;
  }

  /** u32 at a 4-aligned offset. */
  getU32(off: number): number {
    return Atomics.load(this.u32, off >>> 2);
  }
  /** Stores a u32 at a 4-aligned offset. */
  setU32(off: number, v: number): void {
    Atomics.store(this.u32, off >>> 2, v >>> 0);
  }
  /**
   * A plain (not atomic) store of a u32 at a 4-aligned offset, for a setting
   * this thread changes between calls and real mode reads on the next one
   * (the benchmark's switch of the real-mode check, inside its timed loop).
   */
  storeU32(off: number, v: number): void {
    this.u32[off >>> 2] = v;
  }
  /** Atomic compare-exchange of the u32 at a 4-aligned offset: the old value. */
  casU32(off: number, expected: number, desired: number): number {
    return Atomics.compareExchange(this.u32, off >>> 2, expected >>> 0, desired >>> 0);
  }
  /** u64 at an 8-aligned offset. */
  getU64(off: number): bigint {
    return Atomics.load(this.u64, off >>> 3);
  }
  /** Stores a u64 at an 8-aligned offset. */
  setU64(off: number, v: bigint): void {
    Atomics.store(this.u64, off >>> 3, BigInt.asUintN(64, v));
  }
  /** Atomic compare-exchange of the u64 at an 8-aligned offset: the old value. */
  casU64(off: number, expected: bigint, desired: bigint): bigint {
    return Atomics.compareExchange(this.u64, off >>> 3, BigInt.asUintN(64, expected), BigInt.asUintN(64, desired));
  }

  /** Element `i` of the u32 array at `base` (a page array, a region's pointers). */
  getU32At(base: number, i: number): number {
    return this.getU32(base + i * 4);
  }
  /** Stores element `i` of the u32 array at `base`. */
  setU32At(base: number, i: number, v: number): void {
    this.setU32(base + i * 4, v);
  }
  /** Element `i` of the u64 array at `base` (a region's host addresses, a page of TCEs). */
  getU64At(base: number, i: number): bigint {
    return this.getU64(base + i * 8);
  }
  /** Stores element `i` of the u64 array at `base`. */
  setU64At(base: number, i: number, v: bigint): void {
    this.setU64(base + i * 8, v);
  }
  /**
   * The low 32 bits of element `i` of the u64 array at `base`, a plain read
   * without BigInt (WebAssembly memory is little-endian): what a scan that
   * only needs the permission bits of a TCE reads.
   */
  lowWordAt(base: number, i: number): number {
    return this.u32[(base >>> 2) + i * 2]!;
  }

  /** A view of `length` bytes at `off` (guest RAM, a snapshot page). */
  bytes(off: number, length: number): Uint8Array {
    return this.u8.subarray(off, off + length);
  }

  /** A DataView of `length` bytes at `off`, for the big-endian data guests put in their memory. */
  dataView(off: number, length: number): DataView {
    return new DataView(this.memory.buffer, off, length);
  }
}
