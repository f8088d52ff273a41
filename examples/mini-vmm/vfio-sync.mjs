// Keeping a VFIO sPAPR v2 container in step with the guest's TCE table, the
// way QEMU's VFIO code does for a passed-through device behind the window
// (hw/vfio/spapr.c and the VFIO memory listener; docs/semantics.md §8.5):
// the host IOMMU must map exactly what the guest mapped, at the same IOVAs,
// to the host addresses behind the guest pages.
import { TceError } from './spapr-tce.mjs';

const hex = (x) => '0x' + x.toString(16);
const PERM = ['none', 'R', 'W', 'RW'];

export class VfioSync {
  /**
   * Container setup and window creation, once the guest window exists.
   * @param process the VMM process (it owns the container and guest RAM)
   */
  static setup({ vm, process, group, liobn, log }) {
    const fd = process.openContainer();
    fd.attachGroup(group); //                      VFIO_GROUP_SET_CONTAINER
    fd.setIommu('v2'); //                          VFIO_SET_IOMMU(VFIO_SPAPR_TCE_v2_IOMMU)
    // vfio_prereg_listener_region_add: REGISTER_MEMORY every RAM section (pins it, charges locked memory).
    for (const s of vm.memslots) {
      fd.registerMemory(s.ua, s.size);
      log(`vfio: REGISTER_MEMORY(va ${hex(s.ua)}, ${s.size >> 20n} MiB)`);
    }
    const info = fd.getInfo();
    // vfio_spapr_container_setup: drop the kernel's default window so host windows mirror the guest's.
    fd.removeWindow(info.dma32WindowStart);
    log(`vfio: default window at ${hex(info.dma32WindowStart)} removed`);
    const sync = new VfioSync({ vm, fd, liobn, log });
    sync.createWindow(info);
    sync.attach({ replay: true });
    return sync;
  }

  constructor({ vm, fd, liobn, log }) {
    this.vm = vm;
    this.fd = fd;
    this.liobn = liobn;
    this.log = log;
    this.unsubscribe = undefined;
    this.counters = { map: 0, unmap: 0, errors: 0 };
  }

  get table() { return this.vm.tables.get(this.liobn); }
  get busOffset() { return this.table.offset << BigInt(this.table.pageShift); }

  /**
   * vfio_spapr_create_window: same size as the guest window; host page = the
   * largest supported one ≤ min(guest IOMMU page, RAM backing page); levels
   * by QEMU's heuristic, retried upward; the window must land at the guest
   * window's bus offset, else remove it and fail.
   */
  createWindow(info) {
    const t = this.table;
    const windowSize = t.size << BigInt(t.pageShift);
    const backing = this.vm.host.pageShift; // guest RAM is normal (not huge) pages here
    const limit = Math.min(t.pageShift, backing);
    let pageShift = 0;
    for (let s = limit; s >= 12; s--) if (info.ddw.pgSizes & (1n << BigInt(s))) { pageShift = s; break; }
    if (!pageShift) throw new Error(`vfio: no host IOMMU page size ≤ 2^${limit}`);
    const entries = windowSize >> BigInt(pageShift);
    let pages = (entries * 8n) >> BigInt(backing);
    if (pages < 1n) pages = 1n;
    let p2 = 1n;
    while (p2 < pages) p2 <<= 1n; // pow2ceil
    let levels = Math.floor((p2.toString(2).length - 1) / 6) + 1; // ctz64(pages) / 6 + 1
    let startAddr;
    for (;; levels++) {
      try {
        ({ startAddr } = this.fd.createWindow({ pageShift, windowSize, levels }));
        break;
      } catch (e) {
        if (!(e instanceof TceError) || levels >= info.ddw.levels) throw e;
      }
    }
    if (startAddr !== this.busOffset) {
      this.fd.removeWindow(startAddr);
      throw new Error(`vfio: host window at ${hex(startAddr)}, the guest's is at ${hex(this.busOffset)}`);
    }
    this.log(`vfio: TCE_CREATE ${windowSize >> 20n} MiB, 2^${pageShift} pages, ${levels} level(s) -> start ${hex(startAddr)} = guest bus offset`);
  }

  /**
   * memory_region_register_iommu_notifier + memory_region_iommu_replay: from
   * now on every guest TCE write reaches onEvent, synchronously, before the
   * hypercall returns; replay copies what the guest mapped before.
   */
  attach({ replay }) {
    this.unsubscribe = this.vm.subscribe(this.liobn, (ev) => this.onEvent(ev));
    if (replay) {
      let n = 0;
      this.vm.replay(this.liobn, (ev) => { n++; this.onEvent(ev); });
      this.log(`vfio: notifier registered; replay mapped ${n} existing entr${n === 1 ? 'y' : 'ies'}`);
    } else {
      this.log('vfio: notifier registered (no replay: the host container came with the snapshot)');
    }
  }

  /** vfio_iommu_map_notify: one guest TCE → one MAP_DMA or UNMAP_DMA of one IOMMU page. */
  onEvent(ev) {
    if (ev.kind === 'map') {
      // vfio_get_xlat_addr: the guest page must be RAM; its host address is memslot ua + offset.
      const slot = this.vm.memslots.find((s) => ev.gpa >= s.gpa && ev.gpa + ev.size <= s.gpa + s.size);
      if (!slot) {
        // QEMU logs and maps nothing; the guest already got H_SUCCESS.
        this.counters.errors++;
        this.log(`event map   IOVA ${hex(ev.iova)} -> gpa ${hex(ev.gpa)}: not RAM, nothing mapped`);
        return;
      }
      const vaddr = slot.ua + (ev.gpa - slot.gpa);
      // READ always; WRITE only with the TCE's write bit (a write-only TCE is RW on the host).
      const write = (ev.perm & 2) !== 0;
      this.try(() => this.fd.mapDma({ iova: ev.iova, vaddr, size: ev.size, read: true, write }),
        `event map   IOVA ${hex(ev.iova)} -> gpa ${hex(ev.gpa)} ${PERM[ev.perm]}`, `MAP_DMA(iova ${hex(ev.iova)}, ${ev.size >> 10n} KiB, va ${hex(vaddr)}, ${write ? 'RW' : 'R'})`);
      this.counters.map++;
    } else {
      this.try(() => this.fd.unmapDma({ iova: ev.iova, size: ev.size }),
        `event unmap IOVA ${hex(ev.iova)}`, `UNMAP_DMA(iova ${hex(ev.iova)}, ${ev.size >> 10n} KiB)`);
      this.counters.unmap++;
    }
  }

  /** QEMU only reports a failed MAP/UNMAP (error_report); the guest is not told. */
  try(fn, what, call) {
    try {
      fn();
      this.log(`${what}  => ${call} ok`);
    } catch (e) {
      if (!(e instanceof TceError)) throw e;
      this.counters.errors++;
      this.log(`${what}  => ${call} ${e.code}`);
    }
  }

  /**
   * Guest table vs host window, entry by entry: every guest mapping must be
   * in the host window with the host address behind its guest page and the
   * permission MAP_DMA gave it, and nothing else.
   */
  compare() {
    const guest = [];
    this.vm.replay(this.liobn, (ev) => {
      const slot = this.vm.memslots.find((s) => ev.gpa >= s.gpa && ev.gpa < s.gpa + s.size);
      if (slot) guest.push(`${hex(ev.iova)} va ${hex(slot.ua + ev.gpa - slot.gpa)} ${ev.perm & 2 ? 'RW' : 'R'}`);
    });
    const w = this.fd.container.windows.find((x) => x && x.startAddr === this.busOffset);
    const host = [];
    for (const [entry, tce, ua] of w.table.entries()) host.push(`${hex(entry << BigInt(w.pageShift))} va ${hex(ua)} ${PERM[Number(tce & 3n)]}`);
    return { guest, host, agree: guest.length === host.length && guest.every((g, i) => g === host[i]) };
  }

  detach() {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
