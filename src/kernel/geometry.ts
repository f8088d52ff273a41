// The geometry of TCE tables: the kernel's size and shape rules for a window
// (pnv_pci_ioda2_get_table_size, pnv_pci_ioda2_table_alloc_pages) and how a
// table's index splits over its levels in linear memory.
import { fail } from '../core/errors.js';
import * as v from '../core/validate.js';

/** Most levels a table may have (POWERNV_IOMMU_MAX_LEVELS). */
export const MAX_LEVELS = 5;

/** Geometry of a window, as TCE_CREATE / pnv_pci_ioda2_create_table take it (sizes as bigint or safe-integer number). */
export interface TableGeometry {
  pageShift: number;
  windowSize: bigint | number;
  levels: number;
  busOffset: bigint | number;
}

/** A TableGeometry checked (geometryOf): bigints. */
export interface Geometry {
  readonly pageShift: number;
  readonly windowSize: bigint;
  readonly levels: number;
  readonly busOffset: bigint;
}

const log2 = (x: bigint): number => x.toString(2).length - 1;
const isPow2 = (x: bigint): boolean => x > 0n && (x & (x - 1n)) === 0n;

/**
 * pnv_pci_ioda2_get_table_size: bytes the kernel allocates (and accounts)
 * for a window, the TCE tree and its userspace copy; 0 for an impossible geometry.
 */
export function getTableSize(pageShift: number, windowSize: bigint | number, levels: number, sysPageShift: number): bigint {
  v.int('pageShift', pageShift, 0, 63);
  windowSize = v.u64('windowSize', windowSize);
  v.int('levels', levels, 0, 0xffffffff);
  v.int('sysPageShift', sysPageShift, 12, 16);
  if (levels < 1 || levels > MAX_LEVELS || !isPow2(windowSize)) return 0n;
  const entriesShift = log2(windowSize) - pageShift;
  if (entriesShift < 0) return 0n;
  let tceTableSize = 1n << BigInt(entriesShift + 3);
  if (tceTableSize < 0x1000n) tceTableSize = 0x1000n;
  const perLevel = Math.ceil(entriesShift / levels);
  const directSize = 1n << BigInt(Math.max(perLevel + 3, sysPageShift));
  let bytes = 0n;
  for (let l = levels; l > 0; l--) {
    bytes += ((tceTableSize + directSize - 1n) / directSize) * directSize;
    tceTableSize = (tceTableSize / directSize) << 3n;
    if (tceTableSize < directSize) tceTableSize = directSize;
  }
  return bytes + bytes;
}

const GEOMETRY = v.keys<TableGeometry>('a table geometry', { pageShift: true, windowSize: true, levels: true, busOffset: true });

/**
 * A TableGeometry's types checked, page shift and levels in the given ranges
 * (the kernel's checks are checkGeometry's). A busOffset left out is 0 when
 * `busOffsetOptional` (the window's size checks do not depend on where it sits).
 */
export function geometryOf(g: unknown, minPageShift: number, maxPageShift: number, maxLevels: number, busOffsetOptional = false): Geometry {
  const o = v.options('geometry', g, GEOMETRY);
  const pageShift = v.int('pageShift', o.pageShift, minPageShift, maxPageShift);
  const windowSize = v.u64('windowSize', o.windowSize);
  const levels = v.int('levels', o.levels, 0, maxLevels);
  const busOffset = busOffsetOptional && o.busOffset === undefined ? 0n : v.u64('busOffset', o.busOffset);
  return { pageShift, windowSize, levels, busOffset };
}

/**
 * The kernel's checks of pnv_pci_ioda2_table_alloc_pages for a geometry: EINVAL
 * for levels outside [1, 5], a window that is not a power of two or smaller
 * than one page, or one whose levels would address 2^55 bytes or more. The
 * bus offset, which those checks do not read, may be left out.
 */
export function checkGeometry(geometry: Omit<TableGeometry, 'busOffset'> & { busOffset?: bigint | number }, sysPageShift: number): void {
  const g = geometryOf(geometry, 0, 63, 0xffffffff, true);
  v.int('sysPageShift', sysPageShift, 12, 16);
  if (g.levels < 1 || g.levels > MAX_LEVELS) fail('EINVAL', `levels must be in [1, ${MAX_LEVELS}], got ${g.levels}`);
  if (!isPow2(g.windowSize)) fail('EINVAL', `windowSize must be a power of two, got ${g.windowSize}`);
  const entriesShift = log2(g.windowSize) - g.pageShift;
  if (entriesShift < 0) fail('EINVAL', `windowSize ${g.windowSize} is smaller than one 2^${g.pageShift}-byte page`);
  const levelShift = Math.max(Math.ceil(entriesShift / g.levels) + 3, sysPageShift);
  if ((levelShift - 3) * g.levels + g.pageShift >= 55) {
    fail('EINVAL', `${g.levels} level(s) of 2^${levelShift - 3} entries with 2^${g.pageShift}-byte pages address 2^55 bytes or more`);
  }
}

/** Index bits of the levels below the root, when the window allows: 16 slots, 64–128-byte nodes. */
export const LOW_LEVEL_BITS = 4;
/** Most index bits of the root of a multi-level table: a 16 KiB root. */
export const ROOT_MAX_BITS = 12;

/**
 * How a table of 2^sizeShift entries splits its index over `levels` levels
 * in linear memory: levels below the root take LOW_LEVEL_BITS bits (fewer
 * if an even split gives fewer; more if the root would otherwise exceed
 * ROOT_MAX_BITS), the root the rest. Small lower nodes make a sparse table cost per entry mapped;
 * the kernel's equal split with system-page nodes decides only accounting.
 */
export function levelSplit(sizeShift: number, levels: number): { bits: number; rootBits: number } {
  if (levels === 1) return { bits: sizeShift, rootBits: sizeShift };
  const small = Math.max(1, Math.min(LOW_LEVEL_BITS, Math.ceil(sizeShift / levels), Math.floor((sizeShift - 1) / (levels - 1))));
  // A huge window widens the lower levels instead of growing the root past ROOT_MAX_BITS.
  const bits = Math.max(small, Math.ceil((sizeShift - ROOT_MAX_BITS) / (levels - 1)));
  return { bits, rootBits: sizeShift - bits * (levels - 1) };
}

/**
 * The index shape of a table for geometry `g` (pnv_pci_ioda2_create_table):
 * it_size = max(entries, one system page of TCEs), as the kernel pads tiny
 * windows, split over the levels by levelSplit().
 */
export function indexShape(g: Geometry, sysPageShift: number): { sizeShift: number; bits: number; rootBits: number } {
  const entriesShift = log2(g.windowSize) - g.pageShift;
  const sizeShift = Math.max(entriesShift, sysPageShift - 3);
  return { sizeShift, ...levelSplit(sizeShift, g.levels) };
}
