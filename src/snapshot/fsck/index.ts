// The fsck of a host: linear memory plus the object graph around it,
// checked before a restore builds anything and by checkInvariants() on a
// live host. One checker per structure, each saying what it protects:
//   heap.ts        the header, the allocator's heap (heapCheck), block claims
//   kernel.ts      mms, mappings and frames, region lists, tasks and their
//                  descriptor tables
//   tables.ts      IOMMU tables and both trees
//   vfio.ts        groups and containers, their windows
//   kvm.ts         VMs, memslots, guest tables and links, vCPUs, PHBs, the
//                  VIO tables in bypass
//   accounting.ts  locked_vm, used, mapped, pins, table references
// Every walk is bounded: lists and trees by the claims (a block is visited
// at most once), arrays by lengths checked against their blocks.
import type { LinearMemory } from '../../core/memory.js';
import { TblView, RegView, SttView } from '../../generated/views.js';
import type { HostState } from '../state.js';
import type { Graph, MmInfo } from './graph.js';
import { Claims, Mem, checkHeader, walkHeap, type Heap } from './heap.js';
import { checkMms, checkMappings, checkRegions, checkProcesses, checkFdTables } from './kernel.js';
import { checkTables } from './tables.js';
import { checkGroups, checkContainers } from './vfio.js';
import { checkVms } from './kvm.js';
import { refuse } from './read.js';

export { SnapshotError, refuse } from './read.js';
export { accountingProblems, type Problem } from './accounting.js';
export type { Graph } from './graph.js';

/** What the fsck reads: the memory and the allocator's own check of it. */
export interface FsckTarget {
  mem: LinearMemory;
  /** engine.heapCheck(): the number of free blocks, or a negative CHECK_* code. */
  heapCheck(): number;
  /** What fields are named under: 'body' for a snapshot, 'host' for a live host. */
  root: string;
  /** The heap's blocks when already known (a RAM-less restore wrote them); else read from the bitmaps. */
  heap?: Heap;
  /** A live host's frees still waiting for a grace period (a snapshot has none: it synchronizes first). */
  graceInProgress?: boolean;
}

/** heapCheck()'s failure codes (assembly/alloc.ts CHECK_*). */
const HEAP_CHECKS: Record<number, string> = {
  [-1]: 'the allocator lock is held',
  [-2]: 'the arena (memEnd, allocTop) does not describe this memory',
  [-3]: 'the blocks do not tile the heap',
  [-4]: 'a free block is malformed',
  [-5]: 'two free blocks are adjacent (they always merge)',
  [-6]: 'a used block carries free tags',
  [-7]: 'the block and byte counters disagree with the blocks',
  [-8]: 'the free lists disagree with the free blocks',
  [-9]: 'the list bitmaps disagree with the lists',
  [-10]: 'bitmap bits are set outside the heap',
};

/**
 * Checks every structure of `state` over `t.mem` and returns what it found;
 * throws a SnapshotError naming the first field that fails. The accounting
 * invariants are left to accountingProblems(graph).
 */
export function fsck(state: HostState, t: FsckTarget): Graph {
  const root = t.root;
  const m = new Mem(t.mem);
  if (t.mem.byteLength !== state.memoryBytes) refuse(`${root}.memory.bytes`, `the memory holds ${t.mem.byteLength} bytes, not ${state.memoryBytes}`);
  checkHeader(m, state.memoryBytes, state.options.pageShift, state.options.kernel, root === 'body');
  const rc = t.heapCheck();
  if (rc < 0) refuse('memory: heap', `heapCheck() fails (${rc}): ${HEAP_CHECKS[rc] ?? 'unknown failure'}`);
  const heap = t.heap ?? walkHeap(m, state.memoryBytes);
  const claims = new Claims(heap);
  const g: Graph = {
    state, root, sysShift: state.options.pageShift, graceInProgress: t.graceInProgress ?? false,
    mms: new Map(), regions: new Map(), tables: new Map(), processes: new Map(), groups: new Map(), containers: new Map(), vms: new Map(),
  };
  checkMms(g, m, claims, root);
  const ram = new Map<number, MmInfo>();
  checkMappings(g, m, claims, ram);
  checkRegions(g, m, claims);
  checkProcesses(g, state, root);
  checkFdTables(g, state, root);
  state.mms.forEach((mm, i) => {
    const keys = new Set<string>();
    mm.charges.forEach(([k, v], j) => {
      if (keys.has(k)) refuse(`${root}.mms[${i}].charges[${j}]`, `charge '${k}' appears twice`);
      if (v === 0n) refuse(`${root}.mms[${i}].charges[${j}]`, 'a charge of 0 pages is never recorded');
      keys.add(k);
    });
  });
  // A container window or a legacy group fixes its table's window size; other tables are checked against every size their fields allow.
  const windowSizes = new Map<number, bigint>();
  for (const c of state.containers) for (const w of c.windows) if (w) windowSizes.set(w.table, w.windowSize);
  for (const gr of state.groups) if (!gr.ddw) windowSizes.set(gr.legacyTable, gr.tce32Size);
  checkTables(g, m, claims, root, windowSizes);
  for (const [i, t] of state.tables.entries()) {
    if (t.viewMm !== null && !g.mms.has(t.viewMm)) refuse(`${root}.tables[${i}].viewMm`, `no mm ${t.viewMm}`);
  }
  checkGroups(g, root);
  checkContainers(g, root);
  checkVms(g, m, claims, root);
  checkIds(g, m);
  return g;
}

/** Ids: every object's id (mms, groups, containers, and the ids descriptors carry) is distinct and was issued (≤ counters.lastId); they all come from one counter. */
function checkIds(g: Graph, m: Mem): void {
  const last = g.state.counters.lastId;
  const seen = new Map<number, string>();
  const id = (n: number, field: string): void => {
    if (n < 1 || n > last) refuse(field, `id ${n} was never issued (ids run from 1 to counters.lastId ${last})`);
    const prev = seen.get(n);
    if (prev !== undefined) refuse(field, `id ${n} is also the id of ${prev}`);
    seen.set(n, field);
  };
  for (const mm of g.mms.values()) id(mm.s.id, `${mm.field}.id`);
  for (const r of g.regions.values()) id(new RegView(m.mem, r.desc).id, r.field);
  for (const t of g.tables.values()) id(new TblView(m.mem, t.s.desc).id, `${t.field}.desc`);
  for (const gr of g.groups.values()) id(gr.s.id, `${gr.field}.id`);
  for (const c of g.containers.values()) id(c.s.id, `${c.field}.id`);
  for (const vm of g.vms.values()) {
    id(vm.id, `${vm.field}.desc`);
    for (const s of vm.stts) id(new SttView(m.mem, s.desc).id, s.field);
  }
}
