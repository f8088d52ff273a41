// Binary snapshots where the native addon does not load (an install without
// a C++ toolchain runs WASM only): the zero scan falls back to
// Buffer#compare and the checksum to zlib's, and a snapshot still finds
// exactly the non-zero pages and restores the same memory. loadNative is
// made to find no addon for this file alone.
import { describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { Rng } from '../differential/support.js';

vi.mock('../../src/engine/native.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../src/engine/native.js')>()),
  loadNative: () => undefined,
}));

const { Host } = await import('../../src/index.js');
const { nonZeroRuns, savedEnd, PAGE } = await import('../../src/snapshot/scan.js');
const { loadNative } = await import('../../src/engine/native.js');

const digest = (u8: Uint8Array): string => createHash('sha256').update(u8).digest('hex');

describe('binary snapshots without the addon', () => {
  it('skip exactly the zero pages and restore the same memory', async () => {
    expect(loadNative()).toBeUndefined();
    const host = await Host.create({ maxMemory: 16 << 20 });
    const ram = host.spawn().mmap(4n << 20n);
    const bytes = ram.bytes!;
    const rng = new Rng(0x2e60);
    // Zero stretches longer than the fallback's 256 KiB steps, single bytes at page edges, random pages.
    for (let p = 0; p < bytes.length / PAGE; p++) {
      const k = rng.int(0, 9);
      if (p >= 200 && p < 300) continue;
      if (k === 0) bytes[p * PAGE] = 1;
      else if (k === 1) bytes[p * PAGE + PAGE - 1] = 0x80;
      else if (k === 2) bytes[p * PAGE + rng.int(0, PAGE - 1)] = rng.int(1, 255);
      else if (k === 3) for (let i = 0; i < PAGE; i += 97) bytes[p * PAGE + i] = rng.int(0, 255);
    }
    const end = savedEnd(host.mem);
    const u8 = host.mem.u8;
    let nonZeroPages = 0;
    for (let off = 0; off < end; off += PAGE) if (u8.subarray(off, off + PAGE).some((b) => b !== 0)) nonZeroPages++;
    const saved = nonZeroRuns(host.mem, 0, end).reduce((n, r) => n + r.len, 0);
    expect(saved).toBe(nonZeroPages * PAGE);
    const snap = host.snapshot({ format: 'binary' });
    const back = Host.restore(snap);
    expect(digest(back.mem.u8)).toBe(digest(host.mem.u8));
    expect(digest(back.snapshot({ format: 'binary' }))).toBe(digest(snap));
  });
});
