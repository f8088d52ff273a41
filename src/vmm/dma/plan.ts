// A DMA's plan: the linear-memory pieces behind a transfer through the
// cached window (window.ts), or the DmaFault of its first unreachable
// address. Every DMA is translated whole before a byte moves, so a fault
// touches nothing.
//
// Pages that follow each other in host memory are merged into one piece
// while planning, so a transfer costs one TypedArray.set per contiguous host
// run, not one per IOMMU page; the memslots are looked up once per run of
// pages contiguous in guest memory, not per page, and the scan of a run
// (runPages()) reads the table's page array once and each table page once,
// comparing addresses as 32-bit words.
import { DmaFault, type DmaFaultReason } from './fault.js';
import { DmaWindow, Mode, Access, Base, Bound } from './window.js';

/** A piece in `DmaPlan.pieces`: its numbers (a const enum, as window.ts's). */
export const enum Piece {
  /** Numbers per piece: linear-memory offset, length, memslot index (vm.memslots), offset in the memslot. */
  Stride = 4,
}
const U64_END = 1n << 64n;

/** @internal the planning half of a DMA accessor: a transfer turned into pieces of linear memory, faults first. */
export class DmaPlan extends DmaWindow {
  /** The plan of the running call (Piece.Stride numbers per piece), reused: no allocation once grown. */
  protected readonly pieces: number[] = [];

  /**
   * Fills `pieces` with the linear-memory pieces behind `length` bytes at
   * `iova` (adjacent ones merged), or throws the DmaFault of the first
   * unreachable address. Returns the count of numbers used.
   */
  protected plan(iova: number | bigint, length: number, access: number): number {
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
        if (typeof iova === 'number' && iova + length <= Bound.Safe) return this.planIdentity(iova, length, access);
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
      if (base === Base.NoPermission) throw this.fault(this.bus + BigInt(at), access, 'no-permission');
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
        return Piece.Stride;
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
        if (base === Base.General) return -1;
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
      if (used > 0 && p[used - 2] === s && p[used - Piece.Stride]! + p[used - 3]! === off) p[used - 3]! += n;
      else {
        p[used] = off;
        p[used + 1] = n;
        p[used + 2] = s;
        p[used + 3] = rel;
        used += Piece.Stride;
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
    const kind = access === Access.Write ? 'write' : 'read';
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
        used += Piece.Stride;
        gpa += BigInt(n);
        c -= n;
      }
      at += BigInt(chunk);
      left -= chunk;
    }
    return used;
  }

  private fault(iova: bigint, access: number, reason: DmaFaultReason): DmaFault {
    return new DmaFault(this.liobn, iova, access === Access.Write ? 'write' : 'read', reason);
  }
}
