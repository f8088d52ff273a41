// table.ts's routines with checked accesses, the VFIO side of a TCE table
// (struct iommu_table and its userspace view, it_userspace): set-up and
// teardown (pnv_pci_ioda2_table_alloc_pages, tce_iommu_userspace_view_alloc,
// pnv_pci_ioda2_table_do_free_pages, iommu_table_free), reads (pnv_tce_get),
// the v1 exchange (iommu_tce_xchg) and v2 map and unmap (tce_iommu_build_v2,
// tce_iommu_clear). The walk and the view lock are in engine_table.h.
#include "engine_table.h"

namespace spapr {

uint32_t nodeSize(bool isLeaf, uint32_t bits) {
  const uint64_t bytes = shl64(isLeaf ? 8 : 4, bits);
  return bytes > 0x80000000u ? 0 : static_cast<uint32_t>(bytes);
}

/** Entry index relative to it_offset, or -1 when `entry` is outside the table. */
int64_t TceEngine::relIndex(uint32_t tbl, uint64_t entry) {
  const uint64_t off = ld64(at(tbl, TBL_OFFSET));
  if (entry < off) return -1;
  const uint64_t idx = entry - off;
  if (idx >= ld64(at(tbl, TBL_SIZE))) return -1;
  return static_cast<int64_t>(idx);
}

/** Pointer to the leaf slot of relative index `idx` (see leafNode); 0 when absent. */
uint32_t TceEngine::slot(uint32_t tbl, uint32_t rootField, uint32_t bytesField, uint64_t idx, bool grow) {
  const uint32_t leaf = leafNodeT<kChecked>(tbl, rootField, bytesField, idx, grow);
  if (leaf == 0) return 0;
  return leaf + (static_cast<uint32_t>(idx & (shl64(1, leafBitsT<kChecked>(tbl)) - 1)) << 3);
}

uint32_t TceEngine::rootSize(uint32_t tbl) {
  const bool leaf = ld32(at(tbl, TBL_LEVELS)) == 1;
  return nodeSize(leaf, ld32(at(tbl, TBL_ROOT_BITS)));
}

/** Allocates the TCE tree root of a described table: 0 or -ENOMEM (pnv_pci_ioda2_table_alloc_pages). */
int32_t TceEngine::tableInit(uint32_t tbl) {
  if (ld32(at(tbl, TBL_ROOT)) != 0) return 0;
  const uint32_t sz = rootSize(tbl);
  const uint32_t root = sz == 0 ? 0 : alloc(sz);
  if (root == 0) return -ERRNO_ENOMEM;
  st32(at(tbl, TBL_ROOT), root);
  st64(at(tbl, TBL_NODE_BYTES), blockBytes(sz));
  return 0;
}

/** Allocates the userspace view root if it is absent: 0 or -ENOMEM (tce_iommu_userspace_view_alloc). */
int32_t TceEngine::tableUaAlloc(uint32_t tbl) {
  if (ald32(at(tbl, TBL_UA_ROOT)) != 0) return 0;
  const uint32_t sz = rootSize(tbl);
  const uint32_t root = sz == 0 ? 0 : alloc(sz);
  if (root == 0) return -ERRNO_ENOMEM;
  if (acas32(at(tbl, TBL_UA_ROOT), 0, root) != 0) {
    free(root, sz);
    return 0;
  }
  // Added, not stored: a vCPU may already be growing the view and counting its nodes.
  aadd64(at(tbl, TBL_UA_NODE_BYTES), blockBytes(sz));
  return 0;
}

// Frees a subtree whose node at level `lvl` has 2^nodeBits slots
// (pnv_pci_ioda2_table_do_free_pages): children first, in slot order, then the node.
void TceEngine::freeTree(uint32_t node, uint32_t lvl, uint32_t nodeBits, uint32_t bits, uint32_t depth) {
  if (node == 0) return;
  if (depth > kMaxTreeDepth) {
    trap(Fault::kTooDeep, node, 0);
    return;
  }
  if (lvl > 0) {
    const uint32_t n = shl32(1, nodeBits);
    for (uint32_t i = 0; i < n && fault_ == Fault::kNone; i++) {
      freeTree(ld32(static_cast<uint32_t>(node + (i << 2))), lvl - 1, bits, bits, depth + 1);
    }
  }
  free(node, nodeSize(lvl == 0, nodeBits));
}

/** Frees the userspace view (ownership released or table freed). */
void TceEngine::tableUaFree(uint32_t tbl) {
  const uint32_t root = ld32(at(tbl, TBL_UA_ROOT));
  const uint32_t top = ld32(at(tbl, TBL_LEVELS)) - 1;
  const uint32_t rootBits = ld32(at(tbl, TBL_ROOT_BITS));
  const uint32_t bits = ld32(at(tbl, TBL_LEVEL_BITS));
  freeTree(root, top, rootBits, bits, 0);
  st32(at(tbl, TBL_UA_ROOT), 0);
  st64(at(tbl, TBL_UA_NODE_BYTES), 0);
}

/** Frees both trees of a table; the descriptor itself is the caller's (iommu_table_free). */
void TceEngine::tableFree(uint32_t tbl) {
  tableUaFree(tbl);
  const uint32_t root = ld32(at(tbl, TBL_ROOT));
  const uint32_t top = ld32(at(tbl, TBL_LEVELS)) - 1;
  const uint32_t rootBits = ld32(at(tbl, TBL_ROOT_BITS));
  const uint32_t bits = ld32(at(tbl, TBL_LEVEL_BITS));
  freeTree(root, top, rootBits, bits, 0);
  st32(at(tbl, TBL_ROOT), 0);
  st64(at(tbl, TBL_NODE_BYTES), 0);
}

/** The TCE at absolute `entry`; 0 when absent or outside the table (pnv_tce_get). */
uint64_t TceEngine::tableGet(uint32_t tbl, uint64_t entry) {
  const int64_t idx = relIndex(tbl, entry);
  if (idx < 0) return 0;
  const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, static_cast<uint64_t>(idx), false);
  return p == 0 ? 0 : ald64(p);
}

/** The userspace address recorded for absolute `entry`, without its lock bits; 0 when none (IOMMU_TABLE_USERSPACE_ENTRY_RO). */
uint64_t TceEngine::tableUaGet(uint32_t tbl, uint64_t entry) {
  const int64_t idx = relIndex(tbl, entry);
  if (idx < 0) return 0;
  const uint32_t p = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, static_cast<uint64_t>(idx), false);
  return p == 0 ? 0 : ald64(p) & ~kLockBits;
}

/** The first absolute entry in [entry, end) holding a non-zero TCE, or -1; walks present leaves only. */
int64_t TceEngine::tableNextValid(uint32_t tbl, uint64_t entry, uint64_t end) {
  const uint64_t off = ld64(at(tbl, TBL_OFFSET));
  const uint64_t size = ld64(at(tbl, TBL_SIZE));
  uint64_t idx = entry > off ? entry - off : 0;
  const uint64_t stop = end <= off ? 0 : end - off < size ? end - off : size;
  const uint64_t mask = shl64(1, leafBitsT<kChecked>(tbl)) - 1;
  // The fault tests only stop a scan the WebAssembly build would have trapped out of.
  while (idx < stop && fault_ == Fault::kNone) {
    const uint32_t leaf = leafNodeT<kChecked>(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false);
    if (leaf == 0) {
      idx = skipAbsentT<kChecked>(tbl, idx);
      continue;
    }
    for (const uint64_t e = leafEnd(idx, mask, stop); idx < e && fault_ == Fault::kNone; idx++) {
      if (ald64(static_cast<uint32_t>(leaf + (static_cast<uint32_t>(idx & mask) << 3))) != 0) {
        return static_cast<int64_t>(idx + off);
      }
    }
  }
  return -1;
}

/**
 * Exchanges the TCE at `entry` (iommu_tce_xchg / pnv_tce_xchg): stores `tce`
 * (WRITE implies READ, as on PowerNV) and returns the old TCE, or -errno.
 * Clearing an absent level succeeds without allocating; setting one needs
 * OP_ALLOC, else -ENOMEM. No view bookkeeping: the v1 path.
 */
int64_t TceEngine::tableXchg(uint32_t tbl, uint64_t entry, uint64_t tce, uint32_t flags) {
  const int64_t idx = relIndex(tbl, entry);
  if (idx < 0 || (tce >> 62) != 0) return -ERRNO_EINVAL;
  uint64_t word = tce;
  if (word & kWrite) word |= kRead;
  const bool grow = (word & kPerm) != 0 && (flags & kOpAlloc) != 0;
  const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, static_cast<uint64_t>(idx), grow);
  if (p == 0) return (word & kPerm) == 0 ? 0 : -ERRNO_ENOMEM;
  if ((word & kPerm) == 0) word = 0;
  return static_cast<int64_t>(axchg64(p, word));
}

/**
 * Maps one entry from a pre-registered userspace address (tce_iommu_build_v2,
 * one iteration): looks `ua` up in `mm`, translates it, takes the entry's
 * lock, counts the new region, exchanges the TCE, releases the old entry's
 * region, records `ua` in the view (which lets the lock go). Returns 0 or
 * -errno (-EBUSY: the lock stayed held) with nothing changed.
 */
int32_t TceEngine::buildOneV2(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t ua, uint32_t perm, uint32_t flags,
                              uint32_t pid) {
  if ((flags & kOpCheckPid) != 0 && ld32(at(tbl, TBL_OWNER_PID)) != pid) return -ERRNO_EPERM;
  const bool grow = (flags & kOpAlloc) != 0;
  const uint32_t shift = ld32(at(tbl, TBL_PAGE_SHIFT));
  // Resolve the region before allocating levels, so a refused page allocates nothing.
  const uint32_t r = regionLookup(mm, ua, shl64(1, shift));
  if (r == 0) return -ERRNO_EINVAL;
  const int64_t hpa = regionUaToHpa(r, ua, shift);
  if (hpa < 0) return -ERRNO_EINVAL;
  const uint32_t pua = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, grow);
  if (pua == 0) return -ERRNO_ENOMEM;
  const uint32_t p = slot(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, grow);
  if (p == 0) return -ERRNO_ENOMEM;
  const uint64_t oldUa = lockViewT<kChecked>(pua, kLock, static_cast<uint32_t>(LOCK_SPINS_VFIO));
  if (oldUa & kLock) return -ERRNO_EBUSY;
  if (regionMappedInc(r) != 0) {
    st64(pua, oldUa);
    return -ERRNO_ENXIO;
  }
  uint64_t word = static_cast<uint64_t>(hpa) | (perm & kPerm);
  if (word & kWrite) word |= kRead;
  const uint64_t old = axchg64(p, word);
  if ((old & kPerm) != 0) unuseUaT<kChecked>(mm, oldUa, shift);
  st64(pua, ua);
  return 0;
}

/**
 * Clears one valid entry (one iteration of tce_iommu_clear, v2): the TCE
 * becomes 0 and the region its view names, looked up in `mm`, loses one
 * mapping. Returns the old TCE (0 if it was already clear), -EPERM, or
 * -EBUSY when the entry's lock stayed held.
 */
int64_t TceEngine::clearOne(uint32_t tbl, uint32_t mm, uint64_t idx, uint32_t p, uint32_t flags, uint32_t pid) {
  if ((flags & kOpCheckPid) != 0 && ld32(at(tbl, TBL_OWNER_PID)) != pid) return -ERRNO_EPERM;
  const uint32_t pua = slot(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, idx, false);
  if (pua == 0) return static_cast<int64_t>(axchg64(p, 0));
  const uint64_t oldUa = lockViewT<kChecked>(pua, kLock, static_cast<uint32_t>(LOCK_SPINS_VFIO));
  if (oldUa & kLock) return -ERRNO_EBUSY;
  const uint64_t old = axchg64(p, 0);
  if ((old & kPerm) != 0) unuseUaT<kChecked>(mm, oldUa, ld32(at(tbl, TBL_PAGE_SHIFT)));
  st64(pua, 0);
  return static_cast<int64_t>(old);
}

/**
 * Clears `n` entries from absolute `entry` (tce_iommu_clear), walking only
 * present leaves. Returns 0, -EINVAL for a range outside the table, -EPERM
 * (owner check) or -EBUSY (a lock stayed held); entries before the refused
 * one stay cleared.
 */
int32_t TceEngine::tableClearV2(uint32_t tbl, uint32_t mm, uint64_t entry, uint64_t n, uint32_t flags, uint32_t pid) {
  const int64_t start = relIndex(tbl, entry);
  if (start < 0 || n > ld64(at(tbl, TBL_SIZE)) - static_cast<uint64_t>(start)) return n == 0 ? 0 : -ERRNO_EINVAL;
  uint64_t idx = static_cast<uint64_t>(start);
  const uint64_t end = idx + n;
  const uint64_t mask = shl64(1, leafBitsT<kChecked>(tbl)) - 1;
  while (idx < end && fault_ == Fault::kNone) {
    const uint32_t leaf = leafNodeT<kChecked>(tbl, TBL_ROOT, TBL_NODE_BYTES, idx, false);
    if (leaf == 0) {
      idx = skipAbsentT<kChecked>(tbl, idx);
      continue;
    }
    for (const uint64_t e = leafEnd(idx, mask, end); idx < e && fault_ == Fault::kNone; idx++) {
      const uint32_t p = leaf + (static_cast<uint32_t>(idx & mask) << 3);
      if (ald64(p) != 0) {
        const int64_t r = clearOne(tbl, mm, idx, p, flags, pid);
        if (r < 0) return static_cast<int32_t>(r);
      }
    }
  }
  return 0;
}

/**
 * Maps `n` consecutive entries from absolute `entry` to consecutive IOMMU
 * pages starting at `ua` (tce_iommu_build_v2; `ua` aligned to the IOMMU
 * page). On a failure at page k the entries [0, k) are cleared again, as the
 * kernel does, and -errno returned.
 */
int32_t TceEngine::tableBuildV2(uint32_t tbl, uint32_t mm, uint64_t entry, uint64_t n, uint64_t ua, uint32_t perm,
                                uint32_t flags, uint32_t pid) {
  const int64_t start = relIndex(tbl, entry);
  if (start < 0 || n > ld64(at(tbl, TBL_SIZE)) - static_cast<uint64_t>(start)) return n == 0 ? 0 : -ERRNO_EINVAL;
  if ((perm & static_cast<uint32_t>(TCE_PERM_MASK)) == 0 || (perm & ~static_cast<uint32_t>(TCE_PERM_MASK)) != 0) {
    return -ERRNO_EINVAL;
  }
  const uint64_t shift = ld32(at(tbl, TBL_PAGE_SHIFT));
  if (ua & (shl64(1, shift) - 1)) return -ERRNO_EINVAL;
  const uint64_t idx0 = static_cast<uint64_t>(start);
  for (uint64_t i = 0; i < n && fault_ == Fault::kNone; i++) {
    const int32_t r = buildOneV2(tbl, mm, idx0 + i, ua + shl64(i, shift), perm, flags, pid);
    if (r < 0) {
      tableClearV2(tbl, mm, entry, i, flags & ~kOpCheckPid, pid);
      return r;
    }
  }
  return 0;
}

}  // namespace spapr
