// IOMMU groups (struct iommu_table_group: a PE). An IODA2 group has DDW ops:
// VFIO takes it whole, its host default window is dropped, and the
// container's tables are programmed into its two slots. A legacy group has
// one fixed 32-bit table that a v1 container borrows.
import type { Host } from './host.js';
import type { Container } from './container.js';
import { IommuTable } from './table.js';
import { fail } from './errors.js';
import * as v from './validate.js';

/** Options of host.addGroup. */
export interface GroupOptions {
  /** Bus address of the 32-bit window (default 0). */
  tce32Start?: bigint;
  /** Size of the 32-bit window (default 2 GiB). */
  tce32Size?: bigint;
  /** Supported IOMMU page shifts (default [12, 16, 24]). */
  pageShifts?: number[];
  /** Dynamic windows supported (default 2). */
  maxWindows?: number;
  /** Most levels of a table (default 5). */
  maxLevels?: number;
  /** IODA2 with DDW ops (default); false: a legacy group for v1 containers. */
  ddw?: boolean;
}

/** Snapshot form of a Group. */
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

/** An IOMMU group. */
export class Group {
  readonly host: Host;
  readonly id: number;
  readonly tce32Start: bigint;
  readonly tce32Size: bigint;
  readonly pageShifts: readonly number[];
  readonly maxWindows: number;
  readonly maxLevels: number;
  readonly ddw: boolean;
  /** Host DMA mappings outstanding (it_map not empty): taking ownership is refused while > 0. */
  hostDmaMappings = 0;
  /** Whether VFIO owns the group. */
  owned = false;
  /** Whether the host's default DMA window (and bypass) is in place. */
  hostWindow = true;
  /** The container the group is set to (VFIO_GROUP_SET_CONTAINER), if any. */
  container: Container | undefined;
  /** Tables programmed into the group's two slots (set_window). */
  readonly slots: (IommuTable | undefined)[] = [undefined, undefined];
  /** A legacy group's own 32-bit table. */
  readonly legacyTable: IommuTable | undefined;

  /** @internal use host.addGroup() */
  constructor(host: Host, id: number, opts?: GroupOptions) {
    const o = v.options<GroupOptions>('opts', opts);
    this.host = host;
    this.id = id;
    this.tce32Start = o.tce32Start === undefined ? 0n : v.u64('opts.tce32Start', o.tce32Start);
    this.tce32Size = o.tce32Size === undefined ? 2n << 30n : v.u64('opts.tce32Size', o.tce32Size);
    if (o.pageShifts !== undefined && !Array.isArray(o.pageShifts)) throw new TypeError('opts.pageShifts must be an array of numbers');
    this.pageShifts = Object.freeze((o.pageShifts ?? [12, 16, 24]).map((s, i) => v.int(`opts.pageShifts[${i}]`, s, 12, 40)));
    this.maxWindows = o.maxWindows === undefined ? 2 : v.int('opts.maxWindows', o.maxWindows, 0, 2);
    this.maxLevels = o.maxLevels === undefined ? 5 : v.int('opts.maxLevels', o.maxLevels, 1, 5);
    this.ddw = v.bool('opts.ddw', o.ddw, true);
    if (this.tce32Start & 0xfffn) throw new RangeError('opts.tce32Start must be 4 KiB aligned');
    if (!this.ddw) {
      if (this.tce32Size === 0n || this.tce32Size & (this.tce32Size - 1n)) throw new RangeError('opts.tce32Size of a legacy group must be a power of two');
      this.legacyTable = IommuTable.create(host, { pageShift: 12, windowSize: this.tce32Size, levels: 1, busOffset: this.tce32Start }, false);
    }
  }

  /** State for snapshots (tables by descriptor, 0 for none); the container records its groups. */
  save(): GroupState {
    return {
      id: this.id, tce32Start: '0x' + this.tce32Start.toString(16), tce32Size: '0x' + this.tce32Size.toString(16),
      pageShifts: [...this.pageShifts], maxWindows: this.maxWindows, maxLevels: this.maxLevels, ddw: this.ddw,
      hostDmaMappings: this.hostDmaMappings, owned: this.owned, hostWindow: this.hostWindow,
      slots: this.slots.map((t) => t?.desc ?? 0), legacyTable: this.legacyTable?.desc ?? 0,
    };
  }

  /** The group a snapshot describes. */
  static restore(host: Host, s: GroupState, tables: Map<number, IommuTable>): Group {
    const g = Object.create(Group.prototype) as Group;
    Object.assign(g, {
      host, id: s.id, tce32Start: BigInt(s.tce32Start), tce32Size: BigInt(s.tce32Size), pageShifts: Object.freeze([...s.pageShifts]),
      maxWindows: s.maxWindows, maxLevels: s.maxLevels, ddw: s.ddw, hostDmaMappings: s.hostDmaMappings, owned: s.owned,
      hostWindow: s.hostWindow, container: undefined, slots: s.slots.map((d) => (d ? tables.get(d) : undefined)),
      legacyTable: s.legacyTable ? tables.get(s.legacyTable) : undefined,
    });
    return g;
  }

  /** Bitmap of supported IOMMU page sizes in bytes (pgsizes). */
  get pgSizes(): bigint {
    let m = 0n;
    for (const s of this.pageShifts) m |= 1n << BigInt(s);
    return m;
  }

  /** @internal take_ownership: EBUSY while host DMA mappings are live; drops the host default window. */
  takeOwnership(): void {
    if (this.hostDmaMappings > 0) fail('EBUSY', `group ${this.id} has ${this.hostDmaMappings} host DMA mapping(s) outstanding`);
    this.owned = true;
    this.hostWindow = false;
  }

  /** @internal release_ownership: the host default window and bypass come back. */
  releaseOwnership(): void {
    this.owned = false;
    this.hostWindow = true;
  }
}
