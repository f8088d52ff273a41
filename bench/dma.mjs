// The `dma` section: a device model's DMA through a TCE window
// (vm.dma(liobn)), beside a plain Uint8Array copy of the same guest bytes,
// the floor no accessor can beat. One qemu-profile VM with 16 MiB of RAM and
// a 4 KiB-page window whose pages map guest RAM in order (a 64 KiB transfer
// covers 16 TCEs, each translated), plus the same window on a 2^59 bus
// offset (a DDW: the IOVA does not fit in a number). `readInto` passes the
// IOVA as a bigint, `readInto-num` as a number (the path with no BigInt
// work at all, what a device model keeping addresses as numbers gets), and
// `floor-alloc-read`, a fresh buffer (Buffer.allocUnsafeSlow, not zero-filled)
// filled by the plain copy: the bound for `read`, which returns a new array. Each size's variants
// are sampled in interleaved rounds (harness.mjs); reported as medians with
// their 95% intervals, in ns per call and GB/s. A 512-byte call is timed in
// bursts of BURST calls, as the hypercall cells of fewer than 512 entries
// are (harness.mjs says why): benchmark.js's own cost per invocation would
// otherwise be charged to the accessor and to the plain copy alike. The issue's targets: a
// 512-byte readInto in ≤ 200 ns, 64 KiB reads and writes at ≥ 10 GB/s.
import { Host, H } from '../dist/index.js';
import { BURST, interleaved } from './harness.mjs';
import { medianInterval } from './stats.mjs';

const MiB = 1n << 20n;
const LIOBN = 0x1000n; // a VIO unit's LIOBN: an ordinary guest table
const LIOBN_DDW = 0x1001n;
const DDW_BUS = 1n << 59n;
const PAGES = 1024; // 4 MiB of IOVA mapped, read and write
const IOVA = 0x10000n; // 64 KiB into the window, page aligned
const IOVA_NUM = Number(IOVA);
const SIZES = [512, 65536];
/** Sizes below this are timed in bursts of BURST calls (a 64 KiB call is long enough to time alone). */
const BURST_BELOW = 4096;

/** The cells this filter selects: {name, size, kind}. */
export function dmaPlan(filter) {
  const cells = [];
  for (const size of SIZES) {
    for (const kind of ['readInto', 'readInto-num', 'read', 'write', 'readInto-ddw', 'floor-read', 'floor-write', 'floor-alloc-read']) {
      const name = `dma/${kind}/${size}`;
      if (!filter || filter.test(name)) cells.push({ name, size, kind });
    }
  }
  return cells;
}

async function setup() {
  const host = await Host.create({ maxMemory: 64 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(16n * MiB);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 12, offset: 0n, size: 1n << 16n });
  vm.createTceTable({ liobn: LIOBN_DDW, pageShift: 12, offset: DDW_BUS >> 12n, size: 1n << 16n });
  for (let i = 0; i < PAGES; i++) {
    const ioba = BigInt(i) << 12n;
    const tce = (0x100000n + ioba) | 3n; // IOVA page i → guest page 256 + i
    for (const [l, bus] of [[LIOBN, 0n], [LIOBN_DDW, DDW_BUS]]) {
      const rc = vm.hcall(H.PUT_TCE, l, bus + ioba, tce).ret;
      if (rc !== H.SUCCESS) throw new Error(`dma bench: H_PUT_TCE returned ${rc}`);
    }
  }
  return { vm, bytes: ram.bytes };
}

/** Runs the selected cells; `tick()` after each sampling run. Returns rows {name, kind, size, nsPerCall, gbPerSecond, samples}. */
export async function runDma(cells, profile, tick = () => {}) {
  if (cells.length === 0) return [];
  const { vm, bytes } = await setup();
  const dma = vm.dma(LIOBN);
  const ddw = vm.dma(LIOBN_DDW);
  const out = [];
  for (const size of SIZES) {
    const mine = cells.filter((c) => c.size === size);
    if (mine.length === 0) continue;
    const dst = new Uint8Array(size);
    const src = new Uint8Array(size).fill(0x5a);
    const gpa = 0x100000 + Number(IOVA);
    const guest = bytes.subarray(gpa, gpa + size);
    // Each closure does the one call: no BigInt arithmetic, no allocation but what the API itself does.
    const runs = {
      readInto: () => dma.readInto(IOVA, dst),
      'readInto-num': () => dma.readInto(IOVA_NUM, dst),
      read: () => dma.read(IOVA, size),
      write: () => dma.write(IOVA, src),
      'readInto-ddw': () => ddw.readInto(DDW_BUS + IOVA, dst),
      'floor-read': () => dst.set(guest),
      'floor-write': () => guest.set(src),
      // The bound for any read that returns a new array: Node's cheapest fresh buffer (not zero-filled) and one plain copy.
      'floor-alloc-read': () => {
        const b = Buffer.allocUnsafeSlow(size);
        const d = new Uint8Array(b.buffer, b.byteOffset, size);
        d.set(guest);
        return d;
      },
    };
    const burst = size < BURST_BELOW ? BURST : 1;
    const timed = (run) => (burst === 1 ? run : () => {
      for (let i = 0; i < BURST; i++) run();
    });
    const pooled = interleaved(`dma ${size}`, mine.map((c) => ({ key: c.kind, run: timed(runs[c.kind]), burst })), profile, tick);
    for (const c of mine) {
      const s = pooled.get(c.kind);
      const ns = medianInterval(s.map((x) => x * 1e9));
      // GB/s of the median time (and of the interval's ends, swapped: a longer time is a lower rate).
      const gb = (t) => size / t;
      out.push({ name: c.name, kind: c.kind, size, nsPerCall: ns, gbPerSecond: { median: gb(ns.median), lo: gb(ns.hi), hi: gb(ns.lo) }, samples: s.length });
    }
  }
  return out;
}

const f = (x, d = 1) => x.toFixed(d);

/** The terminal table of the section. */
export function dmaTable(rows) {
  const head = `${'benchmark'.padEnd(24)}  ${'ns/call [95%]'.padStart(30)}  ${'GB/s [95%]'.padStart(26)}`;
  const lines = rows.map((r) => `${r.name.padEnd(24)}  ${`${f(r.nsPerCall.median)} [${f(r.nsPerCall.lo)}, ${f(r.nsPerCall.hi)}]`.padStart(30)}  ${`${f(r.gbPerSecond.median, 2)} [${f(r.gbPerSecond.lo, 2)}, ${f(r.gbPerSecond.hi, 2)}]`.padStart(26)}`);
  return [head, ...lines].join('\n');
}

/** The issue's targets as PASS/FAIL lines (on the medians), each beside the plain copy of the same bytes. */
export function dmaTargets(rows) {
  const get = (kind, size) => rows.find((r) => r.kind === kind && r.size === size);
  const out = [];
  const floor = (kind, size) => {
    const r = get(kind, size);
    const what = kind === 'floor-alloc-read' ? 'a fresh buffer and a plain copy' : 'plain copy';
    return r ? `; ${what} ${f(r.nsPerCall.median)} ns, ${f(r.gbPerSecond.median, 2)} GB/s` : '';
  };
  for (const [kind, what] of [['readInto', ''], ['readInto-num', ' (IOVA as a number)']]) {
    const ri = get(kind, 512);
    if (ri) out.push(`target dma readInto 512 B${what} ≤ 200 ns: ${f(ri.nsPerCall.median)} ns [${f(ri.nsPerCall.lo)}, ${f(ri.nsPerCall.hi)}] ${ri.nsPerCall.median <= 200 ? 'PASS' : 'FAIL'}${floor('floor-read', 512)}`);
  }
  for (const [kind, fl] of [['readInto', 'floor-read'], ['read', get('floor-alloc-read', 65536) ? 'floor-alloc-read' : 'floor-read'], ['write', 'floor-write']]) {
    const r = get(kind, 65536);
    if (r) out.push(`target dma ${kind} 64 KiB ≥ 10 GB/s: ${f(r.gbPerSecond.median, 2)} GB/s [${f(r.gbPerSecond.lo, 2)}, ${f(r.gbPerSecond.hi, 2)}] ${r.gbPerSecond.median >= 10 ? 'PASS' : 'FAIL'}${floor(fl, 65536)}`);
  }
  return out;
}
