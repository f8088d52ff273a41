// DMA for device models: an accessor with the shape of a plain guest-memory
// accessor (v86's read_blob/write_blob) that goes through a LIOBN's TCE
// window first, as QEMU's dma_memory_rw does through the sPAPR IOMMU region
// (spapr_tce_translate_iommu, then address_space_rw on guest RAM). A device
// model that took raw memory becomes IOMMU-aware by taking this instead.
//
// Speed. QEMU keeps the translation cheap with an IOTLB it flushes on every
// IOMMU notification; here the TCE itself is read from linear memory on every
// access (two u32 loads: cheaper than any invalidation protocol, and never
// stale), and only what changes rarely is cached per accessor: the window
// (bus offset, page size, span, the table's page array) and the memslots as
// numbers with their linear-memory offsets. The cache is keyed by the VM's
// `generation`, which every window change (the table map's set), memslot
// add/remove and bypass switch bumps, so one integer compare per call
// decides whether it is still right. An IOVA below 2^53 is a number from
// validation on (v.u64Safe: a number argument is never made a BigInt, a
// bigint one is converted once), and the per-page path is all numbers, with
// no float modulo (page sizes are powers of two: masks and exact products).
// What does not fit in 2^53 (a window spanning more, a TCE or memslot above
// 2^53) goes the general way, translate() and BigInt, with the same result.
//
// Copies. Pages that follow each other in host memory are merged into one
// piece while planning, so a transfer costs one TypedArray.set per
// contiguous host run, not one per IOMMU page; the memslots are looked up
// once per run of pages contiguous in guest memory, not per page, and the
// scan of a run (runPages()) reads the table's page array once and each
// table page once, comparing addresses as 32-bit words. The common
// transfer (a number IOVA, pages contiguous in guest memory, the memslot of
// the last access: one IOMMU page or a run of them) skips the plan:
// oneRun() gives its offset, and it is one view and one set() (and, for a
// write, one mark of the dirty log). read() allocates its result once: a
// small one-piece read is a slice() of linear memory; otherwise the result
// is not zero-filled (every byte is then copied over: the pieces cover the
// length exactly), instead of a zero-fill and a copy. The copy itself is
// V8's: a set() that touches a SharedArrayBuffer is a relaxed (word by
// word) memmove, as is the plain Uint8Array copy the benchmark compares
// against.
//
// Every DMA is translated whole before a byte moves, so a fault touches
// nothing; writes then mark the dirty log of each memslot they land in
// (dirty.ts), as KVM's mark_page_dirty does for a write by the VMM.
import type { Vm } from './vm.js';
import type { DirtyLog } from './dirty.js';
import { hex } from '../core/format.js';
import * as v from '../core/validate.js';
import { SttView } from '../generated/views.js';
import { memslotHostOffset } from '../kvm/memslot.js';

/** Why a DMA faulted: translate()'s reasons, or a guest physical address that is not backed guest RAM. */
export type DmaFaultReason = 'no-window' | 'out-of-range' | 'no-permission' | 'not-ram';

/** A DMA the IOMMU refused; nothing was read or written. `iova` is the first address that could not be reached. */
export class DmaFault extends Error {
  readonly liobn: bigint;
  readonly iova: bigint;
  readonly access: 'read' | 'write';
  readonly reason: DmaFaultReason;
  constructor(liobn: bigint, iova: bigint, access: 'read' | 'write', reason: DmaFaultReason) {
    super(`DMA ${access} through LIOBN ${hex(liobn)} faulted at IOVA ${hex(iova)}: ${reason}`);
    this.name = 'DmaFault';
    this.liobn = liobn;
    this.iova = iova;
    this.access = access;
    this.reason = reason;
  }
}

/** What vm.dma(liobn) returns: device-side reads and writes of guest memory through the LIOBN's window. */
export interface DmaAccessor {
  readonly liobn: bigint;
  /** The device reads `length` bytes at `iova` (needs the TCE READ bit on every page); a fresh copy. */
  read(iova: bigint | number, length: number): Uint8Array;
  /** The device reads `dst.length` bytes at `iova` into `dst` (as read(), without allocating); a fault leaves `dst` untouched. */
  readInto(iova: bigint | number, dst: Uint8Array): void;
  /** The device writes `bytes` at `iova` (needs the TCE WRITE bit on every page); marks the pages in the dirty log. */
  write(iova: bigint | number, bytes: Uint8Array): void;
}

/** Largest single transfer: a Uint8Array of it must be allocatable. */
const MAX_LENGTH = 0x7fff_ffff;
const U64_END = 1n << 64n;
const SAFE = 2 ** 53;
const SAFE_BIG = 1n << 53n;
/** Up to this many bytes V8 keeps a typed array's elements on its heap (typed_array_max_size_in_heap). */
const ON_HEAP = 64;
/**
 * From this length on, read() allocates without zero-filling and copies
 * (uninitialized()); below it a one-piece read is a slice(). Measured on
 * Node 20 (V8 11.3) against a shared WebAssembly.Memory: slice() is the
 * faster up to about 8 KiB, where the zero-fill starts to cost more than
 * a second allocation step.
 */
const UNINITIALIZED_FROM = 8192;
const TWO32 = 2 ** 32;
/** A TCE's high word at or above this puts its address at or above 2^53. */
const HI_SAFE = 1 << 21;
/** Fields of a piece in `Dma.pieces`: linear-memory offset, length, memslot index (vm.memslots), offset in the memslot. */
const STRIDE = 4;
const READ = 1;
const WRITE = 2;
/** pageBase()'s answers other than an address: take the general path; the entry lacks the access bit. */
const GENERAL = -1;
const NO_PERMISSION = -2;
/**
 * Scratch of iovaOf(): a bigint's two 32-bit halves through a BigUint64Array,
 * whose store optimised code does inline, where Number(bigint) is a runtime
 * call (about a hundred instructions more per call, callgrind). The word
 * order is the platform's, as it is for every typed array.
 */
const SCRATCH64 = new BigUint64Array(1);
const SCRATCH32 = new Uint32Array(SCRATCH64.buffer);
const LO_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HI_WORD = 1 - LO_WORD;

/** v.u64Safe('iova', at), with a bigint in [0, 2^53) converted without Number(bigint): the same results and errors. */
function iovaOf(at: bigint | number): number | bigint {
  if (typeof at === 'bigint' && BigInt.asUintN(64, at) === at) {
    SCRATCH64[0] = at;
    const hi = SCRATCH32[HI_WORD]!;
    // Below 2^53 the number is exact; above, u64Safe would give the bigint itself.
    return hi < HI_SAFE ? hi * TWO32 + SCRATCH32[LO_WORD]! : at;
  }
  return v.u64Safe('iova', at);
}

/** How the cached window translates. */
const enum Mode {
  /** No window (unknown LIOBN, or a disabled table): every access faults 'no-window'. */
  None,
  /** A TCE table whose span fits in 2^53: the number path. */
  Table,
  /** A VIO table in TCE bypass: the identity onto guest physical addresses. */
  Bypass,
  /** Everything else: translate() per page, in BigInt. */
  General,
}

/** @internal the accessor of vm.dma(liobn): the cache of its window and of the VM's memslots (see the file comment). */
class Dma implements DmaAccessor {
  readonly liobn: bigint;
  private readonly vm: Vm;
  private readonly dirty: DirtyLog;
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  /** The buffer under `u8` and u8's offset in it: a piece's source view is made on it directly (cheaper than subarray). */
  private readonly buf: ArrayBufferLike;
  private readonly base: number;
  /** vm.generation the cache below was built at; -1: never built. */
  private gen = -1;
  private mode = Mode.None;
  /** Table: bus address of the window's first byte, its span in bytes (BigInt and number), the IOMMU page size. */
  private bus = 0n;
  private spanBig = 0n;
  private span = 0;
  /** The bus address as a number when below 2^53, else -1. */
  private busSafe = -1;
  private pageBytes = 0;
  /** 1 / pageBytes, exact (a power of two); masks of a TCE's low and high words that keep the page's address. */
  private invPage = 0;
  private loMask = 0;
  private hiMask = 0;
  /** runPages()'s step from one page's address to the next in 32-bit words: added to the low word; added to the high word when the low one wraps to 0. */
  private loStep = 0;
  private carry = 0;
  /** Table: the u32 index of the descriptor's page-array pointer (read live per call), entries per table page. */
  private pagesWord = 0;
  private perPage = 0;
  /** 1 / perPage, exact (a power of two). */
  private invPer = 0;
  /** Memslots as numbers, indexed as vm.memslots: start, end (clamped to 2^53), linear-memory offset or -1 (no bytes); Infinity starts above 2^53. */
  private slotStart: number[] = [];
  private slotEnd: number[] = [];
  private slotHost: number[] = [];
  /** The memslot the last lookup hit. */
  private lastSlot = 0;
  /** The plan of the running call (STRIDE numbers per piece), reused: no allocation once grown. */
  private readonly pieces: number[] = [];

  constructor(vm: Vm, liobn: bigint, dirty: DirtyLog) {
    this.vm = vm;
    this.liobn = liobn;
    this.dirty = dirty;
    this.u8 = vm.host.mem.u8;
    this.u32 = vm.host.mem.u32;
    this.buf = this.u8.buffer;
    this.base = this.u8.byteOffset;
  }

  // The methods are bound (arrow properties): a device model may take `read` or `write` alone, as it takes a raw accessor's functions.
  readonly read = (at: bigint | number, length: number): Uint8Array => {
    const iova = iovaOf(at);
    v.int('length', length, 0, MAX_LENGTH);
    // The common case, as readInto takes it: one run, no plan.
    const off = this.oneRun(iova, length, READ);
    if (off >= 0) {
      if (length < UNINITIALIZED_FROM) return this.u8.slice(off, off + length);
      const out = uninitialized(length);
      out.set(new Uint8Array(this.buf, this.base + off, length));
      return out;
    }
    const n = this.plan(iova, length, READ);
    // One piece of a small read: slice() allocates and copies in one builtin, the cheapest below a few KiB.
    if (n === STRIDE && length < UNINITIALIZED_FROM) return this.u8.slice(this.pieces[0]!, this.pieces[0]! + length);
    const out = uninitialized(length);
    this.copyPieces(n, out);
    return out;
  };

  readonly readInto = (at: bigint | number, dst: Uint8Array): void => {
    const iova = iovaOf(at);
    v.instance('dst', dst, Uint8Array, 'a Uint8Array');
    const length = dst.length;
    const off = this.oneRun(iova, length, READ);
    // The common case: one view and one set(), no plan.
    if (off >= 0) dst.set(new Uint8Array(this.buf, this.base + off, length));
    else this.copyPieces(this.plan(iova, length, READ), dst);
  };

  readonly write = (at: bigint | number, bytes: Uint8Array): void => {
    const iova = iovaOf(at);
    v.instance('bytes', bytes, Uint8Array, 'a Uint8Array');
    const length = bytes.length;
    if (length > MAX_LENGTH) throw new RangeError(`bytes must be at most ${MAX_LENGTH} bytes long, got ${length}`);
    const off = this.oneRun(iova, length, WRITE);
    if (off >= 0) {
      this.u8.set(bytes, off);
      const s = this.lastSlot;
      this.dirty.markDma(s, off - this.slotHost[s]!, length);
      return;
    }
    const n = this.plan(iova, length, WRITE);
    const p = this.pieces;
    const u8 = this.u8;
    if (n === STRIDE) {
      // One piece, the common case: no subarray of the source.
      u8.set(bytes, p[0]!);
    } else {
      let pos = 0;
      for (let i = 0; i < n; i += STRIDE) {
        const len = p[i + 1]!;
        // set() copies through a clone when `bytes` is itself a view of guest memory.
        u8.set(bytes.subarray(pos, pos + len), p[i]!);
        pos += len;
      }
    }
    for (let i = 0; i < n; i += STRIDE) this.dirty.markDma(p[i + 2]!, p[i + 3]!, p[i + 1]!);
  };

  /**
   * The linear-memory offset of `length` bytes at `iova` when the access is
   * the common case: a number IOVA, a cached table window, IOMMU pages whose
   * TCEs all grant the access and map consecutive guest pages (one page, or
   * a run: runPages()), inside the memslot the last access hit. Else -1, and
   * plan() decides, faults included: nothing is thrown here.
   */
  private oneRun(iova: number | bigint, length: number, access: number): number {
    if (typeof iova !== 'number' || length === 0 || this.gen !== this.vm.generation || this.mode !== Mode.Table) return -1;
    const rel = iova - this.busSafe;
    if (this.busSafe < 0 || rel < 0 || rel >= this.span) return -1;
    const pageBytes = this.pageBytes;
    const idx = Math.floor(rel * this.invPage);
    const inPage = rel - idx * pageBytes;
    const base = this.pageBase(idx, access);
    if (base < 0) return -1;
    if (inPage + length > pageBytes) {
      // A run past the window's end is plan()'s out-of-range fault. The count of pages after the first is exact: powers of two.
      if (rel + length > this.span) return -1;
      const more = Math.ceil((inPage + length) * this.invPage) - 1;
      if (this.runPages(idx + 1, more, base + pageBytes, access) !== more) return -1;
    }
    const gpa = base + inPage;
    const s = this.lastSlot;
    const start = this.slotStart[s]!;
    const host = this.slotHost[s]!;
    // Positive tests: with no memslot at all the loads are undefined and every test fails.
    if (gpa >= start && gpa + length <= this.slotEnd[s]! && host >= 0) return host + (gpa - start);
    return -1;
  }

  /** Copies the `n` numbers of planned pieces into `dst`: one set() per piece. */
  private copyPieces(n: number, dst: Uint8Array): void {
    const p = this.pieces;
    let pos = 0;
    for (let i = 0; i < n; i += STRIDE) {
      const len = p[i + 1]!;
      dst.set(new Uint8Array(this.buf, this.base + p[i]!, len), pos);
      pos += len;
    }
  }

  /** Rebuilds the cache for vm.generation (see the file comment). */
  private refresh(): void {
    const vm = this.vm;
    this.gen = vm.generation;
    const t = vm.tables.get(this.liobn);
    if (!t || t.size === 0n) this.mode = Mode.None;
    else if (vm.bypass.has(this.liobn)) {
      this.mode = Mode.Bypass;
      this.bus = 0n;
    } else {
      const shift = BigInt(t.pageShift);
      this.bus = t.offset << shift;
      this.spanBig = t.size << shift;
      this.mode = this.spanBig <= SAFE_BIG ? Mode.Table : Mode.General;
      this.span = Number(this.spanBig);
      this.busSafe = this.bus < SAFE_BIG ? Number(this.bus) : -1;
      this.pageBytes = 2 ** t.pageShift;
      this.invPage = 2 ** -t.pageShift;
      // In the number path pageShift is at most 53 (span ≤ 2^53), so the high mask's shift is at most 21.
      this.loMask = t.pageShift >= 32 ? 0 : -this.pageBytes | 0;
      this.hiMask = t.pageShift >= 32 ? -(1 << (t.pageShift - 32)) : -1;
      // Below 2^32 a page is a low-word step that carries 1; from 2^32 on the low word stays 0 and every page carries its size over 2^32.
      this.loStep = t.pageShift >= 32 ? 0 : this.pageBytes | 0;
      this.carry = t.pageShift >= 32 ? 2 ** (t.pageShift - 32) : 1;
      this.pagesWord = (t.desc + SttView.OFFSET.pages) >>> 2;
      this.perPage = (1 << vm.host.pageShift) / 8;
      this.invPer = 1 / this.perPage;
    }
    const slots = vm.memslots;
    this.slotStart = slots.map((s) => (s.gpa < SAFE_BIG ? Number(s.gpa) : Infinity));
    this.slotEnd = slots.map((s) => (s.gpa + s.size < SAFE_BIG ? Number(s.gpa + s.size) : SAFE));
    this.slotHost = slots.map((s) => memslotHostOffset(vm, s));
    this.lastSlot = 0;
  }

  /**
   * Fills `pieces` with the linear-memory pieces behind `length` bytes at
   * `iova` (adjacent ones merged), or throws the DmaFault of the first
   * unreachable address. Returns the count of numbers used.
   */
  private plan(iova: number | bigint, length: number, access: number): number {
    if (this.gen !== this.vm.generation) this.refresh();
    if (length === 0) return 0;
    switch (this.mode) {
      case Mode.Table: {
        let rel: number;
        if (typeof iova === 'number') {
          // Below 2^53 (u64Safe): no BigInt at all. A window at or above 2^53 starts past every such IOVA.
          rel = this.busSafe < 0 ? -1 : iova - this.busSafe;
          if (rel < 0 || rel >= this.span) throw this.fault(BigInt(iova), access, 'out-of-range');
        } else {
          const r = iova - this.bus;
          if (r < 0n || r >= this.spanBig) throw this.fault(iova, access, 'out-of-range');
          rel = Number(r);
        }
        const n = this.planTable(rel, length, access);
        return n >= 0 ? n : this.planGeneral(BigInt(iova), length, access);
      }
      case Mode.Bypass:
        // The identity: guest physical = IOVA, every page readable and writable (vm.translate's bypass).
        if (typeof iova === 'number' && iova + length <= SAFE) return this.planIdentity(iova, length, access);
        return this.planGeneral(BigInt(iova), length, access);
      case Mode.None:
        throw this.fault(BigInt(iova), access, 'no-window');
      default:
        return this.planGeneral(BigInt(iova), length, access);
    }
  }

  /** The number path through a TCE table, from byte `at` of the window; -1 when a TCE addresses memory at or above 2^53. */
  private planTable(at: number, length: number, access: number): number {
    const pageBytes = this.pageBytes;
    // Page sizes are powers of two: the product is exact, and there is no float modulo (a C call in V8).
    const idx = Math.floor(at * this.invPage);
    const inPage = at - idx * pageBytes;
    if (inPage + length <= pageBytes) {
      // One IOMMU page, inside the memslot the last access hit (oneRun() without a plan takes most of these first).
      const base = this.pageBase(idx, access);
      if (base === NO_PERMISSION) throw this.fault(this.bus + BigInt(at), access, 'no-permission');
      if (base < 0) return -1;
      const gpa = base + inPage;
      const s = this.lastSlot;
      const host = this.slotHost[s]!;
      const start = this.slotStart[s]!;
      if (gpa >= start && gpa + length <= this.slotEnd[s]! && host >= 0) {
        const p = this.pieces;
        p[0] = host + (gpa - start);
        p[1] = length;
        p[2] = s;
        p[3] = gpa - start;
        return STRIDE;
      }
      return this.planRam(gpa, length, 0, at, access);
    }
    return this.planPages(at, length, access);
  }

  /**
   * planTable() over several IOMMU pages, run by run: a run starts at a page
   * whose TCE grants the access and takes the pages after it while their
   * TCEs continue it in guest physical memory (runPages(): a scan that
   * calls nothing, so its numbers stay unboxed); then planRam() turns the
   * run into linear-memory pieces (one memslot lookup per run, host-adjacent
   * pieces merged). A run is planned before the page that ended it is
   * looked at again, so a fault is always that of the first unreachable
   * address.
   */
  private planPages(at: number, length: number, access: number): number {
    const pageBytes = this.pageBytes;
    const invPage = this.invPage;
    const span = this.span;
    const windowPages = span * invPage;
    let left = length;
    let used = 0;
    while (left > 0) {
      if (at >= span) throw this.fault(this.bus + BigInt(at), access, 'out-of-range');
      const idx = Math.floor(at * invPage);
      const inPage = at - idx * pageBytes;
      const base = this.pageBase(idx, access);
      if (base < 0) {
        if (base === GENERAL) return -1;
        throw this.fault(this.bus + BigInt(at), access, 'no-permission');
      }
      // The pages after this one that the rest of the transfer needs, within the window (the window's end is faulted above, on the next turn).
      const want = Math.ceil((inPage + left) * invPage) - 1;
      const room = windowPages - idx - 1;
      const more = this.runPages(idx + 1, want < room ? want : room, base + pageBytes, access);
      const reach = pageBytes - inPage + more * pageBytes;
      const run = reach < left ? reach : left;
      used = this.planRam(base + inPage, run, used, at, access);
      at += run;
      left -= run;
    }
    return used;
  }

  /**
   * How many of the `count` IOMMU pages from `idx` (all inside the window)
   * continue a run whose page `idx` would be at guest physical `gpa`: each
   * TCE grants `access` and maps the next page of guest memory. Stops at
   * the first that does not, or that tceAddress() would send to the general
   * path (an address at or above 2^53, an entry changing while read): the
   * caller looks at that page again on its own. The loads are
   * tceAddress()'s (the high word twice), but the page-array pointer is read
   * once and the table page once per table page, and the expected address
   * is kept as two 32-bit words (`gpa` and every TCE address are page
   * aligned, so the low word carries into the high one exactly when it
   * wraps to 0): integer compares, no float per page.
   */
  private runPages(idx: number, count: number, gpa: number, access: number): number {
    if (count <= 0) return 0;
    const u32 = this.u32;
    const pages = u32[this.pagesWord]! >>> 2;
    if (pages === 0) return 0;
    const perPage = this.perPage;
    const loMask = this.loMask;
    const hiMask = this.hiMask;
    const loStep = this.loStep;
    const carry = this.carry;
    let tp = Math.floor(idx * this.invPer);
    let entry = idx - tp * perPage;
    let table = u32[pages + tp]!;
    let w = (table >>> 2) + 2 * entry;
    let eHi = Math.floor(gpa / TWO32);
    let eLo = (gpa - eHi * TWO32) | 0;
    let n = 0;
    while (n < count) {
      if (entry === perPage) {
        tp++;
        entry = 0;
        table = u32[pages + tp]!;
        w = table >>> 2;
      }
      // An absent table page reads as entries of 0: no permission.
      if (table === 0) break;
      const hi = u32[w + 1]!;
      const lo = u32[w]!;
      if (u32[w + 1] !== hi || (lo & access) === 0 || hi >= HI_SAFE) break;
      if ((lo & loMask) !== eLo || (hi & hiMask) !== eHi) break;
      n++;
      entry++;
      w += 2;
      eLo = (eLo + loStep) | 0;
      if (eLo === 0) eHi += carry;
    }
    return n;
  }

  /** tceAddress() of IOMMU page `idx` of the cached window. */
  private pageBase(idx: number, access: number): number {
    return tceAddress(this.u32, this.pagesWord, this.perPage, this.invPer, this.loMask, this.hiMask, idx, access);
  }

  /** The identity of a bypass from guest physical `gpa` (all below 2^53; `bus` is 0, so a fault names the address itself). */
  private planIdentity(gpa: number, length: number, access: number): number {
    return this.planRam(gpa, length, 0, gpa, access);
  }

  /**
   * Appends the pieces of guest physical [gpa, gpa + length) (all numbers)
   * after `used`; `at` is the window offset of `gpa` for the fault's IOVA.
   * One IOMMU page (up to 16 GiB) may span several memslots.
   */
  private planRam(gpa: number, length: number, used: number, at: number, access: number): number {
    const p = this.pieces;
    let c = length;
    let g = gpa;
    while (c > 0) {
      let s = this.lastSlot;
      if (!(g >= this.slotStart[s]! && g < this.slotEnd[s]!)) {
        s = -1;
        for (let i = 0; i < this.slotStart.length; i++) {
          if (g >= this.slotStart[i]! && g < this.slotEnd[i]!) {
            s = i;
            break;
          }
        }
        if (s < 0) throw this.fault(this.bus + BigInt(at + (g - gpa)), access, 'not-ram');
        this.lastSlot = s;
      }
      const host = this.slotHost[s]!;
      if (host < 0) throw this.fault(this.bus + BigInt(at + (g - gpa)), access, 'not-ram');
      const inSlot = this.slotEnd[s]! - g;
      const n = inSlot < c ? inSlot : c;
      const rel = g - this.slotStart[s]!;
      const off = host + rel;
      if (used > 0 && p[used - 2] === s && p[used - STRIDE]! + p[used - 3]! === off) p[used - 3]! += n;
      else {
        p[used] = off;
        p[used + 1] = n;
        p[used + 2] = s;
        p[used + 3] = rel;
        used += STRIDE;
      }
      g += n;
      c -= n;
    }
    return used;
  }

  /** The general path: vm.translate() page by page and the memslots in BigInt (addresses at or above 2^53). */
  private planGeneral(iova: bigint, length: number, access: number): number {
    const vm = this.vm;
    const p = this.pieces;
    const kind = access === WRITE ? 'write' : 'read';
    let used = 0;
    let at = iova;
    let left = length;
    while (left > 0) {
      // A window never contains the last page below 2^64 (createTceTable's bound), so this is defensive.
      if (at >= U64_END) throw this.fault(BigInt.asUintN(64, at), access, 'out-of-range');
      const t = vm.translate(this.liobn, at, kind);
      if (!t.ok) throw this.fault(at, access, t.fault);
      const inPage = t.pageIova + t.pageSize - at;
      const chunk = inPage < BigInt(left) ? Number(inPage) : left;
      let gpa = t.gpa;
      let c = chunk;
      while (c > 0) {
        let s = -1;
        for (let i = 0; i < vm.memslots.length; i++) {
          const m = vm.memslots[i]!;
          if (gpa >= m.gpa && gpa - m.gpa < m.size) {
            s = i;
            break;
          }
        }
        const host = s < 0 ? -1 : this.slotHost[s]!;
        if (host < 0) throw this.fault(at + (gpa - t.gpa), access, 'not-ram');
        const slot = vm.memslots[s]!;
        const inSlot = slot.size - (gpa - slot.gpa);
        const n = inSlot < BigInt(c) ? Number(inSlot) : c;
        const rel = Number(gpa - slot.gpa);
        p[used] = host + rel;
        p[used + 1] = n;
        p[used + 2] = s;
        p[used + 3] = rel;
        used += STRIDE;
        gpa += BigInt(n);
        c -= n;
      }
      at += BigInt(chunk);
      left -= chunk;
    }
    return used;
  }

  private fault(iova: bigint, access: number, reason: DmaFaultReason): DmaFault {
    return new DmaFault(this.liobn, iova, access === WRITE ? 'write' : 'read', reason);
  }
}

/**
 * The guest physical address in TCE `idx` of the table whose page-array
 * pointer is u32 word `pagesWord` (`perPage` entries per table page,
 * `invPer` its inverse; `loMask`, `hiMask` keep a page's address bits), after
 * the TCE's `access` bit is checked; NO_PERMISSION without it; GENERAL when
 * the address is at or above 2^53 or the entry changed while being read. A
 * free function of numbers: inlined into a loop whose numbers are locals,
 * it loads nothing but linear memory.
 */
function tceAddress(u32: Uint32Array, pagesWord: number, perPage: number, invPer: number, loMask: number, hiMask: number, idx: number, access: number): number {
  const pages = u32[pagesWord]! >>> 2;
  const tp = Math.floor(idx * invPer);
  const tablePage = pages === 0 ? 0 : u32[pages + tp]!;
  // An entry never written (its table page absent) is 0: no permission, as guestEntry reads it.
  let lo = 0;
  let hi = 0;
  if (tablePage !== 0) {
    const w = (tablePage >>> 2) + 2 * (idx - tp * perPage);
    // High, low, high again: a PUT on another thread between the two halves is seen, and the general path reads the entry whole.
    hi = u32[w + 1]!;
    lo = u32[w]!;
    if (u32[w + 1] !== hi) return GENERAL;
  }
  if ((lo & access) === 0) return NO_PERMISSION;
  if (hi >= HI_SAFE) return GENERAL;
  // Below 2^53 the address is exact as a number; the masks drop the permission and reserved bits, as translate()'s mask does.
  return (hi & hiMask) * TWO32 + ((lo & loMask) >>> 0);
}

/**
 * A Uint8Array of `length` bytes over its own ArrayBuffer, not zero-filled:
 * the caller overwrites every byte. Small arrays live on V8's heap, where
 * new Uint8Array is cheapest; larger ones come from Buffer.allocUnsafeSlow
 * (never pooled) and are returned as a plain Uint8Array over that buffer.
 */
function uninitialized(length: number): Uint8Array {
  if (length <= ON_HEAP) return new Uint8Array(length);
  const b = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(b.buffer, b.byteOffset, length);
}

/** @internal use vm.dma(liobn). */
export function createDma(vm: Vm, liobn: bigint | number, dirty: DirtyLog): DmaAccessor {
  return new Dma(vm, v.liobn('liobn', liobn), dirty);
}
