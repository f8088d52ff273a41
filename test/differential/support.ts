// Shared by the differential tests: a seedable generator and whether there is a native engine to compare.
import { loadNative } from '../../src/engine/native.js';
import type { Host } from '../../src/index.js';
import { HEADER_BASE, HDR_ALLOC_TOP } from '../../src/generated/layout.js';

/** Without the addon (it failed to build) engine: 'wasm' still works; the differential tests then have nothing to compare. */
export const nativeAvailable = typeof (loadNative() as unknown as { createEngine?: unknown } | undefined)?.createEngine === 'function';

/** xorshift32*-style generator: small, seedable, the same on every platform. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return Math.imul(this.s, 0x2545f491) >>> 0;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
  /** `n` bytes drawn from the generator (a seeded stand-in for crypto.randomBytes). */
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) {
      const x = this.u32();
      for (let k = 0; k < 4 && i + k < n; k++) out[i + k] = (x >>> (8 * k)) & 0xff;
    }
    return out;
  }
  big(bits: number): bigint {
    let v = 0n;
    for (let b = 0; b < bits; b += 32) v = (v << 32n) | BigInt(this.u32());
    return BigInt.asUintN(bits, v);
  }
}

/** JSON with bigints spelled `123n`, for comparing and printing outcomes. */
export const json = (x: unknown): string => JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));

/** The allocator's top: memory above it is still untouched. */
export function allocTop(h: Host): number {
  return h.mem.getU32(HEADER_BASE + HDR_ALLOC_TOP);
}

/** Index of the first differing byte in [0, len), or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array, len: number): number {
  if (Buffer.compare(a.subarray(0, len), b.subarray(0, len)) === 0) return -1;
  for (let i = 0; i < len; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** 'ok', or the message of the InvariantError checkInvariants() threw. */
export function invariants(h: Host): string {
  try {
    h.checkInvariants();
    return 'ok';
  } catch (e) {
    return (e as Error).message;
  }
}
