// Checker of IOMMU tables (struct iommu_table with it_userspace): the
// descriptor's geometry is one the kernel creates (pnv_pci_ioda2_table_alloc_pages
// through indexShape), and both trees, walked from their roots as the
// engine's slot() walks them, are made of nodes of exactly the size their
// level needs, each claimed once. What the engine then computes from a
// relative index (node + (index & mask) · slot size) stays inside its node.
import { hex } from '../../core/format.js';
import { TblView } from '../../generated/views.js';
import { TABLE_F_V2, TCE_PERM_MASK } from '../../generated/layout.js';
import { checkGeometry, getTableSize, levelSplit, MAX_LEVELS } from '../../kernel/geometry.js';
import { TceError } from '../../core/errors.js';
import type { Claims, Mem } from './heap.js';
import type { Graph, TableInfo } from './graph.js';
import { refuse } from './read.js';
import type { TableState } from '../state.js';
import { memBuffer } from '../scan.js';

const ZERO = Buffer.alloc(65536);

/** Bytes of a tree node (assembly/table.ts nodeSize): leaves hold u64 slots, interior nodes u32 children. */
const nodeSize = (leaf: boolean, bits: number): number => (leaf ? 8 : 4) * 2 ** bits;
/** What TBL.nodeBytes counts per node: the power of two the node's size rounds up to (assembly/table.ts blockBytes). */
const countedBytes = (bytes: number): bigint => 1n << BigInt(Math.max(6, Math.ceil(Math.log2(bytes))));

/** Whether a table of these fields can have been created for a window of `windowSize` bytes (a power of two). */
function geometryFits(pageShift: number, levels: number, sizeShift: number, windowSize: bigint, busOffset: bigint, kernelBytes: bigint, sysShift: number): boolean {
  try {
    checkGeometry({ pageShift, windowSize, levels, busOffset }, sysShift);
  } catch (e) {
    if (e instanceof TceError) return false;
    throw e;
  }
  const entriesShift = windowSize.toString(2).length - 1 - pageShift;
  return Math.max(entriesShift, sysShift - 3) === sizeShift && getTableSize(pageShift, windowSize, levels, sysShift) === kernelBytes;
}

/**
 * The window sizes a table's fields allow: it_size = 2^sizeShift entries,
 * except that the kernel pads a window smaller than one system page of TCEs
 * up to that (pnv_pci_ioda2_create_table), so any smaller window fits too.
 * `windowSize`, when known (a container window), is the only candidate.
 */
function checkKernelGeometry(t: TableState, f: string, pageShift: number, levels: number, sizeShift: number, sysShift: number, windowSize?: bigint): void {
  const candidates: bigint[] = [];
  if (windowSize !== undefined) candidates.push(windowSize);
  else for (let e = sizeShift; e >= 0 && e + pageShift < 64 && (e === sizeShift || sizeShift === sysShift - 3); e--) candidates.push(1n << BigInt(e + pageShift));
  if (!candidates.some((w) => geometryFits(pageShift, levels, sizeShift, w, t.busOffset, t.kernelBytes, sysShift))) {
    refuse(`${f}.kernelBytes`, `${hex(t.kernelBytes)} bytes with 2^${sizeShift} entries of 2^${pageShift} bytes in ${levels} level(s) is no table the kernel creates${windowSize !== undefined ? ` for a ${hex(windowSize)}-byte window` : ''}`);
  }
}

/**
 * Walks one tree from `root`: claims every node, checks the bytes past each
 * node's slots are zero, and calls `leaf` for every non-zero leaf slot with
 * its relative index. Returns the bytes TBL.nodeBytes should count.
 */
function walkTree(m: Mem, claims: Claims, root: number, levels: number, bits: number, rootBits: number, what: string, f: string, leaf: (idx: number, v: bigint) => void): bigint {
  let counted = 0n;
  const buf = memBuffer(m.mem);
  const w = m.mem.u32;
  // Sparse nodes are the rule: spans that are all zero are skipped by one memcmp each, 64 KiB then 512 bytes.
  const spans = (node: number, bytes: number, slotBytes: number, each: (i: number) => void): void => {
    for (let a = 0; a < bytes; a += ZERO.length) {
      const n = Math.min(ZERO.length, bytes - a);
      if (n > 512 && buf.compare(ZERO, 0, n, node + a, node + a + n) === 0) continue;
      for (let b = a; b < a + n; b += 512) {
        const k = Math.min(512, a + n - b);
        if (buf.compare(ZERO, 0, k, node + b, node + b + k) === 0) continue;
        for (let i = b / slotBytes, e = (b + k) / slotBytes; i < e; i++) each(i);
      }
    }
  };
  const visit = (node: number, lvl: number, nodeBits: number, prefix: number, path: string): void => {
    const isLeaf = lvl === 0;
    const bytes = nodeSize(isLeaf, nodeBits);
    claims.claim(node, bytes, `${what} ${isLeaf ? 'leaf' : 'node'}`, path);
    counted += countedBytes(bytes);
    const slots = 2 ** nodeBits;
    if (isLeaf) {
      spans(node, bytes, 8, (i) => {
        const a = (node >>> 2) + i * 2;
        if (w[a] !== 0 || w[a + 1] !== 0) leaf(prefix * slots + i, m.mem.u64[(node >>> 3) + i]!);
      });
    } else {
      spans(node, bytes, 4, (i) => {
        const child = w[(node >>> 2) + i]!;
        if (child !== 0) visit(child, lvl - 1, bits, prefix * slots + i, `${f} (${what} level ${lvl - 1}, slot ${i} of ${hex(node)})`);
      });
    }
    if (!m.zero(node + bytes, node + ((bytes + 63) & ~63))) refuse(path, `bytes past the ${what} node at ${hex(node)} are not zero`);
  };
  visit(root, levels - 1, rootBits, 0, `${f} (${what} root)`);
  return counted;
}

/**
 * Every table: its TBL block, fields of a kernel geometry, the flags its v2
 * bit says, both trees (a v1 table gets a view only through the engine's
 * tableUaAlloc, and never uses it); view slots page aligned with the lock bit clear (a
 * set bit would make every later writer of that entry spin forever in
 * lockView), and, in a v2 table, a ua recorded exactly where a TCE is valid.
 * `windowSizes` gives the window size of tables that are a container's window.
 */
export function checkTables(g: Graph, m: Mem, claims: Claims, root: string, windowSizes: Map<number, bigint>): void {
  const sys = g.sysShift;
  g.state.tables.forEach((t, i) => {
    const f = `${root}.tables[${i}]`;
    if (g.tables.has(t.desc)) refuse(`${f}.desc`, `table ${hex(t.desc)} appears twice`);
    claims.claim(t.desc, TblView.BYTES, 'TBL descriptor', `${f}.desc`);
    const d = new TblView(m.mem, t.desc);
    m.padding('TBL', t.desc, `${f}.desc`);
    const pageShift = d.pageShift;
    const levels = d.levels;
    const size = d.size;
    if (pageShift < 12 || pageShift > 40) refuse(`${f}.desc`, `TBL.pageShift must be in [12, 40], got ${pageShift}`);
    if (levels < 1 || levels > MAX_LEVELS) refuse(`${f}.desc`, `TBL.levels must be in [1, ${MAX_LEVELS}], got ${levels}`);
    if (size === 0n || (size & (size - 1n)) !== 0n || size > 1n << 52n) refuse(`${f}.desc`, `TBL.size must be a power of two up to 2^52, got ${size}`);
    const sizeShift = size.toString(2).length - 1;
    const split = levelSplit(sizeShift, levels);
    if (d.levelBits !== split.bits || d.rootBits !== split.rootBits) refuse(`${f}.desc`, `TBL.levelBits/rootBits ${d.levelBits}/${d.rootBits} are not the split of 2^${sizeShift} entries over ${levels} level(s) (${split.bits}/${split.rootBits})`);
    if (sizeShift < sys - 3) refuse(`${f}.desc`, `TBL.size 2^${sizeShift} is below one system page of TCEs (the kernel pads to 2^${sys - 3})`);
    if (nodeSize(levels === 1, split.rootBits) > 0x8000_0000) refuse(`${f}.desc`, 'the root node would exceed 2 GiB');
    if (t.busOffset & ((1n << BigInt(pageShift)) - 1n)) refuse(`${f}.busOffset`, `${hex(t.busOffset)} is not aligned to the table's 2^${pageShift}-byte pages`);
    if (d.offset !== t.busOffset >> BigInt(pageShift)) refuse(`${f}.desc`, `TBL.offset ${hex(d.offset)} is not busOffset >> pageShift (${hex(t.busOffset >> BigInt(pageShift))})`);
    if ((d.offset + size) << BigInt(pageShift) > 1n << 64n) refuse(`${f}.desc`, 'the window runs past the end of the 64-bit bus');
    checkKernelGeometry(t, f, pageShift, levels, sizeShift, sys, windowSizes.get(t.desc));
    if (d.flags !== (t.v2 ? TABLE_F_V2 : 0)) refuse(`${f}.desc`, `TBL.flags ${d.flags} disagree with v2 = ${t.v2}`);
    if (d.id === 0) refuse(`${f}.desc`, 'TBL.id is 0');
    if (d.root === 0) refuse(`${f}.desc`, 'TBL.root is 0: a live table always has its root (tableInit)');
    const tces = new Map<number, bigint>();
    const nodeBytes = walkTree(m, claims, d.root, levels, split.bits, split.rootBits, 'TCE tree', `${f}.desc`, (idx, v) => tces.set(idx, v));
    if (d.nodeBytes !== nodeBytes) refuse(`${f}.desc`, `TBL.nodeBytes is ${d.nodeBytes}, but its TCE tree's nodes count ${nodeBytes}`);
    const uas = new Map<number, bigint>();
    const mask = (1n << BigInt(pageShift)) - 1n;
    if (d.uaRoot === 0) {
      if (d.uaNodeBytes !== 0n) refuse(`${f}.desc`, `TBL.uaNodeBytes is ${d.uaNodeBytes} without a view`);
    } else {
      const uaBytes = walkTree(m, claims, d.uaRoot, levels, split.bits, split.rootBits, 'userspace view', `${f}.desc`, (idx, ua) => {
        if (ua & mask) refuse(`${f}.desc`, `view slot ${idx}: ua ${hex(ua)} is not aligned to the 2^${pageShift}-byte page${ua & 1n ? ' (its lock bit is set: a writer was inside the entry)' : ''}`);
        uas.set(idx, ua);
      });
      if (d.uaNodeBytes !== uaBytes) refuse(`${f}.desc`, `TBL.uaNodeBytes is ${d.uaNodeBytes}, but its view's nodes count ${uaBytes}`);
    }
    if (t.v2) {
      for (const [idx, tce] of tces) {
        if ((tce & BigInt(TCE_PERM_MASK)) !== 0n && !uas.has(idx)) refuse(`${f}.desc`, `entry ${hex(d.offset + BigInt(idx))}: valid TCE ${hex(tce)} with no userspace address in the view`);
      }
      for (const idx of uas.keys()) {
        if (((tces.get(idx) ?? 0n) & BigInt(TCE_PERM_MASK)) === 0n) refuse(`${f}.desc`, `entry ${hex(d.offset + BigInt(idx))}: the view records ua ${hex(uas.get(idx)!)} but the TCE is not valid`);
      }
    }
    const info: TableInfo = { s: t, field: f, id: d.id, offset: d.offset, size, pageShift, levels, refs: d.refs, ownerPid: d.ownerPid, hasView: d.uaRoot !== 0, tces, uas };
    g.tables.set(t.desc, info);
  });
}
