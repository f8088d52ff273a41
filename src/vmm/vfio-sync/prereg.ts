// The prereg listener of a VfioSync (QEMU's vfio_prereg_listener_region_add
// / _del, hw/vfio/spapr.c): every memslot of the VM is REGISTER_MEMORY'd on
// a v2 container, and UNREGISTER_MEMORY'd when it goes.
import type { Memslot } from '../../kvm/memslot.js';
import { call, type SyncState } from './state.js';

/** At attach: a region for each memslot, adopting one a restored container already has. */
export function registerMemslots(s: SyncState): void {
  const c = s.fd.container;
  for (const m of s.vm.memslots) {
    if (c.regions.some((r) => r.ua === m.ua && r.size === m.size)) s.regions.push({ ua: m.ua, size: m.size, live: true, adopted: true });
    else register(s, m);
  }
}

function register(s: SyncState, m: Memslot): void {
  if (call(s, { op: 'registerMemory', vaddr: m.ua, size: m.size }, () => s.fd.registerMemory(m.ua, m.size))) {
    s.regions.push({ ua: m.ua, size: m.size, live: true, adopted: false });
  }
}

/** vfio_prereg_listener_region_add / _del for a memslot added or removed after attach. */
export function onMemslot(s: SyncState, kind: 'add' | 'remove', m: Memslot): void {
  if (!s.v2) return;
  if (kind === 'add') {
    register(s, m);
    return;
  }
  const i = s.regions.findIndex((r) => r.live && r.ua === m.ua && r.size === m.size);
  if (i < 0) return;
  const r = s.regions[i]!;
  r.live = false;
  // The kernel refuses while TCEs point in (EBUSY): reported, and kept to be retried by detach().
  if (call(s, { op: 'unregisterMemory', vaddr: r.ua, size: r.size }, () => s.fd.unregisterMemory(r.ua, r.size))) s.regions.splice(i, 1);
}

/** At detach (`all`) or a failed attach (only what the sync registered itself): UNREGISTER_MEMORY of its regions. */
export function unregisterAll(s: SyncState, all: boolean): void {
  for (const r of [...s.regions]) {
    if (!all && r.adopted) continue;
    call(s, { op: 'unregisterMemory', vaddr: r.ua, size: r.size }, () => s.fd.unregisterMemory(r.ua, r.size));
  }
  s.regions.length = 0;
}
