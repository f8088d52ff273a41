// QEMU's machine reset, as far as the IOMMU goes (qemu_devices_reset with
// the vCPUs paused): each TCE table device is reset (spapr_tce_reset: its
// entries zeroed, the geometry kept), each PHB runs its DMA reset
// (spapr_phb_dma_reset: every window disabled, the default one enabled
// again, empty), and each VIO device leaves bypass (spapr_vio_busdev_reset →
// spapr_vio_set_bypass(dev, false)).
//
// Events: an unmap for every mapping the reset drops, then the PHBs'
// window-remove/window-add, all delivered when the reset has finished.
// QEMU's spapr_tce_reset zeroes its table without notifying (a VFIO
// listener only hears of PHB windows, through their region_del, and unmaps
// the whole window then); here every dropped mapping is an unmap event, so
// a mirror of any table stays right.
//
// In the kvm profile a PHB's DMA reset releases its windows' KVM tables
// and creates the default one anew (rtas.ts), as QEMU's closes and reopens
// the table fds. Any other table's entries live in KVM's table, which QEMU's
// reset zeroes through its mapping of it; the hardware tables linked to it
// are cleared by VFIO's unmap of the window in QEMU. Here both are cleared
// in one step, the hardware side as the unmap path of the hypercalls does
// (tce_iommu_clear through the userspace view: each region's `mapped` drops
// with its entries), so the accounting stays exact.
import type { Vm } from './vm.js';
import type { Phb } from './rtas.js';
import type { GuestTable } from '../kvm/guest-table.js';
import { droppedMappings } from './events.js';
import { errnoError } from '../core/errors.js';
import { SttView, TblView } from '../generated/views.js';

/** vm.reset(): see the file comment. */
export function resetVm(vm: Vm): void {
  vm.events.batch(() => {
    // Every unmap first (tables in creation order), then the PHBs' window events.
    const phbs: Phb[] = [];
    for (const t of [...vm.tables.values()]) {
      const phb = vm.phbs.find((p) => p.liobns.includes(t.liobn));
      if (!phb) clearTable(vm, t);
      else if (!phbs.includes(phb)) {
        phbs.push(phb);
        phb.dropMappings();
      }
    }
    // A kvm-profile PHB whose windows are all removed has no table left to be found by.
    for (const phb of vm.phbs) {
      if (phbs.includes(phb)) continue;
      phbs.push(phb);
      phb.dropMappings();
    }
    for (const phb of phbs) phb.resetWindows();
    vm.bypass.clear();
  });
}

/** spapr_tce_reset: every entry of an enabled table zeroed, and what it mapped unmapped (events; linked hardware tables). */
function clearTable(vm: Vm, t: GuestTable): void {
  if (t.size === 0n) return;
  const dropped = vm.events.active ? droppedMappings(vm, t) : [];
  const mem = vm.host.mem;
  const stt = new SttView(mem, t.desc);
  // The hardware side first, so no hardware entry outlives the guest's.
  const links = stt.stitCount;
  for (let i = 0; i < links; i++) {
    const tbl = stt.stitsAt(i);
    const hwShift = new TblView(mem, tbl).pageShift;
    const sub = 1n << BigInt(t.pageShift - hwShift);
    const rc = vm.host.engine.tableClearV2(tbl, vm.mm.desc, t.offset * sub, t.size * sub, 0, 0);
    // The link's table covers the guest window (kvm_spapr_tce_attach_iommu_group checked it), so this cannot fail.
    if (rc < 0) throw errnoError(rc, 'reset: clearing a linked hardware table');
  }
  const bytes = 1 << vm.host.pageShift;
  const pages = stt.pages;
  for (let pg = 0; pg < stt.npages; pg++) {
    const page = mem.getU32At(pages, pg);
    if (page !== 0) mem.u8.fill(0, page, page + bytes);
  }
  for (const ev of dropped) vm.events.emit(ev);
}
