// Reading the hypercall traces of ../shared/traces (format: traces/README.md):
// JSON Lines, plain or gzipped; a header with the windows, then events.
// Parsing turns every event into plain numbers and bigints up front, so a
// replay's timed part does no parsing.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_GET_TCE } from './generated/layout.js';

/** One window from the header's `tables`. */
export interface TraceTable {
  liobn: bigint;
  busOffset: bigint;
  windowSize: bigint;
  pageShift: number;
  entries: bigint;
}

/** A hypercall to replay, with the return code QEMU recorded. */
export interface TraceHcall {
  kind: 'hcall';
  line: number;
  nr: number;
  liobn: bigint;
  ioba: bigint;
  /** TCE (PUT), value (STUFF) or list address (INDIRECT). */
  arg: bigint;
  npages: bigint;
  /** INDIRECT: the TCE list the guest had written at `arg`. */
  tces?: bigint[];
  ret: number;
}

/** A translation a device model performed, with its recorded result. */
export interface TraceXlate {
  kind: 'xlate';
  line: number;
  liobn: bigint;
  ioba: bigint;
  xlated: bigint;
  perm: number;
  pageShift: number;
}

/** A window the VMM enabled (new_table). */
export interface TraceNewTable {
  kind: 'table';
  line: number;
  liobn: bigint;
}

/** Any other event (RTAS DDW calls, markers): counted, not replayed. */
export interface TraceOther {
  kind: 'other';
  line: number;
  ev: string;
}

export type TraceEvent = TraceHcall | TraceXlate | TraceNewTable | TraceOther;

/** A parsed trace. */
export interface Trace {
  name: string;
  tables: TraceTable[];
  events: TraceEvent[];
}

const HCALLS: Record<string, number> = { H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_GET_TCE };

/** Reads and parses a trace file (gzip detected by its magic). */
export function readTrace(file: string): Trace {
  let buf = readFileSync(file);
  if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf);
  return parseTrace(buf.toString('utf8'));
}

/** Parses the text of a trace; throws with the line number on malformed input. */
export function parseTrace(text: string): Trace {
  const lines = text.split('\n');
  const header = JSON.parse(lines[0] ?? '') as { type?: string; trace?: string; tables?: Record<string, unknown>[] };
  if (header.type !== 'header') throw new Error('trace: line 1 is not a header');
  const tables: TraceTable[] = (header.tables ?? []).map((t) => ({
    liobn: BigInt(t.liobn as string),
    busOffset: BigInt(t.bus_offset as string),
    windowSize: BigInt(t.window_size as string),
    pageShift: t.page_shift as number,
    entries: BigInt(t.nb_entries as number),
  }));
  const events: TraceEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (!text) continue;
    const line = i + 1;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`trace: line ${line}: ${(err as Error).message}`);
    }
    if (e.type === 'mark') {
      events.push({ kind: 'other', line, ev: 'mark' });
      continue;
    }
    const ev = String(e.ev);
    const big = (k: string): bigint => BigInt(e[k] as string);
    if (e.hcall && HCALLS[e.hcall as string] !== undefined) {
      const nr = HCALLS[e.hcall as string]!;
      const ret = e.ret as number;
      if (nr === H_PUT_TCE_INDIRECT) {
        events.push({ kind: 'hcall', line, nr, liobn: big('liobn'), ioba: big('ioba'), arg: big('tce_list'), npages: BigInt(e.npages as number), tces: (e.tces as string[]).map((x) => BigInt(x)), ret });
      } else if (nr === H_STUFF_TCE) {
        if (e.ioba === null) throw new Error(`trace: line ${line}: H_STUFF_TCE without a start address cannot be replayed`);
        events.push({ kind: 'hcall', line, nr, liobn: big('liobn'), ioba: big('ioba'), arg: big('tce_value'), npages: BigInt(e.npages as number), ret });
      } else {
        events.push({ kind: 'hcall', line, nr, liobn: big('liobn'), ioba: big('ioba'), arg: e.tce === undefined ? 0n : big('tce'), npages: 0n, ret });
      }
    } else if (ev === 'xlate') {
      events.push({ kind: 'xlate', line, liobn: big('liobn'), ioba: big('ioba'), xlated: big('xlated'), perm: e.perm as number, pageShift: e.page_shift as number });
    } else if (ev === 'new_table') {
      events.push({ kind: 'table', line, liobn: big('liobn') });
    } else {
      events.push({ kind: 'other', line, ev });
    }
  }
  return { name: header.trace ?? 'trace', tables, events };
}
