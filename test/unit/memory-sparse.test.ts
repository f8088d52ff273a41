// Memory grows with what is mapped (docs/layout.md on-demand levels, commit a68bd1267b72): 1,000 scattered entries of a 2^24-entry window cost under 1 MiB of table memory.
import { describe, expect, it } from 'vitest';
import { Host, preregNew, IommuTable, TCE, getTableSize } from '../../src/index.js';
import { expectTce, mulberry32 } from '../model/harness.js';

const MiB = 1n << 20n;

describe('memory grows with what is mapped', () => {
  it('the geometry of the brief (2^40 window, 64K pages, levels 5) is refused by the kernel rule of §2.2 on either system page size', async () => {
    for (const sys of [16, 12]) {
      const host = await Host.create({ pageShift: sys });
      expectTce(() => IommuTable.create(host, { pageShift: 16, windowSize: 1n << 40n, levels: 5, busOffset: 0n }, true), 'EINVAL');
    }
  });

  it('2^40 window of 64K pages (2^24 entries), the deepest legal geometry (4 levels, 4K system pages), 1,000 seeded scattered entries: memoryBytes and heap growth < 1 MiB', async () => {
    const host = await Host.create({ pageShift: 12 });
    const p = host.spawn();
    const ram = p.mmap(1000n << 16n, { hugePageShift: 16, backed: false });
    const r = preregNew(p, ram.ua, (1000n << 16n) >> 12n);
    const heap0 = host.stats().memory.heapUsedBytes;
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 40n, levels: 4, busOffset: 1n << 59n }, true);
    t.viewMm = p.mm;
    expect(t.size).toBe(1n << 24n);
    const rnd = mulberry32(20240611);
    const picked = new Set<bigint>();
    while (picked.size < 1000) picked.add(BigInt(Math.floor(rnd() * 2 ** 24)));
    let i = 0n;
    for (const e of picked) t.buildV2(p.mm, t.offset + e, 1n, ram.ua + (i++ << 16n), TCE.READ);
    expect(r.mapped).toBe(1001n);
    const heap = BigInt(host.stats().memory.heapUsedBytes - heap0);
    console.log(`sparse 2^24-entry window, 1000 entries: memoryBytes=${t.memoryBytes} heapDelta=${heap} (get_table_size: ${getTableSize(16, 1n << 40n, 4, 12)})`);
    expect(t.memoryBytes).toBeLessThan(MiB);
    expect(heap).toBeLessThan(MiB);
  });

  it('the same window with nothing mapped holds only its root', async () => {
    const host = await Host.create({ pageShift: 12 });
    const t = IommuTable.create(host, { pageShift: 16, windowSize: 1n << 40n, levels: 4, busOffset: 1n << 59n }, true);
    // Only the root of each tree exists before a map: 2^rootBits u32 slots, at most a 16 KiB root.
    expect(t.rootBits).toBeLessThanOrEqual(12);
    expect(t.memoryBytes).toBe(4n << BigInt(t.rootBits));
  });
});
