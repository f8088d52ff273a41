// What a snapshot holds (version 1 of the body): the linear memory as its
// non-zero 4 KiB pages, and the objects around it as plain data that names
// descriptors by offset and objects by id; 64-bit values are hex strings, so
// the body is JSON-safe. save.ts produces it, restore.ts rebuilds a host
// from it, snapshot.ts wraps it in the versioned, checksummed envelope.
// Another encoding (a binary one, say) is another envelope around this body;
// a new body version is a new set of these types with a conversion from the old.

/** The version of the body these types describe. */
export const BODY_VERSION = 1;

/** The host's physical memory: the next frame and the pins per system page. */
export interface HostMemoryState {
  next: string;
  pins: [string, number][];
}

/** An address space: its descriptor, mappings (pages by host address) and locked_vm charges. */
export interface MmState {
  id: number;
  desc: number;
  nextUa: string;
  mappings: { ua: string; size: string; pageShift: number; hpas: string[]; hostOff: number }[];
  charges: [string, string][];
}

/** An IOMMU table; its descriptor and trees are in linear memory. */
export interface TableState {
  desc: number;
  busOffset: string;
  kernelBytes: string;
  v2: boolean;
  viewMm: number | null;
}

/** An IOMMU group (tables by descriptor, 0 for none); the container records its groups. */
export interface GroupState {
  id: number;
  tce32Start: string;
  tce32Size: string;
  pageShifts: number[];
  maxWindows: number;
  maxLevels: number;
  ddw: boolean;
  hostDmaMappings: number;
  owned: boolean;
  hostWindow: boolean;
  slots: number[];
  legacyTable: number;
}

/** A container (tables by descriptor, mms and groups by id, handles by thread id). */
export interface ContainerState {
  id: number;
  v2: boolean | null;
  enabled: boolean;
  defWindowPending: boolean;
  lockedPages: string;
  v1ChargedMm: number | null;
  mm: number | null;
  ownerPid: number;
  windows: ({ startAddr: string; windowSize: string; pageShift: number; levels: number; table: number; chargedMm: number | null; tablePages: string } | null)[];
  groups: number[];
  prereg: { region: number; mm: number }[];
  fds: number[];
}

/** A PCI host bridge (its windows are the VM's guest tables). */
export interface PhbState {
  buid: string;
  index: number;
  dma32Addr: string;
  dma32Size: string;
  dma64Addr: string;
  pageSizeMask: string;
  ddw: boolean;
  defWin: boolean[];
}

/** A VM (descriptors by offset, processes by thread id); descriptors, guest tables and registers are in linear memory. */
export interface VmState {
  desc: number;
  process: number;
  mm: number;
  profile: 'kvm' | 'qemu';
  memslots: { gpa: string; size: string; ua: string }[];
  tables: { liobn: string; desc: number; pageShift: number; offset: string; size: string; chargedPages: string }[];
  vcpus: { index: number; desc: number; thread: number }[];
  friendly: { desc: number; thread: number } | null;
  phbs: PhbState[];
  /** The VIO LIOBNs in TCE bypass (QEMU migrates the flag per table); absent when none. */
  bypass?: string[];
}

/** Everything a snapshot holds besides its envelope. */
export interface SnapshotBody {
  options: { ownerCheck: string; pidCheck: string; kernel?: string; engine: string; pageShift: number; maxMemory: number; memlockLimit: string | null; pin: string };
  counters: { lastId: number; lastTid: number };
  memory: { bytes: number; pages: [number, string][] };
  hostmem: HostMemoryState;
  mms: MmState[];
  processes: { pid: number; tid: number; mm: number; memlockLimit: string | null; files?: number }[];
  /** Descriptor tables, numbered as processes[].files names them: the table each was copied from by fork(), or null (absent in older snapshots). */
  fdTables?: (number | null)[];
  tables: TableState[];
  groups: GroupState[];
  containers: ContainerState[];
  vms: VmState[];
}
