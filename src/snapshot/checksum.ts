// The CRC-32 of binary snapshots (the zlib polynomial: the value zlib.crc32
// gives). Every byte a binary snapshot saves or restores is checksummed, and
// zlib's portable loop (1-4 GB/s here) is slower than the copy it checks, so
// the addon's carry-less-multiply fold (src/native/crc32.cc, 5-7× zlib in cache) is
// used where it loads; zlib's otherwise. Both give the same value.
import { crc32 as zlibCrc32 } from 'node:zlib';
import { loadNative } from '../engine/native.js';

let fast: ((data: Uint8Array, value?: number) => number) | null | undefined;

/** CRC-32 of `data`, continuing from `value` (the CRC of the bytes before it), as zlib.crc32. */
export function crc32(data: Uint8Array, value = 0): number {
  if (fast === undefined) fast = loadNative()?.crc32 ?? null;
  return fast ? fast(data, value) : zlibCrc32(data, value);
}
