// Reading the hypercall traces of traces/ (format: docs/traces.md): JSON
// Lines, plain or gzipped; a header with the windows, then events. Parsing
// checks every field the replay uses and turns it into numbers and bigints up
// front, so a bad trace is refused with its line before anything runs and a
// replay's timed part does no parsing. Event kinds and fields the replay does
// not know are kept as 'other' and ignored: a newer recording may carry more.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE, H_GET_TCE } from './generated/layout.js';
import { hex } from './core/format.js';

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
  /** TCE (PUT), value (STUFF) or list address (INDIRECT); 0 for GET. */
  arg: bigint;
  npages: bigint;
  /** INDIRECT: the TCE list the guest had written at `arg`. */
  tces?: bigint[];
  /** GET: the TCE QEMU returned in r4, when the record has it. */
  tce?: bigint;
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
  /** False when QEMU found the address beyond the table (no translation). */
  inWindow: boolean;
}

/** A window the VMM enabled (new_table). */
export interface TraceNewTable {
  kind: 'table';
  line: number;
  liobn: bigint;
}

/** Any other event (RTAS DDW calls, markers, kinds this reader does not know): counted, not replayed. */
export interface TraceOther {
  kind: 'other';
  line: number;
  ev: string;
}

/** One parsed event of a trace. */
export type TraceEvent = TraceHcall | TraceXlate | TraceNewTable | TraceOther;

/** A parsed trace. */
export interface Trace {
  name: string;
  tables: TraceTable[];
  events: TraceEvent[];
}

/** A trace that cannot be read or replayed: the file, the line (when one is to blame) and why, on one line. */
export class TraceError extends Error {
  override readonly name = 'TraceError';
  constructor(
    readonly reason: string,
    readonly line?: number,
    readonly file?: string,
  ) {
    super(`${file ?? 'trace'}${line !== undefined ? `:${line}` : ''}: ${reason}`);
  }

  /** The same error, naming the file it came from. */
  inFile(file: string): TraceError {
    return new TraceError(this.reason, this.line, file);
  }
}

// The trace events QEMU emits for the four TCE hypercalls (hw/ppc/spapr_iommu.c), plain and on a PCI LIOBN.
const HCALL_EVENTS: Record<string, number> = {
  put: H_PUT_TCE, pci_put: H_PUT_TCE,
  indirect: H_PUT_TCE_INDIRECT, pci_indirect: H_PUT_TCE_INDIRECT,
  stuff: H_STUFF_TCE, pci_stuff: H_STUFF_TCE,
  get: H_GET_TCE, pci_get: H_GET_TCE,
};

/** H_PUT_TCE_INDIRECT takes at most 512 TCEs (one 4 KiB page of them). */
const MAX_INDIRECT = 512;

/** A value for a message: JSON, cut short, so a huge field never makes a huge line. */
function show(x: unknown): string {
  const s = x === undefined ? 'nothing' : JSON.stringify(x) ?? String(x);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/** Reads the fields of one record, each refusal naming the line and the field. */
class Fields {
  constructor(
    readonly line: number,
    readonly rec: Record<string, unknown>,
    readonly where = '',
  ) {}

  fail(field: string, why: string): never {
    throw new TraceError(`${this.where}${field}: ${why}`, this.line);
  }

  /** A 64-bit value written as a hex string ("0x1000"), as every address and TCE of the format is. */
  hex(field: string, bits = 64): bigint {
    return this.hexValue(field, this.rec[field], bits);
  }

  hexValue(field: string, x: unknown, bits = 64): bigint {
    if (typeof x !== 'string') this.fail(field, `expected a hex string such as "0x1000", got ${show(x)}`);
    if (!/^0x[0-9a-f]+$/i.test(x)) this.fail(field, `${show(x)} is not a hex number ("0x" and hex digits)`);
    const v = BigInt(x);
    if (v >> BigInt(bits) !== 0n) this.fail(field, `${show(x)} does not fit in ${bits} bits`);
    return v;
  }

  int(field: string, min: number, max: number): number {
    const x = this.rec[field];
    if (typeof x !== 'number' || !Number.isInteger(x)) this.fail(field, `expected an integer, got ${show(x)}`);
    if (x < min || x > max) this.fail(field, `${x} is outside [${min}, ${max}]`);
    return x;
  }

  /** A return code: any integer a 64-bit register can hold that JSON keeps exact. */
  ret(): number {
    return this.int('ret', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  }

  optionalBool(field: string, dflt: boolean): boolean {
    const x = this.rec[field];
    if (x === undefined) return dflt;
    if (typeof x !== 'boolean') this.fail(field, `expected true or false, got ${show(x)}`);
    return x;
  }
}

/** Reads and parses a trace file (gzip detected by its magic); a TraceError names the file and line on any problem. */
export function readTrace(file: string): Trace {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not a trace file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new TraceError(why, undefined, file);
  }
  if (buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      const msg = (e as Error).message;
      throw new TraceError(/unexpected end/i.test(msg) ? 'the gzip data ends early (truncated file?)' : `not valid gzip data (${msg})`, undefined, file);
    }
  }
  try {
    return parseTrace(buf.toString('utf8'));
  } catch (e) {
    if (e instanceof TraceError) throw e.inFile(file);
    throw e;
  }
}

/** Parses one line: a JSON object, or a TraceError for that line. */
function record(text: string, line: number): Record<string, unknown> {
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    throw new TraceError(`not JSON (${msg.length > 80 ? `${msg.slice(0, 77)}...` : msg})`, line);
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new TraceError(`expected a JSON object, got ${show(x)}`, line);
  return x as Record<string, unknown>;
}

function parseTables(h: Fields): TraceTable[] {
  const list = h.rec.tables;
  if (list === undefined) return [];
  if (!Array.isArray(list)) h.fail('tables', `expected a list of windows, got ${show(list)}`);
  const seen = new Set<bigint>();
  return list.map((t, i) => {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) h.fail(`tables[${i}]`, `expected a window object, got ${show(t)}`);
    const f: Fields = new Fields(h.line, t as Record<string, unknown>, `tables[${i}].`);
    // A LIOBN is a 32-bit handle (spapr_tce_find_by_liobn compares 32 bits).
    const liobn = f.hex('liobn', 32);
    if (seen.has(liobn)) f.fail('liobn', `${hex(liobn)} is listed twice`);
    seen.add(liobn);
    const busOffset = f.hex('bus_offset');
    const windowSize = f.hex('window_size');
    // QEMU's page sizes run from 4 KiB to 16 GiB (the DDW query encoding, rtas_ibm_query_pe_dma_window).
    const pageShift = f.int('page_shift', 12, 34);
    const entries = BigInt(f.int('nb_entries', 0, 2 ** 32 - 1));
    return { liobn, busOffset, windowSize, pageShift, entries };
  });
}

/** Parses the text of a trace; throws a TraceError with the line number on malformed input. */
export function parseTrace(text: string): Trace {
  const lines = text.split('\n');
  const first = (lines[0] ?? '').replace(/^\uFEFF/, '').trim();
  if (!first) throw new TraceError(lines.length <= 1 ? 'empty file: expected a header line {"type":"header",...}' : 'expected a header line {"type":"header",...}, got an empty line', 1);
  const header: Fields = new Fields(1, record(first, 1));
  if (header.rec.type !== 'header') throw new TraceError(`not a trace: line 1 must be {"type":"header",...}, got "type": ${show(header.rec.type)}`, 1);
  const name = header.rec.trace;
  if (name !== undefined && typeof name !== 'string') header.fail('trace', `expected the trace's name, got ${show(name)}`);
  const tables = parseTables(header);
  const events: TraceEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (!text) continue;
    const line = i + 1;
    const f: Fields = new Fields(line, record(text, line));
    const type = f.rec.type;
    if (typeof type !== 'string') f.fail('type', `expected "ev" or "mark", got ${show(type)}`);
    if (type !== 'ev') {
      events.push({ kind: 'other', line, ev: type });
      continue;
    }
    const ev = f.rec.ev;
    if (typeof ev !== 'string') f.fail('ev', `expected the event's name, got ${show(ev)}`);
    events.push(parseEvent(f, ev));
  }
  return { name: name ?? 'trace', tables, events };
}

function parseEvent(f: Fields, ev: string): TraceEvent {
  const line = f.line;
  const nr = HCALL_EVENTS[ev];
  if (nr !== undefined) {
    const liobn = f.hex('liobn');
    const ret = f.ret();
    if (nr === H_PUT_TCE_INDIRECT) {
      const ioba = f.hex('ioba');
      const arg = f.hex('tce_list');
      const npages = f.int('npages', 0, Number.MAX_SAFE_INTEGER);
      const list = f.rec.tces;
      // QEMU traces neither npages nor the list: the recording read them from the guest, and without them there is nothing to replay.
      if (!Array.isArray(list)) f.fail('tces', `expected the list of TCEs the guest passed, got ${show(list)}`);
      if (list.length > MAX_INDIRECT) f.fail('tces', `${list.length} TCEs, more than one H_PUT_TCE_INDIRECT takes (${MAX_INDIRECT})`);
      if (npages <= MAX_INDIRECT && list.length !== npages) f.fail('tces', `${list.length} TCEs for npages ${npages}`);
      const tces = list.map((x, k) => f.hexValue(`tces[${k}]`, x));
      return { kind: 'hcall', line, nr, liobn, ioba, arg, npages: BigInt(npages), tces, ret };
    }
    if (nr === H_STUFF_TCE) {
      // QEMU traces the ioba after its loop; the recording derived the start, and left it null when the call failed part way.
      // Then the call is replayed from where it failed, which gives the same return code.
      const ioba = f.rec.ioba === null && ret !== 0 ? f.hex('ioba_traced') : f.hex('ioba');
      const arg = f.hex('tce_value');
      const npages = BigInt(f.int('npages', 0, Number.MAX_SAFE_INTEGER));
      return { kind: 'hcall', line, nr, liobn, ioba, arg, npages, ret };
    }
    const ioba = f.hex('ioba');
    if (nr === H_GET_TCE) {
      const tce = f.rec.tce === undefined ? undefined : f.hex('tce');
      return { kind: 'hcall', line, nr, liobn, ioba, arg: 0n, npages: 0n, ...(tce !== undefined ? { tce } : {}), ret };
    }
    return { kind: 'hcall', line, nr, liobn, ioba, arg: f.hex('tce'), npages: 0n, ret };
  }
  if (ev === 'xlate') {
    // The LIOBN of a table QEMU translated through (spapr_tce_translate_iommu): 32 bits, as vm.translate takes.
    const liobn = f.hex('liobn', 32);
    const ioba = f.hex('ioba');
    const inWindow = f.optionalBool('in_window', true);
    // Beyond the table QEMU reports no page (mask ~0): nothing else of the record is needed then.
    if (!inWindow) return { kind: 'xlate', line, liobn, ioba, xlated: 0n, perm: 0, pageShift: 64, inWindow };
    const xlated = f.hex('xlated');
    const perm = f.int('perm', 0, 3);
    const pageShift = f.int('page_shift', 0, 63);
    return { kind: 'xlate', line, liobn, ioba, xlated, perm, pageShift, inWindow };
  }
  if (ev === 'new_table') return { kind: 'table', line, liobn: f.hex('liobn', 32) };
  return { kind: 'other', line, ev };
}
