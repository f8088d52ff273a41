// The one declaration of the engine routines: the functions both engines
// (assembly/, AssemblyScript → WebAssembly; src/native/engine.{h,cc}, C++)
// export over the shared linear memory. `scripts/gen-layout.mjs` (through
// scripts/gen-engine.mjs) turns it into
//   src/generated/engine.ts                (the TypeScript Engine routines and the WebAssembly adapter)
//   src/native/generated/engine_routines.h (the N-API binding table, with a compile-time
//                                           check of every signature against engine.h)
// Adding a routine is one line here, plus its implementations in assembly/
// and src/native/engine.{h,cc}; test/unit/engine-routines.test.ts checks that
// the WebAssembly build exports exactly these, with these arities.
//
// Types: u32 and i32 are JavaScript numbers, u64 and i64 bigints; a u32 or
// u64 result is unsigned on the JavaScript side (the WebAssembly exports
// return them signed, the adapter fixes that), an i32 or i64 result is signed
// (negative errnos), void returns undefined. Pointers are u32 offsets into
// linear memory, 0 meaning none.

/** `name(arg: type, ...): result` and what the routine does (the contract assembly/ implements). */
export const routines = [
  ['init(memBytes: u32, sysPageShift: u32): i32', 'Initialises the header of a fresh memory, or checks an existing one: 0, or -1 on a layout mismatch.'],
  ['alloc(bytes: u32): u32', 'Allocates a zeroed block of at least `bytes` bytes (virtual mode only); 0 when the memory is full.'],
  ['free(ptr: u32, bytes: u32): void', 'Returns a block obtained from alloc(bytes) with the same `bytes`.'],
  ['heapCheck(): i32', 'Checks the allocator\'s invariants over the whole heap: the number of free blocks, or a negative code (assembly/alloc.ts#heapCheck).'],
  ['regionLookup(mm: u32, ua: u64, size: u64): u32', 'The first region of `mm` containing all of [ua, ua + size), or 0 (mm_iommu_lookup).'],
  ['regionUaToHpa(region: u32, ua: u64, pageShift: u32): i64', 'Host address behind `ua` for a 2^pageShift IOMMU page, or -EFAULT (mm_iommu_ua_to_hpa).'],
  ['regionMappedInc(region: u32): i32', 'mapped++ unless the region is dying: 0 or -ENXIO (mm_iommu_mapped_inc).'],
  ['regionMappedDec(region: u32): void', 'mapped-- but never below 1 (mm_iommu_mapped_dec).'],
  ['tableInit(tbl: u32): i32', 'Allocates the TCE tree root of a described table: 0 or -ENOMEM.'],
  ['tableUaAlloc(tbl: u32): i32', 'Allocates the userspace view root if absent: 0 or -ENOMEM.'],
  ['tableUaFree(tbl: u32): void', 'Frees the userspace view.'],
  ['tableFree(tbl: u32): void', 'Frees both trees of a table; the descriptor is the caller\'s.'],
  ['tableGet(tbl: u32, entry: u64): u64', 'The TCE at absolute `entry`; 0 when absent or outside the table.'],
  ['tableUaGet(tbl: u32, entry: u64): u64', 'The userspace address recorded for absolute `entry`; 0 when none.'],
  ['tableNextValid(tbl: u32, entry: u64, end: u64): i64', 'The first entry in [entry, end) holding a non-zero TCE, or -1; skips absent levels.'],
  ['tableXchg(tbl: u32, entry: u64, tce: u64, flags: u32): i64', 'Exchanges one TCE without view bookkeeping (v1, iommu_tce_xchg): the old TCE or -errno.'],
  ['tableClearV2(tbl: u32, mm: u32, entry: u64, n: u64, flags: u32, pid: u32): i32', 'Clears `n` entries from `entry` (tce_iommu_clear, v2): 0 or -errno.'],
  ['tableBuildV2(tbl: u32, mm: u32, entry: u64, n: u64, ua: u64, perm: u32, flags: u32, pid: u32): i32', 'Maps `n` entries from `ua` through pre-registered regions (tce_iommu_build_v2); rolled back on failure: 0 or -errno.'],
  ['hcall(vcpu: u32, level: u32): i32', 'Runs the hypercall in a vCPU register block at `level` (LEVEL_REAL: no allocation; LEVEL_VIRTUAL: may allocate): the H_* status; any other level is H_PARAMETER and changes nothing.'],
  ['sttFreePages(stt: u32): void', 'Frees the pages of TCEs of a guest table (its page array is the caller\'s).'],
];
