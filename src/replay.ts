// Replays a recorded trace in the qemu profile: every hypercall through a
// vCPU register block, every recorded translation checked against the
// tables the replay built. The trace is decoded into typed arrays before the
// timed part, which then does no parsing, no BigInt arithmetic and no
// allocation per record: registers are written as u32 halves, lists copied
// as pre-encoded big-endian bytes, translations read from the guest table's
// pages in linear memory. Whatever that loop cannot decide on its own (a
// disagreement, a window re-enabled, a record outside the common case) goes
// through the per-record path, which also words the mismatch. The loop is a
// function of its own, entered for a stretch of events at a time (STRETCH).
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

// A decoded hypercall, HC words of `hc`: r3..r7 as (low, high) u32 pairs; the length of its list in
// bytes (0 without one) and where the list starts in `lists32`; 1 when r4 must be compared with the
// TCE QEMU returned, and that TCE as a u32 pair.
const HC = 16;
const HC_LIST_LEN = 10;
const HC_LIST_AT = 11;
const HC_HAS_TCE = 12;
const HC_TCE = 13;
// A decoded translation, XL words of `xl`: the header table's index + 1 (0: the per-record path
// decides), the relative entry, the word QEMU's result makes of the TCE's low half (its page address
// and permission bits, under the table's mask TAB_KEEP), and the high half of the page address.
const XL = 4;
const XL_TABLE = 0;
const XL_IDX = 1;
const XL_WANT = 2;
const XL_HIGH = 3;
// Per header table, TAB words at its index + 1 (see run()).
const TAB = 4;
const TAB_NPAGES = 0;
const TAB_PAGES = 1;
const TAB_KEEP = 2;

/** The trace as the timed loop reads it: few arrays, so that the loop checks few maps. */
interface Decoded {
  /** Per event: its kind (K_*) in the low 2 bits, its index among the events of its kind above them. */
  ev: Uint32Array;
  /** Per hypercall, HC words (see HC_*). */
  hc: Uint32Array;
  /** Per hypercall: the return code QEMU recorded (any safe integer: one no call returns still mismatches), and the list's guest address. */
  hf: Float64Array;
  /** The lists' bytes, big-endian as the guest wrote them, as words (every list starts on 8 bytes). */
  lists32: Uint32Array;
  /** Per translation, XL words (see XL_*). */
  xl: Uint32Array;
  /** The header's LIOBNs, by index. */
  liobns: bigint[];
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
    ev: new Uint32Array(n),
    hc: new Uint32Array(hcalls.length * HC),
    hf: new Float64Array(hcalls.length * 2),
    lists32: new Uint32Array(listBytes >>> 2),
    xl: new Uint32Array(xlates.length * XL),
    liobns: trace.tables.map((t) => t.liobn),
  };
  const listView = new DataView(d.lists32.buffer);
  const tableOf = new Map(trace.tables.map((t, i) => [t.liobn, i]));
  let h = 0;
  let x = 0;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const ev = trace.events[i]!;
    if (ev.kind === 'hcall') {
      d.ev[i] = (h << 2) | K_HCALL;
      const b = h * HC;
      const r = [BigInt(ev.nr), ev.liobn, ev.ioba, ev.arg, ev.npages];
      for (let k = 0; k < 5; k++) {
        d.hc[b + 2 * k] = lo(r[k]!);
        d.hc[b + 2 * k + 1] = hi(r[k]!);
      }
      d.hf[2 * h] = ev.ret;
      // As the per-record path: r4 is compared only after a successful call that has a TCE to compare.
      if (ev.tce !== undefined && ev.ret === 0) {
        d.hc[b + HC_HAS_TCE] = 1;
        d.hc[b + HC_TCE] = lo(ev.tce);
        d.hc[b + HC_TCE + 1] = hi(ev.tce);
      }
      if (ev.tces) {
        d.hc[b + HC_LIST_AT] = at >>> 2;
        d.hc[b + HC_LIST_LEN] = ev.tces.length * 8;
        d.hf[2 * h + 1] = Number(ev.arg);
        for (const t of ev.tces) {
          listView.setBigUint64(at, t, false);
          at += 8;
        }
      }
      h++;
    } else if (ev.kind === 'xlate') {
      d.ev[i] = (x << 2) | K_XLATE;
      // The common case: a window of the header, hit inside it, recorded in pages of the window's size.
      const ti = tableOf.get(ev.liobn);
      const t = ti === undefined ? undefined : trace.tables[ti]!;
      let idx = -1n;
      if (t && ev.inWindow && ev.pageShift === t.pageShift && t.pageShift < 32 && t.entries > 0n && ev.ioba >= t.busOffset) idx = (ev.ioba - t.busOffset) >> BigInt(t.pageShift);
      const ok = t !== undefined && idx >= 0n && idx < t.entries && (ev.xlated & ((1n << BigInt(t.pageShift)) - 1n)) === 0n;
      if (ok) {
        // The window's page bits of the address are 0 (ok) and its pages are 4 KiB or more (the
        // header's page_shift is 12..34), so the page address and the two permission bits of the
        // TCE's low half compare as one word.
        const b = x * XL;
        d.xl[b + XL_TABLE] = ti! + 1;
        d.xl[b + XL_IDX] = Number(idx);
        d.xl[b + XL_WANT] = (lo(ev.xlated) | ev.perm) >>> 0;
        d.xl[b + XL_HIGH] = hi(ev.xlated);
      }
      x++;
    } else {
      d.ev[i] = ev.kind === 'table' ? K_TABLE : K_OTHER;
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
  // Per header table, TAB words at its index + 1, for the decoded translations: its guest table's
  // number of TCE pages and where its array of page addresses starts (as a word index), once the VM
  // has it, 0 pages before (and at [0], the per-record path's); and the mask of the TCE's low half
  // that a translation compares (the page address, 4 KiB or larger: page_shift is 12..34 in the
  // header, and the permission bits). The first two stay as they are while the table lives: only a
  // window made or removed (guest-table.ts, rtas.ts) changes them, which in a replay happens in
  // table() or a restore, and both run found() again.
  const tab = new Uint32Array(TAB * (trace.tables.length + 1));
  const found = (): void => {
    const m32 = host.mem.u32;
    for (let i = 0; i < d.liobns.length; i++) {
      const g = vm.tables.get(d.liobns[i]!);
      // A window in bypass translates as the identity: the per-record path knows it.
      const desc = g && g.size !== 0n && !vm.bypass.has(g.liobn) ? g.desc : 0;
      const t = TAB * (i + 1);
      tab[t + TAB_NPAGES] = desc === 0 ? 0 : m32[(desc + STT_NPAGES) >>> 2]!;
      tab[t + TAB_PAGES] = desc === 0 ? 0 : m32[(desc + STT_PAGES) >>> 2]! >>> 2;
      tab[t + TAB_KEEP] = trace.tables[i]!.pageShift < 32 ? (~(2 ** trace.tables[i]!.pageShift - 1) | 3) >>> 0 : 0;
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
  const slow: Slow = {
    checkHcall: (i, ret) => checkHcall(events[i] as TraceHcall, ret),
    tooLong: (i, ramBytes) => tooLong(events[i] as TraceHcall, ramBytes),
    xlate: (i) => xlateSlow(events[i] as TraceXlate),
    table: (i) => table(events[i] as TraceEvent & { kind: 'table' }),
    hypercalls: 0,
    translations: 0,
  };
  let at = loopTarget(host, vcpu, ram);
  const n = events.length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; ) {
    if (snapshotEvery > 0 && (i + 1) % snapshotEvery === 0) {
      host = Host.restore(host.snapshot({ format: 'binary', ram: false }));
      ({ vm, vcpu, ram, dv } = attach(host, start.ua));
      regs = vcpu.regs;
      at = loopTarget(host, vcpu, ram);
      found();
    }
    // The next stretch ends before the next event a snapshot precedes.
    let end = i + STRETCH < n ? i + STRETCH : n;
    if (snapshotEvery > 0) end = Math.min(end, (Math.floor((i + 1) / snapshotEvery) + 1) * snapshotEvery - 1);
    if (decoded) replayStretch(d, tab, at, slow, i, end);
    else {
      for (let j = i; j < end; j++) {
        const ev = events[j]!;
        if (ev.kind === 'hcall') {
          slow.hypercalls++;
          hcallSlow(ev);
        } else if (ev.kind === 'xlate') {
          slow.translations++;
          xlateSlow(ev);
        } else if (ev.kind === 'table') table(ev);
      }
    }
    i = end;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const { hypercalls, translations } = slow;
  return { events: trace.events.length, hypercalls, translations, mismatches, hypercallsPerSecond: seconds > 0 ? hypercalls / seconds : 0, seconds, ownerCheck: host.ownerCheck };
}

/**
 * Events per call of replayStretch(): the loop is a function entered many
 * times per replay, so TurboFan compiles it whole and every later replay
 * enters that code at once. As one loop in run(), called once per replay, it
 * ran in the baseline compiler until on-stack replacement, and again after
 * each deoptimisation (callgrind, trace A: about half of the timed part).
 */
const STRETCH = 1024;

/** The per-record path for what the decoded loop cannot decide, by event index; and the counts. */
interface Slow {
  checkHcall(i: number, ret: number): void;
  tooLong(i: number, ramBytes: number): never;
  xlate(i: number): void;
  table(i: number): void;
  hypercalls: number;
  translations: number;
}

/** What the decoded loop reads of the replaying host (made anew after a restore). */
interface LoopTarget {
  vcpu: Vcpu;
  /** The register block as u32 halves: r3 is [6], [7]. */
  r32: Uint32Array;
  /** The host's linear memory, for the guest tables' pages. */
  m32: Uint32Array;
  ram: Uint8Array;
  /** Guest RAM as words when it starts on a word (the lists are then copied a word at a time). */
  ram32: Uint32Array | undefined;
  /** log2 of the TCEs in one page of a guest table (sttPage: host pages of 8-byte TCEs). */
  tceShift: number;
}

/** The decoded loop's view of `host`, its vCPU and guest RAM. */
function loopTarget(host: Host, vcpu: Vcpu, ram: Uint8Array): LoopTarget {
  const regs = vcpu.regs;
  const ram32 = ram.byteOffset % 4 === 0 ? new Uint32Array(ram.buffer, ram.byteOffset, ram.byteLength >>> 2) : undefined;
  return { vcpu, r32: new Uint32Array(regs.buffer, regs.byteOffset, 16), m32: host.mem.u32, ram, ram32, tceShift: host.pageShift - 3 };
}

/** The decoded loop over events [from, to): no parsing, BigInt or allocation per record; the rest goes to `slow`. */
function replayStretch(d: Decoded, tab: Uint32Array, at: LoopTarget, slow: Slow, from: number, to: number): void {
  const { ev, hc, hf, lists32, xl } = d;
  const { vcpu, r32, m32, ram, ram32, tceShift } = at;
  const inPage = (1 << tceShift) - 1;
  const ramBytes = ram.byteLength;
  let hypercalls = 0;
  let translations = 0;
  for (let i = from; i < to; i++) {
    let e = ev[i]!;
    if ((e & 3) === K_XLATE) {
      // A run of translations: no call in it until one this loop cannot decide.
      for (;;) {
        translations++;
        const b = (e >>> 2) * XL;
        const t = TAB * xl[b + XL_TABLE]!;
        // guestEntry(): the TCE's page, then the TCE in it (0 while its page was never allocated).
        const idx = xl[b + XL_IDX]!;
        const pg = idx >>> tceShift;
        let ok = false;
        if (pg < tab[t + TAB_NPAGES]!) {
          const page = m32[tab[t + TAB_PAGES]! + pg]!;
          let tlo = 0;
          let thi = 0;
          if (page !== 0) {
            const w = (page + (idx & inPage) * 8) >>> 2;
            tlo = m32[w]!;
            thi = m32[w + 1]!;
          }
          // With no access asked, any TCE translates: its page (the window's page bits cleared) and its permission bits.
          ok = (tlo & tab[t + TAB_KEEP]!) >>> 0 === xl[b + XL_WANT] && thi === xl[b + XL_HIGH];
        }
        if (!ok) slow.xlate(i);
        if (i + 1 === to || ((e = ev[i + 1]!) & 3) !== K_XLATE) break;
        i++;
      }
    } else if ((e & 3) === K_HCALL) {
      hypercalls++;
      const h = e >>> 2;
      const b = h * HC;
      const len = hc[b + HC_LIST_LEN]!;
      if (len !== 0) {
        const gpa = hf[2 * h + 1]!;
        if (gpa + len > ramBytes) slow.tooLong(i, ramBytes);
        const a = hc[b + HC_LIST_AT]!;
        // Inside guest RAM, the address is below 4 GiB: a u32 from here on.
        const g = gpa >>> 0;
        if (ram32 !== undefined && (g & 3) === 0) {
          // The list's words as they are: its bytes stay big-endian.
          const w = g >>> 2;
          const n = len >>> 2;
          for (let j = 0; j < n; j++) ram32[w + j] = lists32[a + j]!;
        } else {
          const bytes = new Uint8Array(lists32.buffer, a * 4, len);
          ram.set(bytes, g);
        }
      }
      r32[6] = hc[b]!; r32[7] = hc[b + 1]!;
      r32[8] = hc[b + 2]!; r32[9] = hc[b + 3]!;
      r32[10] = hc[b + 4]!; r32[11] = hc[b + 5]!;
      r32[12] = hc[b + 6]!; r32[13] = hc[b + 7]!;
      r32[14] = hc[b + 8]!; r32[15] = hc[b + 9]!;
      const ret = vcpu.hcall();
      if (ret !== hf[2 * h] || (hc[b + HC_HAS_TCE] === 1 && (r32[8] !== hc[b + HC_TCE] || r32[9] !== hc[b + HC_TCE + 1]))) slow.checkHcall(i, ret);
    } else if ((e & 3) === K_TABLE) {
      slow.table(i);
    }
  }
  slow.hypercalls += hypercalls;
  slow.translations += translations;
}

/** The list of an H_PUT_TCE_INDIRECT reaches past the replay's guest RAM. */
function tooLong(ev: TraceHcall, ramBytes: number): never {
  throw new TraceError(`tce_list 0x${ev.arg.toString(16)}: ${ev.tces!.length} TCEs there lie outside the ${ramBytes >> 20} MiB of guest RAM the replay has`, ev.line);
}
