// The guest's side: what a Linux pseries guest does to let a device DMA
// (arch/powerpc/kernel/iommu.c for the IOVA allocator, arch/powerpc/platforms/
// pseries/iommu.c for the hypercalls), plus a toy block driver on top.
//
// The guest only has its RAM and the hypercall instruction (`sc 1`), which the
// VMM passes in as `hypercall(nr, ...args)`. Everything the driver remembers
// (the IOVA bitmap, the ring's IOVA, how many requests completed) lives in
// guest RAM, as it would in a real guest, so a host snapshot carries it.

// PAPR hypercall numbers, as the guest kernel knows them (asm/hvcall.h).
export const H_PUT_TCE = 0x20;
export const H_STUFF_TCE = 0x138;
export const H_PUT_TCE_INDIRECT = 0x13c;
export const H_SEND_CRQ = 0x108; // not a TCE call: the library exits to the VMM for it
const H_SUCCESS = 0;

// TCE bits: the device may read memory (1), write memory (2).
const TCE_READ = 1n;
const TCE_WRITE = 2n;
const TCE_PAGE = 0x1000; // the VIO window uses 4 KiB IOMMU pages (IOMMU_PAGE_SHIFT_4K)

// Guest physical layout of the driver's own data.
const CTRL = 0x10000; //     u32 completed requests, u32 allocator hint, u64 ring IOVA
const BITMAP = 0x11000; //   it_map: one bit per window page
const TCE_LIST = 0x20000; // the per-CPU page Linux fills with TCEs for H_PUT_TCE_INDIRECT (4 KiB aligned)
export const RING = 0x30000; // the request descriptor page, mapped for the driver's lifetime

/** Request descriptor (big-endian, as PAPR devices read them): the device fetches it by DMA. */
export const DESC = { op: 0, status: 4, sector: 8, bytes: 16, dataIova: 24, size: 32 };
export const OP = { READ: 1, WRITE: 2 };
export const STATUS = { PENDING: 0xffffffff, OK: 0, DMA_ERROR: 0xee };

const hex = (x) => '0x' + x.toString(16);

export class GuestDriver {
  /**
   * @param ram guest RAM from guest physical 0 (the guest CPU's loads and stores)
   * @param hypercall the `sc 1` instruction: (nr, ...bigint args) → H_* status
   * @param liobn the device's LIOBN (from `ibm,my-dma-window` in the device tree)
   * @param windowPages entries in the device's window
   */
  constructor({ ram, hypercall, liobn, unit, windowPages, log }) {
    this.ram = ram;
    this.dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
    this.hypercall = hypercall;
    this.liobn = liobn;
    this.unit = unit;
    this.windowPages = windowPages;
    this.log = log;
  }

  get completed() { return this.dv.getUint32(CTRL, false); }
  get ringIova() { return this.dv.getBigUint64(CTRL + 8, false); }

  /** Device probe: map the descriptor ring once, for the driver's lifetime (as ibmvscsi maps its CRQ queue). */
  probe() {
    const iova = this.dmaMap([RING], 'bidirectional');
    this.dv.setBigUint64(CTRL + 8, iova, false);
  }

  // --- the DMA API (dma_map / dma_unmap of the pseries IOMMU) ---------------

  /**
   * Maps guest pages (4 KiB each) at consecutive IOVAs. Permissions follow
   * tce_build_pSeriesLP: READ always, WRITE unless the device only reads
   * (DMA_TO_DEVICE). One page: H_PUT_TCE; more: one H_PUT_TCE_INDIRECT with
   * a big-endian TCE list in guest RAM (tce_buildmulti_pSeriesLP; Linux
   * sends one physically contiguous run per call, this toy a scatter list).
   */
  dmaMap(gpas, direction) {
    const n = gpas.length;
    const first = this.allocIova(n);
    const ioba = BigInt(first) * BigInt(TCE_PAGE);
    const perm = direction === 'to-device' ? TCE_READ : TCE_READ | TCE_WRITE;
    let rc;
    if (n === 1) {
      rc = this.hypercall(H_PUT_TCE, this.liobn, ioba, BigInt(gpas[0]) | perm);
    } else {
      // PAPR: the list is big-endian u64s in a 4 KiB-aligned page, at most 512 entries.
      gpas.forEach((gpa, i) => this.dv.setBigUint64(TCE_LIST + i * 8, BigInt(gpa) | perm, false));
      this.log(`guest: TCE list at gpa ${hex(TCE_LIST)} (big-endian): ${gpas.map((g) => hex(BigInt(g) | perm)).join(' ')}`);
      rc = this.hypercall(H_PUT_TCE_INDIRECT, this.liobn, ioba, BigInt(TCE_LIST), BigInt(n));
    }
    if (rc !== H_SUCCESS) throw new Error(`guest: mapping ${n} page(s) at ${hex(ioba)} failed: ${rc}`);
    return ioba;
  }

  /** Unmaps `n` pages from `ioba`: one H_STUFF_TCE writing 0 (tce_freemulti_pSeriesLP), then frees the IOVAs. */
  dmaUnmap(ioba, n) {
    const rc = this.hypercall(H_STUFF_TCE, this.liobn, ioba, 0n, BigInt(n));
    if (rc !== H_SUCCESS) throw new Error(`guest: unmapping ${n} page(s) at ${hex(ioba)} failed: ${rc}`);
    this.freeIova(Number(ioba / BigInt(TCE_PAGE)), n);
  }

  /** iommu_range_alloc: first fit from the hint, in the it_map bitmap (kept in guest RAM). */
  allocIova(n) {
    const hint = this.dv.getUint32(CTRL + 4, false);
    for (let pass = 0; pass < 2; pass++) {
      for (let s = pass === 0 ? hint : 0; s + n <= this.windowPages; s++) {
        let free = true;
        for (let i = 0; i < n && free; i++) free = !this.bit(s + i);
        if (!free) continue;
        for (let i = 0; i < n; i++) this.setBit(s + i, true);
        this.dv.setUint32(CTRL + 4, s + n, false);
        return s;
      }
    }
    throw new Error('guest: DMA window full');
  }

  freeIova(start, n) {
    for (let i = 0; i < n; i++) this.setBit(start + i, false);
  }

  bit(i) { return (this.ram[BITMAP + (i >> 3)] >> (i & 7)) & 1; }
  setBit(i, on) { this.ram[BITMAP + (i >> 3)] = on ? this.ram[BITMAP + (i >> 3)] | (1 << (i & 7)) : this.ram[BITMAP + (i >> 3)] & ~(1 << (i & 7)); }

  // --- the toy block driver ---------------------------------------------------

  /**
   * One request: map the data pages, fill the descriptor, ring the device
   * (H_SEND_CRQ with a CRQ element naming the descriptor's IOVA, as
   * ibmvscsi sends an SRP IU's address), unmap. `pages` are the guest pages
   * of the buffer; `data` (for WRITE) is what the guest CPU stores in them.
   * With `staleIova` the driver is buggy: it hands the device an IOVA it
   * already unmapped instead of mapping the pages.
   */
  submit({ op, sector, pages, data, slot = 0, staleIova }) {
    const bytes = pages.length * TCE_PAGE;
    if (op === OP.WRITE) pages.forEach((gpa, i) => this.ram.set(data.subarray(i * TCE_PAGE, (i + 1) * TCE_PAGE), gpa));
    else pages.forEach((gpa) => this.ram.fill(0x5a, gpa, gpa + TCE_PAGE)); // poison, so a read that did nothing shows

    const dataIova = staleIova ?? this.dmaMap(pages, op === OP.WRITE ? 'to-device' : 'from-device');

    const d = RING + slot * DESC.size;
    this.dv.setUint32(d + DESC.op, op, false);
    this.dv.setUint32(d + DESC.status, STATUS.PENDING, false);
    this.dv.setBigUint64(d + DESC.sector, BigInt(sector), false);
    this.dv.setUint32(d + DESC.bytes, bytes, false);
    this.dv.setBigUint64(d + DESC.dataIova, dataIova, false);

    // CRQ element (16 bytes in r5, r6): valid 0x80, format 0x01, then the descriptor's IOVA.
    const descIova = this.ringIova + BigInt(slot * DESC.size);
    const rc = this.hypercall(H_SEND_CRQ, BigInt(this.unit), 0x8001_0000_0000_0000n, descIova);

    const status = this.dv.getUint32(d + DESC.status, false);
    const out = op === OP.READ ? Uint8Array.from(pages.flatMap((gpa) => [...this.ram.subarray(gpa, gpa + TCE_PAGE)])) : undefined;
    if (staleIova === undefined) this.dmaUnmap(dataIova, pages.length);
    if (rc === H_SUCCESS && status === STATUS.OK) this.dv.setUint32(CTRL, this.completed + 1, false);
    return { rc, status, dataIova, data: out };
  }
}
