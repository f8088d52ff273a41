// Differential test of the hypercall layer (assembly/hcall.ts and guest.ts
// against their C++ port in src/native/engine_hcall*.cc): seeded random sequences of
// H_PUT_TCE, H_PUT_TCE_INDIRECT (lists written into guest RAM), H_STUFF_TCE
// and H_GET_TCE, valid and invalid, on known and unknown LIOBNs, through the
// whole chain (real → virtual → exit), in real mode only, in virtual mode
// only and at odd levels, in both profiles (a kvm VM whose LIOBN is linked
// to the tables of two VFIO v2 containers and a legacy group, and a qemu
// VM), under every owner check (pid at the call or at every entry, with a
// vCPU of another pid), interleaved with VFIO map/unmap, guest-table frees
// and bad vCPU pointers. Two hosts built identically, one per engine; after
// every step the outcomes (status, r3, r4, level) must be equal, the linear
// memories byte-identical up to the allocator's top, and checkInvariants()
// must hold on both.
//
// The kvm VM also has a LIOBN linked to one hardware table of its own page
// size (the engines' fast path) next to the one linked to two tables.
//
// Every seed draws a valid setup (the window geometries are checked with the
// library's own checkGeometry); a failing seed, in a step or in its setup,
// prints the command that replays it:
//   HCALL_SEED=1234 npx vitest run test/differential/hcalls.test.ts
// HCALL_STEPS sets the steps per seed, HCALL_SEEDS the number of seeds,
// HCALL_TRACE=1 prints every operation and its outcome.
import { describe, expect, it } from 'vitest';
import { Host, H, TceError, InvariantError, type Process, type MmapResult, type Vm, type Vcpu, type ContainerFd, type IommuTable, type OwnerCheck } from '../../src/index.js';
import { checkGeometry } from '../../src/kernel/geometry.js';
import { nativeLoadError } from '../../src/engine/native.js';
import { LEVEL_REAL, LEVEL_VIRTUAL, HEADER_BASE, HDR_ABLATE, ABLATE_VIEW_LOCK, ABLATE_VALIDATE } from '../../src/generated/layout.js';
import { Rng, nativeAvailable, json, allocTop, firstDiff } from './support.js';



const MiB = 1n << 20n;
const RAM = 2n * MiB;
const COLD_GPA = 0x1000_0000n;
const HW_WINDOW = 1n << 28n;
const L_KVM = 0x8000_0000n; // linked to two v2 tables
const L_KVM_V1 = 0x8000_0001n; // linked to a legacy group's table (v1: every change exits)
const L_KVM_BARE = 0x8000_0002n; // no hardware table
const L_KVM_ONE = 0x8000_0003n; // linked to one v2 table of the guest's page size
const L_QEMU = 0x8000_0000n;
const L_QEMU_OFF = 0x10n; // a table whose bus starts above 0

interface Cfg {
  sys: number;
  ownerCheck: OwnerCheck;
  pidCheck: 'call' | 'entry';
  hwShift: number;
  ramShift: number;
  gShift: number;
  levels: number;
  levels2: number;
  levels3: number;
  viewFirst: boolean;
  regHalf: boolean;
  qShift: number;
  qOffset: bigint;
}

interface Table { vm: 'kvm' | 'qemu'; liobn: bigint; desc: number; pageShift: number; offset: bigint; size: bigint }

/** One host and everything built on it; both worlds are built by the same code from the same Cfg. */
class World {
  readonly qemu: Process;
  readonly other: Process;
  readonly ram: MmapResult;
  readonly fd: ContainerFd;
  readonly hw: IommuTable;
  readonly kvm: Vm;
  readonly qvm: Vm;
  readonly vcpus: { vm: 'kvm' | 'qemu'; c: Vcpu }[];
  readonly tables: Table[] = [];
  constructor(readonly host: Host, cfg: Cfg) {
    const q = (this.qemu = host.spawn());
    // Another pid of the same mm (clone(CLONE_VM)): KVM runs its vCPU ioctls (another mm is EIO), the pid check refuses them.
    this.other = q.clone({ vm: true });
    this.ram = q.mmap(RAM, { hugePageShift: cfg.ramShift });
    const cold = q.mmap(MiB, { backed: false });
    // The main container: v2, RAM (or its first half) pre-registered, one window at bus 0.
    const g = host.addGroup();
    this.fd = q.openContainer();
    this.fd.attachGroup(g);
    this.fd.setIommu('v2');
    this.fd.registerMemory(this.ram.ua, cfg.regHalf ? RAM / 2n : RAM);
    this.fd.removeWindow(0n);
    this.fd.createWindow({ pageShift: cfg.hwShift, windowSize: HW_WINDOW, levels: cfg.levels });
    this.hw = this.fd.container.windows[0]!.table;
    // Without a view, virtual mode cannot map either: every map exits until VFIO maps something.
    if (cfg.viewFirst) this.hw.allocView();
    // A second container with its own table, linked to the same LIOBN: two hardware tables per guest entry.
    const g2 = host.addGroup();
    const fd2 = q.openContainer();
    fd2.attachGroup(g2);
    fd2.setIommu('v2');
    fd2.registerMemory(this.ram.ua, cfg.regHalf ? RAM / 2n : RAM);
    fd2.removeWindow(0n);
    fd2.createWindow({ pageShift: second(cfg), windowSize: HW_WINDOW, levels: cfg.levels2 });
    if (cfg.gShift <= 16) fd2.mapDma({ iova: 0n, vaddr: this.ram.ua, size: 4096n, read: true, write: false });
    const legacy = host.addGroup({ ddw: false });
    // A third container: one table of the hardware page size, alone behind L_KVM_ONE.
    const g3 = host.addGroup();
    const fd3 = q.openContainer();
    fd3.attachGroup(g3);
    fd3.setIommu('v2');
    fd3.registerMemory(this.ram.ua, cfg.regHalf ? RAM / 2n : RAM);
    fd3.removeWindow(0n);
    fd3.createWindow({ pageShift: cfg.hwShift, windowSize: HW_WINDOW, levels: cfg.levels3 });
    if (cfg.viewFirst) fd3.container.windows[0]!.table.allocView();

    const kvm = (this.kvm = q.createVm());
    kvm.addMemslot({ gpa: 0n, size: RAM, ua: this.ram.ua });
    kvm.addMemslot({ gpa: COLD_GPA, size: MiB, ua: cold.ua });
    const add = (vm: Vm, which: 'kvm' | 'qemu', liobn: bigint, pageShift: number, offset: bigint, size: bigint): void => {
      const t = vm.createTceTable({ liobn, pageShift, offset, size });
      this.tables.push({ vm: which, liobn, desc: t.desc, pageShift, offset, size });
    };
    add(kvm, 'kvm', L_KVM, cfg.gShift, 0n, HW_WINDOW >> BigInt(cfg.gShift));
    kvm.attachGroup(g, L_KVM);
    kvm.attachGroup(g2, L_KVM);
    add(kvm, 'kvm', L_KVM_V1, 12, 0n, 4096n);
    kvm.attachGroup(legacy, L_KVM_V1);
    add(kvm, 'kvm', L_KVM_BARE, 16, 0n, 1024n);
    add(kvm, 'kvm', L_KVM_ONE, cfg.hwShift, 0n, HW_WINDOW >> BigInt(cfg.hwShift));
    kvm.attachGroup(g3, L_KVM_ONE);

    const qvm = (this.qvm = q.createVm({ profile: 'qemu' }));
    qvm.addMemslot({ gpa: 0n, size: RAM, ua: this.ram.ua });
    qvm.addMemslot({ gpa: COLD_GPA, size: MiB, ua: cold.ua });
    add(qvm, 'qemu', L_QEMU, cfg.qShift, 0n, 1n << 14n);
    add(qvm, 'qemu', L_QEMU + 1n, cfg.qShift, cfg.qOffset, 700n);

    this.vcpus = [
      { vm: 'kvm', c: kvm.vcpu(0, { thread: q.thread() }) },
      { vm: 'kvm', c: kvm.vcpu(1, { thread: this.other }) }, // another pid: the pid check refuses it
      { vm: 'qemu', c: qvm.vcpu(0, { thread: q.thread() }) },
    ];
  }

  /** Where guest RAM is in linear memory (for writing TCE lists). */
  ramView(): DataView {
    const b = this.ram.bytes!;
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
}

type Op = { kind: string; [k: string]: unknown };
type Outcome = { ok: unknown } | { err: string; code?: string; msg: string };

const str = (v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);

function outcome(f: () => unknown): Outcome {
  try {
    const v = f();
    return { ok: Array.isArray(v) ? v.map(str) : str(v) };
  } catch (e) {
    if (e instanceof TceError) return { err: 'TceError', code: e.code, msg: e.message };
    if (e instanceof WebAssembly.RuntimeError) return { err: 'RuntimeError', msg: e.message.replace(/ \(native engine.*$/s, '') };
    const err = e as Error;
    return { err: err.constructor?.name ?? 'unknown', msg: String(err.message) };
  }
}

/** A TCE (or a guest physical address with permission bits) of every interesting kind, for a table of 2^shift pages. */
function pickTce(rng: Rng, cfg: Cfg, shift: number): bigint {
  const page = 1n << BigInt(shift);
  const perm = BigInt(rng.int(1, 3));
  const inRam = (lo: bigint, hi: bigint): bigint => {
    const pages = (hi - lo) / page;
    return pages > 0n ? lo + (BigInt(rng.int(0, Number(pages) - 1)) * page) : lo;
  };
  const roll = rng.int(0, 99);
  if (roll < 12) return rng.chance(0.7) ? 0n : rng.big(62) << 2n; // no permission: a clear (KVM ignores the address)
  if (roll < 62) return inRam(0n, cfg.regHalf ? RAM / 2n : RAM) | perm; // registered RAM
  if (roll < 70) return inRam(RAM / 2n, RAM) | perm; // registered only without regHalf
  if (roll < 76) return (inRam(0n, RAM) + 4096n * BigInt(rng.int(1, 15))) | perm; // maybe misaligned for the guest page
  if (roll < 82) return inRam(COLD_GPA, COLD_GPA + MiB) | perm; // a memslot nothing is registered behind
  if (roll < 88) return (RAM + (BigInt(rng.int(0, 64)) << 16n)) | perm; // no memslot
  if (roll < 94) return (rng.big(48) << 16n) | perm;
  return rng.big(64);
}

function nextOp(rng: Rng, w: World, cfg: Cfg): Op {
  const roll = rng.int(0, 99);
  const memLen = w.host.mem.byteLength;
  if (roll < 7) {
    // VFIO map/unmap on the main container: changes the hardware table under the guest.
    const ps = BigInt(cfg.hwShift);
    const pages = BigInt(rng.pick([1, 1, 2, 4, 16]));
    const iova = (BigInt(rng.chance(0.7) ? rng.int(0, 47) : rng.int(0, 5000)) << ps) + (rng.chance(0.03) ? 4096n : 0n);
    const vaddr = w.ram.ua + ((BigInt(rng.int(0, Number(RAM >> ps) - 1)) << ps) & (RAM - 1n));
    return rng.chance(0.55)
      ? { kind: 'mapDma', iova, vaddr, size: pages << ps, write: rng.chance(0.5) }
      : { kind: 'unmapDma', iova, size: (rng.chance(0.1) ? 64n : pages) << ps };
  }
  if (roll < 9) return { kind: 'sttFreePages', t: rng.int(0, w.tables.length - 1) };
  if (roll < 11) {
    const vcpu = rng.pick([memLen, memLen - 8, memLen - 256, memLen + 4096, 0xffff_ff00, 0]);
    return { kind: 'badVcpu', vcpu, level: rng.pick([LEVEL_REAL, LEVEL_VIRTUAL]) };
  }
  // A hypercall.
  const v = rng.int(0, w.vcpus.length - 1);
  const vm = w.vcpus[v]!.vm;
  const mine = w.tables.filter((t) => t.vm === vm);
  const t = rng.pick(mine);
  let liobn = t.liobn;
  if (rng.chance(0.06)) liobn = rng.pick([0n, 0xdeadn, L_KVM + 7n, (1n << 32n) | t.liobn, rng.big(64)]);
  const nr = rng.pick([H.PUT_TCE, H.PUT_TCE, H.PUT_TCE, H.PUT_TCE_INDIRECT, H.PUT_TCE_INDIRECT, H.STUFF_TCE, H.GET_TCE, H.GET_TCE,
    ...(rng.chance(0.1) ? [0, 0x1234, 0x24] : [])]);
  const shift = BigInt(t.pageShift);
  let idx = BigInt(rng.chance(0.75) ? rng.int(0, Math.min(Number(t.size) - 1, 40)) : Number(rng.big(32) % t.size));
  if (rng.chance(0.04)) idx = t.size + BigInt(rng.int(0, 3));
  let ioba = (t.offset + idx) << shift;
  if (rng.chance(0.04)) ioba += BigInt(rng.pick([8, 4096, 1 << 16]));
  if (rng.chance(0.02)) ioba = rng.big(64);
  if (rng.chance(0.02) && t.offset > 0n) ioba = (t.offset - 1n) << shift;
  const regs: bigint[] = [liobn, ioba, 0n, 0n];
  let list: bigint[] | undefined;
  let listAt = 0;
  if (nr === H.PUT_TCE) {
    regs[2] = pickTce(rng, cfg, t.pageShift);
  } else if (nr === H.PUT_TCE_INDIRECT) {
    let n = rng.pick([0, 1, 1, 2, 3, 5, 8, 16, 33]);
    if (rng.chance(0.03)) n = rng.pick([512, 513, 4096]);
    if (rng.chance(0.15) && idx < t.size) n = Math.min(512, Number(t.size - idx) + rng.int(0, 2)); // up to (and past) the end
    const lroll = rng.int(0, 99);
    let gpa: bigint;
    if (lroll < 85) {
      gpa = BigInt(rng.int(0, Number(RAM / 4096n) - 1)) * 4096n; // a page of RAM
      if (rng.chance(0.1)) gpa = RAM - 4096n * BigInt(rng.int(1, 2)); // a long list there runs out of the memslot
    } else if (lroll < 90) gpa = BigInt(rng.int(0, 200)) * 4096n + BigInt(rng.pick([8, 512, 2048]));
    else if (lroll < 95) gpa = COLD_GPA + 4096n * BigInt(rng.int(0, 10));
    else gpa = RAM + 4096n * BigInt(rng.int(0, 10));
    regs[2] = gpa;
    regs[3] = BigInt(n);
    if (gpa < RAM && (gpa & 7n) === 0n) {
      // The list in guest memory: mostly valid TCEs, written big-endian by the applier.
      const room = Number((RAM - gpa) / 8n);
      list = Array.from({ length: Math.min(n, room) }, () => pickTce(rng, cfg, t.pageShift));
      listAt = Number(gpa);
    }
  } else if (nr === H.STUFF_TCE) {
    const vr = rng.int(0, 99);
    regs[2] = vr < 70 ? 0n : vr < 80 ? BigInt(rng.int(1, 3)) : (rng.big(40) << 16n);
    let n = BigInt(rng.pick([0, 1, 1, 2, 4, 16, 64]));
    if (rng.chance(0.1)) n = t.size - (idx < t.size ? idx : 0n);
    if (rng.chance(0.04)) n = t.size + 1n;
    regs[3] = n;
  }
  const m = rng.int(0, 99);
  const mode = m < 55 ? 'chain' : m < 85 ? 'real' : m < 96 ? 'virtual' : 'odd';
  const level = mode === 'odd' ? rng.pick([0, 3, 7, 0xffffffff]) : undefined;
  return { kind: 'hcall', v, nr, regs, list, listAt, mode, level };
}

function apply(w: World, op: Op): Outcome {
  const e = w.host.engine;
  switch (op.kind) {
    case 'mapDma':
      return outcome(() => w.fd.mapDma({ iova: op.iova as bigint, vaddr: op.vaddr as bigint, size: op.size as bigint, read: true, write: op.write as boolean }));
    case 'unmapDma':
      return outcome(() => w.fd.unmapDma({ iova: op.iova as bigint, size: op.size as bigint }));
    case 'sttFreePages':
      return outcome(() => e.sttFreePages(w.tables[op.t as number]!.desc));
    case 'badVcpu':
      return outcome(() => e.hcall(op.vcpu as number, op.level as number));
    case 'hcall': {
      const c = w.vcpus[op.v as number]!.c;
      const list = op.list as bigint[] | undefined;
      if (list) {
        const dv = w.ramView();
        list.forEach((tce, i) => dv.setBigUint64((op.listAt as number) + i * 8, tce, false));
      }
      const regs = op.regs as bigint[];
      c.regs[3] = BigInt(op.nr as number);
      for (let i = 0; i < 8; i++) c.regs[4 + i] = regs[i] ?? 0n;
      return outcome(() => {
        let rc: number;
        if (op.mode === 'chain') rc = c.hcall();
        else if (op.mode === 'real') rc = c.hcallRealMode();
        else if (op.mode === 'virtual') rc = e.hcall(c.desc, LEVEL_VIRTUAL);
        else rc = e.hcall(c.desc, op.level as number);
        return [rc, c.regs[3], c.regs[4], c.lastLevel];
      });
    }
    default:
      throw new Error(`unknown op ${op.kind}`);
  }
}




const trace = process.env.HCALL_TRACE === '1';

interface RunStats { steps: number; kinds: Map<string, number>; dirtyBits?: number }

const popcount = (x: number): number => {
  let n = 0;
  for (; x; x &= x - 1) n++;
  return n;
};

/** The page shift of the second container's window. */
const second = (cfg: Pick<Cfg, 'gShift'>): number => (cfg.gShift > 16 ? 16 : 12);

/** Levels from `candidates` that make a valid window of HW_WINDOW bytes of 2^pageShift pages on this host. */
function validLevels(candidates: number[], pageShift: number, sys: number): number[] {
  return candidates.filter((levels) => {
    try {
      checkGeometry({ pageShift, windowSize: HW_WINDOW, levels }, sys);
      return true;
    } catch {
      return false;
    }
  });
}

/** Per-seed configuration: drawn from its own generator, so the step sequence of a seed does not depend on it. */
function config(seed: number): Cfg {
  const r = new Rng(seed ^ 0x2545f491);
  const sys = r.pick([12, 16]);
  const hwShift = r.pick([12, 12, 16]);
  const ramShift = r.chance(0.85) ? Math.max(sys, r.pick([hwShift, 16, 21])) : sys;
  const ownerCheck = r.pick(['none', 'mm', 'pid', 'pid'] as const);
  const pidCheck = r.pick(['call', 'entry'] as const);
  // At most 32 hardware subpages per guest entry: checkInvariants walks every valid entry after every step.
  const gShift = hwShift === 12 ? r.pick([12, 16, 16]) : r.pick([16, 16, 21]);
  // Only geometries the library accepts (3 levels of 2^16-byte pages on a 2^16-byte host address too much).
  const levels = r.pick(validLevels(hwShift === 16 ? [1, 2, 3] : [2, 3], hwShift, sys));
  const levels2 = r.pick(validLevels([3, 2], second({ gShift }), sys));
  const levels3 = r.pick(validLevels([1, 2, 3], hwShift, sys));
  return {
    sys,
    ownerCheck,
    pidCheck,
    hwShift,
    ramShift,
    gShift,
    levels,
    levels2,
    levels3,
    viewFirst: r.chance(0.7),
    regHalf: r.chance(0.3),
    qShift: r.pick([12, 16]),
    qOffset: r.pick([0n, L_QEMU_OFF]),
  };
}

/** The command that replays `seed`. */
const replayCommand = (seed: number, steps: number): string => `HCALL_SEED=${seed} HCALL_STEPS=${steps} npx vitest run test/differential/hcalls.test.ts`;

/** With `track`, both VMs track writable mappings (vm.trackDmaWritable): the engines' dirty marks (assembly/dirty.ts) must agree too. */
async function runSeed(seed: number, steps: number, stats: RunStats, ablate = 0, track = false): Promise<void> {
  const cfg = config(seed);
  const opts = { pageShift: cfg.sys, maxMemory: 16 << 20, ownerCheck: cfg.ownerCheck, pidCheck: cfg.pidCheck };
  let a: World;
  let b: World;
  try {
    a = new World(await Host.create({ ...opts, engine: 'wasm' }), cfg);
    b = new World(await Host.create({ ...opts, engine: 'native' }), cfg);
    // The benchmark's ablations (HDR.ablate) change what the engines guarantee, not where they agree.
    for (const w of [a, b]) w.host.mem.setU32(HEADER_BASE + HDR_ABLATE, ablate);
    if (track) for (const w of [a, b]) for (const vm of [w.kvm, w.qvm]) vm.trackDmaWritable(true);
  } catch (e) {
    throw new Error(`the setup of seed ${seed} failed (${json(cfg)}): ${(e as Error).message}\n  reproduce: ${replayCommand(seed, steps)}`);
  }
  expect(b.host.engine.kind).toBe('native');
  // Without the view lock (ABLATE_VIEW_LOCK) a call refused after its lock pass began cannot find the
  // counts it took (the undo pass finds its entries by the lock tag), so `mapped` may drift: the one
  // invariant that ablation gives up. Every other invariant, and byte-for-byte agreement, still hold.
  const held = (h: Host): string => {
    try {
      h.checkInvariants();
      return 'ok';
    } catch (e) {
      const drift = (p: string): boolean => /: mapped − 1 = \d+, but \d+ TCE\(s\) point into it$/.test(p);
      if ((ablate & ABLATE_VIEW_LOCK) !== 0 && e instanceof InvariantError && e.problems.every(drift)) return 'ok';
      return (e as Error).message;
    }
  };
  const rng = new Rng(seed);
  const fail = (step: number, op: Op | undefined, what: string): never => {
    throw new Error(`engines differ on hypercalls (seed ${seed}, step ${step}, ${json(cfg)}): ${what}\n  op: ${json(op)}\n  reproduce: ${replayCommand(seed, steps)}`);
  };
  const compare = (step: number, op: Op | undefined): void => {
    const ta = allocTop(a.host);
    const tb = allocTop(b.host);
    if (ta !== tb) fail(step, op, `allocator tops differ: wasm 0x${ta.toString(16)}, native 0x${tb.toString(16)}`);
    const d = firstDiff(a.host.mem.u8, b.host.mem.u8, Math.min(ta, a.host.mem.byteLength));
    if (d >= 0) fail(step, op, `memories differ at byte 0x${d.toString(16)}: wasm ${a.host.mem.u8[d]}, native ${b.host.mem.u8[d]}`);
    const ia = held(a.host);
    const ib = held(b.host);
    if (ia !== 'ok' || ib !== 'ok') fail(step, op, `invariants: wasm: ${ia}; native: ${ib}`);
  };
  compare(-1, undefined);
  for (let step = 0; step < steps; step++) {
    const op = nextOp(rng, a, cfg);
    const oa = apply(a, op);
    const ob = apply(b, op);
    if (trace) console.log(`${step} ${json(op)} -> ${json(oa)}`);
    if (json(oa) !== json(ob)) fail(step, op, `outcomes differ:\n  wasm:   ${json(oa)}\n  native: ${json(ob)}`);
    stats.steps++;
    let key = op.kind;
    if (op.kind === 'hcall' && 'ok' in oa) {
      const [rc, , , level] = oa.ok as [number, string, string, string];
      const liobn = (op.regs as bigint[])[0];
      key = `hcall ${op.nr}/${op.mode}: ${rc} ${level}${a.vcpus[op.v as number]!.vm === 'kvm' && liobn === L_KVM_ONE ? ' one' : ''}`;
    } else if ('err' in oa) key = `${op.kind}: ${oa.err}`;
    stats.kinds.set(key, (stats.kinds.get(key) ?? 0) + 1);
    if (track && step % 50 === 49) {
      // The logs as the VMM reads them, then a clear (its re-marks come from the same tables on both).
      for (const which of ['kvm', 'qvm'] as const) {
        for (const gpa of [0n, COLD_GPA]) {
          const la = a[which].dirtyLog(gpa);
          const lb = b[which].dirtyLog(gpa);
          if (json([...la]) !== json([...lb])) fail(step, op, `${which} dirty logs of ${gpa} differ`);
          stats.dirtyBits = (stats.dirtyBits ?? 0) + la.reduce((n, x) => n + popcount(x), 0);
          a[which].clearDirtyLog(gpa);
          b[which].clearDirtyLog(gpa);
        }
      }
    }
    compare(step, op);
  }
  const len = a.host.mem.byteLength;
  const d = firstDiff(a.host.mem.u8, b.host.mem.u8, len);
  if (d >= 0) fail(steps, undefined, `memories differ above the allocator top at byte 0x${d.toString(16)}`);
}

describe.skipIf(!nativeAvailable)('hypercalls: wasm and native agree', () => {
  it('the native addon loads (the comparison needs it)', () => {
    expect(nativeLoadError()).toBeUndefined();
  });

  const steps = Number(process.env.HCALL_STEPS ?? 800);
  const fixedSeed = process.env.HCALL_SEED;
  const seeds = fixedSeed !== undefined
    ? [Number(fixedSeed)]
    : [...Array.from({ length: Number(process.env.HCALL_SEEDS ?? 10) }, (_, i) => 2000 + i * 7919), (Date.now() % 1_000_000) + 1];

  const total: RunStats = { steps: 0, kinds: new Map() };
  for (const seed of seeds) {
    it(`seed ${seed}: ${steps} random hypercalls leave identical results and memories`, async () => {
      const stats: RunStats = { steps: 0, kinds: new Map() };
      await runSeed(seed, steps, stats);
      expect(stats.steps, `reproduce: ${replayCommand(seed, steps)}`).toBe(steps);
      total.steps += stats.steps;
      for (const [k, n] of stats.kinds) total.kinds.set(k, (total.kinds.get(k) ?? 0) + n);
    });
  }

  it.skipIf(fixedSeed !== undefined)('with the benchmark\'s ablations set, the engines still agree', async () => {
    const stats: RunStats = { steps: 0, kinds: new Map() };
    await runSeed(4242, 400, stats, ABLATE_VIEW_LOCK | ABLATE_VALIDATE);
    await runSeed(4243, 400, stats, ABLATE_VIEW_LOCK);
    expect(stats.steps).toBe(800);
  });

  it.skipIf(fixedSeed !== undefined)('with dirty tracking on, the engines mark the same pages and still agree', async () => {
    const stats: RunStats = { steps: 0, kinds: new Map() };
    await runSeed(5150, 400, stats, 0, true);
    await runSeed(5151, 400, stats, 0, true);
    expect(stats.steps).toBe(800);
    // The logs compared were not all empty: writable TCEs were marked.
    expect(stats.dirtyBits).toBeGreaterThan(0);
  });

  it('every seed draws a setup the library accepts (seeds 988915 and 941919 once did not)', () => {
    for (const seed of [988915, 941919, ...Array.from({ length: 5000 }, (_, i) => i * 200 + 1)]) {
      const cfg = config(seed);
      for (const [pageShift, levels] of [[cfg.hwShift, cfg.levels], [second(cfg), cfg.levels2], [cfg.hwShift, cfg.levels3]] as const) {
        expect(() => checkGeometry({ pageShift, windowSize: HW_WINDOW, levels }, cfg.sys), `seed ${seed}: ${json(cfg)}`).not.toThrow();
      }
    }
  });

  it.skipIf(fixedSeed !== undefined)('the seeds together reach every outcome that matters', () => {
    const has = (re: RegExp): number => [...total.kinds].filter(([k]) => re.test(k)).reduce((s, [, n]) => s + n, 0);
    const need: [string, RegExp][] = [
      ['PUT done in real mode', /^hcall 32\/\w+: 0 real/],
      ['PUT done in virtual mode', /^hcall 32\/chain: 0 virtual/],
      ['PUT exits', /^hcall 32\/chain: 9999 exit/],
      ['PUT too hard in real mode', /^hcall 32\/real: 9999 none/],
      ['PUT H_PARAMETER', /^hcall 32\/\w+: -4 /],
      ['INDIRECT done in real mode', /^hcall 316\/\w+: 0 real/],
      ['PUT done by the one-table fast path', /^hcall 32\/\w+: 0 real one$/],
      ['INDIRECT done by the one-table fast path', /^hcall 316\/\w+: 0 real one$/],
      ['INDIRECT refused on the one-table LIOBN', /^hcall 316\/\w+: (-4|9999) \w+ one$/],
      ['INDIRECT done in virtual mode', /^hcall 316\/chain: 0 virtual/],
      ['INDIRECT H_PARAMETER', /^hcall 316\/\w+: -4 /],
      ['INDIRECT exits', /^hcall 316\/chain: 9999 exit/],
      ['STUFF done', /^hcall 312\/\w+: 0 (real|virtual)/],
      ['STUFF H_PARAMETER', /^hcall 312\/\w+: -4 /],
      ['GET done', /^hcall 28\/\w+: 0 (real|virtual)/],
      ['qemu profile', /^hcall \d+\/\w+: (0|-4) exit/],
      ['unknown hypercall', /^hcall (0|4660|36)\//],
      ['odd levels', /^hcall \d+\/odd/],
      ['VFIO map', /^mapDma$/],
      ['VFIO unmap', /^unmapDma$/],
      ['VFIO errors', /^(map|unmap)Dma: TceError/],
      ['guest-table frees', /^sttFreePages$/],
      ['traps', /^badVcpu: RuntimeError/],
    ];
    for (const [what, re] of need) expect(has(re), what).toBeGreaterThan(0);
    const hcalls = has(/^hcall /);
    console.log(`differential hypercalls: ${total.steps} steps over ${seeds.length} seeds, ${hcalls} hypercalls; ` +
      `${has(/: 0 (real|virtual|exit)/)} succeeded, ${has(/: -4 /)} H_PARAMETER, ${has(/: 9999 /)} H_TOO_HARD, ${has(/RuntimeError/)} traps`);
  });
});
