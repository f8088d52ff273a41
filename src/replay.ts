// Replays a recorded trace in the qemu profile: every hypercall through a
// vCPU register block, every recorded translation checked against the
// tables the replay built. The trace is decoded into typed arrays before the
// timed part (replay/decoded.ts), which then runs the decoded loop over
// stretches of events; whatever that loop cannot decide on its own goes
// through the per-record path here, which also words the mismatch.
import { Host, type HostOptions } from './host/host.js';
import { TraceError, type Trace, type TraceEvent, type TraceHcall, type TraceXlate } from './trace.js';
import type { Vm } from './vmm/vm.js';
import type { Vcpu } from './kvm/vcpu.js';
import { hex } from './core/format.js';
import type { OwnerCheck } from './core/context.js';
import { H_STUFF_TCE } from './generated/layout.js';
import { decode, findTables, loopTarget, replayStretch, tableWords, STRETCH, type Slow } from './replay/decoded.js';

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
  // The header tables' words the decoded loop reads, found again whenever a window may have changed.
  const tab = tableWords(trace.tables.length);
  const found = (): void => findTables(tab, trace, d, host, vm);
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

/** The list of an H_PUT_TCE_INDIRECT reaches past the replay's guest RAM. */
function tooLong(ev: TraceHcall, ramBytes: number): never {
  throw new TraceError(`tce_list ${hex(ev.arg)}: ${ev.tces!.length} TCEs there lie outside the ${ramBytes >> 20} MiB of guest RAM the replay has`, ev.line);
}
