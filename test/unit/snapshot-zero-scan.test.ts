// How a full binary snapshot skips zero memory: firstNonZero, the addon's
// (src/native/zero_scan.cc, each of its loops: AVX2, SSE2, 64-bit words) and
// the fallback without the addon (Buffer#compare), must name exactly the
// byte a byte loop finds: a single non-zero byte at every kind of position
// (first and last byte of a page, of a 32- and 16-byte lane, the aligned
// heads and tails of the loops) under ranges that start and end anywhere,
// and seeded random layouts of zero and non-zero pages, where nonZeroRuns
// with each of them must give the page-by-page reference.
import { describe, expect, it } from 'vitest';
import { Rng } from '../differential/support.js';
import { loadNative } from '../../src/engine/native.js';
import { firstNonZeroByCompare, memBuffer, nonZeroRuns, PAGE, type FirstNonZero, type Run } from '../../src/snapshot/scan.js';
import { LinearMemory } from '../../src/core/memory.js';

const addon = loadNative();
const loops = addon?.firstNonZeroLoops ?? [];
/** Every way of finding the first non-zero byte there is in this build: the addon's loops, its default, and the fallback. */
const impls: [string, FirstNonZero][] = [
  ...loops.map((l): [string, FirstNonZero] => [`addon ${l}`, (b, f, t) => addon!.firstNonZero!(b, f, t, l)]),
  ...(addon?.firstNonZero ? [['addon default', (b, f, t) => addon.firstNonZero!(b, f, t)] as [string, FirstNonZero]] : []),
  ['Buffer#compare fallback', firstNonZeroByCompare],
];

/** A shared WebAssembly memory of `pages` 64 KiB pages, as linear memory is (its buffer 64 KiB aligned, so offsets are alignments). */
function memory(pages: number): LinearMemory {
  return new LinearMemory(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }));
}

/** The first non-zero byte of [from, to), a byte at a time. */
function byteLoop(u8: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i++) if (u8[i] !== 0) return i;
  return to;
}

/** The non-zero pages of [from, to), one page at a time, merged. */
function pageReference(u8: Uint8Array, from: number, to: number): Run[] {
  const runs: Run[] = [];
  for (let off = from; off < to; off += PAGE) {
    if (byteLoop(u8, off, off + PAGE) === off + PAGE) continue;
    const last = runs[runs.length - 1];
    if (last && last.off + last.len === off) last.len += PAGE;
    else runs.push({ off, len: PAGE });
  }
  return runs;
}

describe('firstNonZero', () => {
  it.skipIf(process.arch !== 'x64' || !addon)('the addon has the AVX2/SSE2 loops on x86-64 (SSE2 always; AVX2 where the CPU has it)', () => {
    expect(loops).toContain('sse2');
    expect(loops).toContain('words');
  });

  it('finds a single non-zero byte at every kind of position, in ranges that start and end anywhere', () => {
    const mem = memory(1);
    const u8 = mem.u8;
    const buf = memBuffer(mem);
    const n = 3 * PAGE + 200;
    const at = new Set<number>();
    for (let i = 0; i < 70; i++) at.add(i).add(n - 1 - i);
    for (let k = 0; k * 16 < n; k++) at.add(k * 16).add(k * 16 + 15);
    for (let p = PAGE; p < n; p += PAGE) for (let d = -65; d <= 65; d++) at.add(p + d);
    const rng = new Rng(0x5ca9);
    const wrong: string[] = [];
    let checks = 0;
    for (const pos of at) {
      const v = rng.pick([1, 0x80, 0xff, rng.int(1, 255)]);
      u8[pos] = v;
      const froms = [0, 1, 31, 33, pos - 31, pos - 1, pos, pos + 1].filter((f) => f >= 0 && f <= n);
      const tos = [n, n - 33, pos, pos + 1, pos + 31, pos + 200].filter((t) => t >= 0 && t <= n);
      for (const from of froms) {
        for (const to of tos) {
          if (from > to) continue;
          const want = from <= pos && pos < to ? pos : to;
          for (const [name, first] of impls) {
            const got = first(buf, from, to);
            if (got !== want) wrong.push(`${name}: byte ${v} at ${pos}, range [${from}, ${to}): ${got}, not ${want}`);
            checks++;
          }
        }
      }
      u8[pos] = 0;
    }
    expect(wrong.slice(0, 10)).toEqual([]);
    expect(checks).toBeGreaterThan(10_000);
  });

  it('finds the first of several non-zero bytes, and nothing in an empty or all-zero range', () => {
    const mem = memory(2);
    const buf = memBuffer(mem);
    const rng = new Rng(77);
    for (const [name, first] of impls) {
      expect(first(buf, 0, mem.byteLength), name).toBe(mem.byteLength);
      expect(first(buf, 500, 500), name).toBe(500);
    }
    for (let round = 0; round < 300; round++) {
      const from = rng.int(0, 70_000);
      const to = rng.int(from, mem.byteLength);
      const marks = rng.int(1, 4);
      const set: number[] = [];
      for (let i = 0; i < marks; i++) {
        const p = rng.int(0, mem.byteLength - 1);
        mem.u8[p] = rng.int(1, 255);
        set.push(p);
      }
      const want = byteLoop(mem.u8, from, to);
      for (const [name, first] of impls) expect(first(buf, from, to), `${name} [${from}, ${to}) marks ${set.join(',')}`).toBe(want);
      for (const p of set) mem.u8[p] = 0;
    }
  });

  it.skipIf(!addon?.firstNonZero)('over a long range (several threads claiming 1 MiB blocks) gives the lowest non-zero byte, wherever the bytes are', () => {
    const MIB = 1 << 20;
    const mem = memory(72 * 16); // 72 MiB: above the 64 MiB where the scan goes parallel
    const buf = memBuffer(mem);
    const n = mem.byteLength;
    const f = addon!.firstNonZero!;
    // Backed pages, as guest RAM a guest wrote and zeroed: a block takes long enough for the threads to overlap.
    mem.u8.fill(1);
    mem.u8.fill(0);
    expect(f(buf, 0, n)).toBe(n);
    const edges = [0, 1, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 5 * MIB - 1, 5 * MIB, 33 * MIB + 7, 68 * MIB, n - MIB, n - 1];
    for (const from of [0, 3, 2 * MIB + 5]) {
      for (const pos of edges) {
        mem.u8[pos] = 0x40;
        expect(f(buf, from, n), `one byte at ${pos}, from ${from}`).toBe(pos >= from ? pos : n);
        mem.u8[pos] = 0;
      }
    }
    // Several: the lowest wins, whichever block a thread finds first.
    const rng = new Rng(0xb10c);
    for (let round = 0; round < 12; round++) {
      const marks = Array.from({ length: rng.int(2, 5) }, () => rng.int(0, n - 1));
      for (const m of marks) mem.u8[m] = 1;
      expect(f(buf, 0, n), `marks ${marks.join(',')}`).toBe(Math.min(...marks));
      for (const m of marks) mem.u8[m] = 0;
    }
    // A non-zero byte in each of several neighbouring blocks, the lowest early in its block and the others late:
    // a thread finding a higher one after another found the lowest must not replace it.
    for (let round = 0; round < 24; round++) {
      const first = 4 * MIB + rng.int(0, 60) * MIB;
      const marks = Array.from({ length: 6 }, (_, i) => first + i * MIB + (i === 0 ? rng.int(0, 100) : MIB - 1 - rng.int(0, 100)));
      for (const m of marks) mem.u8[m] = 1;
      expect(f(buf, 0, n), `marks ${marks.join(',')}`).toBe(marks[0]);
      for (const m of marks) mem.u8[m] = 0;
    }
  });

  it.skipIf(!addon?.firstNonZero)('the addon refuses what is not a range of the view, and an unknown loop', () => {
    const f = addon!.firstNonZero!;
    const v = new Uint8Array(100);
    expect(() => f(v, 5, 4)).toThrow(RangeError);
    expect(() => f(v, -1, 4)).toThrow(RangeError);
    expect(() => f(v, 0, 101)).toThrow(RangeError);
    expect(() => f(v, 0.5, 4)).toThrow(RangeError);
    expect(() => f(v, Number.NaN, 4)).toThrow(RangeError);
    expect(() => f(v, '0' as unknown as number, 4)).toThrow(TypeError);
    expect(() => (f as (v: Uint8Array, from: number) => number)(v, 0)).toThrow(TypeError);
    expect(() => f([1, 2] as unknown as Uint8Array, 0, 1)).toThrow(TypeError);
    expect(() => f(v, 0, 4, 'avx512')).toThrow(TypeError);
    // A view's own bounds: a subarray's index 0 is its first byte.
    const w = new Uint8Array(64);
    w[40] = 9;
    expect(f(w.subarray(8), 0, 56)).toBe(32);
    expect(() => f(w.subarray(8), 0, 57)).toThrow(RangeError);
  });
});

describe('nonZeroRuns with each firstNonZero', () => {
  it('gives the page-by-page reference on seeded random layouts of zero and non-zero pages', () => {
    const mem = memory(64); // 4 MiB: the 256 KiB steps of the fallback, many times over
    const u8 = mem.u8;
    for (const seed of [1, 2, 3, 4]) {
      const rng = new Rng(seed * 0x9e37);
      u8.fill(0);
      const pages = mem.byteLength / PAGE;
      for (let i = 0; i < pages; ) {
        // Stretches of one kind, some longer than a 256 KiB chunk.
        const len = rng.pick([1, 2, 5, 40, 70, 130]);
        const kind = rng.pick(['zero', 'zero', 'first-word', 'one-byte', 'last-byte', 'random'] as const);
        for (let j = i; j < Math.min(pages, i + len); j++) {
          const a = j * PAGE;
          if (kind === 'first-word') u8[a + rng.int(0, 3)] = rng.int(1, 255);
          else if (kind === 'one-byte') u8[a + rng.int(0, PAGE - 1)] = rng.int(1, 255);
          else if (kind === 'last-byte') u8[a + PAGE - 1] = 1;
          else if (kind === 'random') for (let k = 0; k < PAGE; k += 4) mem.u32[(a + k) >>> 2] = rng.u32();
        }
        i += len;
      }
      const ranges: [number, number][] = [[0, mem.byteLength]];
      for (let r = 0; r < 6; r++) {
        const from = rng.int(0, pages - 1) * PAGE;
        ranges.push([from, rng.int(from / PAGE, pages) * PAGE]);
      }
      for (const [from, to] of ranges) {
        const want = pageReference(u8, from, to);
        for (const [name, first] of impls) expect(nonZeroRuns(mem, from, to, first), `${name}, seed ${seed}, [${from}, ${to})`).toEqual(want);
        expect(nonZeroRuns(mem, from, to), `default, seed ${seed}`).toEqual(want);
      }
    }
  });
});
