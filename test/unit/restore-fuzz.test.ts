// A restore that trusts nothing (issue 12 item 4): a seeded fuzz of Host.restore. Snapshots of a
// few rich hosts, in all three formats, are mutated with structure in mind — the JSON objects
// (fields deleted, retyped, moved out of range, ids and descriptors swapped), the bytes of the
// saved memory at descriptor fields, tree pointers, list links, counters and allocator state, the
// binary format's run and block tables — and given a recomputed checksum. Each must be refused
// with a SnapshotError naming a field, or restore to a host whose invariants hold and that
// survives a random hypercall and ioctl sequence without a trap (and keeps its invariants).
//
//   RESTORE_FUZZ_SEED=n          replay one run
//   RESTORE_FUZZ_MUTATIONS=n     mutations per run (default 3000; raise it for a longer run)
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Host, H, TceError, InvariantError, DmaFault, type Vm, type ContainerFd } from '../../src/index.js';
import { SnapshotError } from '../../src/snapshot/fsck/read.js';
import { Mem, walkHeap } from '../../src/snapshot/fsck/heap.js';
import { STRUCTS, HEADER_BASE, HEAP_BASE } from '../../src/generated/layout.js';
import { MmView, RegView, TblView, VmView, SttView, SlotView } from '../../src/generated/views.js';
import { Rng } from '../differential/support.js';
import { v2Container, linkedVm } from '../fixtures.js';

const SEED = Number(process.env.RESTORE_FUZZ_SEED ?? (Date.now() % 1_000_000));
const MUTATIONS = Number(process.env.RESTORE_FUZZ_MUTATIONS ?? 3000);
const replay = `RESTORE_FUZZ_SEED=${SEED} RESTORE_FUZZ_MUTATIONS=${MUTATIONS} npx vitest run test/unit/restore-fuzz.test.ts`;

const LIOBN = 0x80000000n;
const QLIOBN = 0x71000002n;

/**
 * A host with most kinds of state: v2 container with two windows and a KVM link, a v1 container, a
 * thread, a vm-clone, forks of forks and the handles they hold (descriptor tables), a qemu VM with
 * a PHB and (even variants) its VIO table in bypass, in every owner-check mode and kernel era.
 */
async function richHost(variant: number): Promise<Host> {
  const ownerCheck = (['mm', 'pid', 'none', 'fork-close'] as const)[variant % 4]!;
  const kernel = (['4.19', '5.19', '4.12', '5.19'] as const)[variant % 4]!;
  const pageShift = variant % 2 ? 12 : 16;
  const host = await Host.create({ ownerCheck, kernel, pageShift, maxMemory: 4 << 20 });
  const qemu = host.spawn();
  const ram = qemu.mmap(1n << 20n);
  ram.bytes!.fill(0x5a, 0x8000, 0x9000);
  const { g, fd } = v2Container(host, qemu, ram, { pageShift, windowSize: 1n << 28n, levels: 2 });
  fd.createWindow({ pageShift: 12, windowSize: 1n << 24n, levels: 3 });
  fd.mapDma({ iova: 0x30000n, vaddr: ram.ua + 0x50000n, size: 0x20000n, read: true, write: true });
  fd.mapDma({ iova: (1n << 59n) + 0x5000n, vaddr: ram.ua + 0x10000n, size: 0x3000n, read: true });
  const legacy = host.addGroup({ ddw: false, tce32Size: 1n << 24n });
  const other = host.spawn();
  const ram2 = other.mmap(1n << 18n, { backed: variant % 2 === 0 });
  const fd1 = other.openContainer();
  fd1.attachGroup(legacy);
  fd1.setIommu('v1');
  fd1.enable();
  fd1.mapDma({ iova: 0x2000n, vaddr: ram2.ua + 0x1000n, size: 0x2000n, read: true, write: true });
  const vm = linkedVm(qemu, ram, g, { liobn: LIOBN, pageShift: 16, size: 1n << 12n });
  vm.hcall(H.PUT_TCE, LIOBN, 0x10000n, 0x20000n | 3n);
  vm.hcall(H.PUT_TCE, LIOBN, 0x40000n, 0x70000n | 1n);
  const child = qemu.fork();
  // Under fork-close the child's copy was closed on fork; a handle passed over a socket it may hold.
  if (ownerCheck === 'fork-close') child.receive(fd);
  else child.inherit(fd);
  child.thread();
  child.fork();
  qemu.thread().inherit(fd);
  qemu.clone({ vm: true }).inherit(fd);
  const qvm = qemu.createVm({ profile: 'qemu' });
  qvm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  qvm.createTceTable({ liobn: QLIOBN, pageShift: 12, offset: 0n, size: 4096n });
  qvm.hcall(H.PUT_TCE, QLIOBN, 0x5000n, 0x23000n | 3n);
  const phb = qvm.addPhb({ buid: 0x800000020000000n, index: 0 });
  qvm.rtas('ibm,create-pe-dma-window', [0, Number(phb.buid >> 32n), Number(phb.buid & 0xffffffffn), 16, 24], 4);
  if (variant % 2 === 0) qvm.setTceBypass(QLIOBN, true);
  qvm.vcpu(0).regs[3] = 0n;
  host.checkInvariants();
  return host;
}

// ---------------------------------------------------------------------------
// Formats: a mutable, re-sealable form of each.

const sha = (body: unknown): string => createHash('sha256').update(JSON.stringify(body)).digest('hex');

/** A binary snapshot taken apart (the layout of src/snapshot/binary.ts) and put back together with fresh checksums. */
interface BinParts { header: Buffer; meta: unknown; runs: number[][]; blocks: number[][]; data: Buffer }
function splitBinary(b: Uint8Array): BinParts {
  const buf = Buffer.from(b);
  const metaBytes = buf.readUInt32LE(16);
  const runCount = buf.readUInt32LE(20);
  const blockCount = buf.readUInt32LE(24);
  const meta = JSON.parse(buf.subarray(64, 64 + metaBytes).toString('utf8'));
  let at = 64 + metaBytes;
  const read = (n: number): number[][] => Array.from({ length: n }, () => {
    const r = [0, 4, 8, 12].map((k) => buf.readUInt32LE(at + k));
    at += 16;
    return r;
  });
  const runs = read(runCount);
  const blocks = read(blockCount);
  return { header: Buffer.from(buf.subarray(0, 64)), meta, runs, blocks, data: Buffer.from(buf.subarray(at)) };
}
function joinBinary(p: BinParts): Uint8Array {
  const meta = Buffer.from(JSON.stringify(p.meta), 'utf8');
  const tables = Buffer.alloc((p.runs.length + p.blocks.length) * 16);
  [...p.runs, ...p.blocks].forEach((r, i) => r.forEach((v, k) => tables.writeUInt32LE(v >>> 0, i * 16 + k * 4)));
  const out = Buffer.concat([p.header, meta, tables, p.data]);
  out.writeUInt32LE(meta.length, 16);
  out.writeUInt32LE(p.runs.length, 20);
  out.writeUInt32LE(p.blocks.length, 24);
  let dataBytes = 0;
  for (const r of p.runs) if (r[2] === 0) dataBytes += r[1]!;
  out.writeBigUInt64LE(BigInt(dataBytes), 32);
  out.writeUInt32LE(crc32(meta), 48);
  out.writeUInt32LE(crc32(out.subarray(64 + meta.length)), 52);
  out.writeUInt32LE(crc32(out.subarray(0, 60)), 60);
  return new Uint8Array(out);
}

/** Where a memory address is in a snapshot's saved bytes (JSON page or binary data), so it can be changed. */
interface Image {
  read(addr: number): number;
  write(addr: number, byte: number): void;
}

function jsonImage(body: { memory: { pages: [number, string][] } }): Image {
  const pages = new Map<number, Buffer>();
  const get = (page: number, create: boolean): Buffer | undefined => {
    let b = pages.get(page);
    if (b) return b;
    const i = body.memory.pages.findIndex(([off]) => off === page);
    if (i >= 0) b = Buffer.from(body.memory.pages[i]![1], 'base64');
    else if (create) {
      b = Buffer.alloc(4096);
      body.memory.pages.push([page, b.toString('base64')]);
      body.memory.pages.sort((x, y) => x[0] - y[0]);
    } else return undefined;
    pages.set(page, b);
    return b;
  };
  const flush = (page: number): void => {
    const i = body.memory.pages.findIndex(([off]) => off === page);
    body.memory.pages[i]![1] = pages.get(page)!.toString('base64');
  };
  return {
    read: (a) => get(a & ~4095, false)?.[a & 4095] ?? 0,
    write: (a, v) => {
      get(a & ~4095, true)![a & 4095] = v;
      flush(a & ~4095);
    },
  };
}

function binImage(p: BinParts): Image {
  const locate = (a: number): number => {
    let at = 0;
    for (const [off, len, kind] of p.runs) {
      if (kind !== 0) continue;
      if (a >= off! && a < off! + len!) return at + a - off!;
      at += len!;
    }
    return -1;
  };
  return {
    read: (a) => (locate(a) >= 0 ? p.data[locate(a)]! : 0),
    write: (a, v) => {
      const i = locate(a);
      if (i >= 0) p.data[i] = v;
    },
  };
}

// ---------------------------------------------------------------------------
// What the mutations aim at: pointer-like values and the fields of every descriptor of a base host.

interface Target { kind: string; at: number }
interface Base { host: Host; json: { format: string; version: number; checksum: string; body: Record<string, unknown> }; full: Uint8Array; ramless: Uint8Array; targets: Target[]; pointers: number[] }

function targetsOf(host: Host): { targets: Target[]; pointers: number[] } {
  const mem = host.mem;
  const heap = walkHeap(new Mem(mem), mem.byteLength);
  const pointers = [0, 1, 8, 64, HEADER_BASE, HEAP_BASE, mem.byteLength - 64, 0xffffffc0, ...heap.used.keys(), ...heap.free.keys()];
  const targets: Target[] = [{ kind: 'HDR', at: HEADER_BASE }];
  for (const mm of host.mms) {
    targets.push({ kind: 'MM', at: mm.desc });
    for (let r = new MmView(mem, mm.desc).regions; r; r = new RegView(mem, r).next) targets.push({ kind: 'REG', at: r }, { kind: 'u64s', at: new RegView(mem, r).hpas });
  }
  for (const t of host.tables) {
    const d = new TblView(mem, t.desc);
    targets.push({ kind: 'TBL', at: t.desc });
    const walk = (node: number, lvl: number, bits: number): void => {
      targets.push({ kind: lvl === 0 ? 'u64s' : 'u32s', at: node });
      if (lvl === 0) return;
      for (let i = 0; i < 2 ** bits; i++) {
        const c = mem.getU32(node + i * 4);
        if (c) walk(c, lvl - 1, d.levelBits);
      }
    };
    if (d.root) walk(d.root, d.levels - 1, d.rootBits);
    if (d.uaRoot) walk(d.uaRoot, d.levels - 1, d.rootBits);
  }
  for (const vm of host.vms) {
    targets.push({ kind: 'VM', at: vm.desc });
    for (let s = new VmView(mem, vm.desc).slots; s; s = new SlotView(mem, s).next) targets.push({ kind: 'SLOT', at: s });
    for (let s = new VmView(mem, vm.desc).stts; s; s = new SttView(mem, s).next) {
      const d = new SttView(mem, s);
      targets.push({ kind: 'STT', at: s });
      if (d.pages) targets.push({ kind: 'u32s', at: d.pages });
    }
    for (const c of vm.vcpus.values()) targets.push({ kind: 'VCPU', at: c.desc });
  }
  // The allocator's bitmaps and the first free block's tags.
  targets.push({ kind: 'bitmap', at: HEAP_BASE });
  for (const f of heap.free.keys()) targets.push({ kind: 'u32s', at: f });
  return { targets, pointers };
}

const FIELDS = new Map((STRUCTS as readonly { name: string; fields: readonly { name: string; type: string; offset: number; count: number }[] }[]).map((s) => [s.name, s.fields]));

// ---------------------------------------------------------------------------
// Mutations.

type Json = Record<string, unknown> | unknown[];

/** Every path to a value in `o` (not into memory.pages data), with its parent. */
function leaves(o: unknown, path: (string | number)[] = [], out: { path: (string | number)[]; parent: Json; key: string | number }[] = []): typeof out {
  if (o === null || typeof o !== 'object') return out;
  const entries: [string | number, unknown][] = Array.isArray(o) ? o.map((v, i) => [i, v]) : Object.entries(o);
  for (const [k, v] of entries) {
    if (path.length === 2 && path[0] === 'memory' && path[1] === 'pages') continue;
    out.push({ path: [...path, k], parent: o as Json, key: k });
    leaves(v, [...path, k], out);
  }
  return out;
}

const OPTION_VALUES: unknown[] = [
  12, 13, 16, 17, 0, -1, 'bogus', 'none', 'pid', 'mm', 'fork-close', 'call', 'entry', 'wasm', 'native', 'host', 'simulated', '4.12', '4.19', '5.19',
  null, '0x0', '0xffffffff', 1 << 20, 3 << 20, (4 << 20) + 65536,
  // LIOBNs for bypass lists: the PHB's two windows, the VIO table, none
  '0x80000000', '0x80000001', '0x71000002', '0x71000003',
];

/** A replacement for a JSON value: near it, of another type, or one of the interesting values. */
function jsonValue(rng: Rng, old: unknown, pointers: number[]): unknown {
  switch (rng.int(0, 9)) {
    case 0: return null;
    case 1: return rng.pick(OPTION_VALUES);
    case 2: return typeof old === 'number' ? old + rng.pick([1, -1, 64, -64, 4096, 2 ** 32, 0.5]) : 7;
    case 3: return typeof old === 'string' && old.startsWith('0x') ? '0x' + (BigInt(old) + BigInt(rng.pick([1, -1, 4096, 65536, 2 ** 20]))).toString(16).replace('-', '') : '0x10';
    case 4: return rng.pick(pointers);
    case 5: return typeof old === 'boolean' ? !old : true;
    case 6: return Array.isArray(old) ? [] : {};
    case 7: return typeof old === 'string' ? old.toUpperCase() + 'x' : String(old);
    case 8: return typeof old === 'string' && old.startsWith('0x') ? '0x' + rng.big(rng.pick([16, 32, 48, 64])).toString(16) : rng.u32();
    default: return typeof old === 'number' ? rng.pick(pointers) + rng.pick([0, 4, 8, 16, 64]) : old;
  }
}

/** The fields the kernel eras, descriptor tables and VIO bypass added: a leaf at or under one of them. */
const isNewField = (path: (string | number)[]): boolean =>
  (path[0] === 'options' && path[1] === 'kernel') || path[0] === 'fdTables' || (path[0] === 'processes' && path[2] === 'files') || (path[0] === 'vms' && path[2] === 'bypass');

/** One structural mutation of a JSON body (in place), one in seven aimed at the newer fields: returns what it did. */
function mutateJson(rng: Rng, body: Record<string, unknown>, pointers: number[]): string {
  const all = leaves(body);
  const newer = all.filter((l) => isNewField(l.path));
  const { path, parent, key } = rng.pick(newer.length && rng.chance(1 / 7) ? newer : all);
  const old = (parent as Record<string | number, unknown>)[key];
  const where = path.join('.');
  const kind = rng.int(0, 9);
  if (kind === 0 && !Array.isArray(parent)) {
    delete (parent as Record<string, unknown>)[key as string];
    return `delete ${where}`;
  }
  if (kind === 1 && Array.isArray(parent)) {
    parent.splice(key as number, 1);
    return `remove ${where}`;
  }
  if (kind === 2 && Array.isArray(parent)) {
    parent.splice(key as number, 0, structuredClone(old));
    return `duplicate ${where}`;
  }
  if (kind === 3 && Array.isArray(parent) && parent.length > 1) {
    const j = rng.int(0, parent.length - 1);
    [parent[key as number], parent[j]] = [parent[j], parent[key as number]];
    return `swap ${where} with [${j}]`;
  }
  if (kind === 4 && !Array.isArray(parent)) {
    (parent as Record<string, unknown>).extra = 1;
    return `add a field next to ${where}`;
  }
  if (kind === 5) {
    // Another object's value of the same name (a descriptor, an id, a thread): swaps identities.
    const same = all.filter((l) => l.key === key && l !== all.find((x) => x.parent === parent && x.key === key));
    if (same.length) {
      const o = rng.pick(same);
      (parent as Record<string | number, unknown>)[key] = structuredClone((o.parent as Record<string | number, unknown>)[o.key]);
      return `${where} = ${o.path.join('.')}`;
    }
  }
  const v = jsonValue(rng, old, pointers);
  (parent as Record<string | number, unknown>)[key] = v;
  return `${where}: ${JSON.stringify(old)?.slice(0, 40)} -> ${JSON.stringify(v)?.slice(0, 40)}`;
}

/** One mutation of saved memory at a structure's field, node slot, bitmap bit or counter. */
function mutateMemory(rng: Rng, img: Image, targets: Target[], pointers: number[]): string {
  const t = rng.pick(targets);
  let at: number;
  let width: 4 | 8 = 4;
  let name: string;
  const fields = FIELDS.get(t.kind);
  if (fields) {
    const f = rng.pick(fields);
    width = f.type === 'u64' ? 8 : 4;
    at = t.at + f.offset + rng.int(0, f.count - 1) * width;
    name = `${t.kind}.${f.name}`;
  } else if (t.kind === 'bitmap') {
    at = t.at + rng.int(0, 255) * 4;
    name = 'allocator bitmap';
  } else {
    width = t.kind === 'u64s' ? 8 : 4;
    at = t.at + rng.int(0, 15) * width;
    name = `${t.kind} slot`;
  }
  const old = Array.from({ length: width }, (_, i) => img.read(at + i)).reduce((a, b, i) => a + b * 2 ** (8 * i), 0);
  let v: number;
  switch (rng.int(0, 7)) {
    case 0: v = 0; break;
    case 1: v = old + 1; break;
    case 2: v = old - 1; break;
    case 3: v = old ^ (1 << rng.int(0, 31)); break;
    case 4: v = rng.pick(pointers); break;
    case 5: v = t.at; break;
    case 6: v = rng.u32(); break;
    default: v = 0xffffffff;
  }
  v = ((v % 2 ** 32) + 2 ** 32) % 2 ** 32;
  for (let i = 0; i < 4; i++) img.write(at + i, Math.floor(v / 2 ** (8 * i)) & 0xff);
  if (width === 8 && rng.chance(0.3)) img.write(at + 4 + rng.int(0, 3), rng.int(0, 255));
  return `memory ${name} at 0x${at.toString(16)}: 0x${old.toString(16)} -> 0x${v.toString(16)}`;
}

// ---------------------------------------------------------------------------
// After a restore: a random sequence of calls must not trap.

function isTrap(e: unknown): boolean {
  return e instanceof WebAssembly.RuntimeError || (e instanceof Error && /out of bounds|native engine|Maximum call stack/i.test(e.message));
}

function exercise(rng: Rng, host: Host): void {
  const vms = [...host.vms] as Vm[];
  // Under 'none' and 'fork-close' a call from another mm breaks the invariants by design (the 2015 hazard; a
  // received handle): only handles held in the mm the container's memory and windows belong to are used there.
  const fds: ContainerFd[] = [];
  for (const c of host.containers) {
    const home = c.prereg[0]?.mm ?? c.windows.find((w) => w?.chargedMm)?.chargedMm ?? c.v1ChargedMm;
    fds.push(...[...c.fds].filter((fd) => (host.ownerCheck !== 'none' && host.ownerCheck !== 'fork-close') || fd.process.mm === home));
  }
  const procs = [...host.processes.values()];
  for (let i = 0; i < 24; i++) {
    try {
      const k = rng.int(0, 9);
      if (k <= 4 && vms.length) {
        const vm = rng.pick(vms);
        const liobns = [...vm.tables.keys()];
        const liobn = liobns.length && rng.chance(0.9) ? rng.pick(liobns) : BigInt(rng.u32());
        const nr = rng.pick([H.PUT_TCE, H.PUT_TCE, H.PUT_TCE_INDIRECT, H.STUFF_TCE, H.GET_TCE]);
        const vcpu = vm.vcpu(rng.int(0, 1));
        const r = vcpu.regs;
        r[3] = BigInt(nr);
        r[4] = liobn;
        r[5] = BigInt(rng.int(0, 64)) << BigInt(rng.pick([12, 16]));
        r[6] = nr === H.PUT_TCE_INDIRECT ? BigInt(rng.int(0, 255)) << 12n : (BigInt(rng.int(0, 255)) << 12n) | BigInt(rng.int(0, 3));
        r[7] = BigInt(rng.pick([0, 1, 2, 16, 512, 513]));
        vcpu.hcall();
      } else if (k === 5 && vms.length) {
        const vm = rng.pick(vms);
        const liobns = [...vm.tables.keys()];
        if (liobns.length) vm.dma(rng.pick(liobns)).read(BigInt(rng.int(0, 64)) << 12n, rng.int(1, 8192));
      } else if (k >= 6 && fds.length) {
        const fd = rng.pick(fds);
        const ua = fd.process.mm.mappings[0]?.ua ?? 0n;
        switch (rng.int(0, 6)) {
          case 0: fd.mapDma({ iova: BigInt(rng.int(0, 64)) << 12n, vaddr: ua + (BigInt(rng.int(0, 64)) << 12n), size: BigInt(rng.int(1, 16)) << 12n, read: true, write: rng.chance(0.5) }); break;
          case 1: fd.unmapDma({ iova: BigInt(rng.int(0, 64)) << 12n, size: BigInt(rng.int(1, 64)) << 12n }); break;
          case 2: fd.createWindow({ pageShift: rng.pick([12, 16]), windowSize: 1n << BigInt(rng.int(20, 30)), levels: rng.int(1, 3) }); break;
          case 3: fd.removeWindow(rng.pick([0n, 1n << 59n])); break;
          case 4: fd.registerMemory(ua, 1n << 16n); break;
          case 5: fd.unregisterMemory(ua, fd.process.mm.mappings[0]?.size ?? 0n); break;
          default: if (rng.chance(0.3)) fd.close();
        }
      } else if (procs.length) {
        const p = rng.pick(procs);
        if (rng.chance(0.5)) p.mmap(1n << 16n);
        else p.fork();
      }
    } catch (e) {
      if (isTrap(e) || !(e instanceof TceError || e instanceof DmaFault || e instanceof TypeError || e instanceof RangeError)) throw e;
    }
  }
}

// ---------------------------------------------------------------------------

describe('Host.restore trusts nothing (seeded fuzz)', () => {
  it(`${MUTATIONS} structured mutations with recomputed checksums: each refused naming a field, or a host whose invariants hold and that never traps`, async () => {
    console.log(`restore fuzz: seed ${SEED}, ${MUTATIONS} mutations; replay: ${replay}`);
    const bases: Base[] = [];
    for (let v = 0; v < 4; v++) {
      const host = await richHost(v);
      const { targets, pointers } = targetsOf(host);
      bases.push({ host, json: JSON.parse(JSON.stringify(host.snapshot())), full: host.snapshot({ format: 'binary' }), ramless: host.snapshot({ ram: false }), targets, pointers });
    }
    // The unmutated snapshots restore, in every format.
    for (const b of bases) {
      Host.restore(b.json).checkInvariants();
      Host.restore(b.full).checkInvariants();
      Host.restore(b.ramless).checkInvariants();
    }
    const rng = new Rng(SEED);
    const tally = { refused: 0, restored: 0, fields: new Set<string>() };
    for (let n = 0; n < MUTATIONS; n++) {
      const base = rng.pick(bases);
      const format = rng.pick(['json', 'json', 'binary', 'ramless'] as const);
      const steps: string[] = [];
      let input: unknown;
      const count = rng.chance(0.8) ? 1 : rng.int(2, 4);
      if (format === 'json') {
        const snap = structuredClone(base.json);
        for (let k = 0; k < count; k++) {
          const pages = (snap.body.memory as { pages?: unknown } | undefined)?.pages;
          steps.push(rng.chance(0.5) || !Array.isArray(pages) ? mutateJson(rng, snap.body, base.pointers) : mutateMemory(rng, jsonImage(snap.body as never), base.targets, base.pointers));
        }
        snap.checksum = sha(snap.body);
        input = snap;
      } else {
        const parts = splitBinary(format === 'binary' ? base.full : base.ramless);
        for (let k = 0; k < count; k++) {
          const what = rng.int(0, 9);
          if (what < 3) steps.push(mutateJson(rng, parts.meta as Record<string, unknown>, base.pointers));
          else if (what < 8) steps.push(mutateMemory(rng, binImage(parts), base.targets, base.pointers));
          else {
            const table = parts.blocks.length && rng.chance(0.5) ? parts.blocks : parts.runs;
            const row = rng.int(0, table.length - 1);
            const col = rng.int(0, 3);
            const v = rng.pick([0, 1, 64, 4096, table[row]![col]! + 64, table[row]![col]! - 64, rng.pick(base.pointers)]);
            steps.push(`${table === parts.runs ? 'runs' : 'blocks'}[${row}][${col}]: ${table[row]![col]} -> ${v}`);
            table[row]![col] = v >>> 0;
          }
        }
        input = joinBinary(parts);
      }
      const what = () => `mutation ${n} (${format}): ${steps.join('; ')}\n  replay: ${replay}`;
      let host: Host;
      try {
        host = Host.restore(input);
      } catch (e) {
        if (!(e instanceof SnapshotError)) throw new Error(`not refused with a SnapshotError naming a field: ${String((e as Error)?.stack ?? e)}\n  ${what()}`);
        tally.refused++;
        tally.fields.add(e.field.replace(/\[\d+\]/g, '[]').split(' ')[0]!);
        continue;
      }
      tally.restored++;
      try {
        host.checkInvariants();
        exercise(rng, host);
        host.checkInvariants();
      } catch (e) {
        const kind = e instanceof InvariantError ? 'invariants broken' : isTrap(e) ? 'trap' : 'error';
        throw new Error(`restored, then ${kind}: ${String((e as Error)?.stack ?? e)}\n  ${what()}`);
      }
    }
    console.log(`restore fuzz: ${tally.refused} refused, ${tally.restored} restored; fields named: ${tally.fields.size}`);
    expect(tally.refused + tally.restored, replay).toBe(MUTATIONS);
    // The mutations reach deep: refusals name fields of memory, of the state and of the binary tables.
    expect(tally.fields.size, replay).toBeGreaterThan(15);
    expect([...tally.fields].some((f) => /fdTables|\.files$|kernel|bypass/.test(f)), `${[...tally.fields].join(', ')}; ${replay}`).toBe(true);
    expect(tally.restored, replay).toBeGreaterThan(0);
  }, Math.max(180_000, MUTATIONS * 40));
});
