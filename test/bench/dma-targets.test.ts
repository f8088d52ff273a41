// bench/dma.mjs#dmaTargets: each 64 KiB target line beside its bound; the
// allocating read beside a fresh buffer and a copy when that cell ran.
import { describe, expect, it } from 'vitest';
import { dmaPlan, dmaTargets } from '../../bench/dma.mjs';

const cell = (kind: string, size: number, ns: number) => ({ kind, size, nsPerCall: { median: ns, lo: ns, hi: ns }, gbPerSecond: { median: size / ns, lo: size / ns, hi: size / ns } });

describe('dma target lines', () => {
  it('plans the allocating floor beside the plain copies', () => {
    expect(dmaPlan(/^dma\/floor-alloc-read\//).map((c: { name: string }) => c.name)).toEqual(['dma/floor-alloc-read/512', 'dma/floor-alloc-read/65536']);
  });

  it('puts read beside the allocating floor when measured, else beside the plain copy', () => {
    const rows = [cell('read', 65536, 13107.2), cell('floor-read', 65536, 2184.5)];
    const line = (rs: object[]) => dmaTargets(rs).find((t: string) => t.startsWith('target dma read 64 KiB'));
    expect(line(rows)).toBe('target dma read 64 KiB ≥ 10 GB/s: 5.00 GB/s [5.00, 5.00] FAIL; plain copy 2184.5 ns, 30.00 GB/s');
    expect(line([...rows, cell('floor-alloc-read', 65536, 10922.7)])).toBe('target dma read 64 KiB ≥ 10 GB/s: 5.00 GB/s [5.00, 5.00] FAIL; a fresh buffer and a plain copy 10922.7 ns, 6.00 GB/s');
  });
});
