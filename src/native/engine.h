// The C++ real-mode engine: the routines of assembly/ (alloc.ts, region.ts,
// table.ts, guest.ts, hcall.ts, index.ts#init) on the bytes of the shared
// linear memory. Same arguments, same results, same bytes written, same
// allocation order, so that a memory driven through this engine stays
// byte-identical to one driven through the WebAssembly build (the
// differential tests, test/differential/, check exactly that). Each routine
// follows its AssemblyScript twin statement by statement (same loads, same
// stores, same atomics, in the same order); the kernel function each one
// stands for is named as in the AssemblyScript source.
//
// This header declares the class; the routines are one kernel area per
// file, as in assembly/: engine_access.h (the memory accessors; their fault
// paths and index.ts#init in engine_memory.cc), engine_alloc.cc (alloc.ts),
// engine_region.{h,cc} (region.ts), engine_table.{h,cc} (table.ts),
// engine_guest.{h,cc} (guest.ts), engine_hcall.h and engine_hcall*.cc
// (hcall.ts, by hypercall and phase: the header lists them) and
// engine_dirty.cc (dirty.ts). What several files use and inline (the
// accessors, the lookups and tree walks, the hypercall helpers) is defined
// in the headers, so that each file compiles on its own; the addon compiles
// them as one unit, engine.cc, which says why.
//
// No N-API in here: engine_binding.cc wraps it for JavaScript, and a plain
// C++ loop (the benchmark's C floor, hcallLoop) drives it directly.
//
// Memory model, as WebAssembly's:
//  - every address is a u32 offset from `base`; pointer fields in memory are
//    u32 offsets too, 0 meaning "absent";
//  - little-endian, plain loads and stores may be unaligned;
//  - where the AssemblyScript code uses atomic.*, this uses a host atomic on
//    the same address (sequentially consistent read-modify-writes), so both
//    engines and several threads can share one memory; the hypercall path
//    makes the same plain accesses plain (relaxed or release, never
//    weaker than the WebAssembly build's: see hcall.ts);
//  - a WebAssembly access outside the memory, or an unaligned atomic, traps.
//    Here the cold routines (the allocator, VFIO's map and clear, table
//    set-up and teardown) check every access; a failing one records a fault
//    and from then on every access of the call fails too (loads give 0,
//    stores and atomics do nothing), so the memory is left exactly as the
//    trapping WebAssembly instruction left it. The hypercall path instead
//    checks each structure once where it first reaches it (a descriptor, a
//    tree node, a guest-table page, the TCE list) and then uses plain
//    pointer accesses: a structure that does not lie wholly inside the
//    memory faults before it is used, where the WebAssembly build traps at
//    the first access that leaves the memory, possibly later in the same
//    call; what the two leave in memory then can differ (a call that faults
//    in its validate pass gives back the locks it took, where a trapping
//    WebAssembly instance cannot). Only a corrupt pointer makes either
//    happen. The caller checks fault() after each routine; the binding
//    turns a fault into a WebAssembly.RuntimeError.
#pragma once

#include <cstdint>

#include "generated/layout.h"

// Everything here is internal to the addon: hidden, so that calls inside
// the engine's files bind locally and inline (a shared object's default-visibility
// functions may be interposed, which keeps the compiler from inlining them).
#pragma GCC visibility push(hidden)

// The bounds-checked accessors run for every load and store of the real-mode
// routines: always inline them, and keep the fault path out of the way. The
// cold routines carry SPAPR_COLD on their declarations below too: a call
// from another file than the one defining them is then also laid out as the
// unlikely path.
#define SPAPR_HOT __attribute__((always_inline)) inline
#define SPAPR_COLD __attribute__((cold, noinline))

namespace spapr {

/** Why the last routine stopped early (the WebAssembly trap it stands for). */
enum class Fault : uint8_t {
  kNone = 0,
  kOutOfBounds,  // "memory access out of bounds"
  kUnaligned,    // "operation does not support unaligned accesses" (atomics)
  kTooDeep,      // "Maximum call stack size exceeded" (freeTree on a corrupt tree)
  kDivByZero,    // "divide by zero" (guest tables with a header whose system page holds no TCE)
};

class TceEngine {
 public:
  /** An engine over `length` bytes at `base` (8-byte aligned, so that aligned atomics are aligned on the host). */
  TceEngine(uint8_t* base, uint64_t length);

  // index.ts
  int32_t init(uint32_t memBytes, uint32_t sysPageShift);

  // alloc.ts
  uint32_t alloc(uint32_t bytes);
  void free(uint32_t p, uint32_t bytes);
  int32_t heapCheck();

  // region.ts
  uint32_t regionLookup(uint32_t mm, uint64_t ua, uint64_t size);
  int64_t regionUaToHpa(uint32_t r, uint64_t ua, uint32_t pageShift);
  int32_t regionMappedInc(uint32_t r);
  void regionMappedDec(uint32_t r);

  // table.ts
  int32_t tableInit(uint32_t tbl);
  int32_t tableUaAlloc(uint32_t tbl);
  void tableUaFree(uint32_t tbl);
  void tableFree(uint32_t tbl);
  uint64_t tableGet(uint32_t tbl, uint64_t entry);
  uint64_t tableUaGet(uint32_t tbl, uint64_t entry);
  int64_t tableNextValid(uint32_t tbl, uint64_t entry, uint64_t end);
  int64_t tableXchg(uint32_t tbl, uint64_t entry, uint64_t tce, uint32_t flags);
  int32_t tableClearV2(uint32_t tbl, uint32_t mm, uint64_t entry, uint64_t n, uint32_t flags, uint32_t pid);
  int32_t tableBuildV2(uint32_t tbl, uint32_t mm, uint64_t entry, uint64_t n, uint64_t ua, uint32_t perm, uint32_t flags,
                       uint32_t pid);

  // guest.ts
  void sttFreePages(uint32_t stt);

  // hcall.ts
  int32_t hcall(uint32_t vcpu, uint32_t level);

  /**
   * Not a port: the benchmark's C floor. Runs hcall(vcpu, level)
   * `iterations` times in a plain loop, putting back before each call the
   * two registers a hypercall writes (r3: number in, status out; r4:
   * H_GET_TCE's result) as they were on entry, so every iteration runs the
   * same call. Stops early at a fault. Returns the last status (H_TOO_HARD
   * too; 0 when iterations is 0).
   */
  int32_t hcallLoop(uint32_t vcpu, uint32_t level, uint64_t iterations);

  /** The fault of the routines run since the last clearFault(), if any. */
  Fault fault() const { return fault_; }
  /** Effective address of the access that faulted. */
  uint64_t faultAddress() const { return faultAddr_; }
  /** Bytes of the access that faulted. */
  uint32_t faultSize() const { return faultSize_; }
  /** Forgets a fault, so the next routine runs normally. */
  void clearFault();

  uint64_t length() const { return length_; }

 private:
  // Checked accesses; `a` is the effective address (see engine_access.h on wrapping).
  bool ok(uint64_t a, uint32_t size);
  bool okAtomic(uint64_t a, uint32_t size);
  SPAPR_COLD void trap(Fault why, uint64_t a, uint32_t size);
  uint32_t ld32(uint64_t a);
  uint64_t ld64(uint64_t a);
  void st32(uint64_t a, uint32_t v);
  void st64(uint64_t a, uint64_t v);
  uint32_t ald32(uint64_t a);
  uint64_t ald64(uint64_t a);
  void ast32(uint64_t a, uint32_t v);
  void ast64(uint64_t a, uint64_t v);
  uint32_t acas32(uint64_t a, uint32_t expected, uint32_t desired);
  uint64_t acas64(uint64_t a, uint64_t expected, uint64_t desired);
  uint64_t axchg64(uint64_t a, uint64_t v);
  void aadd64(uint64_t a, uint64_t v);
  void fill0(uint64_t a, uint32_t size);
  int32_t hcallInside(uint32_t vcpu, uint32_t level);
  int32_t putTceReal(uint32_t vcpu);
  int32_t complete(uint32_t vcpu, uint32_t level, uint32_t done, int32_t kind, int32_t rc);
  uint32_t findSttCached(uint32_t vm, uint64_t liobn);
  bool sttReserveList(uint32_t stt, uint64_t idx, uint32_t n, uint32_t src);
  bool sttReserveRange(uint32_t stt, uint64_t idx, uint64_t n);

  // Either kind of access (engine_access.h, "Two ways to reach memory"): R = true is raw after need().
  template <bool R> uint32_t L32(uint64_t a);
  template <bool R> uint64_t L64(uint64_t a);
  template <bool R> void S32(uint64_t a, uint32_t v);
  template <bool R> void S64(uint64_t a, uint64_t v);
  template <bool R> uint64_t P64(uint64_t a);
  template <bool R> void REL64(uint64_t a, uint64_t v);
  template <bool R> void W64(uint64_t a, uint64_t v);
  template <bool R> uint32_t AL32(uint64_t a);
  template <bool R> uint64_t AL64(uint64_t a);
  template <bool R> uint32_t CAS32(uint64_t a, uint32_t expected, uint32_t desired);
  template <bool R> uint64_t CAS64(uint64_t a, uint64_t expected, uint64_t desired);
  template <bool R> uint64_t XCHG64(uint64_t a, uint64_t v);
  template <bool R> void ADD64(uint64_t a, uint64_t v);
  template <bool R> void FILL0(uint64_t a, uint64_t size);
  template <bool R> bool need(uint64_t a, uint64_t len, bool align = true);
  SPAPR_COLD void needFailed(uint64_t a, uint64_t len, bool align);

  // alloc.ts
  bool lock();
  void unlock();
  uint32_t arenaEnd();
  uint32_t topOf(uint32_t start, uint32_t end);
  bool bit(uint32_t map, uint32_t g);
  void setBit(uint32_t map, uint32_t g);
  void clearBit(uint32_t map, uint32_t g);
  uint32_t nextSet(uint32_t map, uint32_t from, uint32_t to);
  uint32_t searchFree(uint32_t cls);
  bool isFreeBlock(uint32_t fm, uint32_t start, uint32_t top, uint32_t b);
  bool canUnlink(uint32_t fm, uint32_t start, uint32_t top, uint32_t b);
  bool headOk(uint32_t fm, uint32_t start, uint32_t top, uint32_t cls, uint32_t gone1, uint32_t gone2);
  void unlink(uint32_t b);
  void insertFree(uint32_t fm, uint32_t b, uint32_t size);
  int32_t checkHeap();
  uint64_t sysPageShift();

  // region.ts, table.ts, guest.ts helpers, for either kind of access.
  template <bool R> uint32_t regionLookupT(uint32_t mm, uint64_t ua, uint64_t size);
  template <bool R> int64_t regionUaToHpaT(uint32_t r, uint64_t ua, uint32_t pageShift);
  template <bool R> int32_t regionMappedIncT(uint32_t r);
  template <bool R> void regionMappedDecT(uint32_t r);
  int64_t relIndex(uint32_t tbl, uint64_t entry);
  template <bool R> uint32_t leafNodeT(uint32_t tbl, uint32_t rootField, uint32_t bytesField, uint64_t rel, bool grow);
  template <bool R> uint32_t leafBitsT(uint32_t tbl);
  uint32_t slot(uint32_t tbl, uint32_t rootField, uint32_t bytesField, uint64_t idx, bool grow);
  template <bool R> uint64_t skipAbsentT(uint32_t tbl, uint64_t idx);
  uint32_t rootSize(uint32_t tbl);
  void freeTree(uint32_t node, uint32_t lvl, uint32_t nodeBits, uint32_t bits, uint32_t depth);
  template <bool R> uint64_t lockViewT(uint32_t pua, uint64_t tagBits, uint32_t spins);
  template <bool R> void unuseUaT(uint32_t mm, uint64_t ua, uint32_t pageShift);
  int32_t buildOneV2(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t ua, uint32_t perm, uint32_t flags, uint32_t pid);
  int64_t clearOne(uint32_t tbl, uint32_t mm, uint64_t idx, uint32_t p, uint32_t flags, uint32_t pid);
  template <bool R> uint32_t findSttT(uint32_t vm, uint64_t liobn);
  template <bool R> uint32_t findSlotT(uint32_t vm, uint64_t gpa);
  template <bool R> uint32_t gpaToHostT(uint32_t vm, uint64_t gpa, uint64_t len);
  template <bool R> uint64_t tceShiftT();
  template <bool R> uint32_t sttPageT(uint32_t stt, uint64_t pg, bool grow);
  template <bool R> uint32_t sttSlotT(uint32_t stt, uint64_t idx, bool grow);
  template <bool R> bool sttPagesPresentT(uint32_t stt, uint64_t idx, uint64_t n);
  template <bool R> bool sttFillT(uint32_t stt, uint64_t idx, uint64_t n, uint64_t value, bool grow);
  template <bool R> uint64_t sttGetT(uint32_t stt, uint64_t idx);

  // hcall.ts (raw accesses)
  uint64_t gpr(uint32_t vcpu, uint32_t n);
  void setGpr(uint32_t vcpu, uint32_t n, uint64_t v);
  bool iobaOk(uint32_t stt, uint64_t ioba, uint64_t npages);
  uint32_t stit(uint32_t stt, uint32_t s);
  uint32_t stitCount(uint32_t stt);
  bool pidCallCheck(uint32_t stt, uint32_t pid);
  bool entryCheck();
  bool callCheckFails(uint32_t stt, uint32_t pid);
  bool hasV1(uint32_t stt);
  uint64_t uaOf(uint64_t gpa);
  bool regionFind(uint64_t ua, uint32_t tshift);
  uint64_t cachedHpa(uint64_t ua);
  bool transfers(uint64_t oldTce, uint64_t oldUa);
  uint64_t lockSlot(uint32_t pua, uint64_t tag, uint32_t spins, bool noLock);
  SPAPR_COLD uint64_t lockWait(uint32_t pua, uint64_t tag, uint32_t spins);
  void regionReset() {
    cR_ = 0;
    cUa_ = 1;
    cLast_ = 0;
  }
  uint32_t checkPass(uint32_t tbl, uint32_t lim, uint64_t r0, uint32_t subShift, bool grow);
  uint32_t lockPass(uint32_t tbl, uint32_t n, uint64_t r0, uint32_t subShift, bool grow);
  void applyPass(uint32_t tbl, uint32_t n, uint64_t r0, uint32_t subShift);
  void undoPass(uint32_t tbl, uint32_t end, uint64_t r0, uint32_t subShift);
  uint32_t subShiftOf(uint32_t gshift, uint32_t tbl);
  int32_t misalignedTce(bool grow);
  uint64_t tagBitsOf(uint32_t vcpu);
  int32_t putEntries(uint32_t vcpu, uint32_t stt, uint64_t entry, uint64_t idx, uint32_t n, bool grow);
  void begin(uint32_t vm, uint32_t src);
  bool dirtyOn(uint32_t vm);
  void dirtyMark(uint32_t vm, uint64_t tce, uint32_t shift);
  void markBegin();
  void orBits(uint32_t word, uint32_t mask);
  void markEnd();
  void markPages(uint32_t bits, uint64_t pages, uint64_t from, uint64_t to);
  void markSlots(uint32_t vm, uint64_t gpa, uint64_t size);
  void markTce(uint32_t vm, uint64_t tce, uint32_t shift);
  void dirtyMarkList(uint32_t vm, uint32_t src, uint32_t n, uint32_t shift);
  uint32_t lockFast(uint32_t tbl, uint32_t n, uint64_t r0, uint64_t pageMask);
  void applyFast(uint32_t tbl, uint32_t stt, uint32_t n, uint64_t r0, uint64_t idx);
  int32_t putFast(uint32_t vcpu, uint32_t stt, uint64_t entry, uint64_t idx, uint32_t n);
  int32_t putFused(uint32_t tbl, uint32_t stt, uint32_t n, uint64_t r0, uint64_t idx, uint64_t pageMask);
  int32_t putOne(uint32_t vm, uint32_t vcpu, uint32_t stt, uint64_t entry, uint32_t page, uint32_t slot, uint64_t tce);
  uint32_t ablations();
  int32_t putTce(uint32_t vm, uint32_t vcpu, bool grow, bool lean = false);
  int32_t putTceIndirect(uint32_t vm, uint32_t vcpu, bool grow);
  int64_t stuffLock(uint32_t tbl, uint64_t lo, uint64_t hi);
  void stuffUndo(uint32_t tbl, uint64_t lo, uint64_t hi);
  void stuffApply(uint32_t tbl, uint64_t lo, uint64_t hi);
  int32_t stuffTce(uint32_t vm, uint32_t vcpu, bool grow);
  int32_t getTce(uint32_t vm, uint32_t vcpu);
  uint32_t qemuFind(uint32_t vm, uint64_t liobn);
  int32_t qemuPut(uint32_t vm, uint32_t stt, uint64_t ioba, uint64_t tce);
  int32_t qemuHcall(uint32_t vm, uint32_t vcpu, uint64_t nr);

  uint8_t* base_;
  uint64_t length_;
  // length_ while no fault is pending, 0 after one: every later checked access fails.
  uint64_t limit_;
  // The AssemblyScript module globals (per WebAssembly instance, so per
  // thread; this engine is per thread too). table.ts: the level at which the
  // last failed read-only walk found a level missing.
  uint32_t absentLevel_ = 0;
  // hcall.ts: the hypercall the passes work for, and the memslot and region
  // the last lookups found (see hcall.ts for each).
  // dirty.ts: the memslot the last mark found and the pending OR of one call's marks.
  uint64_t kBase_ = 1;
  uint64_t kSpan_ = 0;
  uint64_t kPages_ = 0;
  uint64_t kShift_ = 0;
  uint32_t kBits_ = 0;
  uint32_t dWord_ = 0;
  uint32_t dMask_ = 0;
  uint32_t xVm_ = 0;
  uint32_t xMm_ = 0;
  uint32_t xSrc_ = 0;
  uint64_t xTag_ = 0;
  uint32_t xSpins_ = 0;
  bool xPidCheck_ = false;
  bool xNoLock_ = false;
  uint32_t xPid_ = 0;
  int32_t xRc_ = 0;
  uint64_t mBase_ = 1;
  uint64_t mLast_ = 0;
  uint64_t mUa_ = 0;
  uint32_t cR_ = 0;
  uint64_t cUa_ = 1;
  uint64_t cLast_ = 0;
  uint32_t cHpas_ = 0;
  bool cDev_ = false;
  uint64_t cDevHpa_ = 0;
  // hcall.ts findSttCached: the last LIOBN → guest table lookup of the real-mode H_PUT_TCE path,
  // valid while HDR.gracePeriods is unchanged (the argument is in hcall.ts).
  uint32_t cVm_ = 0;
  uint64_t cLiobn_ = 0;
  uint32_t cGp_ = 0;
  uint32_t cStt_ = 0;
  uint64_t gSysShift_ = 0;
  uint64_t gSysMask_ = 0;
  uint64_t gTceShift_ = 0;
  uint64_t gTceMask_ = 0;
  // lockFast's findings for applyFast: each entry's ua and each leaf's pair
  // of nodes, in order (at most one new leaf per entry).
  struct LeafPair {
    uint32_t ua, tce;
  };
  uint64_t uas_[INDIRECT_MAX] = {};
  LeafPair leaves_[INDIRECT_MAX] = {};
  Fault fault_ = Fault::kNone;
  uint32_t faultSize_ = 0;
  uint64_t faultAddr_ = 0;
};

// Pure helpers of alloc.ts / table.ts, exposed for tests and the benchmark.
/** log2 of the power of two `bytes` rounds up to (at least 64); 0 when impossible (alloc.ts#blockShift). */
uint32_t blockShift(uint32_t bytes);
/** Bytes a request of `bytes` takes (a multiple of 64); 0 when impossible (alloc.ts#blockSize). */
uint32_t blockSize(uint32_t bytes);
/** Bytes of a tree node; 0 if too large (table.ts#nodeSize). */
uint32_t nodeSize(bool isLeaf, uint32_t bits);

}  // namespace spapr

#pragma GCC visibility pop
