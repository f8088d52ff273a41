// Shared by the differential tests: a seedable generator and whether there is a native engine to compare.
import { loadNative } from '../../src/engine/native.js';

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
  big(bits: number): bigint {
    let v = 0n;
    for (let b = 0; b < bits; b += 32) v = (v << 32n) | BigInt(this.u32());
    return BigInt.asUintN(bits, v);
  }
}
