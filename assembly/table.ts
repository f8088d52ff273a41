// TCE tables with the userspace view (struct iommu_table and it_userspace).
//
// A table descriptor (TBL_*) points at two trees of identical shape:
//
//   TBL.root   ─► [u32 child]·2^bits ─► … ─► leaf [u64 TCE]·2^bits
//   TBL.uaRoot ─► [u32 child]·2^bits ─► … ─► leaf [u64 ua ]·2^bits
//
// Level L (L = levels-1 at the root, 0 at the leaves) indexes bits
// [L·bits, (L+1)·bits) of the entry index relative to it_offset; the root
// indexes [(levels-1)·bits, +rootBits). A child
// slot of 0 means the level is absent. Virtual mode (OP_ALLOC) allocates
// absent levels and installs them with compare-and-swap; real mode never
// allocates and answers -ENOMEM, which the hypercall layer turns into
// H_TOO_HARD (pnv_tce with alloc=false; kvmppc_rm_tce_iommu_mapped_dec).
//
// The low 12 bits of a view slot are a per-entry lock (uas are 4 KiB
// aligned): bit 0 says it is held, bits 1..11 by whom (VIEW_LOCK_BITS). Every
// change of a v2 entry, its TCE and its ua, holds it, so concurrent vCPUs on
// one entry keep each region's `mapped` exact; the kernel relies on its
// callers instead. Nothing waits for it without a bound (LOCK_SPINS_*): a
// holder on a killed worker never lets go, and whoever waits for it gives up
// with nothing changed.
import {
  TBL_OFFSET, TBL_SIZE, TBL_PAGE_SHIFT, TBL_LEVELS, TBL_LEVEL_BITS, TBL_ROOT_BITS, TBL_ROOT,
  TBL_UA_ROOT, TBL_OWNER_PID, TBL_NODE_BYTES, TBL_UA_NODE_BYTES,
  TCE_READ, TCE_WRITE, TCE_PERM_MASK, OP_ALLOC, OP_CHECK_PID, VIEW_LOCK, VIEW_LOCK_BITS, LOCK_SPINS_VFIO,
  EINVAL, ENOMEM, EPERM, ENXIO, EBUSY,
} from './generated/layout';
import { alloc, free, blockShift } from './alloc';
import { regionLookup, regionUaToHpa, regionMappedInc, regionMappedDec } from './region';

/** Level at which the last failed read-only walk found a level missing. */
let absentLevel: u32 = 0;

/** Bytes of a tree node (leaf: u64 slots, interior: u32 child offsets); 0 if too large. */
export function nodeSize(isLeaf: bool, bits: u32): u32 {
  const bytes: u64 = (isLeaf ? <u64>8 : <u64>4) << <u64>bits;
  return bytes > 0x80000000 ? 0 : <u32>bytes;
}

@inline function blockBytes(bytes: u32): u64 {
  return <u64>1 << <u64>blockShift(bytes);
}

/** Entry index relative to it_offset, or -1 when `entry` is outside the table. */
@inline function relIndex(tbl: u32, entry: u64): i64 {
  const off = load<u64>(tbl + TBL_OFFSET);
  if (entry < off) return -1;
  const idx = entry - off;
  if (idx >= load<u64>(tbl + TBL_SIZE)) return -1;
  return <i64>idx;
}

/**
 * The leaf node holding relative index `rel` in the tree whose root is at
 * `tbl + rootField` (pnv_tce's walk); 0 when a level is absent and `grow` is
 * false (`absentLevel` says which), or when allocation fails. Virtual mode
 * installs a fresh level with compare-and-swap, so racing vCPUs agree.
 */
export function leafNode(tbl: u32, rootField: u32, bytesField: u32, rel: u64, grow: bool): u32 {
  let node = atomic.load<u32>(tbl + rootField);
  const levels = load<u32>(tbl + TBL_LEVELS);
  if (node == 0) {
    absentLevel = levels;
    return 0;
  }
  if (levels <= 1) return node;
  const bits = load<u32>(tbl + TBL_LEVEL_BITS);
  const lowMask: u64 = (<u64>1 << <u64>bits) - 1;
  const rootMask: u64 = (<u64>1 << <u64>load<u32>(tbl + TBL_ROOT_BITS)) - 1;
  for (let lvl = levels - 1; lvl >= 1; lvl--) {
    const m = lvl == levels - 1 ? rootMask : lowMask;
    const sp = node + (<u32>((rel >> <u64>(lvl * bits)) & m) << 2);
    let child = atomic.load<u32>(sp);
    if (child == 0) {
      if (!grow) {
        absentLevel = lvl;
        return 0;
      }
      const sz = nodeSize(lvl == 1, bits);
      const fresh = sz == 0 ? 0 : alloc(sz);
      if (fresh == 0) return 0;
      const prev = atomic.cmpxchg<u32>(sp, 0, fresh);
      if (prev != 0) {
        free(fresh, sz);
        child = prev;
      } else {
        child = fresh;
        atomic.add<u64>(tbl + bytesField, blockBytes(sz));
      }
    }
    node = child;
  }
  return node;
}

/**
 * leafNode without allocation, inlined where a hypercall walks one leaf (the
 * call costs more than the walk). Its loads of child pointers are plain, as
 * rcu_dereference's are: what a pointer leads to is read through that
 * pointer, an address dependency every host orders (and the node was zeroed
 * before the compare-and-swap that published it).
 */
@inline export function leafPeek(tbl: u32, rootField: u32, rel: u64): u32 {
  let node = load<u32>(tbl + rootField);
  const levels = load<u32>(tbl + TBL_LEVELS);
  if (node != 0 && levels > 1) {
    const bits = load<u32>(tbl + TBL_LEVEL_BITS);
    const lowMask: u64 = (<u64>1 << <u64>bits) - 1;
    let lvl = levels - 1;
    let m: u64 = (<u64>1 << <u64>load<u32>(tbl + TBL_ROOT_BITS)) - 1;
    for (;;) {
      node = load<u32>(node + (<u32>((rel >> <u64>(lvl * bits)) & m) << 2));
      if (node == 0) {
        absentLevel = lvl;
        break;
      }
      if (--lvl == 0) break;
      m = lowMask;
    }
  } else if (node == 0) {
    absentLevel = levels;
  }
  return node;
}

/** Index bits of a leaf node: the root's when the table has one level. */
@inline export function leafBits(tbl: u32): u32 {
  return load<u32>(tbl + TBL_LEVELS) <= 1 ? load<u32>(tbl + TBL_ROOT_BITS) : load<u32>(tbl + TBL_LEVEL_BITS);
}

/** Pointer to the leaf slot of relative index `idx` (see leafNode); 0 when absent. */
function slot(tbl: u32, rootField: u32, bytesField: u32, idx: u64, grow: bool): u32 {
  const leaf = leafNode(tbl, rootField, bytesField, idx, grow);
  if (leaf == 0) return 0;
  return leaf + (<u32>(idx & ((<u64>1 << <u64>leafBits(tbl)) - 1)) << 3);
}

/** First relative index after the subtree that the last read-only miss found absent. */
@inline export function skipAbsent(tbl: u32, idx: u64): u64 {
  if (absentLevel >= load<u32>(tbl + TBL_LEVELS)) return <u64>-1;
  const span = <u64>absentLevel * <u64>load<u32>(tbl + TBL_LEVEL_BITS);
  return span >= 64 ? <u64>-1 : (idx | ((<u64>1 << span) - 1)) + 1;
}

/** The end of the leaf holding `rel`, or `hi` if that comes first. */
@inline export function leafEnd(rel: u64, leafMask: u64, hi: u64): u64 {
  const e = (rel | leafMask) + 1;
  return e == 0 || e > hi ? hi : e;
}

function rootSize(tbl: u32): u32 {
  return nodeSize(load<u32>(tbl + TBL_LEVELS) == 1, load<u32>(tbl + TBL_ROOT_BITS));
}

/** Allocates the TCE tree root of a described table: 0 or -ENOMEM. */
export function tableInit(tbl: u32): i32 {
  if (load<u32>(tbl + TBL_ROOT) != 0) return 0;
  const sz = rootSize(tbl);
  const root = sz == 0 ? 0 : alloc(sz);
  if (root == 0) return -ENOMEM;
  store<u32>(tbl + TBL_ROOT, root);
  store<u64>(tbl + TBL_NODE_BYTES, blockBytes(sz));
  return 0;
}

/** Allocates the userspace view root if it is absent: 0 or -ENOMEM. */
export function tableUaAlloc(tbl: u32): i32 {
  if (atomic.load<u32>(tbl + TBL_UA_ROOT) != 0) return 0;
  const sz = rootSize(tbl);
  const root = sz == 0 ? 0 : alloc(sz);
  if (root == 0) return -ENOMEM;
  if (atomic.cmpxchg<u32>(tbl + TBL_UA_ROOT, 0, root) != 0) {
    free(root, sz);
    return 0;
  }
  // Added, not stored: a vCPU may already be growing the view and counting its nodes.
  atomic.add<u64>(tbl + TBL_UA_NODE_BYTES, blockBytes(sz));
  return 0;
}

/** Frees a subtree whose node at level `lvl` has 2^nodeBits slots. */
function freeTree(node: u32, lvl: u32, nodeBits: u32, bits: u32): void {
  if (node == 0) return;
  if (lvl > 0) {
    const n: u32 = 1 << nodeBits;
    for (let i: u32 = 0; i < n; i++) freeTree(load<u32>(node + (i << 2)), lvl - 1, bits, bits);
  }
  free(node, nodeSize(lvl == 0, nodeBits));
}

/** Frees the userspace view (ownership released or table freed). */
export function tableUaFree(tbl: u32): void {
  freeTree(load<u32>(tbl + TBL_UA_ROOT), load<u32>(tbl + TBL_LEVELS) - 1, load<u32>(tbl + TBL_ROOT_BITS), load<u32>(tbl + TBL_LEVEL_BITS));
  store<u32>(tbl + TBL_UA_ROOT, 0);
  store<u64>(tbl + TBL_UA_NODE_BYTES, 0);
}

/** Frees both trees of a table; the descriptor itself is the caller's. */
export function tableFree(tbl: u32): void {
  tableUaFree(tbl);
  freeTree(load<u32>(tbl + TBL_ROOT), load<u32>(tbl + TBL_LEVELS) - 1, load<u32>(tbl + TBL_ROOT_BITS), load<u32>(tbl + TBL_LEVEL_BITS));
  store<u32>(tbl + TBL_ROOT, 0);
  store<u64>(tbl + TBL_NODE_BYTES, 0);
}

/** The TCE at absolute `entry`; 0 when absent or outside the table. */
export function tableGet(tbl: u32, entry: u64): u64 {
  const idx = relIndex(tbl, entry);
  if (idx < 0) return 0;
  const p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, <u64>idx, false);
  return p == 0 ? 0 : atomic.load<u64>(p);
}

/** The userspace address recorded for absolute `entry`; 0 when none. */
export function tableUaGet(tbl: u32, entry: u64): u64 {
  const idx = relIndex(tbl, entry);
  if (idx < 0) return 0;
  const p = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, <u64>idx, false);
  return p == 0 ? 0 : atomic.load<u64>(p) & ~<u64>VIEW_LOCK_BITS;
}

/** The first absolute entry in [entry, end) holding a non-zero TCE, or -1; walks present leaves only. */
export function tableNextValid(tbl: u32, entry: u64, end: u64): i64 {
  const off = load<u64>(tbl + TBL_OFFSET);
  const size = load<u64>(tbl + TBL_SIZE);
  let idx: u64 = entry > off ? entry - off : 0;
  const stop: u64 = end <= off ? 0 : end - off < size ? end - off : size;
  const mask: u64 = (<u64>1 << <u64>leafBits(tbl)) - 1;
  while (idx < stop) {
    const leaf = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false);
    if (leaf == 0) {
      idx = skipAbsent(tbl, idx);
      continue;
    }
    for (const e = leafEnd(idx, mask, stop); idx < e; idx++) {
      if (atomic.load<u64>(leaf + (<u32>(idx & mask) << 3)) != 0) return <i64>(idx + off);
    }
  }
  return -1;
}

/**
 * Exchanges the TCE at `entry` (iommu_tce_xchg / pnv_tce_xchg): stores
 * `tce` (host address | permission; WRITE implies READ, as on PowerNV) and
 * returns the old TCE, or -errno. Clearing an absent level succeeds without
 * allocating; setting one needs OP_ALLOC, else -ENOMEM. No view bookkeeping:
 * this is the v1 path.
 */
export function tableXchg(tbl: u32, entry: u64, tce: u64, flags: u32): i64 {
  const idx = relIndex(tbl, entry);
  if (idx < 0 || (tce >> 62) != 0) return -EINVAL;
  let word = tce;
  if (word & <u64>TCE_WRITE) word |= <u64>TCE_READ;
  const grow = (word & <u64>TCE_PERM_MASK) != 0 && (flags & <u32>OP_ALLOC) != 0;
  const p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, <u64>idx, grow);
  if (p == 0) return (word & <u64>TCE_PERM_MASK) == 0 ? 0 : -ENOMEM;
  if ((word & <u64>TCE_PERM_MASK) == 0) word = 0;
  return <i64>atomic.xchg<u64>(p, word);
}

/**
 * Takes the lock of view slot `pua` for the holder whose tag bits are
 * `tagBits` (tag << VIEW_TAG_SHIFT | VIEW_LOCK), trying at most `spins`
 * times: the unlocked value it found, or VIEW_LOCK (never an unlocked
 * value) when the lock stayed held. The compare-and-swap is the acquire
 * (kernel: none, its callers serialise).
 */
@inline export function lockView(pua: u32, tagBits: u64, spins: u32): u64 {
  for (let n: u32 = 0; n < spins; n++) {
    const v = atomic.load<u64>(pua);
    if ((v & <u64>VIEW_LOCK) == 0 && atomic.cmpxchg<u64>(pua, v, (v & ~<u64>VIEW_LOCK_BITS) | tagBits) == v) return v;
  }
  return <u64>VIEW_LOCK;
}

/** Decrements the region an old entry was mapped from, looked up in `mm` (tce_iommu_unuse_page_v2). */
export function unuseUa(mm: u32, ua: u64, pageShift: u32): void {
  if (ua == 0) return;
  const r = regionLookup(mm, ua, <u64>1 << <u64>pageShift);
  if (r != 0 && regionUaToHpa(r, ua, pageShift) >= 0) regionMappedDec(r);
}

/**
 * Maps one entry from a pre-registered userspace address (tce_iommu_build_v2,
 * one iteration): looks `ua` up in `mm`, translates it, takes the entry's
 * lock, counts the new region, exchanges the TCE, releases the old entry's
 * region, records `ua` in the view (which lets the lock go). Returns 0 or
 * -errno (-EBUSY: the lock stayed held) with nothing changed.
 */
function buildOneV2(tbl: u32, mm: u32, idx: u64, ua: u64, perm: u32, flags: u32, pid: u32): i32 {
  if ((flags & <u32>OP_CHECK_PID) != 0 && load<u32>(tbl + TBL_OWNER_PID) != pid) return -EPERM;
  const grow = (flags & <u32>OP_ALLOC) != 0;
  const shift = load<u32>(tbl + TBL_PAGE_SHIFT);
  // Resolve the region before allocating levels, so a refused page allocates nothing.
  const r = regionLookup(mm, ua, <u64>1 << <u64>shift);
  if (r == 0) return -EINVAL;
  const hpa = regionUaToHpa(r, ua, shift);
  if (hpa < 0) return -EINVAL;
  const pua = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, grow);
  if (pua == 0) return -ENOMEM;
  const p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, grow);
  if (p == 0) return -ENOMEM;
  const oldUa = lockView(pua, <u64>VIEW_LOCK, <u32>LOCK_SPINS_VFIO);
  if (oldUa & <u64>VIEW_LOCK) return -EBUSY;
  if (regionMappedInc(r) != 0) {
    store<u64>(pua, oldUa);
    return -ENXIO;
  }
  let word = <u64>hpa | <u64>(perm & <u32>TCE_PERM_MASK);
  if (word & <u64>TCE_WRITE) word |= <u64>TCE_READ;
  const old = atomic.xchg<u64>(p, word);
  if ((old & <u64>TCE_PERM_MASK) != 0) unuseUa(mm, oldUa, shift);
  store<u64>(pua, ua);
  return 0;
}

/**
 * Clears one valid entry (one iteration of tce_iommu_clear, v2): the TCE
 * becomes 0 and the region its view names, looked up in `mm`, loses one
 * mapping. Returns the old TCE (0 if it was already clear), -EPERM, or
 * -EBUSY when the entry's lock stayed held.
 */
function clearOne(tbl: u32, mm: u32, idx: u64, p: u32, flags: u32, pid: u32): i64 {
  if ((flags & <u32>OP_CHECK_PID) != 0 && load<u32>(tbl + TBL_OWNER_PID) != pid) return -EPERM;
  const pua = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, false);
  if (pua == 0) return <i64>atomic.xchg<u64>(p, 0);
  const oldUa = lockView(pua, <u64>VIEW_LOCK, <u32>LOCK_SPINS_VFIO);
  if (oldUa & <u64>VIEW_LOCK) return -EBUSY;
  const old = atomic.xchg<u64>(p, 0);
  if ((old & <u64>TCE_PERM_MASK) != 0) unuseUa(mm, oldUa, load<u32>(tbl + TBL_PAGE_SHIFT));
  store<u64>(pua, 0);
  return <i64>old;
}

/**
 * Clears `n` entries from absolute `entry` (tce_iommu_clear), walking only
 * present leaves, so that a sparse window clears in time proportional to
 * what exists. Returns 0, -EINVAL for a range outside the table, -EPERM
 * (owner check) or -EBUSY (a lock stayed held); entries before the refused
 * one stay cleared, as each write is checked.
 */
export function tableClearV2(tbl: u32, mm: u32, entry: u64, n: u64, flags: u32, pid: u32): i32 {
  const start = relIndex(tbl, entry);
  if (start < 0 || n > load<u64>(tbl + TBL_SIZE) - <u64>start) return n == 0 ? 0 : -EINVAL;
  let idx = <u64>start;
  const end = idx + n;
  const mask: u64 = (<u64>1 << <u64>leafBits(tbl)) - 1;
  while (idx < end) {
    const leaf = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false);
    if (leaf == 0) {
      idx = skipAbsent(tbl, idx);
      continue;
    }
    for (const e = leafEnd(idx, mask, end); idx < e; idx++) {
      const p = leaf + (<u32>(idx & mask) << 3);
      if (atomic.load<u64>(p) != 0) {
        const r = clearOne(tbl, mm, idx, p, flags, pid);
        if (r < 0) return <i32>r;
      }
    }
  }
  return 0;
}

/**
 * Maps `n` consecutive entries from absolute `entry` to consecutive IOMMU
 * pages starting at `ua` (tce_iommu_build_v2; `ua` aligned to the IOMMU
 * page, as VFIO_IOMMU_MAP_DMA requires of vaddr). On a failure at page k the
 * entries [0, k) written by this call are cleared again, as the kernel does,
 * and -errno is returned.
 */
export function tableBuildV2(tbl: u32, mm: u32, entry: u64, n: u64, ua: u64, perm: u32, flags: u32, pid: u32): i32 {
  const start = relIndex(tbl, entry);
  if (start < 0 || n > load<u64>(tbl + TBL_SIZE) - <u64>start) return n == 0 ? 0 : -EINVAL;
  if ((perm & <u32>TCE_PERM_MASK) == 0 || (perm & ~<u32>TCE_PERM_MASK) != 0) return -EINVAL;
  const shift = <u64>load<u32>(tbl + TBL_PAGE_SHIFT);
  if (ua & ((<u64>1 << shift) - 1)) return -EINVAL;
  const idx0 = <u64>start;
  for (let i: u64 = 0; i < n; i++) {
    const r = buildOneV2(tbl, mm, idx0 + i, ua + (i << shift), perm, flags, pid);
    if (r < 0) {
      tableClearV2(tbl, mm, entry, i, flags & ~<u32>OP_CHECK_PID, pid);
      return r;
    }
  }
  return 0;
}
