// Bad frees and a corrupt heap are refused without a trap and change
// nothing: a pointer alloc() never returned, a double free, a wrong size, a
// free block whose in-band header was overwritten, a corrupt list head or
// bitmap, an impossible header. Each refusal only counts itself in
// HDR_ALLOC_REFUSED; once the damage is undone the heap works on. Both
// engines leave the same bytes.
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/index.js';
import {
  HEADER_BASE, HEAP_BASE, HDR_ALLOC_REFUSED, HDR_ALLOC_TOP, HDR_MEM_END, HDR_ALLOC_HEADS,
} from '../../src/generated/layout.js';
import { ENGINES, GRANULE, blocks, counters, geometry, heapTop, snapshotHeap } from './alloc-heap.js';

/** Linear memory up to the heap top with the refusal counter blanked, to compare around a refused call. */
function bytesBut(host: Host): Buffer {
  const b = snapshotHeap(host);
  b.writeUInt32LE(0, HEADER_BASE + HDR_ALLOC_REFUSED);
  return b;
}

/** Runs `f` and expects it to be refused: no throw, nothing changed but one more refusal. */
function expectRefused(host: Host, what: string, f: () => void): void {
  const before = bytesBut(host);
  const refused = counters(host).refused;
  expect(f, what).not.toThrow();
  expect(counters(host).refused, `${what}: counted as refused`).toBe(refused + 1);
  expect(Buffer.compare(bytesBut(host), before), `${what}: changed memory`).toBe(0);
}

/**
 * A heap of [A 256 B][B 512 B free][C 128 B][D 4 KiB][E 64 B free … top):
 * A's right neighbour and C's left neighbour are the free block B.
 */
async function heap(engine: 'wasm' | 'native') {
  const host = await Host.create({ engine, maxMemory: 2 << 20 });
  const e = host.engine;
  const a = e.alloc(256);
  const b = e.alloc(500);
  const c = e.alloc(128);
  const d = e.alloc(4096);
  const tail = e.alloc(64);
  e.free(b, 500);
  e.free(tail, 64);
  expect(blocks(host).map((x) => [x.p, x.size, x.free])).toEqual([
    [a, 256, false], [b, 512, true], [c, 128, false], [d, 4096, false], [tail, 64, true],
  ]);
  return { host, e, a, b, c, d, tail };
}

/** Runs the scenario on one engine; returns the host for the engines' comparison. */
async function scenario(engine: 'wasm' | 'native'): Promise<Host> {
  const { host, e, a, b, c, d, tail } = await heap(engine);
  const { start, end } = geometry(host);
  const top = heapTop(host);

  // Pointers no alloc() returned.
  for (const p of [a + GRANULE, a + 8, d + 1024, HEAP_BASE, start - GRANULE, HEADER_BASE, top, top + GRANULE, end, 0xffff_ffc0]) {
    expectRefused(host, `free(0x${p.toString(16)}, 64)`, () => e.free(p, 64));
  }
  // Double frees: a free block, and the tail block.
  expectRefused(host, 'double free of B', () => e.free(b, 500));
  expectRefused(host, 'double free of the tail', () => e.free(tail, 64));
  // Wrong sizes: smaller, larger (into the free B, into the used D), impossible.
  expectRefused(host, 'A with a smaller size', () => e.free(a, 192));
  expectRefused(host, 'A with a larger size (into B)', () => e.free(a, 320));
  expectRefused(host, 'C with a larger size (into D)', () => e.free(c, 192));
  expectRefused(host, 'D past the top', () => e.free(d, 1 << 20));
  expectRefused(host, 'A of 0 bytes', () => e.free(a, 0));
  expectRefused(host, 'A of more than 2 GiB', () => e.free(a, 0x8000_0040));
  // free(0, n) is no call at all.
  const before = snapshotHeap(host);
  e.free(0, 64);
  expect(Buffer.compare(snapshotHeap(host), before)).toBe(0);
  expect(e.heapCheck()).toBe(2);

  // B's in-band header overwritten (a use after free): A and C, its neighbours, are refused, and so is B's class.
  const m = host.mem;
  for (const [field, junk] of [[0, 0x1234], [0, 0], [4, 0xffff_fff0], [8, m.byteLength + 64], [508, a]] as const) {
    const saved = m.getU32(b + field);
    m.setU32(b + field, junk);
    const what = `B's word at +${field} = 0x${junk.toString(16)}`;
    expect(e.heapCheck(), what).toBeLessThan(0);
    if (field !== 4 && field !== 8) expectRefused(host, `${what}: free(A)`, () => e.free(a, 256));
    if (field !== 4 && field !== 8) expectRefused(host, `${what}: free(C)`, () => e.free(c, 128));
    const snap = snapshotHeap(host);
    expect(e.alloc(500), `${what}: alloc from B's list`).toBe(0);
    expect(Buffer.compare(snapshotHeap(host), snap)).toBe(0);
    m.setU32(b + field, saved);
    expect(e.heapCheck(), `${what}, undone`).toBe(2);
  }
  // B's links pointing elsewhere are refused when B is unlinked by a merge.
  m.setU32(b + 8, c);
  expectRefused(host, 'B.next = C (a used block): free(A)', () => e.free(a, 256));
  m.setU32(b + 8, 0);

  // A corrupt list head (B's class) makes alloc refuse, not trap.
  const headB = HEADER_BASE + HDR_ALLOC_HEADS + (512 / GRANULE) * 4;
  expect(m.getU32(headB)).toBe(b);
  for (const junk of [m.byteLength - 4, 0xffff_ffc0, a, b + GRANULE]) {
    m.setU32(headB, junk);
    const snap = snapshotHeap(host);
    expect(e.alloc(500)).toBe(0);
    expect(Buffer.compare(snapshotHeap(host), snap)).toBe(0);
    expect(e.heapCheck()).toBeLessThan(0);
  }
  m.setU32(headB, b);

  // A BEGIN bit set inside A: A no longer looks like one block of 256 bytes.
  const g = (a + 2 * GRANULE - HEAP_BASE) / GRANULE;
  const word = HEAP_BASE + (g >>> 5) * 4;
  const w = m.getU32(word);
  m.setU32(word, w | (1 << (g & 31)));
  expect(e.heapCheck()).toBeLessThan(0);
  expectRefused(host, 'A with a BEGIN bit inside', () => e.free(a, 256));
  m.setU32(word, w);

  // An impossible header: top beyond the memory, or memEnd larger than the memory.
  for (const [field, junk] of [[HDR_ALLOC_TOP, 0xffff_ff00], [HDR_ALLOC_TOP, top + 8], [HDR_MEM_END, m.byteLength + (1 << 20)]] as const) {
    const saved = m.getU32(HEADER_BASE + field);
    m.setU32(HEADER_BASE + field, junk);
    expect(e.alloc(64)).toBe(0);
    expect(e.heapCheck()).toBe(-2);
    expectRefused(host, `header field ${field} = 0x${junk.toString(16)}: free(A)`, () => e.free(a, 256));
    m.setU32(HEADER_BASE + field, saved);
  }

  // Undone, everything works: each block frees once, and they all merge.
  expect(e.heapCheck()).toBe(2);
  const refused = counters(host).refused;
  for (const [p, n] of [[c, 128], [a, 256], [d, 4096]]) e.free(p!, n!);
  expect(counters(host).refused).toBe(refused);
  expect(e.heapCheck()).toBe(1);
  expect(counters(host).bytes).toBe(0);
  expect(e.alloc(end - start)).toBe(start);
  return host;
}

describe('TLSF allocator: bad frees and corrupt heaps', () => {
  const hosts: Host[] = [];
  for (const { engine, skip, name } of ENGINES) {
    it.skipIf(skip !== undefined)(`${name}: refused without a trap, nothing else changed, and the heap works once undone`, async () => {
      hosts.push(await scenario(engine));
    });
  }
  it.skipIf(ENGINES.some((x) => x.skip !== undefined))('both engines leave the same bytes', () => {
    expect(hosts.length).toBe(2);
    expect(heapTop(hosts[0]!)).toBe(heapTop(hosts[1]!));
    expect(Buffer.compare(snapshotHeap(hosts[0]!), snapshotHeap(hosts[1]!))).toBe(0);
  });
});
