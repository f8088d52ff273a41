// The simulated host's physical memory: page frames handed out
// deterministically, and pin counts per system page. Frames of one mapping
// are deliberately not contiguous (each mapping's pages are numbered in
// reverse), so code that assumed hpa = base + offset would be caught.

/** Simulated host physical memory: frame allocation and pin counts. */
export class HostMemory {
  readonly sysPageShift: number;
  private next: bigint = 1n << 36n;
  private readonly pins = new Map<bigint, number>();

  constructor(sysPageShift: number) {
    this.sysPageShift = sysPageShift;
  }

  /** Host addresses for `pages` fresh pages of 2^pageShift bytes each, every one aligned to its size. */
  allocFrames(pages: number, pageShift: number): BigUint64Array {
    const size = 1n << BigInt(pageShift);
    this.next = (this.next + size - 1n) & ~(size - 1n);
    const out = new BigUint64Array(pages);
    for (let i = 0; i < pages; i++) out[i] = this.next + BigInt(pages - 1 - i) * size;
    this.next += BigInt(pages) * size;
    return out;
  }

  /** Takes one pin on the system page holding `hpa`. */
  pin(hpa: bigint): void {
    const page = hpa >> BigInt(this.sysPageShift);
    this.pins.set(page, (this.pins.get(page) ?? 0) + 1);
  }

  /** Drops one pin; false if the page was not pinned (a bug the invariants report). */
  unpin(hpa: bigint): boolean {
    const page = hpa >> BigInt(this.sysPageShift);
    const n = this.pins.get(page);
    if (!n) return false;
    if (n === 1) this.pins.delete(page);
    else this.pins.set(page, n - 1);
    return true;
  }

  /** Pins held on the system page of `hpa`. */
  pinCount(hpa: bigint): number {
    return this.pins.get(hpa >> BigInt(this.sysPageShift)) ?? 0;
  }

  /** Total pins held, over all pages. */
  totalPins(): number {
    let n = 0;
    for (const v of this.pins.values()) n += v;
    return n;
  }

  /** The next frame address allocFrames() starts from. */
  get nextFrame(): bigint {
    return this.next;
  }

  /** Every pinned system page (by page number) with its pin count. */
  pinnedPages(): [bigint, number][] {
    return [...this.pins];
  }

  /** Replaces the frame cursor and every pin count (what a restored host had). */
  reset(nextFrame: bigint, pinned: Iterable<readonly [bigint, number]>): void {
    this.next = nextFrame;
    this.pins.clear();
    for (const [page, n] of pinned) this.pins.set(page, n);
  }
}
