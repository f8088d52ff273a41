// Snapshots at memory speed (issue 13 item 5): the binary format, incremental snapshots over a
// base, and RAM-less snapshots with guest RAM supplied by the VMM. Each restores the same host as
// the JSON format does: the same memory, the same objects, the same answers after the same calls.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Host, H, TceError, type Vm, type ContainerFd } from '../../src/index.js';
import { SnapshotError } from '../../src/snapshot/fsck/read.js';
import { describeHost } from '../../src/snapshot/state.js';
import { encodeBody } from '../../src/snapshot/body.js';
import { Mem, walkHeap } from '../../src/snapshot/fsck/heap.js';
import { HEADER_BASE, HDR_ALLOC_LOCK } from '../../src/generated/layout.js';
import { richHost as sharedRichHost, RICH_LIOBN, RICH_QLIOBN } from '../fixtures.js';

const LIOBN = RICH_LIOBN;
const QLIOBN = RICH_QLIOBN;

/** richHost (test/fixtures.ts) in pid mode, with data in guest RAM and a PHB on the qemu VM. */
async function richHost() {
  const { host, qemu, ram, fd, vm, qvm } = await sharedRichHost({ ownerCheck: 'pid', maxMemory: 32 << 20 });
  for (let i = 0; i < 64; i++) ram.bytes![i * 65536 + i] = i + 1;
  ram.bytes!.fill(0xee, 0x300000, 0x340000);
  qvm.addPhb({ buid: 0x800000020000000n, index: 0 });
  host.checkInvariants();
  return { host, qemu, ram, fd, vm, qvm };
}

/** The digest of a host's objects: its state as the JSON body encodes it, pages aside. */
const objects = (h: Host): string => createHash('sha256').update(JSON.stringify(encodeBody(describeHost(h), []))).digest('hex');
/** The digest of all of linear memory. */
const memory = (h: Host): string => createHash('sha256').update(h.mem.u8).digest('hex');
/** The digest of the bytes that mean something: all of memory but the stale bytes inside free blocks (alloc() zeroes them before use). */
function liveMemory(h: Host): string {
  const copy = Buffer.from(h.mem.u8);
  for (const [b, size] of walkHeap(new Mem(h.mem), h.mem.byteLength).free) copy.fill(0, b + 12, b + size - 4);
  return createHash('sha256').update(copy).digest('hex');
}

/** The same calls on a restored host, found again by thread id: their results, then the memory and objects they leave. */
function drive(h: Host, qemuTid: number): string[] {
  const q = h.processes.get(qemuTid)!;
  const fd = q.containers()[0] as ContainerFd;
  const vms = [...h.vms] as Vm[];
  const kvm = vms.find((v) => v.profile === 'kvm')!;
  const qvm = vms.find((v) => v.profile === 'qemu')!;
  const out: string[] = [];
  const r = (f: () => unknown): void => {
    try {
      out.push(JSON.stringify(f(), (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)) ?? 'ok');
    } catch (e) {
      out.push(e instanceof TceError ? e.code : String(e));
    }
  };
  r(() => kvm.hcall(H.PUT_TCE, LIOBN, 0x80000n, 0x90000n | 3n));
  r(() => kvm.hcall(H.GET_TCE, LIOBN, 0x10000n));
  r(() => kvm.hcall(H.STUFF_TCE, LIOBN, 0x10000n, 0n, 2n));
  r(() => qvm.hcall(H.PUT_TCE, QLIOBN, 0x7000n, 0x300000n | 1n));
  r(() => [...qvm.dma(QLIOBN).read(0x7000n, 16)]);
  r(() => fd.unmapDma({ iova: 0x30000n, size: 0x10000n }));
  r(() => fd.mapDma({ iova: 0x60000n, vaddr: q.mm.mappings[0]!.ua, size: 0x10000n, read: true }));
  r(() => fd.unregisterMemory(q.mm.mappings[0]!.ua, 8n << 20n));
  r(() => q.mmap(1n << 20n).ua);
  h.checkInvariants();
  out.push(liveMemory(h), objects(h));
  return out;
}

describe('binary snapshots', () => {
  it('a binary round trip gives the same host as a JSON round trip: same memory, same objects, same answers after the same calls', async () => {
    const a = await richHost();
    const fromJson = Host.restore(JSON.parse(JSON.stringify(a.host.snapshot())));
    const bytes = a.host.snapshot({ format: 'binary' });
    expect(bytes).toBeInstanceOf(Uint8Array);
    const fromBinary = Host.restore(bytes);
    fromBinary.checkInvariants();
    expect(memory(fromBinary)).toBe(memory(a.host));
    expect(memory(fromBinary)).toBe(memory(fromJson));
    expect(objects(fromBinary)).toBe(objects(fromJson));
    expect(objects(fromBinary)).toBe(objects(a.host));
    expect(fromBinary.stats()).toEqual(fromJson.stats());
    const want = drive(fromJson, a.qemu.tid);
    expect(drive(fromBinary, a.qemu.tid)).toEqual(want);
    expect(drive(a.host, a.qemu.tid)).toEqual(want);
    // Zero pages are skipped: the snapshot holds a fraction of the 32 MiB memory and of its 8 MiB of RAM.
    expect(bytes.length).toBeLessThan(2 << 20);
  });

  it('base + incremental restores the same host as a full snapshot taken at the same point', async () => {
    const a = await richHost();
    const base = a.host.snapshot({ format: 'binary' });
    // Changes since the base: RAM written and zeroed, a new mapping, a hypercall that grows the guest table, a new window.
    a.ram.bytes!.fill(0x11, 0x500000, 0x520000);
    a.ram.bytes!.fill(0, 0x300000, 0x310000);
    a.vm.hcall(H.PUT_TCE, LIOBN, 0x7000000n, 0x40000n | 3n);
    a.fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 1 });
    a.qemu.mmap(1n << 20n).bytes!.fill(3, 0, 0x10000);
    const inc = a.host.snapshot({ format: 'binary', since: base });
    const full = a.host.snapshot({ format: 'binary' });
    expect(inc.length).toBeLessThan(full.length / 2);
    const fromInc = Host.restore(inc, { base });
    const fromFull = Host.restore(full);
    fromInc.checkInvariants();
    expect(memory(fromInc)).toBe(memory(fromFull));
    expect(memory(fromInc)).toBe(memory(a.host));
    expect(objects(fromInc)).toBe(objects(fromFull));
    expect(drive(fromInc, a.qemu.tid)).toEqual(drive(fromFull, a.qemu.tid));
    // An incremental snapshot is refused without its base, or over another one.
    expect(() => Host.restore(inc)).toThrow(/opts\.base: an incremental snapshot is restored over its base/);
    const other = (await richHost()).host;
    other.processes.values().next().value!.mmap(1n << 16n);
    expect(() => Host.restore(inc, { base: other.snapshot({ format: 'binary' }) })).toThrow(/not the snapshot this incremental one was taken against/);
    expect(() => a.host.snapshot({ format: 'binary', since: inc })).toThrow(/since must be a full binary snapshot/);
  });

  it('ram: false + guest RAM from the VMM restores the same host; without it guest RAM is zero and the rest is the same', async () => {
    const a = await richHost();
    const ramless = a.host.snapshot({ ram: false });
    const asked: { mm: number; tid: number; ua: bigint; size: bigint }[] = [];
    const fromVmm = Host.restore(ramless, {
      ram: (m) => {
        asked.push(m);
        return [...a.host.mms].find((x) => x.id === m.mm)!.findMapping(m.ua)!.bytes;
      },
    });
    fromVmm.checkInvariants();
    // One call per backed mapping, naming its mm, a task on it and its range.
    expect(asked.map((m) => [m.mm, m.ua, m.size])).toEqual([...a.host.mms].flatMap((mm) => mm.mappings.filter((x) => x.bytes).map((x) => [mm.id, x.ua, x.size])));
    expect(asked[0]!.tid).toBe(a.qemu.tid);
    expect(liveMemory(fromVmm)).toBe(liveMemory(a.host));
    expect(objects(fromVmm)).toBe(objects(a.host));
    const full = Host.restore(a.host.snapshot({ format: 'binary' }));
    expect(drive(fromVmm, a.qemu.tid)).toEqual(drive(full, a.qemu.tid));

    const zeroed = Host.restore(ramless);
    zeroed.checkInvariants();
    expect(objects(zeroed)).toBe(objects(a.host));
    const ram = zeroed.processes.get(a.qemu.tid)!.mm.findMapping(a.ram.ua)!.bytes!;
    expect(ram.every((b) => b === 0)).toBe(true);
    expect([...a.ram.bytes!.subarray(0x300000, 0x300010)]).toEqual(Array(16).fill(0xee));
    // The IOMMU and KVM state is all there: the same translations, the same guest and host entries.
    const [kvmA, kvmZ] = [a.vm, [...zeroed.vms].find((v) => v.profile === 'kvm')!];
    expect(kvmZ.hcall(H.GET_TCE, LIOBN, 0x10000n)).toEqual(kvmA.hcall(H.GET_TCE, LIOBN, 0x10000n));
    expect([...zeroed.processes.get(a.qemu.tid)!.containers()[0]!.container.windows[0]!.table.entries()]).toEqual([...a.fd.container.windows[0]!.table.entries()]);
    // A wrong answer from the VMM is refused, naming the option.
    expect(() => Host.restore(ramless, { ram: () => new Uint8Array(10) })).toThrow(/opts\.ram\(mm \d+, ua 0x[0-9a-f]+\): must return undefined or a Uint8Array of the mapping's 8388608 bytes/);
  });

  it('a RAM-less snapshot costs O(allocated state): its size does not grow with guest RAM', async () => {
    const sizes: number[] = [];
    for (const mib of [1n, 64n]) {
      const host = await Host.create({ maxMemory: 80 << 20 });
      const p = host.spawn();
      const ram = p.mmap(mib << 20n);
      ram.bytes!.fill(0xab);
      const vm = p.createVm({ profile: 'qemu' });
      vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
      vm.createTceTable({ liobn: QLIOBN, pageShift: 12, offset: 0n, size: 4096n });
      sizes.push(host.snapshot({ ram: false }).length);
    }
    expect(Math.abs(sizes[1]! - sizes[0]!)).toBeLessThan(64);
    expect(sizes[0]).toBeLessThan(16384);
  });

  it('refuses a corrupted, truncated or foreign binary snapshot before building anything, and a snapshot during an allocation', async () => {
    const a = await richHost();
    const bytes = a.host.snapshot({ format: 'binary' });
    const flipped = bytes.slice();
    flipped[flipped.length - 100]! ^= 1;
    expect(() => Host.restore(flipped)).toThrow(/corrupted \(its checksum does not match its contents\)/);
    const header = bytes.slice();
    header[12]! ^= 4;
    expect(() => Host.restore(header)).toThrow(/header checksum/);
    expect(() => Host.restore(bytes.slice(0, bytes.length - 1))).toThrow(/do not add up/);
    expect(() => Host.restore(bytes.slice(0, 40))).toThrow(/64-byte header/);
    const version = Buffer.from(bytes);
    version.writeUInt32LE(9, 8);
    expect(() => Host.restore(version)).toThrow(/binary snapshot version 9 is not supported/);
    expect(() => Host.restore(new Uint8Array(100))).toThrow(SnapshotError);
    expect(() => Host.restore(bytes, { base: bytes })).toThrow(/is not incremental/);
    expect(() => Host.restore(bytes, { ram: () => undefined })).toThrow(/opts\.ram: is an option of RAM-less snapshots/);
    expect(() => a.host.snapshot({ format: 'json', ram: false })).toThrow(TypeError);
    a.host.mem.setU32(HEADER_BASE + HDR_ALLOC_LOCK, 1);
    expect(() => a.host.snapshot({ format: 'binary' })).toThrow(/an allocation is in progress on another thread; pause every vCPU/);
    a.host.mem.setU32(HEADER_BASE + HDR_ALLOC_LOCK, 0);
  });

  it('reads JSON snapshots of body version 1 (one hex string per page address)', async () => {
    const a = await richHost();
    const v2 = JSON.parse(JSON.stringify(a.host.snapshot()));
    const step = (shift: number): bigint => 1n << BigInt(shift);
    for (const mm of v2.body.mms) {
      for (const m of mm.mappings) {
        const hpas: string[] = [];
        for (const [first, count] of m.frames) for (let k = 0; k < count; k++) hpas.push('0x' + (BigInt(first) - BigInt(k) * step(m.pageShift)).toString(16));
        m.hpas = hpas;
        delete m.frames;
      }
    }
    const v1 = { ...v2, version: 1, checksum: createHash('sha256').update(JSON.stringify(v2.body)).digest('hex') };
    const h = Host.restore(v1);
    h.checkInvariants();
    expect(memory(h)).toBe(memory(a.host));
    expect(objects(h)).toBe(objects(a.host));
  });
});
