// Checkers of the KVM and VMM layers' objects: VMs with their memslot and
// guest-table lists (walked from the VM descriptor, as findSlot and
// kvmppc_find_table walk them in real mode), each guest table's page array
// and pages, its links to hardware tables (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE),
// vCPU register blocks, the PCI host bridges of the qemu profile, and the
// VIO tables in TCE bypass.
import { hex } from '../../core/format.js';
import { VmView, SlotView, SttView, VcpuView, HdrView } from '../../generated/views.js';
import { MAX_STITS, PROFILE_KVM, PROFILE_QEMU, STT_F_DEFAULT, MAX_LOCK_TAG, HEADER_BASE, DIRTY_LOG_HEADER } from '../../generated/layout.js';
import { dirtyLogBytes, MAX_DIRTY_LOG } from '../../kvm/memslot.js';
import type { GuestTableState, PhbState, VmState } from '../state.js';
import type { Claims, Mem } from './heap.js';
import type { Graph, SttInfo } from './graph.js';
import { mappingAt } from './kernel.js';
import { refuse } from './read.js';

const U64_MAX = (1n << 64n) - 1n;

/**
 * The dirty log block of a live memslot of `size` bytes (SLOT.dirtyLog): a
 * used block of exactly the size kvm_dirty_bitmap_bytes gives it, its header
 * the slot's page count and a zero word, no bit set past the last page. The
 * engines bound their marks by that page count, so a wrong one would send
 * their atomic ORs into another block.
 */
function checkDirtyLog(g: Graph, m: Mem, claims: Claims, at: number, size: bigint, lf: string): void {
  const bytes = dirtyLogBytes(g.sysShift, size);
  if (bytes > MAX_DIRTY_LOG) refuse(lf, `a memslot of ${hex(size)} bytes can have no dirty log (more than ${MAX_DIRTY_LOG * 8} pages)`);
  claims.claim(at, DIRTY_LOG_HEADER + bytes, 'dirty log', lf);
  const pages = Number(size >> BigInt(g.sysShift));
  if (m.u32(at) !== pages || m.u32(at + 4) !== 0) refuse(lf, `the dirty log's header says ${m.u32(at)} pages (and ${m.u32(at + 4)}), the memslot has ${pages} (and 0)`);
  const bits = at + DIRTY_LOG_HEADER;
  for (let p = pages; p < bytes * 8; p++) {
    if ((m.u32(bits + ((p >>> 5) << 2)) >>> (p & 31)) & 1) refuse(lf, `the dirty log has bit ${p} set, past the memslot's ${pages} pages`);
  }
}

/**
 * The memslots of a VM: the list in memory holds exactly the VM object's
 * slots, each page aligned, inside one mapping of the VM's mm, not
 * overlapping, besides the descriptors of removed slots (size 0), which
 * keep no dirty log; while the VM tracks writable mappings
 * (VM.dirtyTrack), every live slot has one (the engines mark only there).
 */
function checkMemslots(g: Graph, m: Mem, claims: Claims, v: VmState, f: string, tracking: boolean): void {
  const mm = g.mms.get(v.mm)!;
  const mask = (1n << BigInt(g.sysShift)) - 1n;
  const byGpa = new Map<bigint, number>();
  const sorted = [...v.memslots.entries()].sort((a, b) => (a[1].gpa < b[1].gpa ? -1 : a[1].gpa > b[1].gpa ? 1 : 0));
  for (let k = 0; k < sorted.length; k++) {
    const [i, s] = sorted[k]!;
    const sf = `${f}.memslots[${i}]`;
    if (s.gpa & mask || s.size & mask || s.ua & mask || s.size === 0n) refuse(sf, 'gpa, size and ua must be non-empty and page aligned');
    if (s.gpa + s.size > 1n << 64n) refuse(`${sf}.size`, 'the slot wraps around');
    const next = sorted[k + 1]?.[1];
    if (next && s.gpa + s.size > next.gpa) refuse(sf, `overlaps the memslot at ${hex(next.gpa)}`);
    const x = mappingAt(mm, s.ua);
    if (!x || s.ua + s.size > x.end) refuse(sf, `[${hex(s.ua)}, +${hex(s.size)}) is not inside one mapping of the VM's mm`);
    byGpa.set(s.gpa, i);
  }
  let n = 0;
  for (let p = new VmView(m.mem, v.desc).slots; p !== 0; n++) {
    const lf = `${f}.desc (VM.slots) → memslot ${n}`;
    claims.claim(p, SlotView.BYTES, 'memslot descriptor', lf);
    m.padding('SLOT', p, lf);
    const d = new SlotView(m.mem, p);
    // A removed memslot's descriptor stays listed with size 0 until addMemslot reuses it (memslot.ts: walkers on
    // other threads never see it freed); it matches no address, so its other fields are never read.
    if (d.size === 0n) {
      if (d.dirtyLog !== 0) refuse(lf, `a removed memslot keeps a dirty log (SLOT.dirtyLog ${hex(d.dirtyLog)}): removeMemslot frees it`);
      p = d.next;
      continue;
    }
    const i = byGpa.get(d.gpa);
    if (i === undefined) refuse(lf, `SLOT.gpa ${hex(d.gpa)} is no memslot of the VM object`);
    byGpa.delete(d.gpa);
    const s = v.memslots[i]!;
    if (d.size !== s.size || d.ua !== s.ua) refuse(lf, `SLOT size ${hex(d.size)} / ua ${hex(d.ua)} disagree with ${f}.memslots[${i}]`);
    const x = mappingAt(mm, s.ua)!;
    const want = x.s.hostOff ? x.s.hostOff + Number(s.ua - x.s.ua) : 0;
    if (d.hostOff !== want) refuse(lf, `SLOT.hostOff is ${hex(d.hostOff)}, but the slot's bytes are at ${hex(want)} (0: not backed)`);
    if (d.dirtyLog !== 0) checkDirtyLog(g, m, claims, d.dirtyLog, s.size, `${lf} (SLOT.dirtyLog)`);
    else if (tracking) refuse(`${lf} (SLOT.dirtyLog)`, 'the VM tracks writable mappings (VM.dirtyTrack) but the memslot has no dirty log: its marks would be lost');
    p = d.next;
  }
  if (byGpa.size) refuse(`${f}.memslots[${[...byGpa.values()][0]}]`, 'is not in the VM\'s memslot list in memory');
}

/** TCEs per guest-table page (one system page of u64s, TCES_PER_PAGE). */
const perPage = (sys: number): bigint => (1n << BigInt(sys)) / 8n;

/**
 * One guest table: its STT fields agree with the VM object's entry, its
 * geometry with KVM_CREATE_SPAPR_TCE_64 (or a QEMU table disabled by its
 * PHB: size, page shift, offset and pages all 0), its page array a block of
 * npages slots each 0 or a page block, its links distinct live hardware
 * tables that attachGroup would accept, with counts of at least 1.
 */
function checkStt(g: Graph, m: Mem, claims: Claims, v: VmState, t: GuestTableState, at: number, lf: string): SttInfo {
  const d = new SttView(m.mem, at);
  const sys = g.sysShift;
  if (d.vm !== v.desc) refuse(lf, `STT.vm is ${hex(d.vm)}, not its VM ${hex(v.desc)}`);
  if (d.offset !== t.offset || d.size !== t.size || d.pageShift !== t.pageShift) refuse(lf, 'STT offset, size and page shift disagree with the VM object\'s table');
  if (d.id === 0) refuse(lf, 'STT.id is 0');
  if (d.flags !== 0 && d.flags !== STT_F_DEFAULT) refuse(lf, `STT.flags ${d.flags} are not STT_F_* bits`);
  const npages = d.npages;
  if (t.size === 0n) {
    if (v.profile !== 'qemu' || t.pageShift !== 0 || t.offset !== 0n || npages !== 0 || d.pages !== 0) refuse(lf, 'a table of size 0 is a QEMU window its PHB disabled: page shift, offset and pages 0');
  } else {
    if (t.pageShift < 12 || t.pageShift > 34) refuse(lf, `the page shift must be in [12, 34], got ${t.pageShift}`);
    if (t.offset + t.size > U64_MAX >> BigInt(t.pageShift)) refuse(lf, 'offset + size overflows the 64-bit bus');
    const want = (t.size + perPage(sys) - 1n) / perPage(sys);
    if (want > 0x3fff_ffffn || BigInt(npages) !== want) refuse(lf, `STT.npages is ${npages}, but ${t.size} entries take ${want} page(s)`);
    claims.claim(d.pages, npages * 4, 'guest TCE page array', `${lf} (STT.pages)`);
    const pageBytes = 1 << sys;
    for (let k = 0; k < npages; k++) {
      const p = m.u32(d.pages + k * 4);
      if (p !== 0) claims.claim(p, pageBytes, 'guest TCE page', `${lf} (STT.pages[${k}])`);
    }
    if (!m.zero(d.pages + npages * 4, d.pages + ((npages * 4 + 63) & ~63))) refuse(`${lf} (STT.pages)`, 'bytes past the page array are not zero');
  }
  const count = d.stitCount;
  if (count > MAX_STITS || (v.profile === 'qemu' && count !== 0)) refuse(lf, `STT.stitCount is ${count} (at most ${MAX_STITS}; none in the qemu profile)`);
  const stits: { table: number; refs: number }[] = [];
  for (let k = 0; k < MAX_STITS; k++) {
    const tb = d.stitsAt(k);
    const refs = d.stitRefsAt(k);
    if (k >= count) {
      // unlinkTable empties the slot it vacated after a grace period; till then it is no link and holds nothing.
      if ((tb !== 0 || refs !== 0) && !g.graceInProgress) refuse(lf, `STT link ${k} is past stitCount but not empty`);
      continue;
    }
    const hw = g.tables.get(tb);
    if (!hw) refuse(lf, `STT link ${k} names ${hex(tb)}, no table of the snapshot`);
    if (stits.some((s) => s.table === tb)) refuse(lf, `STT link ${k} repeats table ${hex(tb)} (a second link only counts a reference)`);
    if (refs < 1) refuse(lf, `STT link ${k} has reference count ${refs}`);
    const bus = t.offset << BigInt(t.pageShift);
    if (hw.pageShift > t.pageShift || hw.offset << BigInt(hw.pageShift) !== bus || hw.size << BigInt(hw.pageShift) < t.size << BigInt(t.pageShift)) {
      refuse(lf, `STT link ${k}: table ${hex(tb)} is not compatible with LIOBN ${hex(t.liobn)} (page ≤ guest page, same bus start, at least the guest's window)`);
    }
    stits.push({ table: tb, refs });
  }
  if (v.profile === 'kvm') {
    const np = BigInt(npages);
    const want = np + ((BigInt(SttView.BYTES) + np * 8n + (1n << BigInt(sys)) - 1n) >> BigInt(sys));
    if (t.chargedPages !== want) refuse(`${lf} (chargedPages)`, `a kvm guest table charges kvmppc_stt_pages = ${want}, got ${t.chargedPages}`);
  } else if (t.chargedPages !== 0n) refuse(`${lf} (chargedPages)`, 'a qemu-profile table charges nothing');
  return { desc: at, field: lf, liobn: t.liobn, stits };
}

/** Phb's constructor checks, naming the field (vm.addPhb's options). */
function checkPhb(p: PhbState, f: string): void {
  if (p.pageSizeMask === 0n || p.pageSizeMask & ~(((1n << 35n) - 1n) & ~((1n << 12n) - 1n))) refuse(`${f}.pageSizeMask`, 'must be a non-empty set of page sizes 2^12..2^34');
  if (p.dma32Size === 0n || p.dma32Size & 0xfffn || p.dma32Size >> 12n > 0xffff_ffffn) refuse(`${f}.dma32Size`, 'must be a non-zero multiple of 4 KiB below 2^44');
  if (p.dma32Addr + p.dma32Size > (1n << 64n) - (1n << 12n)) refuse(`${f}.dma32Addr`, 'the window must end below 2^64 − 4 KiB');
  const maxPage = 1n << BigInt(p.pageSizeMask.toString(2).length - 1);
  if (p.dma32Addr & (maxPage - 1n)) refuse(`${f}.dma32Addr`, 'must be aligned to the largest page size of the mask');
  if (p.dma64Addr & (maxPage - 1n)) refuse(`${f}.dma64Addr`, 'must be aligned to the largest page size of the mask');
}

/**
 * One vCPU block: claimed, naming its VM, its thread's pid and tid and its
 * index, with a view-lock tag of its own (its registers, level, counters and
 * INDIRECT list copy are the guest's and the engine's to write). The tag is
 * how a hypercall tells its own view locks from another vCPU's: two vCPUs
 * with one tag would take each other's locks, and a tag whose bit is clear
 * in HDR.lockTags would be handed to the next new vCPU as well.
 */
function checkVcpu(g: Graph, m: Mem, claims: Claims, v: VmState, desc: number, index: number, thread: number, f: string, tags: Map<number, string>): void {
  // No padding check: the bytes past the counters are the engine's (a raw engine.hcall at an odd level counts there).
  claims.claim(desc, VcpuView.BYTES, 'vCPU register block', `${f}.desc`);
  const task = g.processes.get(thread);
  if (!task) refuse(`${f}.thread`, `no task ${thread}`);
  // kvm_vcpu_ioctl refuses another mm (EIO), as KvmVm.vcpu() does under every owner check but
  // 'none': a snapshot must not hand a VM's vCPU to a task of another address space.
  if (g.state.options.ownerCheck !== 'none' && task.s.mm !== v.mm) {
    refuse(`${f}.thread`, `task ${thread} is in mm ${task.s.mm}, not the VM's mm ${v.mm}: ownerCheck '${g.state.options.ownerCheck}' runs a vCPU only in its VM's mm`);
  }
  const d = new VcpuView(m.mem, desc);
  if (d.vm !== v.desc) refuse(`${f}.desc`, `VCPU.vm is ${hex(d.vm)}, not its VM ${hex(v.desc)}`);
  if (d.pid !== task.s.pid || d.tid !== task.s.tid) refuse(`${f}.desc`, `VCPU.pid/tid ${d.pid}/${d.tid} are not its thread's ${task.s.pid}/${task.s.tid}`);
  if (d.id !== index) refuse(`${f}.desc`, `VCPU.id is ${d.id}, not ${index}`);
  const tag = d.lockTag;
  if (tag < 1 || tag > MAX_LOCK_TAG) refuse(`${f}.desc`, `VCPU.lockTag is ${tag}, not a vCPU's view-lock tag (1..${MAX_LOCK_TAG}; 0 is the VFIO path's)`);
  const other = tags.get(tag);
  if (other !== undefined) refuse(`${f}.desc`, `VCPU.lockTag ${tag} is also ${other}'s: each vCPU locks view slots under a tag of its own`);
  tags.set(tag, f);
  if ((new HdrView(m.mem, HEADER_BASE).lockTagsAt(tag >>> 5) & (1 << (tag & 31))) === 0) refuse(`${f}.desc`, `VCPU.lockTag ${tag} is not marked taken in HDR.lockTags: the next new vCPU would get it too`);
}

/** Every VM, its lists, guest tables, vCPUs and PHBs. */
export function checkVms(g: Graph, m: Mem, claims: Claims, root: string): void {
  const tags = new Map<number, string>();
  g.state.vms.forEach((v, i) => {
    const f = `${root}.vms[${i}]`;
    if (g.vms.has(v.desc)) refuse(`${f}.desc`, `VM ${hex(v.desc)} appears twice`);
    const proc = g.processes.get(v.process);
    if (!proc) refuse(`${f}.process`, `no task ${v.process}`);
    if (proc.s.mm !== v.mm) refuse(`${f}.mm`, `the VM's mm is its creator's (${proc.s.mm}), got ${v.mm}`);
    const mm = g.mms.get(v.mm)!;
    claims.claim(v.desc, VmView.BYTES, 'VM descriptor', `${f}.desc`);
    m.padding('VM', v.desc, `${f}.desc`);
    const d = new VmView(m.mem, v.desc);
    if (d.mm !== mm.s.desc) refuse(`${f}.desc`, `VM.mm is ${hex(d.mm)}, not its mm's descriptor ${hex(mm.s.desc)}`);
    if (d.profile !== (v.profile === 'qemu' ? PROFILE_QEMU : PROFILE_KVM)) refuse(`${f}.desc`, `VM.profile ${d.profile} is not profile '${v.profile}'`);
    if (d.id === 0) refuse(`${f}.desc`, 'VM.id is 0');
    if (d.dirtyTrack > 1) refuse(`${f}.desc`, `VM.dirtyTrack is ${d.dirtyTrack}, not 0 or 1`);
    checkMemslots(g, m, claims, v, f, d.dirtyTrack === 1);
    const byLiobn = new Map<bigint, number>();
    v.tables.forEach((t, k) => {
      if (byLiobn.has(t.liobn)) refuse(`${f}.tables[${k}].liobn`, `LIOBN ${hex(t.liobn)} appears twice`);
      byLiobn.set(t.liobn, k);
    });
    const stts: SttInfo[] = [];
    let n = 0;
    for (let p = d.stts; p !== 0; n++) {
      const lf = `${f}.desc (VM.stts) → guest table ${n}`;
      claims.claim(p, SttView.BYTES, 'guest TCE table descriptor', lf);
      m.padding('STT', p, lf);
      const st = new SttView(m.mem, p);
      const k = byLiobn.get(st.liobn);
      if (k === undefined) refuse(lf, `STT.liobn ${hex(st.liobn)} is no table of the VM object`);
      byLiobn.delete(st.liobn);
      const t = v.tables[k]!;
      if (t.desc !== p) refuse(`${f}.tables[${k}].desc`, `is ${hex(t.desc)}, but LIOBN ${hex(t.liobn)}'s descriptor in the list is ${hex(p)}`);
      stts.push(checkStt(g, m, claims, v, t, p, lf));
      p = st.next;
    }
    if (byLiobn.size) refuse(`${f}.tables[${[...byLiobn.values()][0]}]`, 'is not in the VM\'s guest-table list in memory');
    const seen = new Set<number>();
    v.vcpus.forEach((c, k) => {
      if (seen.has(c.index)) refuse(`${f}.vcpus[${k}].index`, `vCPU ${c.index} appears twice`);
      seen.add(c.index);
      checkVcpu(g, m, claims, v, c.desc, c.index, c.thread, `${f}.vcpus[${k}]`, tags);
    });
    if (v.friendly) {
      if (v.friendly.thread !== v.process) refuse(`${f}.friendly.thread`, 'vm.hcall()\'s vCPU runs on the VM\'s process');
      checkVcpu(g, m, claims, v, v.friendly.desc, 0xffff_ffff, v.friendly.thread, `${f}.friendly`, tags);
    }
    const phbLiobns = new Set<bigint>();
    const buids = new Set<bigint>();
    v.phbs.forEach((p, k) => {
      const pf = `${f}.phbs[${k}]`;
      checkPhb(p, pf);
      if (buids.has(p.buid)) refuse(`${pf}.buid`, `BUID ${hex(p.buid)} appears twice`);
      buids.add(p.buid);
      const base = 0x8000_0000n | (BigInt(p.index) << 8n);
      for (const l of [base, base | 1n]) {
        if (phbLiobns.has(l)) refuse(`${pf}.index`, `LIOBN ${hex(l)} belongs to two PHBs`);
        phbLiobns.add(l);
        const t = v.tables.find((x) => x.liobn === l);
        // In the kvm profile a disabled window has no table (its KVM table's fd was closed); in the qemu profile it is one of size 0.
        if (!t) {
          if (v.profile === 'kvm') continue;
          refuse(`${pf}.index`, `the PHB's window LIOBN ${hex(l)} is no table of the VM`);
        }
        if (t.size !== 0n && !(p.pageSizeMask & (1n << BigInt(t.pageShift)))) refuse(`${pf}.pageSizeMask`, `window ${hex(l)} has 2^${t.pageShift}-byte pages, not in the mask`);
      }
    });
    v.tables.forEach((t, k) => {
      if (t.size === 0n && !phbLiobns.has(t.liobn)) refuse(`${f}.tables[${k}]`, 'only a PHB window is ever disabled (size 0)');
    });
    // vm.setTceBypass (spapr_vio_set_bypass) switches only a VIO unit's table: a 32-bit LIOBN of the VM that no PHB owns.
    const inBypass = new Set<bigint>();
    v.bypass.forEach((l, k) => {
      const bf = `${f}.bypass[${k}]`;
      if (inBypass.has(l)) refuse(bf, `LIOBN ${hex(l)} appears twice`);
      inBypass.add(l);
      if (l >> 32n !== 0n || !v.tables.some((t) => t.liobn === l)) refuse(bf, `LIOBN ${hex(l)} is no VIO table of the VM (no guest table with that 32-bit LIOBN)`);
      if (phbLiobns.has(l)) refuse(bf, `LIOBN ${hex(l)} is a PHB window: PCI has no TCE bypass`);
    });
    g.vms.set(v.desc, { s: v, field: f, id: d.id, stts });
  });
}
