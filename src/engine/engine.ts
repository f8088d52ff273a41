// The engine: the real-mode routines, over the shared linear memory. The
// WebAssembly build (assembly/) and the native addon (src/native/) implement
// the same functions with the same meaning; the TypeScript layer above
// calls only this interface. Pointers are u32 offsets, u64 values bigints,
// failures negative errnos (as in the kernel).

/** The routines every engine provides (see assembly/index.ts for each one's contract). */
export interface Engine {
  readonly kind: 'wasm' | 'native';
  init(memBytes: number, sysPageShift: number): number;
  alloc(bytes: number): number;
  free(ptr: number, bytes: number): void;
  /** Checks the allocator's invariants over the whole heap: the number of free blocks, or a negative code (assembly/alloc.ts#heapCheck). */
  heapCheck(): number;
  regionLookup(mm: number, ua: bigint, size: bigint): number;
  regionUaToHpa(region: number, ua: bigint, pageShift: number): bigint;
  regionMappedInc(region: number): number;
  regionMappedDec(region: number): void;
  tableInit(tbl: number): number;
  tableUaAlloc(tbl: number): number;
  tableUaFree(tbl: number): void;
  tableFree(tbl: number): void;
  tableGet(tbl: number, entry: bigint): bigint;
  tableUaGet(tbl: number, entry: bigint): bigint;
  tableNextValid(tbl: number, entry: bigint, end: bigint): bigint;
  tableXchg(tbl: number, entry: bigint, tce: bigint, flags: number): bigint;
  tableClearV2(tbl: number, mm: number, entry: bigint, n: bigint, flags: number, pid: number): number;
  tableBuildV2(tbl: number, mm: number, entry: bigint, n: bigint, ua: bigint, perm: number, flags: number, pid: number): number;
  /** Runs the hypercall in a vCPU block at `level` (LEVEL_REAL: no allocation; LEVEL_VIRTUAL: may allocate). */
  hcall(vcpu: number, level: number): number;
  sttFreePages(stt: number): void;
}
