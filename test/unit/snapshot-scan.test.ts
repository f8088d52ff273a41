// What a full binary snapshot saves: nonZeroRuns (src/snapshot/scan.ts)
// against a page-by-page reference over memory crafted to hit each way the
// scan decides: all-zero pages, pages whose first word alone is set, pages
// whose first word is zero and only their last byte set, random pages, runs
// of them across the scan's 256 KiB chunks, and a range that starts and
// ends inside a chunk. The random bytes come from a seeded generator; a failure names the command
// that replays its seed: SCAN_SEED=n npx vitest run test/unit/snapshot-scan.test.ts
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/index.js';
import { nonZeroRuns, savedEnd, PAGE, type Run } from '../../src/snapshot/scan.js';
import { Rng } from '../differential/support.js';

const SEED = Number(process.env.SCAN_SEED ?? (Date.now() % 1_000_000));
const replay = `replay: SCAN_SEED=${SEED} npx vitest run test/unit/snapshot-scan.test.ts`;
const rng = new Rng(SEED);

/** The non-zero pages of [from, to), one page at a time, merged. */
function reference(u8: Uint8Array, from: number, to: number): Run[] {
  const runs: Run[] = [];
  for (let off = from; off < to; off += PAGE) {
    if (!u8.subarray(off, off + PAGE).some((b) => b !== 0)) continue;
    const last = runs[runs.length - 1];
    if (last && last.off + last.len === off) last.len += PAGE;
    else runs.push({ off, len: PAGE });
  }
  return runs;
}

describe('nonZeroRuns', () => {
  it('finds exactly the non-zero pages, however each page is non-zero', async () => {
    const host = await Host.create({ maxMemory: 16 << 20 });
    const ram = host.spawn().mmap(8n << 20n);
    const u8 = host.mem.u8;
    const base = Math.ceil((ram.bytes!.byteOffset + PAGE) / PAGE) * PAGE;
    const pages = Math.floor((ram.bytes!.byteOffset + ram.bytes!.length - base) / PAGE) - 1;
    const kinds = ['zero', 'first-word', 'last-byte', 'random'] as const;
    for (let i = 0; i < pages; i++) {
      // Stretches of one kind, so that whole 256 KiB chunks are zero or not.
      const kind = kinds[Math.floor(i / (i < 512 ? 70 : 3)) % 4]!;
      const at = base + i * PAGE;
      if (kind === 'first-word') u8[at + rng.int(0, 3)] = 1 + rng.int(0, 254);
      else if (kind === 'last-byte') u8[at + PAGE - 1] = 1;
      else if (kind === 'random') u8.set(rng.bytes(PAGE), at);
    }
    const end = savedEnd(host.mem);
    expect(end).toBeGreaterThan(base + pages * PAGE);
    const got = nonZeroRuns(host.mem, 0, end);
    expect(got, replay).toEqual(reference(u8, 0, end));
    expect(got.length).toBeGreaterThan(100);
    // A range that starts and ends inside chunks.
    const from = base + 37 * PAGE;
    const to = base + (pages - 41) * PAGE;
    expect(nonZeroRuns(host.mem, from, to), replay).toEqual(reference(u8, from, to));
  });
});
