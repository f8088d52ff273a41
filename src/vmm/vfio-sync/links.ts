// The KVM links of a kvm-profile VfioSync: what QEMU does with in-kernel
// TCE acceleration once a host window mirrors a guest window
// (vfio_spapr_kvm_attach_tce, earlier the KVM block of
// vfio_spapr_container_add_section_window and of vfio_listener_region_add):
// every group of the container is linked to the guest table
// (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE, here vm.attachGroup), so the kernel
// updates the host window itself on every guest H_PUT_TCE, INDIRECT or
// STUFF it completes (kvmppc_h_put_tce → kvmppc_tce_iommu_map), and QEMU's
// IOMMU notifier only hears the hypercalls that exit to it. The sync makes
// no MAP_DMA/UNMAP_DMA for a linked window's events; a link that fails
// leaves the window to be mirrored by MAP_DMA as in the qemu profile.
//
// QEMU never drops a link itself: the kernel does when the guest table's fd
// closes (kvm_spapr_tce_release: a PHB window disabled by a DDW removal or
// reset) or the group leaves the KVM VFIO device
// (kvm_spapr_tce_release_iommu_group). A sync drops the reference of each
// link it made when the window goes and at detach, so that no link holds a
// host window the sync removed; a link whose guest table was released is
// only forgotten, the kernel having dropped it already.
import { fail } from '../../core/errors.js';
import { hex } from '../../core/format.js';
import { call, type Mirror, type SyncState } from './state.js';

/**
 * Links every group of the container to the mirror's guest table. A window
 * adopted after a restore comes with the links the snapshot kept: up to
 * their reference count they are adopted instead of made again.
 */
export function linkWindow(s: SyncState, m: Mirror): void {
  if (!s.kvm || !m.host) return;
  const c = s.fd.container;
  const startAddr = m.host.startAddr;
  const w = c.windows.find((x) => x?.startAddr === startAddr);
  if (!w) return;
  const desc = w.table.desc;
  const guest = s.vm.tables.get(m.liobn);
  if (!guest) return;
  let adoptable = m.host.adopted ? (s.vm.links(m.liobn).find((l) => l.tableDesc === desc)?.refs ?? 0) : 0;
  let all = c.groups.length > 0;
  for (const g of c.groups) {
    if (adoptable > 0) {
      adoptable--;
      m.links.push({ group: g.id, tableDesc: desc, guest });
      continue;
    }
    if (call(s, { op: 'linkGroup', liobn: m.liobn, group: g.id }, () => s.vm.attachGroup(g, m.liobn))) m.links.push({ group: g.id, tableDesc: desc, guest });
    else all = false;
  }
  m.inKernel = all;
}

/** Drops the reference of every link the sync holds for the mirror. */
export function unlinkWindow(s: SyncState, m: Mirror): void {
  m.inKernel = false;
  for (const l of m.links.splice(0)) {
    // The guest table's fd was closed (a PHB window disabled): kvm_spapr_tce_release dropped every link of it.
    if (s.vm.tables.get(m.liobn) !== l.guest) continue;
    call(s, { op: 'unlinkGroup', liobn: m.liobn, group: l.group }, () => {
      if (!s.vm.unlinkTable(m.liobn, l.tableDesc)) fail('ENOENT', `LIOBN ${hex(m.liobn)} has no link to the host window of group ${l.group} any more`);
    });
  }
}
