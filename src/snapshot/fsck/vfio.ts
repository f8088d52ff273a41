// Checkers of the VFIO layer's objects: groups (their options as
// host.addGroup checks them, their slots and legacy table) and containers
// (their driver state as SET_IOMMU, ENABLE, TCE_CREATE and release leave it,
// windows over tables of the right geometry, the owner claim of each
// owner-check mode, pre-registered regions, handles), and the table
// references both hold.
import { hex } from '../../core/format.js';
import { getTableSize } from '../../kernel/geometry.js';
import { DDW_BUS_OFFSET } from '../../vfio/types.js';
import type { GroupState, WindowState } from '../state.js';
import type { Graph } from './graph.js';
import { refuse } from './read.js';

/** The groups: ids unique; options as Group's constructor accepts them; a legacy group has its own table, a DDW group none. */
export function checkGroups(g: Graph, root: string): void {
  const legacyOwners = new Map<number, string>();
  g.state.groups.forEach((s, i) => {
    const f = `${root}.groups[${i}]`;
    if (g.groups.has(s.id)) refuse(`${f}.id`, `group id ${s.id} appears twice`);
    if (s.tce32Start & 0xfffn) refuse(`${f}.tce32Start`, 'must be 4 KiB aligned');
    if (s.pageShifts.length === 0) refuse(`${f}.pageShifts`, 'must name at least one page size');
    if (s.ddw) {
      if (s.legacyTable !== 0) refuse(`${f}.legacyTable`, 'a DDW group has no legacy table');
    } else {
      if (s.tce32Size === 0n || s.tce32Size & (s.tce32Size - 1n)) refuse(`${f}.tce32Size`, 'a legacy group\'s 32-bit window is a power of two');
      const t = g.tables.get(s.legacyTable);
      if (!t) refuse(`${f}.legacyTable`, `${hex(s.legacyTable)} is not a table of the snapshot`);
      if (legacyOwners.has(s.legacyTable)) refuse(`${f}.legacyTable`, `is also the legacy table of ${legacyOwners.get(s.legacyTable)}`);
      legacyOwners.set(s.legacyTable, f);
      if (t.s.v2 || t.pageShift !== 12 || t.levels !== 1 || t.s.busOffset !== s.tce32Start || t.s.kernelBytes !== getTableSize(12, s.tce32Size, 1, g.sysShift)) {
        refuse(`${f}.legacyTable`, `table ${hex(s.legacyTable)} is not the 1-level v1 table of 4 KiB pages over [${hex(s.tce32Start)}, +${hex(s.tce32Size)}) a legacy group creates`);
      }
      if (s.slots[0] !== 0 || s.slots[1] !== 0) refuse(`${f}.slots`, 'a legacy group has no DDW slots');
    }
    if (s.hostWindow === s.owned) refuse(`${f}.hostWindow`, 'the host\'s default window is in place exactly while VFIO does not own the group');
    if (s.owned && s.hostDmaMappings !== 0) refuse(`${f}.hostDmaMappings`, 'an owned group has no host DMA mappings (take_ownership refuses them)');
    g.groups.set(s.id, { s, field: f });
  });
}

/** A window's own fields, against its table and its container's first group. */
function checkWindow(g: Graph, w: WindowState, f: string, slot: number, v2: boolean, first: GroupState, ownerPid: number): void {
  const t = g.tables.get(w.table);
  if (!t) refuse(`${f}.table`, `${hex(w.table)} is not a table of the snapshot`);
  // The pid mode's claim stamps the owner into every table the container charged (claim, tce_iommu_create_window); nothing else does.
  const pid = v2 && g.state.options.ownerCheck === 'pid' ? ownerPid : 0;
  if (t.ownerPid !== pid) refuse(`${f}.table`, `table ${hex(w.table)} names owner pid ${t.ownerPid}, not ${pid}`);
  if (w.startAddr !== t.offset << BigInt(t.pageShift) || w.pageShift !== t.pageShift || w.levels !== t.levels) {
    refuse(f, `start ${hex(w.startAddr)}, 2^${w.pageShift} pages, ${w.levels} level(s) are not those of table ${hex(w.table)}`);
  }
  if (!v2) {
    if (slot !== 0 || w.table !== first.legacyTable || w.chargedMm !== null || w.tablePages !== 0n || w.windowSize !== first.tce32Size) {
      refuse(f, 'a v1 container\'s only window is its legacy group\'s table, charged to nobody');
    }
    return;
  }
  if (!t.s.v2) refuse(`${f}.table`, 'a v2 container\'s window has a v2 table');
  // From 4.19 TCE_CREATE allocates the userspace view with the table (090bad39b237); under '4.12' the first map does (39701e56f5f1).
  if (!t.hasView && g.state.options.kernel !== '4.12') refuse(`${f}.table`, `table ${hex(w.table)} has no userspace view, but kernel '${g.state.options.kernel}' allocates it with the table (TCE_CREATE)`);
  if (w.chargedMm === null || !g.mms.has(w.chargedMm)) refuse(`${f}.chargedMm`, 'a v2 window is charged to an mm of the snapshot (tce_iommu_create_table)');
  if (t.s.viewMm !== w.chargedMm) refuse(`${f}.table`, `table ${hex(w.table)}'s view belongs to mm ${t.s.viewMm}, not to the mm its window is charged to (${w.chargedMm}): both are the creator's`);
  if (t.s.busOffset !== (slot === 0 ? first.tce32Start : DDW_BUS_OFFSET)) refuse(`${f}.table`, `slot ${slot}'s table starts at ${hex(t.s.busOffset)}, not ${hex(slot === 0 ? first.tce32Start : DDW_BUS_OFFSET)}`);
  if (w.levels > first.maxLevels) refuse(`${f}.levels`, `exceeds the group's ${first.maxLevels}`);
  const bytes = getTableSize(w.pageShift, w.windowSize, w.levels, g.sysShift);
  if (bytes === 0n || bytes !== t.s.kernelBytes) refuse(`${f}.windowSize`, `${hex(w.windowSize)} is not the window of table ${hex(w.table)}`);
  if (w.tablePages !== bytes >> BigInt(g.sysShift)) refuse(`${f}.tablePages`, `must be get_table_size >> PAGE_SHIFT = ${bytes >> BigInt(g.sysShift)}, got ${w.tablePages}`);
}

/**
 * The containers: ids unique; groups of the snapshot, each in one container
 * and naming it; the driver state consistent with the IOMMU type (none: a
 * bare container; v1: one legacy group, its table as the only window, the
 * ENABLE charge; v2: DDW groups, windows of v2 tables programmed into every
 * group's slots); the owner claim allowed by the mode; prereg entries naming
 * regions of their mm; handles held by tasks of the snapshot.
 */
export function checkContainers(g: Graph, root: string): void {
  const groupIn = new Map<number, { field: string; driver: boolean }>();
  const tableIn = new Map<number, string>();
  const mode = g.state.options.ownerCheck;
  g.state.containers.forEach((c, i) => {
    const f = `${root}.containers[${i}]`;
    if (g.containers.has(c.id)) refuse(`${f}.id`, `container id ${c.id} appears twice`);
    const groups = c.groups.map((id, k) => {
      const gr = g.groups.get(id);
      if (!gr) refuse(`${f}.groups[${k}]`, `no group ${id}`);
      if (groupIn.has(id)) refuse(`${f}.groups[${k}]`, `group ${id} is also set to ${groupIn.get(id)!.field}`);
      groupIn.set(id, { field: f, driver: c.v2 !== null });
      return gr.s;
    });
    for (const [k, tid] of c.fds.entries()) if (!g.processes.has(tid)) refuse(`${f}.fds[${k}]`, `no task ${tid}`);
    if (c.fds.length === 0 && (groups.length > 0 || c.v2 !== null)) refuse(`${f}.fds`, 'a container whose last handle closed was released: no groups, no IOMMU type');
    for (const k of ['mm', 'v1ChargedMm'] as const) if (c[k] !== null && !g.mms.has(c[k]!)) refuse(`${f}.${k}`, `no mm ${c[k]}`);
    // Neither 'none' nor 'fork-close' binds a container (tce_iommu_mm_set is the mm and pid modes' claim: owner.ts bindsOwner).
    const binds = mode === 'mm' || mode === 'pid';
    if (!binds && (c.mm !== null || c.ownerPid !== 0)) refuse(`${f}.mm`, `ownerCheck '${mode}' never binds a container to an owner`);
    if (mode === 'mm' && c.ownerPid !== 0) refuse(`${f}.ownerPid`, 'ownerCheck \'mm\' records no owner pid');
    if (mode === 'pid' && (c.mm === null) !== (c.ownerPid === 0)) refuse(`${f}.ownerPid`, 'ownerCheck \'pid\' claims the mm and the pid together');
    if (mode === 'pid' && c.ownerPid !== 0 && !g.processes.has(c.ownerPid)) refuse(`${f}.ownerPid`, `no task ${c.ownerPid}`);
    // In the binding modes, whatever a container charged or registered was done in its bound mm (tce_iommu_mm_set comes
    // first): a container holding regions or windows of another mm, or none bound, would let the next caller's
    // mm take it over (the 2015 hazard the modes exist to close).
    if (binds) {
      const used: [string, number | null][] = [
        ...c.prereg.map((p, k) => [`${f}.prereg[${k}].mm`, p.mm] as [string, number]),
        ...c.windows.flatMap((w, k) => (w?.chargedMm != null ? [[`${f}.windows[${k}].chargedMm`, w.chargedMm] as [string, number]] : [])),
        ...(c.v1ChargedMm !== null ? [[`${f}.v1ChargedMm`, c.v1ChargedMm] as [string, number]] : []),
      ];
      for (const [field, mm] of used) if (mm !== c.mm) refuse(field, `is mm ${mm}, but the container is bound to ${c.mm === null ? 'no mm' : `mm ${c.mm}`} (ownerCheck '${mode}')`);
    }
    if (c.v2 === null) {
      if (c.enabled || c.defWindowPending || c.windows.some((w) => w) || c.prereg.length || c.mm !== null || c.ownerPid !== 0 || c.lockedPages !== 0n || c.v1ChargedMm !== null) {
        refuse(`${f}.v2`, 'a container without an IOMMU type has no driver state (enabled, windows, regions, owner, charges)');
      }
    } else {
      if (groups.length === 0) refuse(`${f}.groups`, 'a container with an IOMMU type has a group (the last one leaving releases it)');
      for (const [k, gr] of groups.entries()) {
        if (gr.ddw !== c.v2) refuse(`${f}.groups[${k}]`, `a ${c.v2 ? 'v2 container takes DDW' : 'v1 container takes legacy'} groups`);
        if (!gr.owned) refuse(`${f}.groups[${k}]`, 'a group attached to an IOMMU driver is owned by VFIO');
      }
      if (!c.v2 && groups.length !== 1) refuse(`${f}.groups`, 'a v1 container holds exactly one legacy group');
      const first = groups[0]!;
      c.windows.forEach((w, slot) => {
        if (!w) return;
        const wf = `${f}.windows[${slot}]`;
        checkWindow(g, w, wf, slot, c.v2!, first, c.ownerPid);
        if (tableIn.has(w.table)) refuse(`${wf}.table`, `is also the table of ${tableIn.get(w.table)}`);
        tableIn.set(w.table, wf);
        for (const [k, gr] of groups.entries()) {
          if (!gr.pageShifts.includes(w.pageShift)) refuse(`${f}.groups[${k}]`, `does not support the 2^${w.pageShift}-byte pages of window ${slot}`);
        }
      });
      if (c.v2) {
        if (c.windows[0] && c.defWindowPending) refuse(`${f}.defWindowPending`, 'the default window is pending only while slot 0 is empty');
        if (c.lockedPages !== 0n || c.v1ChargedMm !== null) refuse(`${f}.lockedPages`, 'the ENABLE charge is v1\'s');
        for (const gr of groups) {
          for (let s = 0; s < 2; s++) {
            if (gr.slots[s] !== (c.windows[s]?.table ?? 0)) refuse(`${f}.windows[${s}]`, `group ${gr.id}'s slot ${s} holds ${hex(gr.slots[s]!)}, not the window's table (set_window programs every group)`);
          }
        }
        const seen = new Set<number>();
        c.prereg.forEach((p, k) => {
          const r = g.regions.get(p.region);
          if (!r) refuse(`${f}.prereg[${k}].region`, `${hex(p.region)} is no region of any mm's list`);
          if (r.mm.s.id !== p.mm) refuse(`${f}.prereg[${k}].mm`, `region ${hex(p.region)} belongs to mm ${r.mm.s.id}, not ${p.mm}`);
          if (seen.has(p.region)) refuse(`${f}.prereg[${k}]`, 'the container lists the region twice (REGISTER_MEMORY answers EBUSY)');
          seen.add(p.region);
        });
      } else {
        if (!c.windows[0]) refuse(`${f}.windows[0]`, 'a v1 container has its legacy group\'s window');
        if (c.defWindowPending || c.prereg.length) refuse(`${f}.prereg`, 'a v1 container has no pending default window and no pre-registered memory');
        const pages = first.tce32Size >> BigInt(g.sysShift);
        if (c.enabled ? c.lockedPages !== pages || c.v1ChargedMm === null : c.lockedPages !== 0n || c.v1ChargedMm !== null) {
          refuse(`${f}.lockedPages`, `an ${c.enabled ? 'enabled' : 'disabled'} v1 container charges ${c.enabled ? `tce32_size >> PAGE_SHIFT = ${pages} pages to an mm` : 'nothing'}`);
        }
      }
    }
    g.containers.set(c.id, { s: c, field: f });
  });
  for (const { s, field } of g.groups.values()) {
    const attached = groupIn.get(s.id)?.driver === true;
    if (s.owned !== attached) refuse(`${field}.owned`, `VFIO owns a group exactly while it is attached to a container's IOMMU driver (here ${attached})`);
    if (!attached && (s.slots[0] !== 0 || s.slots[1] !== 0)) refuse(`${field}.slots`, 'a group no driver holds has no tables programmed');
  }
}
