// The real-mode engine: everything here runs on the shared linear memory and
// is exported to the TypeScript layer (and mirrored by src/native/ in C++).
import {
  HEADER_BASE, HEAP_BASE, HDR_MAGIC, HDR_VERSION, HDR_MEM_END, HDR_SYS_PAGE_SHIFT,
  HDR_ALLOC_TOP, LAYOUT_MAGIC, LAYOUT_VERSION,
} from './generated/layout';

export { alloc, free, heapCheck } from './alloc';
export { regionLookup, regionUaToHpa, regionMappedInc, regionMappedDec } from './region';
export {
  tableInit, tableUaAlloc, tableUaFree, tableFree, tableGet, tableUaGet, tableNextValid,
  tableXchg, tableClearV2, tableBuildV2,
} from './table';

/**
 * Initialises the header of a fresh memory of `memBytes` bytes, or checks an
 * existing one (a second instance attaching): 0, or -1 on a layout mismatch.
 */
export function init(memBytes: u32, sysPageShift: u32): i32 {
  const h = <u32>HEADER_BASE;
  if (atomic.load<u32>(h + HDR_MAGIC) == <u32>LAYOUT_MAGIC) {
    return load<u32>(h + HDR_VERSION) == <u32>LAYOUT_VERSION ? 0 : -1;
  }
  store<u32>(h + HDR_VERSION, <u32>LAYOUT_VERSION);
  store<u32>(h + HDR_MEM_END, memBytes);
  store<u32>(h + HDR_SYS_PAGE_SHIFT, sysPageShift);
  store<u32>(h + HDR_ALLOC_TOP, <u32>HEAP_BASE);
  atomic.store<u32>(h + HDR_MAGIC, <u32>LAYOUT_MAGIC);
  return 0;
}
export { hcall } from './hcall';
export { sttFreePages } from './guest';
