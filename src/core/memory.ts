// The shared linear memory and typed views over it. Every module that reads
// or writes descriptors goes through this class, with offsets from
// src/generated/layout.ts.

/** WebAssembly page size. */
export const WASM_PAGE = 65536;

/** The one shared WebAssembly.Memory of a host, with its views. */
export class LinearMemory {
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

  /** u32 at a 4-aligned offset. */
  getU32(off: number): number {
    return Atomics.load(this.u32, off >>> 2);
  }
  setU32(off: number, v: number): void {
    Atomics.store(this.u32, off >>> 2, v >>> 0);
  }
  /** u64 at an 8-aligned offset. */
  getU64(off: number): bigint {
    return Atomics.load(this.u64, off >>> 3);
  }
  setU64(off: number, v: bigint): void {
    Atomics.store(this.u64, off >>> 3, BigInt.asUintN(64, v));
  }
}
