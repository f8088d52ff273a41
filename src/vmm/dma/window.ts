// What a DMA accessor (../dma.ts) caches of its LIOBN's window and of the
// VM's memslots, and the TCE loads through that cache.
//
// QEMU keeps the translation cheap with an IOTLB it flushes on every IOMMU
// notification; here the TCE itself is read from linear memory on every
// access (two u32 loads: cheaper than any invalidation protocol, and never
// stale), and only what changes rarely is cached per accessor: the window
// (bus offset, page size, span, the table's page array) and the memslots as
// numbers with their linear-memory offsets. The cache is keyed by the VM's
// `generation`, which every window change (the table map's set), memslot
// add/remove and bypass switch bumps, so one integer compare per call
// decides whether it is still right. The per-page path is all numbers, with
// no float modulo (page sizes are powers of two: masks and exact products).
// What does not fit in 2^53 (a window spanning more, a TCE or memslot above
// 2^53) goes the general way (plan.ts), translate() and BigInt, with the
// same result.
import type { Vm } from '../vm.js';
import { SttView } from '../../generated/views.js';
import { memslotHostOffset } from '../../kvm/memslot.js';

// The numbers the accessor's three files share are const enums: tsc writes
// each value where it is used, where an exported const would be a load from
// its module's cell at every use (callgrind: about 50 instructions more per
// 512-byte readInto).

/** The access a DMA asks of a TCE, as its permission bits (TCE_PCI_READ, TCE_PCI_WRITE). */
export const enum Access {
  Read = 1,
  Write = 2,
}

/** pageBase()'s answers other than an address. */
export const enum Base {
  /** The address is at or above 2^53, or the entry changed while read: take the general path. */
  General = -1,
  /** The entry lacks the access bit. */
  NoPermission = -2,
}

/** The bounds of the number path. */
export const enum Bound {
  /** A 32-bit word's weight in the high half of a 64-bit address. */
  Two32 = 2 ** 32,
  /** From here on an address is not exact as a number. */
  Safe = 2 ** 53,
  /** A TCE's high word at or above this puts its address at or above 2^53. */
  HiSafe = 1 << 21,
}

const SAFE_BIG = 1n << 53n;

/** How the cached window translates. */
export const enum Mode {
  /** No window (unknown LIOBN, or a disabled table): every access faults 'no-window'. */
  None,
  /** A TCE table whose span fits in 2^53: the number path. */
  Table,
  /** A VIO table in TCE bypass: the identity onto guest physical addresses. */
  Bypass,
  /** Everything else: translate() per page, in BigInt. */
  General,
}

/** @internal the cache of a DMA accessor's window and of the VM's memslots (see the file comment); DmaPlan and Dma build on it. */
export class DmaWindow {
  readonly liobn: bigint;
  protected readonly vm: Vm;
  protected readonly u8: Uint8Array;
  protected readonly u32: Uint32Array;
  /** The buffer under `u8` and u8's offset in it: a piece's source view is made on it directly (cheaper than subarray). */
  protected readonly buf: ArrayBufferLike;
  protected readonly base: number;
  /** vm.generation the cache below was built at; -1: never built. */
  protected gen = -1;
  protected mode = Mode.None;
  /** Table: bus address of the window's first byte, its span in bytes (BigInt and number), the IOMMU page size. */
  protected bus = 0n;
  protected spanBig = 0n;
  protected span = 0;
  /** The bus address as a number when below 2^53, else -1. */
  protected busSafe = -1;
  protected pageBytes = 0;
  /** 1 / pageBytes, exact (a power of two); masks of a TCE's low and high words that keep the page's address. */
  protected invPage = 0;
  protected loMask = 0;
  protected hiMask = 0;
  /** runPages()'s step from one page's address to the next in 32-bit words: added to the low word; added to the high word when the low one wraps to 0. */
  protected loStep = 0;
  protected carry = 0;
  /** Table: the u32 index of the descriptor's page-array pointer (read live per call), entries per table page. */
  protected pagesWord = 0;
  protected perPage = 0;
  /** 1 / perPage, exact (a power of two). */
  protected invPer = 0;
  /** Memslots as numbers, indexed as vm.memslots: start, end (clamped to 2^53), linear-memory offset or -1 (no bytes); Infinity starts above 2^53. */
  protected slotStart: number[] = [];
  protected slotEnd: number[] = [];
  protected slotHost: number[] = [];
  /** The memslot the last lookup hit. */
  protected lastSlot = 0;

  constructor(vm: Vm, liobn: bigint) {
    this.vm = vm;
    this.liobn = liobn;
    this.u8 = vm.host.mem.u8;
    this.u32 = vm.host.mem.u32;
    this.buf = this.u8.buffer;
    this.base = this.u8.byteOffset;
  }

  /** Rebuilds the cache for vm.generation (see the file comment). */
  protected refresh(): void {
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
    this.slotEnd = slots.map((s) => (s.gpa + s.size < SAFE_BIG ? Number(s.gpa + s.size) : Bound.Safe));
    this.slotHost = slots.map((s) => memslotHostOffset(vm, s));
    this.lastSlot = 0;
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
  protected runPages(idx: number, count: number, gpa: number, access: number): number {
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
    let eHi = Math.floor(gpa / Bound.Two32);
    let eLo = (gpa - eHi * Bound.Two32) | 0;
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
      if (u32[w + 1] !== hi || (lo & access) === 0 || hi >= Bound.HiSafe) break;
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
  protected pageBase(idx: number, access: number): number {
    return tceAddress(this.u32, this.pagesWord, this.perPage, this.invPer, this.loMask, this.hiMask, idx, access);
  }
}

/**
 * The guest physical address in TCE `idx` of the table whose page-array
 * pointer is u32 word `pagesWord` (`perPage` entries per table page,
 * `invPer` its inverse; `loMask`, `hiMask` keep a page's address bits), after
 * the TCE's `access` bit is checked; Base.NoPermission without it; Base.General when
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
    if (u32[w + 1] !== hi) return Base.General;
  }
  if ((lo & access) === 0) return Base.NoPermission;
  if (hi >= Bound.HiSafe) return Base.General;
  // Below 2^53 the address is exact as a number; the masks drop the permission and reserved bits, as translate()'s mask does.
  return (hi & hiMask) * Bound.Two32 + ((lo & loMask) >>> 0);
}
