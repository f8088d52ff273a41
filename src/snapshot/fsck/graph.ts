// What the structural checkers find in a state and its memory, for the
// cross-checks and the accounting (accounting.ts) to use: each object with
// the field that names it and what linear memory says about it.
import type { HostState, MmState, MappingState, TableState, GroupState, ContainerState, VmState, ProcessState } from '../state.js';

/** A mapping, with the index of the first page of each of its frame runs. */
export interface MappingInfo {
  s: MappingState;
  end: bigint;
  runStarts: number[];
}

/** A pre-registered region as its descriptor says. */
export interface RegionInfo {
  desc: number;
  field: string;
  mm: MmInfo;
  id: number;
  ua: bigint;
  entries: bigint;
  size: bigint;
  pageShift: number;
  used: number;
  mapped: bigint;
  isDevice: boolean;
  /** The system page number (hpa >> PAGE_SHIFT) of each page (the descriptor's hpas array); exact as doubles, since pages < 2^52. */
  pages: Float64Array;
  /** The same pages as ranges [lo, hi] of consecutive page numbers (a frame run backs each), for lookups by address. */
  spans: [number, number][];
}

/** An address space, its mappings sorted by ua, its regions in list order. */
export interface MmInfo {
  s: MmState;
  field: string;
  lockedPages: bigint;
  regionCount: number;
  mappings: MappingInfo[];
  regions: RegionInfo[];
}

/** An IOMMU table as its descriptor and trees say. */
export interface TableInfo {
  s: TableState;
  field: string;
  id: number;
  offset: bigint;
  size: bigint;
  pageShift: number;
  levels: number;
  refs: number;
  ownerPid: number;
  hasView: boolean;
  /** Non-zero TCEs: relative index → TCE. */
  tces: Map<number, bigint>;
  /** Non-zero view slots: relative index → ua. */
  uas: Map<number, bigint>;
}

/** A guest-visible TCE table as its descriptor says. */
export interface SttInfo {
  desc: number;
  field: string;
  liobn: bigint;
  /** Linked hardware tables (descriptors), with their link counts. */
  stits: { table: number; refs: number }[];
}

/** A VM. */
export interface VmInfo {
  s: VmState;
  field: string;
  id: number;
  stts: SttInfo[];
}

/** Everything the checkers found, by identity. */
export interface Graph {
  state: HostState;
  root: string;
  sysShift: number;
  /** Frees are waiting for a grace period: a link's vacated slot may not be emptied yet (unlinkTable). */
  graceInProgress: boolean;
  mms: Map<number, MmInfo>;
  regions: Map<number, RegionInfo>;
  tables: Map<number, TableInfo>;
  processes: Map<number, { s: ProcessState; field: string }>;
  groups: Map<number, { s: GroupState; field: string }>;
  containers: Map<number, { s: ContainerState; field: string }>;
  vms: Map<number, VmInfo>;
}
