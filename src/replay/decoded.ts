// A trace decoded for the timed part of a replay (../replay.ts): its
// encoding in typed arrays, the decoder that writes it (outside the timed
// part), and the loop that reads it (replayStretch), kept in one file so
// that the loop reads the encoding's numbers as constants of its own module.
// The loop does no parsing, no BigInt arithmetic and no allocation per
// record: registers are written as u32 halves, lists copied as pre-encoded
// big-endian bytes, translations read from the guest table's pages in
// linear memory. Whatever it cannot decide on its own (a disagreement, a
// window re-enabled, a record outside the common case) goes to the
// per-record path (Slow), which also words the mismatch. The loop is a
// function of its own, entered for a stretch of events at a time (STRETCH).
import type { Trace, TraceHcall, TraceXlate } from '../trace.js';
import type { Host } from '../host/host.js';
import type { Vm } from '../vmm/vm.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { SttView } from '../generated/views.js';

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
// Per header table, TAB words at its index + 1 (see findTables()).
const TAB = 4;
const TAB_NPAGES = 0;
const TAB_PAGES = 1;
const TAB_KEEP = 2;

/** The trace as the timed loop reads it: few arrays, so that the loop checks few maps. */
export interface Decoded {
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
export function decode(trace: Trace): Decoded {
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

/** The per-table words the loop reads (TAB per header table, at its index + 1): see findTables(). */
export function tableWords(tables: number): Uint32Array {
  return new Uint32Array(TAB * (tables + 1));
}

/**
 * Fills `tab` for the decoded translations, per header table: its guest
 * table's number of TCE pages and where its array of page addresses starts
 * (as a word index), once the VM has it, 0 pages before (and at [0], the
 * per-record path's); and the mask of the TCE's low half that a translation
 * compares (the page address, 4 KiB or larger: page_shift is 12..34 in the
 * header, and the permission bits). The first two stay as they are while
 * the table lives: only a window made or removed (guest-table.ts, rtas.ts)
 * changes them, which in a replay happens at a table event or a restore,
 * and both call this again.
 */
export function findTables(tab: Uint32Array, trace: Trace, d: Decoded, host: Host, vm: Vm): void {
  for (let i = 0; i < d.liobns.length; i++) {
    const g = vm.tables.get(d.liobns[i]!);
    // A window in bypass translates as the identity: the per-record path knows it.
    const stt = g && g.size !== 0n && !vm.bypass.has(g.liobn) ? new SttView(host.mem, g.desc) : undefined;
    const t = TAB * (i + 1);
    tab[t + TAB_NPAGES] = stt ? stt.npages : 0;
    tab[t + TAB_PAGES] = stt ? stt.pages >>> 2 : 0;
    tab[t + TAB_KEEP] = trace.tables[i]!.pageShift < 32 ? (~(2 ** trace.tables[i]!.pageShift - 1) | 3) >>> 0 : 0;
  }
}

/**
 * Events per call of replayStretch(): the loop is a function entered many
 * times per replay, so TurboFan compiles it whole and every later replay
 * enters that code at once. As one loop in run(), called once per replay, it
 * ran in the baseline compiler until on-stack replacement, and again after
 * each deoptimisation (callgrind, trace A: about half of the timed part).
 */
export const STRETCH = 1024;

/** The per-record path for what the decoded loop cannot decide, by event index; and the counts. */
export interface Slow {
  checkHcall(i: number, ret: number): void;
  tooLong(i: number, ramBytes: number): never;
  xlate(i: number): void;
  table(i: number): void;
  hypercalls: number;
  translations: number;
}

/** What the decoded loop reads of the replaying host (made anew after a restore). */
export interface LoopTarget {
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
export function loopTarget(host: Host, vcpu: Vcpu, ram: Uint8Array): LoopTarget {
  const regs = vcpu.regs;
  const ram32 = ram.byteOffset % 4 === 0 ? new Uint32Array(ram.buffer, ram.byteOffset, ram.byteLength >>> 2) : undefined;
  return { vcpu, r32: new Uint32Array(regs.buffer, regs.byteOffset, 16), m32: host.mem.u32, ram, ram32, tceShift: host.pageShift - 3 };
}

/** The decoded loop over events [from, to): no parsing, BigInt or allocation per record; the rest goes to `slow`. */
export function replayStretch(d: Decoded, tab: Uint32Array, at: LoopTarget, slow: Slow, from: number, to: number): void {
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
