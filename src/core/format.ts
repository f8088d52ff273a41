// How numbers are spelled in messages and in snapshots.

/** 0x-prefixed lowercase hex, the form of addresses in messages and of 64-bit values in snapshots. */
export function hex(x: bigint | number): string {
  return '0x' + x.toString(16);
}
