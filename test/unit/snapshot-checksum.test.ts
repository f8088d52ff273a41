// The checksum of binary snapshots: the addon's CRC-32 fold
// (src/native/crc32.cc) must give exactly zlib.crc32's value, or snapshots
// written with one would be refused as corrupted by the other (a host
// without the addon, an older snapshot). Checked on the standard check
// value, every length around the fold's 16- and 64-byte steps, unaligned
// views, running values carried across chunks, and a view of shared
// WebAssembly memory (what a snapshot reads). The data and the ranges come from a seeded generator;
// a failure names the command that replays its seed:
//   CHECKSUM_SEED=n npx vitest run test/unit/snapshot-checksum.test.ts
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/engine/native.js';
import { crc32 } from '../../src/snapshot/checksum.js';
import { Rng } from '../differential/support.js';

const SEED = Number(process.env.CHECKSUM_SEED ?? (Date.now() % 1_000_000));
const replay = `replay: CHECKSUM_SEED=${SEED} npx vitest run test/unit/snapshot-checksum.test.ts`;
const rng = new Rng(SEED);
const randomBytes = (n: number): Buffer => rng.bytes(n);
/** An integer in [lo, hi), as crypto.randomInt(lo, hi). */
const randomInt = (lo: number, hi: number): number => (hi - lo > 2 ** 32 - 1 ? lo + Math.floor((rng.u32() / 2 ** 32) * (hi - lo)) : rng.int(lo, hi - 1));

const fold = loadNative()?.crc32;
const onX64 = process.arch === 'x64' && loadNative() !== undefined;

describe('snapshot checksum (CRC-32, zlib polynomial)', () => {
  // Every x86-64 CPU since 2010 has PCLMULQDQ; without the addon, or elsewhere, zlib's loop is used and this says nothing.
  it.skipIf(!onX64)('the addon exports the fold on x86-64', () => {
    expect(typeof fold).toBe('function');
  });

  it.skipIf(!fold)('gives the standard check value and zlib’s value for every length 0–1100 at every alignment 0–15', () => {
    expect(fold!(Buffer.from('123456789'))).toBe(0xcbf43926);
    const buf = randomBytes(1200);
    for (let len = 0; len <= 1100; len++) {
      const off = len % 16;
      const v = buf.subarray(off, off + len);
      expect(fold!(v), `length ${len} at offset ${off}; ${replay}`).toBe(zlibCrc32(v));
    }
  });

  it.skipIf(!fold)('continues from a running value exactly as zlib does, across chunks of any size', () => {
    const buf = randomBytes(3 << 20);
    for (let i = 0; i < 200; i++) {
      const a = randomInt(0, buf.length);
      const b = randomInt(a, Math.min(buf.length, a + (i % 4 === 0 ? 1 << 20 : 5000)) + 1);
      const seed = randomInt(0, 2 ** 32);
      expect(fold!(buf.subarray(a, b), seed), `[${a}, ${b}) from ${seed}; ${replay}`).toBe(zlibCrc32(buf.subarray(a, b), seed));
    }
    // Chunked as the snapshot code does (256 KiB steps) equals whole.
    let c = 0;
    for (let o = 0; o < buf.length; o += 256 << 10) c = fold!(buf.subarray(o, o + (256 << 10)), c);
    expect(c, replay).toBe(zlibCrc32(buf));
  });

  it.skipIf(!fold)('reads views of shared WebAssembly memory; refuses what is not a typed array', () => {
    const mem = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
    const u8 = new Uint8Array(mem.buffer);
    u8.set(randomBytes(u8.length));
    expect(fold!(u8.subarray(7, 200_007)), replay).toBe(zlibCrc32(Buffer.from(u8.slice(7, 200_007))));
    expect(fold!(new Uint8Array(0), 0x1234)).toBe(0x1234);
    expect(() => fold!('abc' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => fold!(new Uint8Array(4), 'x' as unknown as number)).toThrow(TypeError);
  });

  it('the snapshot code’s crc32 is zlib’s value, with or without the addon', () => {
    const buf = randomBytes(70_000);
    expect(crc32(buf), replay).toBe(zlibCrc32(buf));
    expect(crc32(buf.subarray(3, 60_003), 0xdeadbeef), replay).toBe(zlibCrc32(buf.subarray(3, 60_003), 0xdeadbeef));
  });
});
