// An address space (the kernel's mm_struct, as far as the IOMMU code cares):
// its mappings (what mmap returned), its pre-registered regions (in linear
// memory, see prereg.ts) and its locked-memory count (locked_vm).
import type { HostContext } from '../core/context.js';
import { fail } from '../core/errors.js';
import { MmView } from '../generated/views.js';

/** One mmap'ed range: its pages' host addresses and, when backed, its bytes. */
export interface Mapping {
  readonly ua: bigint;
  readonly size: bigint;
  /** Page shift of the backing pages (the huge page shift, or the system page shift). */
  readonly pageShift: number;
  /** Host address of each backing page. */
  readonly hpas: BigUint64Array;
  /** The bytes, a view of the host's linear memory (so real mode can read guest memory), when backed. */
  readonly bytes: Uint8Array | undefined;
  /** Offset of `bytes` in linear memory; 0 when not backed. */
  readonly hostOff: number;
}

/** Userspace addresses start here, like a 64-bit Linux mmap base. */
const MMAP_BASE = 0x7fff_0000_0000n;

/**
 * The names of the locked_vm charges (Mm.account's keys, kept in mm.charges
 * and in snapshots): one per pre-registered region, per v2 window's table,
 * per v1 ENABLE, per guest TCE table of a kvm-profile VM.
 */
export const chargeKey = {
  region: (ua: bigint): string => `region@${ua.toString(16)}`,
  window: (container: number, slot: number): string => `container${container}:table${slot}`,
  v1: (container: number): string => `container${container}:v1`,
  stt: (vmDesc: number, liobn: bigint): string => `vm${vmDesc}:stt${liobn.toString(16)}`,
};

/** An address space. */
export class Mm {
  readonly host: HostContext;
  readonly id: number;
  /** Offset of this mm's descriptor in linear memory. */
  readonly desc: number;
  readonly mappings: Mapping[] = [];
  /** @internal where the next mapping goes (a snapshot saves it). */
  nextUa = MMAP_BASE;
  /** Named locked-memory charges (pages), so the invariants can check locked_vm against its causes. */
  readonly charges = new Map<string, bigint>();
  private readonly d: MmView;

  /** The mm of descriptor `desc` (allocated by createMm, or restored). */
  constructor(host: HostContext, id: number, desc: number) {
    this.host = host;
    this.id = id;
    this.desc = desc;
    this.d = new MmView(host.mem, desc);
    this.d.id = id;
  }

  /** Bytes a descriptor takes. */
  static readonly DESC_BYTES = MmView.BYTES;

  /** locked_vm, in system pages. */
  get lockedPages(): bigint {
    return this.d.lockedPages;
  }

  /** Pre-registered regions in this mm's list. */
  get regionCount(): number {
    return this.d.regionCount;
  }

  /**
   * Charges `pages` to locked_vm under `limitPages` (null: unlimited), as
   * try_increment_locked_vm does: -ENOMEM and nothing changed when it would exceed.
   */
  account(key: string, pages: bigint, limitPages: bigint | null): void {
    if (pages === 0n) return;
    const locked = this.lockedPages + pages;
    if (limitPages !== null && locked > limitPages) {
      fail('ENOMEM', `locked memory would reach ${locked} pages, over the limit of ${limitPages}`);
    }
    this.d.lockedPages = locked;
    this.charges.set(key, (this.charges.get(key) ?? 0n) + pages);
  }

  /** Returns a charge made by account(). */
  unaccount(key: string, pages: bigint): void {
    if (pages === 0n) return;
    const cur = this.charges.get(key) ?? 0n;
    if (cur - pages <= 0n) this.charges.delete(key);
    else this.charges.set(key, cur - pages);
    const locked = this.lockedPages;
    // The kernel only warns on underflow; keep the count at zero as the older helper did.
    this.d.lockedPages = locked >= pages ? locked - pages : 0n;
  }

  /** Maps `size` bytes; pages of 2^pageShift, ua aligned to the page. */
  map(size: bigint, pageShift: number, backed: boolean, copyFrom?: Mapping): Mapping {
    const page = 1n << BigInt(pageShift);
    const ua = (this.nextUa + page - 1n) & ~(page - 1n);
    // Leave one unmapped page after each mapping, so ranges across two mappings have a hole.
    this.nextUa = ua + size + page;
    const pages = Number(size >> BigInt(pageShift));
    const hpas = this.host.hostmem.allocFrames(pages, pageShift);
    let bytes: Uint8Array | undefined;
    let hostOff = 0;
    if (backed) {
      // Guest RAM lives in the linear memory, as v86 keeps it: real mode reads TCE lists from it.
      if (size > 1n << 31n) fail('ENOMEM', `mmap: a backed mapping is at most 2 GiB (got ${size}); pass backed: false`);
      hostOff = this.host.alloc(Number(size), `backed mapping of ${size} bytes (pass backed: false, or raise maxMemory)`);
      bytes = this.host.mem.bytes(hostOff, Number(size));
      if (copyFrom?.bytes) bytes.set(copyFrom.bytes);
    }
    const m: Mapping = { ua: copyFrom ? copyFrom.ua : ua, size, pageShift, hpas, bytes, hostOff };
    if (copyFrom && copyFrom.ua + copyFrom.size + page > this.nextUa) this.nextUa = copyFrom.ua + copyFrom.size + page;
    this.mappings.push(m);
    return m;
  }

  /** The mapping that contains `ua`, if any. */
  findMapping(ua: bigint): Mapping | undefined {
    for (const m of this.mappings) if (ua >= m.ua && ua - m.ua < m.size) return m;
    return undefined;
  }

  /** Host address backing `ua` and the page shift of its page, or undefined for an unmapped address. */
  translate(ua: bigint): { hpa: bigint; pageShift: number } | undefined {
    const m = this.findMapping(ua);
    if (!m) return undefined;
    const off = ua - m.ua;
    const sh = BigInt(m.pageShift);
    return { hpa: m.hpas[Number(off >> sh)]! + (off & ((1n << sh) - 1n)), pageShift: m.pageShift };
  }
}

/** A fresh address space: its descriptor allocated, a new id. */
export function createMm(host: HostContext): Mm {
  const desc = host.alloc(Mm.DESC_BYTES, 'mm descriptor');
  return new Mm(host, host.nextId(), desc);
}
