// IOMMU groups (struct iommu_table_group: a PE). An IODA2 group has DDW ops:
// VFIO takes it whole, its host default window is dropped, and the
// container's tables are programmed into its two slots. A legacy group has
// one fixed 32-bit table that a v1 container borrows.
import type { HostContext } from '../core/context.js';
import type { Container } from './container.js';
import { IommuTable } from '../kernel/table.js';
import { fail } from '../core/errors.js';
import * as v from '../core/validate.js';

/** Options of host.addGroup. */
export interface GroupOptions {
  /** Bus address of the 32-bit window (default 0). */
  tce32Start?: bigint | number;
  /** Size of the 32-bit window (default 2 GiB). */
  tce32Size?: bigint | number;
  /** Supported IOMMU page shifts (default [12, 16, 24]). */
  pageShifts?: number[];
  /** Dynamic windows supported (default 2). */
  maxWindows?: number;
  /** Most levels of a table (default 5). */
  maxLevels?: number;
  /** IODA2 with DDW ops (default); false: a legacy group for v1 containers. */
  ddw?: boolean;
}

const GROUP_OPTIONS = v.keys<GroupOptions>('host.addGroup', { tce32Start: true, tce32Size: true, pageShifts: true, maxWindows: true, maxLevels: true, ddw: true });

/** GroupOptions checked, with the defaults filled in. */
export interface GroupSettings {
  readonly tce32Start: bigint;
  readonly tce32Size: bigint;
  readonly pageShifts: readonly number[];
  readonly maxWindows: number;
  readonly maxLevels: number;
  readonly ddw: boolean;
}

/** The options of a group checked, defaults filled in: host.addGroup checks them before it takes an id. */
export function groupOptions(opts: unknown): GroupSettings {
  const o = v.options('opts', opts, GROUP_OPTIONS);
  const tce32Start = o.tce32Start === undefined ? 0n : v.u64('opts.tce32Start', o.tce32Start);
  const tce32Size = o.tce32Size === undefined ? 2n << 30n : v.u64('opts.tce32Size', o.tce32Size);
  const shifts = o.pageShifts === undefined ? [12, 16, 24] : v.array('opts.pageShifts', o.pageShifts, 'numbers');
  const pageShifts = Object.freeze(shifts.map((s, i) => v.int(`opts.pageShifts[${i}]`, s, 12, 40)));
  const maxWindows = o.maxWindows === undefined ? 2 : v.int('opts.maxWindows', o.maxWindows, 0, 2);
  const maxLevels = o.maxLevels === undefined ? 5 : v.int('opts.maxLevels', o.maxLevels, 1, 5);
  const ddw = v.bool('opts.ddw', o.ddw, true);
  if (tce32Start & 0xfffn) throw new RangeError('opts.tce32Start must be 4 KiB aligned');
  if (!ddw && (tce32Size === 0n || tce32Size & (tce32Size - 1n))) throw new RangeError('opts.tce32Size of a legacy group must be a power of two');
  return { tce32Start, tce32Size, pageShifts, maxWindows, maxLevels, ddw };
}

/** An IOMMU group. */
export class Group {
  readonly host: HostContext;
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

  /**
   * @internal use host.addGroup(). A legacy group creates its 32-bit table,
   * unless `legacyTable` is the one it had (a restored group).
   */
  constructor(host: HostContext, id: number, opts?: GroupOptions, legacyTable?: IommuTable) {
    const o = groupOptions(opts);
    this.host = host;
    this.id = id;
    this.tce32Start = o.tce32Start;
    this.tce32Size = o.tce32Size;
    this.pageShifts = o.pageShifts;
    this.maxWindows = o.maxWindows;
    this.maxLevels = o.maxLevels;
    this.ddw = o.ddw;
    if (!this.ddw) {
      this.legacyTable = legacyTable ?? IommuTable.createHeld(host, { pageShift: 12, windowSize: this.tce32Size, levels: 1, busOffset: this.tce32Start }, false);
    }
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
