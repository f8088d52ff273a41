// Replays a recorded trace in the qemu profile: every hypercall through a
// vCPU register block, every recorded translation checked against the
// tables the replay built. The trace is decoded into typed arrays before the
// timed part, which then does no parsing, no BigInt arithmetic and no
// allocation per record: registers are written as u32 halves, lists copied
// as pre-encoded big-endian bytes, translations read from the guest table's
// pages in linear memory. Whatever that loop cannot decide on its own (a
// disagreement, a window re-enabled, a record outside the common case) goes
// through the per-record path, which also words the mismatch.
import { Host, type HostOptions } from './host/host.js';
import { TraceError, type Trace, type TraceEvent, type TraceHcall, type TraceXlate } from './trace.js';
import type { Vm } from './vmm/vm.js';
import type { Vcpu } from './kvm/vcpu.js';
import { hex } from './core/format.js';
import type { OwnerCheck } from './core/context.js';
import { H_STUFF_TCE, STT_PAGES, STT_NPAGES } from './generated/layout.js';

/** One disagreement between the trace and the replay. */
export interface Mismatch {
  line: number;
  expected: string;
  got: string;
}

/** The outcome of a replay. */
export interface ReplayResult {
  events: number;
  hypercalls: number;
  translations: number;
  mismatches: Mismatch[];
  hypercallsPerSecond: number;
  /** Seconds spent in the replay loop (parsing and decoding excluded). */
  seconds: number;
  /** The owner check the replaying host ran (the last host's: a restore keeps the mode). */
  ownerCheck: OwnerCheck;
}

/** Options of replay(). */
export interface ReplayOptions {
  host?: HostOptions;
  /** Guest RAM the lists are written into (default 1 GiB, the traces' -m 1G). */
  ramSize?: bigint;
  /** Stop collecting mismatches after this many (default 1000). */
  maxMismatches?: number;
  /**
   * Every this many events, take a RAM-less binary snapshot of the host,
   * restore it into a new one and go on there (a trace carries no RAM
   * contents: the restored guest RAM is zero, and each H_PUT_TCE_INDIRECT
   * list is written again before its call).
   */
  snapshotEvery?: number;
  /** false: every record through the per-record path (BigInt registers, vm.translate), which the decoded loop must agree with; for tests. */
  decoded?: boolean;
}

/** Sets up a qemu-profile VM for the trace and replays it. */
export async function replay(trace: Trace, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const ramSize = opts.ramSize ?? 1n << 30n;
  const host = await Host.create({ maxMemory: Number(ramSize) + (256 << 20), ...opts.host });
  const qemu = host.spawn();
  const ram = qemu.mmap(ramSize);
  const vm = qemu.createVm({ profile: 'qemu' });
  vm.addMemslot({ gpa: 0n, size: ramSize, ua: ram.ua });
  vm.vcpu(0, { thread: qemu });
  return run(trace, { host, ua: ram.ua }, opts.maxMismatches ?? 1000, opts.snapshotEvery ?? 0, opts.decoded ?? true);
}

// Event kinds of the decoded trace.
const K_OTHER = 0;
const K_HCALL = 1;
const K_XLATE = 2;
const K_TABLE = 3;
// A decoded translation the loop leaves to the per-record path.
const SLOW = -1;

/** The trace as the timed loop reads it: per event a kind and an index into its kind's arrays. */
interface Decoded {
  kind: Uint8Array;
  ref: Uint32Array;
  /** Per hypercall: r3..r7 as (low, high) u32 pairs. */
  regs: Uint32Array;
  ret: Int32Array;
  /** Per hypercall: 1 when r4 must be compared with the TCE QEMU returned (`tce`, as a u32 pair). */
  hasTce: Uint8Array;
  tce: Uint32Array;
  /** Per hypercall: its list's bytes in `lists` (big-endian, as the guest wrote them), length 0 without one, and the guest address. */
  listAt: Uint32Array;
  listLen: Uint32Array;
  listGpa: Float64Array;
  lists: Uint8Array;
  /** Per translation: the header table's index, or SLOW; the relative entry; the page address and permission QEMU gave. */
  table: Int32Array;
  idx: Float64Array;
  xlated: Uint32Array;
  perm: Uint8Array;
  /** The header's LIOBNs, and each window's page-offset mask (page shifts below 32 only), by index. */
  liobns: bigint[];
  pageMask: Uint32Array;
}

const lo = (x: bigint): number => Number(x & 0xffff_ffffn);
const hi = (x: bigint): number => Number((x >> 32n) & 0xffff_ffffn);

/** Decodes `trace` (outside the timed part). */
function decode(trace: Trace): Decoded {
  const n = trace.events.length;
  const hcalls = trace.events.filter((e): e is TraceHcall => e.kind === 'hcall');
  const xlates = trace.events.filter((e): e is TraceXlate => e.kind === 'xlate');
  const listBytes = hcalls.reduce((a, e) => a + (e.tces ? e.tces.length * 8 : 0), 0);
  const d: Decoded = {
    kind: new Uint8Array(n), ref: new Uint32Array(n),
    regs: new Uint32Array(hcalls.length * 10), ret: new Int32Array(hcalls.length), hasTce: new Uint8Array(hcalls.length), tce: new Uint32Array(hcalls.length * 2),
    listAt: new Uint32Array(hcalls.length), listLen: new Uint32Array(hcalls.length), listGpa: new Float64Array(hcalls.length), lists: new Uint8Array(listBytes),
    table: new Int32Array(xlates.length), idx: new Float64Array(xlates.length), xlated: new Uint32Array(xlates.length * 2), perm: new Uint8Array(xlates.length),
    liobns: trace.tables.map((t) => t.liobn),
    pageMask: Uint32Array.from(trace.tables, (t) => (t.pageShift < 32 ? 2 ** t.pageShift - 1 : 0)),
  };
  const listView = new DataView(d.lists.buffer);
  const tableOf = new Map(trace.tables.map((t, i) => [t.liobn, i]));
  let h = 0;
  let x = 0;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const ev = trace.events[i]!;
    if (ev.kind === 'hcall') {
      d.kind[i] = K_HCALL;
      d.ref[i] = h;
      const r = [BigInt(ev.nr), ev.liobn, ev.ioba, ev.arg, ev.npages];
      for (let k = 0; k < 5; k++) {
        d.regs[h * 10 + 2 * k] = lo(r[k]!);
        d.regs[h * 10 + 2 * k + 1] = hi(r[k]!);
      }
      d.ret[h] = ev.ret;
      // As the per-record path: r4 is compared only after a successful call that has a TCE to compare.
      if (ev.tce !== undefined && ev.ret === 0) {
        d.hasTce[h] = 1;
        d.tce[2 * h] = lo(ev.tce);
        d.tce[2 * h + 1] = hi(ev.tce);
      }
      if (ev.tces) {
        d.listAt[h] = at;
        d.listLen[h] = ev.tces.length * 8;
        d.listGpa[h] = Number(ev.arg);
        for (const t of ev.tces) {
          listView.setBigUint64(at, t, false);
          at += 8;
        }
      }
      h++;
    } else if (ev.kind === 'xlate') {
      d.kind[i] = K_XLATE;
      d.ref[i] = x;
      // The common case: a window of the header, hit inside it, recorded in pages of the window's size.
      const ti = tableOf.get(ev.liobn);
      const t = ti === undefined ? undefined : trace.tables[ti]!;
      let idx = -1n;
      if (t && ev.inWindow && ev.pageShift === t.pageShift && t.pageShift < 32 && t.entries > 0n && ev.ioba >= t.busOffset) idx = (ev.ioba - t.busOffset) >> BigInt(t.pageShift);
      const ok = t !== undefined && idx >= 0n && idx < t.entries && (ev.xlated & ((1n << BigInt(t.pageShift)) - 1n)) === 0n;
      d.table[x] = ok ? ti! : SLOW;
      d.idx[x] = ok ? Number(idx) : 0;
      d.xlated[2 * x] = lo(ev.xlated);
      d.xlated[2 * x + 1] = hi(ev.xlated);
      d.perm[x] = ev.perm;
      x++;
    } else if (ev.kind === 'table') {
      d.kind[i] = K_TABLE;
    } else {
      d.kind[i] = K_OTHER;
    }
  }
  return d;
}

/** The replay's view of a host: its VM, vCPU and guest RAM, found again after a restore. */
function attach(host: Host, ua: bigint): { vm: Vm; vcpu: Vcpu; ram: Uint8Array; dv: DataView } {
  const vm = [...host.vms][0]!;
  const ram = vm.mm.findMapping(ua)!.bytes!;
  return { vm, vcpu: vm.vcpu(0), ram, dv: new DataView(ram.buffer, ram.byteOffset, ram.byteLength) };
}

function run(trace: Trace, start: { host: Host; ua: bigint }, maxMismatches: number, snapshotEvery: number, decoded: boolean): ReplayResult {
  const byLiobn = new Map(trace.tables.map((t) => [t.liobn, t]));
  const d = decode(trace);
  const mismatches: Mismatch[] = [];
  let host = start.host;
  let { vm, vcpu, ram, dv } = attach(host, start.ua);
  let regs = vcpu.regs;
  let r32 = new Uint32Array(regs.buffer, regs.byteOffset, 16);
  let m32 = host.mem.u32;
  // Per header table: its guest table's descriptor once the VM has it (0 before), for the decoded translations.
  const stt = new Uint32Array(trace.tables.length);
  const tcesPerPage = (): number => 2 ** (host.pageShift - 3);
  let perPage = tcesPerPage();
  const found = (): void => {
    for (let i = 0; i < d.liobns.length; i++) {
      const g = vm.tables.get(d.liobns[i]!);
      // A window in bypass translates as the identity: the per-record path knows it.
      stt[i] = g && g.size !== 0n && !vm.bypass.has(g.liobn) ? g.desc : 0;
    }
  };
  found();
  const mismatch = (ev: TraceEvent, expected: string, got: string): void => {
    if (mismatches.length < maxMismatches) mismatches.push({ line: ev.line, expected, got });
  };
  /** The per-record check of a hypercall's outcome (r4 read back for H_GET_TCE). */
  const checkHcall = (ev: TraceHcall, ret: number): void => {
    if (ret !== ev.ret) mismatch(ev, `ret ${ev.ret}`, `ret ${ret}`);
    else if (ev.tce !== undefined && ret === 0 && regs[4] !== ev.tce) mismatch(ev, `tce ${hex(ev.tce)}`, `tce ${hex(regs[4]!)}`);
  };
  /** A hypercall through the per-record path. */
  const hcallSlow = (ev: TraceHcall): void => {
    if (ev.tces) {
      // The guest wrote its list before the call; big-endian, whatever the guest's byte order.
      if (ev.arg + BigInt(ev.tces.length * 8) > BigInt(dv.byteLength)) tooLong(ev, dv.byteLength);
      const base = Number(ev.arg);
      for (let i = 0; i < ev.tces.length; i++) dv.setBigUint64(base + i * 8, ev.tces[i]!, false);
    }
    regs[3] = BigInt(ev.nr);
    regs[4] = ev.liobn;
    regs[5] = ev.ioba;
    regs[6] = ev.arg;
    regs[7] = ev.npages;
    checkHcall(ev, vcpu.hcall());
  };
  /** A translation through the per-record path (vm.translate). */
  const xlateSlow = (ev: TraceXlate): void => {
    const r = vm.translate(ev.liobn, ev.ioba);
    if (!ev.inWindow) {
      // QEMU found no entry for the address (spapr_tce_translate_iommu beyond nb_table): the replay must not either.
      if (r.ok) mismatch(ev, 'beyond the window', `${hex(r.gpa)} perm ${r.perm}`);
      return;
    }
    const mask = (1n << BigInt(ev.pageShift)) - 1n;
    if (!r.ok) mismatch(ev, `${hex(ev.xlated)} perm ${ev.perm}`, r.fault);
    else if ((r.gpa & ~mask) !== ev.xlated || r.perm !== ev.perm) mismatch(ev, `${hex(ev.xlated)} perm ${ev.perm}`, `${hex(r.gpa & ~mask)} perm ${r.perm}`);
  };
  const table = (ev: TraceEvent & { kind: 'table' }): void => {
    const t = byLiobn.get(ev.liobn);
    if (!t) mismatch(ev, `window parameters for LIOBN ${hex(ev.liobn)} in the header`, 'none');
    else if (vm.tables.has(ev.liobn)) {
      // Enabled again (a dynamic window removed and made anew, a PHB reset): QEMU starts it empty
      // (spapr_tce_table_enable allocates a zeroed table), so clear it through the guest's own call.
      const g = vm.tables.get(ev.liobn)!;
      regs[3] = BigInt(H_STUFF_TCE);
      regs[4] = g.liobn;
      regs[5] = g.offset << BigInt(g.pageShift);
      regs[6] = 0n;
      regs[7] = g.size;
      vcpu.hcall();
    } else {
      if (t.busOffset & ((1n << BigInt(t.pageShift)) - 1n)) throw new TraceError(`the header's window for LIOBN ${hex(t.liobn)} starts at ${hex(t.busOffset)}, not on a page of its size`, ev.line);
      try {
        vm.createTceTable({ liobn: t.liobn, pageShift: t.pageShift, offset: t.busOffset >> BigInt(t.pageShift), size: t.entries });
      } catch (e) {
        throw new TraceError(`the header's window for LIOBN ${hex(t.liobn)} cannot be created: ${(e as Error).message}`, ev.line);
      }
    }
    found();
  };
  const events = trace.events;
  const { kind, ref } = d;
  let hypercalls = 0;
  let translations = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < events.length; i++) {
    if (snapshotEvery > 0 && (i + 1) % snapshotEvery === 0) {
      host = Host.restore(host.snapshot({ format: 'binary', ram: false }));
      ({ vm, vcpu, ram, dv } = attach(host, start.ua));
      regs = vcpu.regs;
      r32 = new Uint32Array(regs.buffer, regs.byteOffset, 16);
      m32 = host.mem.u32;
      perPage = tcesPerPage();
      found();
    }
    const k = kind[i];
    if (k === K_HCALL) {
      hypercalls++;
      if (!decoded) {
        hcallSlow(events[i] as TraceHcall);
        continue;
      }
      const h = ref[i]!;
      const len = d.listLen[h]!;
      if (len !== 0) {
        const gpa = d.listGpa[h]!;
        if (gpa + len > ram.byteLength) tooLong(events[i] as TraceHcall, ram.byteLength);
        const at = d.listAt[h]!;
        ram.set(d.lists.subarray(at, at + len), gpa);
      }
      const b = h * 10;
      const rg = d.regs;
      r32[6] = rg[b]!; r32[7] = rg[b + 1]!;
      r32[8] = rg[b + 2]!; r32[9] = rg[b + 3]!;
      r32[10] = rg[b + 4]!; r32[11] = rg[b + 5]!;
      r32[12] = rg[b + 6]!; r32[13] = rg[b + 7]!;
      r32[14] = rg[b + 8]!; r32[15] = rg[b + 9]!;
      const ret = vcpu.hcall();
      if (ret !== d.ret[h] || (d.hasTce[h] === 1 && (r32[8] !== d.tce[2 * h] || r32[9] !== d.tce[2 * h + 1]))) checkHcall(events[i] as TraceHcall, ret);
    } else if (k === K_XLATE) {
      translations++;
      const x = ref[i]!;
      const ti = d.table[x]!;
      const desc = ti === SLOW || !decoded ? 0 : stt[ti]!;
      if (desc !== 0) {
        // guestEntry(): the TCE's page, then the TCE in it (0 while its page was never allocated).
        const idx = d.idx[x]!;
        const pg = Math.floor(idx / perPage);
        if (pg < m32[(desc + STT_NPAGES) >>> 2]!) {
          const page = m32[(m32[(desc + STT_PAGES) >>> 2]! + pg * 4) >>> 2]!;
          let tlo = 0;
          let thi = 0;
          if (page !== 0) {
            const w = (page + (idx - pg * perPage) * 8) >>> 2;
            tlo = m32[w]!;
            thi = m32[w + 1]!;
          }
          // With no access asked, any TCE translates: its page (the window's page bits cleared) and its permission bits.
          if ((tlo & ~d.pageMask[ti]!) >>> 0 === d.xlated[2 * x] && thi === d.xlated[2 * x + 1] && (tlo & 3) === d.perm[x]) continue;
        }
      }
      xlateSlow(events[i] as TraceXlate);
    } else if (k === K_TABLE) {
      table(events[i] as TraceEvent & { kind: 'table' });
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { events: trace.events.length, hypercalls, translations, mismatches, hypercallsPerSecond: seconds > 0 ? hypercalls / seconds : 0, seconds, ownerCheck: host.ownerCheck };
}

/** The list of an H_PUT_TCE_INDIRECT reaches past the replay's guest RAM. */
function tooLong(ev: TraceHcall, ramBytes: number): never {
  throw new TraceError(`tce_list 0x${ev.arg.toString(16)}: ${ev.tces!.length} TCEs there lie outside the ${ramBytes >> 20} MiB of guest RAM the replay has`, ev.line);
}
