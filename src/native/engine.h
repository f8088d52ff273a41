// The C++ real-mode engine: the routines of assembly/ (alloc.ts, region.ts,
// table.ts, guest.ts, hcall.ts, index.ts#init), one for one, on the bytes of the shared linear
// memory. Same arguments, same results, same bytes written in the same order,
// same allocation order, so that a memory driven through this engine stays
// byte-identical to one driven through the WebAssembly build (the
// differential test, test/differential/engines.test.ts, checks exactly that).
//
// No N-API in here: engine_binding.cc wraps it for JavaScript, and a plain
// C++ loop (the benchmark's baseline) can drive it directly.
//
// Memory model, as WebAssembly's:
//  - every address is a u32 offset from `base`; pointer fields in memory are
//    u32 offsets too, 0 meaning "absent";
//  - little-endian, plain loads and stores may be unaligned;
//  - where the AssemblyScript code uses atomic.*, this uses a sequentially
//    consistent __atomic builtin on the same address (WebAssembly atomics are
//    seq_cst), so both engines and several threads can share one memory;
//  - a WebAssembly access outside the memory, or an unaligned atomic, traps.
//    Here every access is checked first; a failing one records a fault and
//    from then on every access of the call fails too (loads give 0, stores
//    and atomics do nothing), so the memory is left exactly as the trapping
//    WebAssembly instruction left it. The caller checks fault() after each
//    routine; the binding turns a fault into a WebAssembly.RuntimeError.
#pragma once

#include <cstdint>

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
  int32_t buildOneV2(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t ua, uint32_t perm, uint32_t flags, uint32_t pid);
  int64_t clearOne(uint32_t tbl, uint32_t mm, uint64_t idx, uint32_t p, uint32_t flags, uint32_t pid);
  int32_t checkMapOne(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t ua, bool grow);
  int32_t clearRel(uint32_t tbl, uint32_t mm, uint64_t idx, uint64_t n, uint32_t flags, uint32_t pid);

  // guest.ts
  uint32_t findStt(uint32_t vm, uint64_t liobn);
  uint64_t gpaToUa(uint32_t vm, uint64_t gpa);
  uint32_t gpaToHost(uint32_t vm, uint64_t gpa, uint64_t len);
  uint32_t sttSlot(uint32_t stt, uint64_t idx, bool grow);
  bool sttPagesPresent(uint32_t stt, uint64_t idx, uint64_t n);
  uint64_t sttGet(uint32_t stt, uint64_t idx);
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
  // Checked accesses; `a` is the effective address (see engine.cc on wrapping).
  bool ok(uint64_t a, uint32_t size);
  bool okAtomic(uint64_t a, uint32_t size);
  void trap(Fault why, uint64_t a, uint32_t size);
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
  int64_t relIndex(uint32_t tbl, uint64_t entry);
  uint32_t slot(uint32_t tbl, uint32_t rootField, uint32_t bytesField, uint64_t idx, bool grow);
  uint64_t skipAbsent(uint32_t tbl, uint64_t idx);
  uint32_t rootSize(uint32_t tbl);
  void freeTree(uint32_t node, uint32_t lvl, uint32_t nodeBits, uint32_t bits, uint32_t depth);
  uint64_t lockView(uint32_t pua);
  void unuseUa(uint32_t mm, uint64_t ua, uint32_t pageShift);
  uint32_t findSlot(uint32_t vm, uint64_t gpa);
  uint64_t tcesPerPage();
  uint64_t gpr(uint32_t vcpu, uint32_t n);
  void setGpr(uint32_t vcpu, uint32_t n, uint64_t v);
  bool iobaOk(uint32_t stt, uint64_t ioba, uint64_t npages);
  bool pidCallCheck(uint32_t stt, uint32_t pid);
  uint32_t entryCheckFlag();
  bool callCheckFails(uint32_t stt, uint32_t pid);
  bool checkStits(uint32_t stt, uint32_t mm, uint64_t entry, uint64_t ua, uint32_t perm, bool grow);
  bool applyStits(uint32_t stt, uint32_t mm, uint64_t entry, uint64_t ua, uint32_t perm, uint32_t flags, uint32_t checkPid,
                  uint32_t pid);
  void sttPut(uint32_t stt, uint64_t idx, uint64_t tce, bool grow);
  int32_t putTce(uint32_t vm, uint32_t vcpu, uint32_t flags);
  int32_t putTceIndirect(uint32_t vm, uint32_t vcpu, uint32_t flags);
  int32_t stuffTce(uint32_t vm, uint32_t vcpu, uint32_t flags);
  int32_t getTce(uint32_t vm, uint32_t vcpu);
  uint32_t qemuFind(uint32_t vm, uint64_t liobn);
  int32_t qemuPut(uint32_t stt, uint64_t ioba, uint64_t tce);
  int32_t qemuHcall(uint32_t vm, uint32_t vcpu, uint64_t nr);

  uint8_t* base_;
  uint64_t length_;
  // length_ while no fault is pending, 0 after one: every later access fails.
  uint64_t limit_;
  // The AssemblyScript module global of table.ts: level at which the last
  // failed read-only walk found a level missing. Per engine, as the global is
  // per WebAssembly instance.
  uint32_t absentLevel_ = 0;
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
