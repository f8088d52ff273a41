// The TCE hypercalls on a vCPU register block (r3 = number, r4.. = args).
//
// Profile kvm (arch/powerpc/kvm/book3s_64_vio_hv.c, the real-mode handlers
// of ≤v5.18, and book3s_64_vio.c): one routine serves both modes. Real mode
// (flags without OP_ALLOC) never allocates; virtual mode (OP_ALLOC, driven
// from src/vcpu.ts after real mode answered H_TOO_HARD) may. Every call
// first checks everything it will need for every hardware table, every
// subpage and every entry, and takes the lock of every entry it will change,
// and only then writes, so H_TOO_HARD and H_PARAMETER always leave the
// tables exactly as they were.
//
// Profile qemu (QEMU hw/ppc/spapr_iommu.c): the emulated handlers, which
// only return H_SUCCESS or H_PARAMETER and may stop part-way.
//
// The routines here are mirrored statement by statement in
// src/native/engine_hcall*.cc (TceEngine), so that both engines leave the
// same bytes (test/differential/hcalls.test.ts).
import {
  VCPU_GPR, VCPU_VM, VCPU_PID, VCPU_LOCK_TAG, VCPU_TCES, VM_MM, VM_PROFILE, STT_OFFSET, STT_SIZE, STT_PAGE_SHIFT,
  STT_STIT_COUNT, STT_STITS, STT_NPAGES, STT_PAGES, MM_REGIONS, REG_NEXT, TBL_PAGE_SHIFT, TBL_OWNER_PID, TBL_OFFSET, TBL_SIZE, TBL_FLAGS, TBL_ROOT, TBL_UA_ROOT,
  TBL_NODE_BYTES, TBL_UA_NODE_BYTES, TABLE_F_V2, SLOT_GPA, SLOT_SIZE, SLOT_UA, REG_UA, REG_ENTRIES, REG_HPAS, REG_FLAGS, REG_PAGE_SHIFT,
  REG_DEV_HPA, REGION_F_DEV,
  HEADER_BASE, HDR_OWNER_CHECK, HDR_PID_PLACEMENT, OWNER_CHECK_PID, PID_CHECK_ENTRY, HDR_KERNEL, KERNEL_4_19,
  H_GET_TCE, H_PUT_TCE, H_STUFF_TCE, H_PUT_TCE_INDIRECT, H_SUCCESS, H_PARAMETER, H_TOO_HARD, H_HARDWARE,
  OP_ALLOC, TCE_PERM_MASK, TCE_READ, TCE_WRITE, PROFILE_QEMU, INDIRECT_MAX, VCPU_LEVEL, VCPU_STATS,
  LEVEL_NONE, LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT, KIND_PUT, KIND_INDIRECT, KIND_STUFF, KIND_GET,
  VIEW_LOCK, VIEW_LOCK_BITS, VIEW_TAG_SHIFT, LOCK_SPINS_REAL, LOCK_SPINS_VIRTUAL, MAX_STITS,
  HDR_ABLATE, ABLATE_VIEW_LOCK, ABLATE_VALIDATE, ABLATE_SMR_READ, VCPU_RCU_SEQ, HDR_GRACE_PERIODS, TBL_LEVELS, TBL_ROOT_BITS,
  TBL_LEVEL_BITS,
} from './generated/layout';
import { findStt, findSlot, gpaToUa, gpaToUaFirst, gpaToHost, sttPage, sttSlot, sttPagesPresent, sttGet, sttFill, tceShift } from './guest';
import { leafNode, leafPeek, leafBits, leafEnd, skipAbsent, lockView, unuseUa } from './table';
import { sysPageShift, regionLookup, regionLookupFirst, regionUaToHpa, regionMappedInc, regionMappedDec } from './region';
import { dirtyOn, dirtyMark, dirtyMarkList } from './dirty';

@inline function gpr(vcpu: u32, n: u32): u64 {
  return load<u64>(vcpu + VCPU_GPR + (n << 3));
}

@inline function setGpr(vcpu: u32, n: u32, v: u64): void {
  store<u64>(vcpu + VCPU_GPR + (n << 3), v);
}

/** Counter index of a hypercall number (KIND_*), or -1. */
@inline function kindOf(nr: u64): i32 {
  if (nr == <u64>H_PUT_TCE) return KIND_PUT;
  if (nr == <u64>H_PUT_TCE_INDIRECT) return KIND_INDIRECT;
  if (nr == <u64>H_STUFF_TCE) return KIND_STUFF;
  if (nr == <u64>H_GET_TCE) return KIND_GET;
  return -1;
}

/**
 * Runs the hypercall in the vCPU's registers at `level` (LEVEL_REAL: real
 * mode, never allocates; LEVEL_VIRTUAL: may allocate). Returns the H_*
 * status; r3 receives it unless it is H_TOO_HARD (the next level re-runs the
 * call from the same registers). Unknown hypercall numbers are H_TOO_HARD:
 * not ours. The QEMU profile is userspace: either level runs it, as
 * LEVEL_EXIT. Counts the completion in the vCPU's stats[kind][level]. Any
 * other level is H_PARAMETER, with nothing written.
 */
export function hcall(vcpu: u32, level: u32): i32 {
  // Only the chain's two levels run; any other (from the engine API) is refused and changes nothing:
  // no r3, no VCPU.level, no counter (stats[kind·4 + level] would lie past the counters).
  if (level - <u32>LEVEL_REAL > <u32>(LEVEL_VIRTUAL - LEVEL_REAL)) return H_PARAMETER;
  // The reclamation read side (src/core/reclaim.ts): rcuSeq is odd from here
  // to the end of the call. The entry store is atomic (seq_cst, an xchg on
  // x86): it must be visible before the first load of a shared descriptor,
  // which a plain store is not (x86 lets a later load pass it). The exit store
  // must not move before the call's loads: WebAssembly has no release store,
  // so it is atomic too. ABLATE_SMR_READ (bench/ only) runs the call without them.
  let inside: u32 = 0;
  if ((ablations() & <u32>ABLATE_SMR_READ) == 0) {
    inside = (load<u32>(vcpu + VCPU_RCU_SEQ) + 1) | 1;
    atomic.store<u32>(vcpu + VCPU_RCU_SEQ, inside);
  }
  // The single H_PUT_TCE in real mode straight through (putTceReal); everything else, and what it
  // bails out of with nothing written, through hcallInside, which also makes the exit store. Either
  // is hcall's last act: no status is tested after it, and nothing of the fast path lives across
  // the call (WebAssembly calls keep no register, and V8 spilled every value that did at its
  // definition, on the fast path too).
  if (level == <u32>LEVEL_REAL) {
    if (gpr(vcpu, 3) == <u64>H_PUT_TCE) return putTceReal(vcpu, inside);
  }
  return hcallInside(vcpu, level, inside);
}

/** The read side's exit store, when hcall made the entry store (`inside`, odd, so never 0). */
@inline function readExit(vcpu: u32, inside: u32): void {
  if (inside != 0) atomic.store<u32>(vcpu + VCPU_RCU_SEQ, inside + 1);
}

/** hcall() from after the read-side entry (`inside`, the value it stored, 0 without it) to its exit. */
function hcallInside(vcpu: u32, level: u32, inside: u32): i32 {
  const vm = load<u32>(vcpu + VCPU_VM);
  const nr = gpr(vcpu, 3);
  const grow = level != <u32>LEVEL_REAL;
  let rc: i32;
  let done = level;
  let kind: i32 = -1;
  if (load<u32>(vm + VM_PROFILE) == <u32>PROFILE_QEMU) {
    rc = qemuHcall(vm, vcpu, nr);
    done = <u32>LEVEL_EXIT;
    kind = kindOf(nr);
  } else if (nr == <u64>H_PUT_TCE) {
    rc = putTce(vm, vcpu, grow);
    kind = KIND_PUT;
  } else if (nr == <u64>H_PUT_TCE_INDIRECT) {
    rc = putTceIndirect(vm, vcpu, grow);
    kind = KIND_INDIRECT;
  } else if (nr == <u64>H_STUFF_TCE) {
    rc = stuffTce(vm, vcpu, grow);
    kind = KIND_STUFF;
  } else if (nr == <u64>H_GET_TCE) {
    rc = getTce(vm, vcpu);
    kind = KIND_GET;
  } else {
    rc = H_TOO_HARD;
  }
  rc = complete(vcpu, level, done, kind, rc);
  readExit(vcpu, inside);
  return rc;
}

/**
 * The end of every hypercall at `level` (hcallInside, putTceReal): r3
 * receives `rc` unless it is H_TOO_HARD, which defers the call to the next
 * level (from real mode: none yet, LEVEL_NONE; from virtual mode: the exit
 * to the VMM); VCPU.level records the level that answered (`done`, or that
 * deferral), and the counter stats[kind][done] of a completion goes up.
 * Returns rc.
 */
@inline function complete(vcpu: u32, level: u32, done: u32, kind: i32, rc: i32): i32 {
  if (rc != H_TOO_HARD) setGpr(vcpu, 3, <u64><i64>rc);
  else if (level == <u32>LEVEL_VIRTUAL) done = <u32>LEVEL_EXIT;
  else done = <u32>LEVEL_NONE;
  store<u32>(vcpu + VCPU_LEVEL, done);
  // LEVEL_NONE (real mode deferred) is no completion; the other three have counters.
  if (kind >= 0 && done != <u32>LEVEL_NONE) {
    const c = vcpu + VCPU_STATS + ((<u32>kind * 4 + done) << 2);
    store<u32>(c, load<u32>(c) + 1);
  }
  return rc;
}

// --- profile kvm ---------------------------------------------------------------

/** kvmppc_ioba_validate: aligned to the guest page and [ioba, +npages) inside the table. */
@inline function iobaOk(stt: u32, ioba: u64, npages: u64): bool {
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  if (ioba & ((<u64>1 << shift) - 1)) return false;
  const idx = ioba >> shift;
  const off = load<u64>(stt + STT_OFFSET);
  if (idx < off) return false;
  const size = load<u64>(stt + STT_SIZE);
  return npages <= size && idx - off <= size - npages;
}

/** Hardware tables linked to `stt`: its count, never more than the descriptor holds. */
@inline function stitCount(stt: u32): u32 {
  const n = load<u32>(stt + STT_STIT_COUNT);
  return n < <u32>MAX_STITS ? n : <u32>MAX_STITS;
}

/** The pid check once per hypercall: every linked table must belong to the vCPU's process. */
@inline function pidCallCheck(stt: u32, pid: u32): bool {
  const n = stitCount(stt);
  for (let i: u32 = 0; i < n; i++) {
    if (load<u32>(load<u32>(stt + STT_STITS + (i << 2)) + TBL_OWNER_PID) != pid) return false;
  }
  return true;
}

/** Whether the host compares the pid at every view write (the placement the 2015 review proposed). */
@inline function entryCheck(): bool {
  const h = <u32>HEADER_BASE;
  return load<u32>(h + HDR_OWNER_CHECK) == <u32>OWNER_CHECK_PID && load<u32>(h + HDR_PID_PLACEMENT) == <u32>PID_CHECK_ENTRY;
}

/**
 * The pid check at hypercall entry. With the per-write placement it runs too,
 * so that a refused call changes nothing; the per-write compare then comes on
 * top of it, at every view slot the call locks to write.
 */
@inline function callCheckFails(stt: u32, pid: u32): bool {
  return load<u32>(<u32>HEADER_BASE + HDR_OWNER_CHECK) == <u32>OWNER_CHECK_PID && !pidCallCheck(stt, pid);
}

/** Whether a hardware table linked to `stt` is v1 (pinned per entry, which only the VMM can do). */
@inline function hasV1(stt: u32): bool {
  const n = stitCount(stt);
  for (let i: u32 = 0; i < n; i++) {
    if ((load<u32>(load<u32>(stt + STT_STITS + (i << 2)) + TBL_FLAGS) & <u32>TABLE_F_V2) == 0) return true;
  }
  return false;
}

// The memslot and the region the last lookups found, kept for the entries
// that follow: the entries of one hypercall mostly map pages of one memslot
// and one region. Module globals are per instance, i.e. per thread. A slot
// hit is gpa − mBase ≤ mLast, a region hit ua − cUa ≤ cLast (unsigned).
let mBase: u64 = 1;
let mLast: u64 = 0;
let mUa: u64 = 0;
let cR: u32 = 0;
let cUa: u64 = 1;
let cLast: u64 = 0;
let cHpas: u32 = 0;
let cDev: bool = false;
let cDevHpa: u64 = 0;
// Loop invariants the passes read from globals, set once per call or pass:
// V8 recomputes a shifted mask inside the loop rather than keep it in a
// register, while a global is one memory operand.
let gSysShift: u64 = 0;
let gSysMask: u64 = 0;
let gLeafMask: u64 = 0;
let gTceShift: u64 = 0;
let gTceMask: u64 = 0;

/** Forgets the cached memslot (a new hypercall). */
@inline function slotReset(): void {
  mBase = 1;
  mLast = 0;
}

/** Forgets the cached region (a new hardware table: another IOMMU page size). */
@inline function regionReset(): void {
  cR = 0;
  cUa = 1;
  cLast = 0;
}

/** Userspace address of `gpa`, 0 outside every memslot (kvmppc_tce_to_ua), through the memslot cache. */
@inline function uaOf(vm: u32, gpa: u64): u64 {
  if (gpa - mBase > mLast) {
    const s = findSlot(vm, gpa);
    if (s == 0) return 0;
    mBase = load<u64>(s + SLOT_GPA);
    mLast = load<u64>(s + SLOT_SIZE) - 1;
    mUa = load<u64>(s + SLOT_UA);
  }
  return mUa + (gpa - mBase);
}

/**
 * Caches the region of `mm` that backs the IOMMU page of 2^tshift bytes at
 * `ua` (mm_iommu_lookup, then the checks of mm_iommu_ua_to_hpa); false when
 * none can. Regions of one mm never overlap, so every page of the cached
 * region's range has that region as its lookup result, and translates.
 */
function regionFind(mm: u32, ua: u64, tshift: u32): bool {
  const r = regionLookup(mm, ua, <u64>1 << <u64>tshift);
  if (r == 0 || regionUaToHpa(r, ua, tshift) < 0) return false;
  cR = r;
  cUa = load<u64>(r + REG_UA);
  cLast = (load<u64>(r + REG_ENTRIES) << sysPageShift()) - (<u64>1 << <u64>tshift);
  cHpas = load<u32>(r + REG_HPAS);
  cDev = (load<u32>(r + REG_FLAGS) & <u32>REGION_F_DEV) != 0;
  cDevHpa = load<u64>(r + REG_DEV_HPA);
  return true;
}

/** The host address of `ua` in the cached region (mm_iommu_ua_to_hpa), which holds it. */
@inline function cachedHpa(ua: u64): u64 {
  const d = ua - cUa;
  if (cDev) return cDevHpa + d;
  return (load<u64>(cHpas + (<u32>(d >> gSysShift) << 3)) & ~gSysMask) | (ua & gSysMask);
}

/**
 * Whether the old entry's reference can pass to the new one: it was valid
 * and mapped from the cached region, into which the new ua maps too. Then
 * the region's `mapped` stays as it is instead of +1 and −1 (the kernel does
 * both); under the entry's lock nothing else can move that reference.
 */
@inline function transfers(oldTce: u64, oldUa: u64): bool {
  if ((oldTce & <u64>TCE_PERM_MASK) == 0) return false;
  if (oldUa == 0) return false;
  return oldUa - cUa <= cLast;
}

// The passes over one hardware table linked to the guest entries [entry,
// entry + n) of a H_PUT_TCE (n = 1) or H_PUT_TCE_INDIRECT. Guest entry i
// covers `sub` = 2^(guest − table page shift) consecutive table entries
// from r0 + i·sub (r0 = entry·sub − it_offset, as kvmppc_tce_iommu_map
// computes it). TCE i is at src + 8i (the vCPU's copy of the list, or r6).
//
// The memory-ordering argument, for all of them (WebAssembly has only
// sequentially consistent atomics; V8 compiles atomic.load to a plain load,
// read-modify-writes to locked instructions on x86-64 and to acquire-release
// sequences on arm64, and atomic.store to xchg):
//  - the view slot's lock is taken by compare-and-swap (an acquire) and let
//    go by the plain store that writes the entry's new ua (the kernel's
//    it_userspace stores are plain too; it has no lock): the ua lives in
//    the lock word itself, so the next holder's compare-and-swap reads it by
//    coherence of that one location, and the store cannot become visible
//    before the holder's own read-modify-writes, which precede it and are
//    acquires (x86: locked instructions are full fences). An atomic.store
//    here would be one more locked instruction per entry;
//  - the TCE is changed by exchange (the kernel's iommu_tce_xchg: the old
//    value comes back atomically with the change, and readers that hold no
//    lock, DMA and H_GET_TCE, see the old or the new TCE). Every writer of a
//    v2 table's TCEs holds the entry's view lock, so the exchanges of
//    successive holders are ordered by the lock, and the value a holder
//    reads under the lock is the one its exchange replaces;
//  - `mapped` changes by compare-and-swap loops (atomic64_inc_not_zero /
//    atomic64_add_unless), exact whatever the order; the increment is taken
//    while validating, so a region cannot die between the check and the
//    write, and where the old entry's reference passes to the new one no
//    counter is touched (`transfers`);
//  - the guest table (kvmppc_tce_put) and the vCPU's own list copy are plain
//    stores: the kernel's are plain, and each aligned 8-byte entry is read
//    whole (old or new) by H_GET_TCE's atomic load and by the VMM.
// So a map costs four locked instructions per entry as in the kernel
// (lock, exchange, increment, decrement), two when the reference transfers.

// The hypercall the passes work for (set by putEntries and stuffTce):
// module globals, so per instance, i.e. per thread.
let xVm: u32 = 0;
let xMm: u32 = 0;
let xSrc: u32 = 0;
let xTag: u64 = 0;
let xSpins: u32 = 0;
let xPidCheck: bool = false;
let xPid: u32 = 0;
// ABLATE_VIEW_LOCK: the benchmark's run without the view lock (the slot is read, not locked).
let xNoLock: bool = false;

/** The benchmark ablations in force (HDR.ablate; 0 outside bench/). */
@inline function ablations(): u32 {
  return load<u32>(<u32>HEADER_BASE + HDR_ABLATE);
}

/**
 * Takes the lock of view slot `pua` with the bits `tag`: one attempt inline,
 * the bounded wait of `spins` tries out of line (lockWait). The unlocked
 * value, or VIEW_LOCK. `noLock` (ABLATE_VIEW_LOCK) reads the slot instead.
 */
@inline function lockSlot(pua: u32, tag: u64, spins: u32, noLock: bool): u64 {
  // A plain load: only a guess, which the compare-and-swap checks.
  const v = load<u64>(pua);
  if (noLock) return v & ~<u64>VIEW_LOCK_BITS;
  if ((v & <u64>VIEW_LOCK) == 0 && atomic.cmpxchg<u64>(pua, v, (v & ~<u64>VIEW_LOCK_BITS) | tag) == v) return v;
  return lockWait(pua, tag, spins);
}

/** lockView out of line: only a held lock gets here, and its loop stays out of the callers' code. */
function lockWait(pua: u32, tag: u64, spins: u32): u64 {
  return lockView(pua, tag, spins);
}

/** Whether guest entry `i`'s subpages, from `rel`, all lie in the table: else its clear does nothing there (clearRel's check). */
@inline function clearInside(rel: u64, toff: u64, tsize: u64, subMask: u64): bool {
  return rel + toff >= toff && rel < tsize && subMask < tsize - rel;
}

/**
 * Checks, without writing, what the lock pass would check for table `tbl`
 * and entries [0, lim): inside the table, the levels present (real mode) or
 * the view allocated (virtual mode), a region backing each page
 * (kvmppc_tce_validate, the failure cases of kvmppc_rm_tce_iommu_do_map).
 * Returns lim, or the first entry that fails. Clears need nothing.
 */
function checkPass(tbl: u32, lim: u32, r0: u64, subShift: u32, grow: bool): u32 {
  const tsize = load<u64>(tbl + TBL_SIZE);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  const lb = <u64>leafBits(tbl);
  const subMask: u64 = (<u64>1 << <u64>subShift) - 1;
  const total: u64 = <u64>lim << <u64>subShift;
  let key: u64 = <u64>-1;
  let perm: u64 = 0;
  let ua: u64 = 0;
  regionReset();
  for (let j: u64 = 0; j < total; j++) {
    const k = j & subMask;
    if (k == 0) {
      const tce = load<u64>(xSrc + (<u32>(j >> <u64>subShift) << 3));
      perm = tce & <u64>TCE_PERM_MASK;
      if (perm == 0) {
        j += subMask;
        continue;
      }
      ua = uaOf(xVm, tce & ~<u64>TCE_PERM_MASK);
    }
    const rel = r0 + j;
    const i = <u32>(j >> <u64>subShift);
    if (rel >= tsize) return i;
    if (grow) {
      if (atomic.load<u32>(tbl + TBL_UA_ROOT) == 0) return i;
    } else if ((rel >> lb) != key) {
      if (leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false) == 0) return i;
      if (leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false) == 0) return i;
      key = rel >> lb;
    }
    const uak = ua + (k << <u64>tshift);
    if (uak - cUa > cLast && !regionFind(xMm, uak, tshift)) return i;
  }
  return lim;
}

/**
 * The validate pass of table `tbl` over the call's entries [0, n)
 * (kvmppc_tce_validate and the checks of kvmppc_rm_tce_iommu_do_map). Guest
 * entry i covers table entries r0 + (i << subShift) + k, k < 2^subShift,
 * walked as one run. For a map, every subpage inside the table, its leaves
 * present (allocated when `grow`), a region backing its page, the owner's
 * pid compared (per-write placement), its view slot locked for this vCPU,
 * and the new region counted unless the old entry's reference transfers;
 * for a clear, every valid entry that has a view slot locked. Returns n, or
 * the first entry that failed; the failing subpage keeps no lock or count,
 * and undoPass gives back the rest.
 */
function lockPass(tbl: u32, n: u32, r0: u64, subShift: u32, grow: bool): u32 {
  const tsize = load<u64>(tbl + TBL_SIZE);
  const toff = load<u64>(tbl + TBL_OFFSET);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  const lb = <u64>leafBits(tbl);
  const lmask: u64 = (<u64>1 << lb) - 1;
  const subMask: u64 = (<u64>1 << <u64>subShift) - 1;
  const total: u64 = <u64>n << <u64>subShift;
  let key: u64 = <u64>-1;
  let tl: u32 = 0;
  let ul: u32 = 0;
  let perm: u64 = 0;
  let ua: u64 = 0;
  regionReset();
  for (let j: u64 = 0; j < total; j++) {
    const rel = r0 + j;
    const k = j & subMask;
    if (k == 0) {
      const tce = load<u64>(xSrc + (<u32>(j >> <u64>subShift) << 3));
      perm = tce & <u64>TCE_PERM_MASK;
      if (perm != 0) {
        ua = uaOf(xVm, tce & ~<u64>TCE_PERM_MASK);
      } else if (!clearInside(rel, toff, tsize, subMask)) {
        j += subMask;
        continue;
      }
    }
    const off = <u32>(rel & lmask) << 3;
    if (perm != 0) {
      if (rel >= tsize) return <u32>(j >> <u64>subShift);
      const uak = ua + (k << <u64>tshift);
      if (uak - cUa > cLast && !regionFind(xMm, uak, tshift)) return <u32>(j >> <u64>subShift);
      if ((rel >> lb) != key || tl == 0) {
        // View first, then TCE, as tce_iommu_build_v2 resolves them.
        key = rel >> lb;
        ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, grow);
        tl = ul == 0 ? 0 : leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, grow);
        if (tl == 0) return <u32>(j >> <u64>subShift);
      }
      if (xPidCheck && atomic.load<u32>(tbl + TBL_OWNER_PID) != xPid) return <u32>(j >> <u64>subShift);
      const v = lockSlot(ul + off, xTag, xSpins, xNoLock);
      if (v & <u64>VIEW_LOCK) return <u32>(j >> <u64>subShift);
      // Under the lock the TCE cannot change: a plain load.
      if (!transfers(load<u64>(tl + off), v & ~<u64>VIEW_LOCK_BITS) && regionMappedInc(cR) != 0) {
        store<u64>(ul + off, v);
        return <u32>(j >> <u64>subShift);
      }
    } else {
      if ((rel >> lb) != key) {
        key = rel >> lb;
        tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
        ul = tl == 0 ? 0 : leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      }
      // Already clear, or valid with no view (cleared without accounting): no lock needed.
      if (tl == 0 || load<u64>(tl + off) == 0 || ul == 0) continue;
      if (xPidCheck && atomic.load<u32>(tbl + TBL_OWNER_PID) != xPid) return <u32>(j >> <u64>subShift);
      // Clears find their locks again by the tag: always locked, ablation or not.
      const v = lockView(ul + off, xTag, xSpins);
      if (v & <u64>VIEW_LOCK) return <u32>(j >> <u64>subShift);
      // Cleared by someone else meanwhile: nothing to do here.
      if (load<u64>(tl + off) == 0) store<u64>(ul + off, v);
    }
  }
  return n;
}

/**
 * The apply pass of table `tbl` over the call's entries [0, n), after every
 * lockPass succeeded: cannot fail. A map exchanges the TCE, releases the
 * old entry's region unless its reference transferred, and stores the new
 * ua, which lets the lock go; a clear does so for each entry this vCPU
 * locked (one iteration of tce_iommu_clear), and clears a valid entry
 * without a view without accounting, as clearOne does.
 */
function applyPass(tbl: u32, n: u32, r0: u64, subShift: u32): void {
  const tsize = load<u64>(tbl + TBL_SIZE);
  const toff = load<u64>(tbl + TBL_OFFSET);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  const lb = <u64>leafBits(tbl);
  const lmask: u64 = (<u64>1 << lb) - 1;
  const subMask: u64 = (<u64>1 << <u64>subShift) - 1;
  const total: u64 = <u64>n << <u64>subShift;
  let key: u64 = <u64>-1;
  let tl: u32 = 0;
  let ul: u32 = 0;
  let word: u64 = 0;
  let ua: u64 = 0;
  regionReset();
  for (let j: u64 = 0; j < total; j++) {
    const rel = r0 + j;
    const k = j & subMask;
    if (k == 0) {
      const tce = load<u64>(xSrc + (<u32>(j >> <u64>subShift) << 3));
      word = tce & <u64>TCE_PERM_MASK;
      if (word != 0) {
        ua = uaOf(xVm, tce & ~<u64>TCE_PERM_MASK);
        if (word & <u64>TCE_WRITE) word |= <u64>TCE_READ;
      } else if (!clearInside(rel, toff, tsize, subMask)) {
        j += subMask;
        continue;
      }
    }
    const off = <u32>(rel & lmask) << 3;
    if (word != 0) {
      const uak = ua + (k << <u64>tshift);
      if (uak - cUa > cLast) regionFind(xMm, uak, tshift);
      if ((rel >> lb) != key || tl == 0) {
        key = rel >> lb;
        ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      }
      const old = atomic.xchg<u64>(tl + off, cachedHpa(uak) | word);
      const oldUa = load<u64>(ul + off) & ~<u64>VIEW_LOCK_BITS;
      if ((old & <u64>TCE_PERM_MASK) != 0 && !transfers(old, oldUa)) unuseUa(xMm, oldUa, tshift);
      store<u64>(ul + off, uak);
    } else {
      if ((rel >> lb) != key) {
        key = rel >> lb;
        tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
        ul = tl == 0 ? 0 : leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      }
      if (tl == 0 || load<u64>(tl + off) == 0) continue;
      if (ul == 0) {
        atomic.xchg<u64>(tl + off, 0);
        continue;
      }
      const v = load<u64>(ul + off);
      if ((v & <u64>VIEW_LOCK_BITS) != xTag) continue;
      const old = atomic.xchg<u64>(tl + off, 0);
      if ((old & <u64>TCE_PERM_MASK) != 0) unuseUa(xMm, v & ~<u64>VIEW_LOCK_BITS, tshift);
      store<u64>(ul + off, 0);
    }
  }
}

/**
 * Gives back what lockPass took in table `tbl` for entries [0, end): every
 * view slot this vCPU holds gets its old value back, and every region
 * counted for a map that did not transfer loses that count again. Leaves
 * the table exactly as it was before the call.
 */
function undoPass(tbl: u32, end: u32, r0: u64, subShift: u32): void {
  const tsize = load<u64>(tbl + TBL_SIZE);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  const lb = <u64>leafBits(tbl);
  const lmask: u64 = (<u64>1 << lb) - 1;
  const subMask: u64 = (<u64>1 << <u64>subShift) - 1;
  const total: u64 = <u64>end << <u64>subShift;
  let key: u64 = <u64>-1;
  let tl: u32 = 0;
  let ul: u32 = 0;
  let ua: u64 = 0;
  regionReset();
  for (let j: u64 = 0; j < total; j++) {
    const rel = r0 + j;
    const k = j & subMask;
    if (k == 0) {
      const tce = load<u64>(xSrc + (<u32>(j >> <u64>subShift) << 3));
      ua = (tce & <u64>TCE_PERM_MASK) != 0 ? uaOf(xVm, tce & ~<u64>TCE_PERM_MASK) : 0;
    }
    if (rel >= tsize) continue;
    if ((rel >> lb) != key) {
      key = rel >> lb;
      tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      ul = tl == 0 ? 0 : leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
    }
    if (ul == 0) continue;
    const off = <u32>(rel & lmask) << 3;
    const v = load<u64>(ul + off);
    if ((v & <u64>VIEW_LOCK_BITS) != xTag) continue;
    if (ua != 0) {
      const uak = ua + (k << <u64>tshift);
      if (uak - cUa > cLast) regionFind(xMm, uak, tshift);
      if (!transfers(load<u64>(tl + off), v & ~<u64>VIEW_LOCK_BITS)) regionMappedDec(cR);
    }
    store<u64>(ul + off, v & ~<u64>VIEW_LOCK_BITS);
  }
}

/** The hardware table of link `s`. */
@inline function stit(stt: u32, s: u32): u32 {
  return load<u32>(stt + STT_STITS + (s << 2));
}

/** Guest entry `entry`'s first entry in `tbl` (2^subShift per guest entry), relative to it_offset (wraps below it, as the kernel's does). */
@inline function relOf(tbl: u32, entry: u64, subShift: u32): u64 {
  return (entry << <u64>subShift) - load<u64>(tbl + TBL_OFFSET);
}

/** Table entries per guest entry: 2^(guest page shift − table page shift). */
@inline function subOf(gshift: u32, tbl: u32): u64 {
  return <u64>1 << <u64>(gshift - load<u32>(tbl + TBL_PAGE_SHIFT));
}

/** The bits this vCPU's view locks carry. */
@inline function tagBitsOf(vcpu: u32): u64 {
  return (<u64>load<u32>(vcpu + VCPU_LOCK_TAG) << <u64>VIEW_TAG_SHIFT) | <u64>VIEW_LOCK;
}

/**
 * The answer to a TCE whose address is misaligned to the guest page: real
 * mode (kvmppc_rm_tce_validate) and the 4.12 virtual mode say H_PARAMETER;
 * from 4.19 the virtual-mode kvmppc_tce_validate (42de7b9e2167) says
 * H_TOO_HARD, which exits to the VMM. HDR.kernel is read only on that error
 * path; the real-mode-only passes (lockFast, putFused, putOne) pass false.
 */
@inline function misalignedTce(grow: bool): i32 {
  return grow && load<u32>(<u32>HEADER_BASE + HDR_KERNEL) >= <u32>KERNEL_4_19 ? H_TOO_HARD : H_PARAMETER;
}

/** log2 of the table entries per guest entry: guest page shift − table page shift. */
@inline function subShiftOf(gshift: u32, tbl: u32): u32 {
  return gshift - load<u32>(tbl + TBL_PAGE_SHIFT);
}

/**
 * Maps or unmaps guest entries [entry, entry + n) (relative index idx) to
 * the TCEs at xSrc in every linked table, then stores them in the guest
 * table: the body of H_PUT_TCE and H_PUT_TCE_INDIRECT
 * (kvmppc_rm_h_put_tce_indirect: validate every entry, then write).
 *
 * First every entry is checked on its own (H_PARAMETER for a TCE not on a
 * guest page; H_TOO_HARD outside every memslot or with a v1 table linked);
 * the first entry that fails in any check decides the answer, as in the
 * kernel's one loop. Then each table's lock pass, which in real mode is also
 * its check, and only when every one succeeded the apply passes and the
 * guest table; otherwise the undo passes, and nothing has changed.
 */
function putEntries(vcpu: u32, stt: u32, entry: u64, idx: u64, n: u32, grow: bool): i32 {
  const src = xSrc;
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  const pageMask: u64 = (<u64>1 << <u64>gshift) - 1;
  const v1 = hasV1(stt);
  let lim = n;
  let rc = H_SUCCESS;
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    if ((tce & <u64>TCE_PERM_MASK) != 0) {
      const gpa = tce & ~<u64>TCE_PERM_MASK;
      if (gpa & pageMask) {
        rc = misalignedTce(grow);
      } else if (uaOf(xVm, gpa) == 0) {
        rc = H_TOO_HARD;
      }
    }
    // A v1 table pins pages per entry, which only the VMM can do: every change exits (kernel: no
    // userspace view, H_TOO_HARD), so a guest clear can never drop a pin behind VFIO's back.
    if (rc == H_SUCCESS && v1) rc = H_TOO_HARD;
    if (rc != H_SUCCESS) {
      lim = i;
      break;
    }
  }
  const nstits = stitCount(stt);
  if (lim < n || grow) {
    // Checks without locks: a call that fails anyway, or virtual mode, which must not allocate for one.
    for (let s: u32 = 0; s < nstits; s++) {
      const tbl = stit(stt, s);
      const ss = subShiftOf(gshift, tbl);
      const j = checkPass(tbl, lim, relOf(tbl, entry, ss), ss, grow);
      if (j < lim) {
        lim = j;
        rc = H_TOO_HARD;
      }
    }
    if (lim < n) return rc;
  }
  if (grow && !sttReserveList(stt, idx, n, src)) return H_TOO_HARD;
  xTag = tagBitsOf(vcpu);
  xSpins = grow ? <u32>LOCK_SPINS_VIRTUAL : <u32>LOCK_SPINS_REAL;
  xPidCheck = entryCheck();
  xPid = load<u32>(vcpu + VCPU_PID);
  xNoLock = (ablations() & <u32>ABLATE_VIEW_LOCK) != 0;
  for (let s: u32 = 0; s < nstits; s++) {
    const tbl = stit(stt, s);
    const ss = subShiftOf(gshift, tbl);
    const j = lockPass(tbl, n, relOf(tbl, entry, ss), ss, grow);
    if (j < n) {
      for (let u: u32 = 0; u <= s; u++) {
        const t = stit(stt, u);
        const su = subShiftOf(gshift, t);
        undoPass(t, u == s ? j + 1 : n, relOf(t, entry, su), su);
      }
      return H_TOO_HARD;
    }
  }
  for (let s: u32 = 0; s < nstits; s++) {
    const tbl = stit(stt, s);
    const ss = subShiftOf(gshift, tbl);
    applyPass(tbl, n, relOf(tbl, entry, ss), ss);
  }
  // kvmppc_tce_put for each entry: an absent page is allocated (virtual mode) unless the TCE is 0.
  const sh = tceShift();
  const mask: u64 = (<u64>1 << sh) - 1;
  let pg: u64 = <u64>-1;
  let page: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    const j = idx + <u64>i;
    if ((j >> sh) != pg || page == 0) {
      pg = j >> sh;
      page = sttPage(stt, pg, grow && tce != 0);
    }
    if (page != 0) store<u64>(page + (<u32>(j & mask) << 3), tce);
  }
  if (dirtyOn(xVm)) dirtyMarkList(xVm, src, n, gshift);
  return H_SUCCESS;
}

/**
 * Virtual mode, before anything is written: the guest-table page of every
 * non-zero TCE of the list exists or is allocated now; false when memory is
 * exhausted. The kernel's kvmppc_tce_put drops the TCE silently when that
 * allocation fails and the call still answers H_SUCCESS; here the call
 * exits (H_TOO_HARD) with no entry changed, as kvmppc_tce_iommu_do_map
 * answers its own allocation failures.
 */
function sttReserveList(stt: u32, idx: u64, n: u32, src: u32): bool {
  const sh = tceShift();
  let pg: u64 = <u64>-1;
  for (let i: u32 = 0; i < n; i++) {
    if (load<u64>(src + (i << 3)) == 0) continue;
    const p = (idx + <u64>i) >> sh;
    if (p == pg) continue;
    pg = p;
    if (sttPage(stt, p, true) == 0) return false;
  }
  return true;
}

/** sttReserveList for H_STUFF_TCE of a non-zero value: every page of [idx, idx + n). */
function sttReserveRange(stt: u32, idx: u64, n: u64): bool {
  if (n == 0) return true;
  const sh = tceShift();
  const last = (idx + n - 1) >> sh;
  for (let p = idx >> sh; p <= last; p++) {
    if (sttPage(stt, p, true) == 0) return false;
  }
  return true;
}

/** Sets up the passes for a hypercall of `vcpu` on `vm`, its TCEs at `src`. */
@inline function begin(vm: u32, src: u32): void {
  xVm = vm;
  xMm = load<u32>(vm + VM_MM);
  xSrc = src;
  slotReset();
  gSysShift = sysPageShift();
  gSysMask = (<u64>1 << gSysShift) - 1;
  gTceShift = gSysShift - 3;
  gTceMask = (<u64>1 << gTceShift) - 1;
}

// The common case in one pass each way: real mode, one linked v2 table of
// the guest's page size, every entry a map. lockFast is checkPass, the
// entry checks of putEntries and lockPass fused for it (and, for
// H_PUT_TCE_INDIRECT, the copy of the list); applyFast is applyPass with
// the guest-table store. They give the same answers and leave the same
// bytes as the general passes, which the native engine runs (the
// differential test compares the two); an entry outside the case (a clear)
// sends the call back to them with nothing changed.

/** lockFast's verdict besides the entry it stopped at: an H_* status, or FAST_BAIL. */
let xRc: i32 = 0;
const FAST_BAIL: i32 = -0x7fffffff;

/**
 * Validates and locks entries [0, n): TCE i at xSrc + 8i, table entry
 * r0 + i. Returns n, or the entry it stopped at with xRc saying why (that
 * entry holds nothing; the ones before it hold their locks and counts).
 */
function lockFast(tbl: u32, n: u32, r0: u64, pageMask: u64): u32 {
  const tsize = load<u64>(tbl + TBL_SIZE);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  gLeafMask = (<u64>1 << <u64>leafBits(tbl)) - 1;
  const src = xSrc;
  // The cached leaves hold table entries [leafLo, leafLo + gLeafMask]; none yet.
  let leafLo: u64 = r0 - gLeafMask - 1;
  let tl: u32 = 0;
  let ul: u32 = 0;
  regionReset();
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    if ((tce & <u64>TCE_PERM_MASK) == 0) {
      xRc = FAST_BAIL;
      return i;
    }
    const gpa = tce & ~<u64>TCE_PERM_MASK;
    if (gpa & pageMask) {
      xRc = misalignedTce(false);
      return i;
    }
    xRc = H_TOO_HARD;
    const ua = uaOf(xVm, gpa);
    if (ua == 0) return i;
    const rel = r0 + <u64>i;
    if (rel >= tsize) return i;
    if (ua - cUa > cLast) {
      if (!regionFind(xMm, ua, tshift)) return i;
    }
    if (rel - leafLo > gLeafMask) {
      ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      if (ul == 0) return i;
      tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      if (tl == 0) return i;
      leafLo = rel & ~gLeafMask;
    }
    if (xPidCheck) {
      if (atomic.load<u32>(tbl + TBL_OWNER_PID) != xPid) return i;
    }
    const off = <u32>(rel - leafLo) << 3;
    const v = lockSlot(ul + off, xTag, xSpins, xNoLock);
    if (v & <u64>VIEW_LOCK) return i;
    if (!transfers(load<u64>(tl + off), v & ~<u64>VIEW_LOCK_BITS)) {
      if (regionMappedInc(cR) != 0) {
        store<u64>(ul + off, v);
        return i;
      }
    }
  }
  return n;
}

/** Writes what lockFast validated: the table's entries, then the guest's (applyPass + kvmppc_tce_put). */
function applyFast(tbl: u32, stt: u32, n: u32, r0: u64, idx: u64): void {
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  gLeafMask = (<u64>1 << <u64>leafBits(tbl)) - 1;
  const src = xSrc;
  let leafLo: u64 = r0 - gLeafMask - 1;
  let tl: u32 = 0;
  let ul: u32 = 0;
  // The cached guest-table page holds relative entries [pageLo, pageLo + gTceMask]; none yet.
  let pageLo: u64 = idx - gTceMask - 1;
  let page: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    const ua = uaOf(xVm, tce & ~<u64>TCE_PERM_MASK);
    let word = tce & <u64>TCE_PERM_MASK;
    if (word & <u64>TCE_WRITE) word = <u64>(TCE_READ | TCE_WRITE);
    const rel = r0 + <u64>i;
    if (ua - cUa > cLast) regionFind(xMm, ua, tshift);
    if (rel - leafLo > gLeafMask) {
      ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      leafLo = rel & ~gLeafMask;
    }
    const off = <u32>(rel - leafLo) << 3;
    const old = atomic.xchg<u64>(tl + off, cachedHpa(ua) | word);
    if ((old & <u64>TCE_PERM_MASK) != 0) {
      const oldUa = load<u64>(ul + off) & ~<u64>VIEW_LOCK_BITS;
      if (!transfers(old, oldUa)) unuseUa(xMm, oldUa, tshift);
    }
    store<u64>(ul + off, ua);
    const j = idx + <u64>i;
    if (j - pageLo > gTceMask) {
      page = sttPage(stt, j >> gTceShift, false);
      pageLo = j & ~gTceMask;
    }
    if (page != 0) store<u64>(page + (<u32>(j - pageLo) << 3), tce);
  }
}

/**
 * ABLATE_VALIDATE, for the benchmark only: lockFast's checks and
 * applyFast's writes entry by entry, in one pass, so that timing it against
 * putFast measures what validating every entry first costs. A refused entry
 * stops it with the entries before it written (the guarantee it drops).
 */
function putFused(tbl: u32, stt: u32, n: u32, r0: u64, idx: u64, pageMask: u64): i32 {
  const tsize = load<u64>(tbl + TBL_SIZE);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  gLeafMask = (<u64>1 << <u64>leafBits(tbl)) - 1;
  const src = xSrc;
  let leafLo: u64 = r0 - gLeafMask - 1;
  let tl: u32 = 0;
  let ul: u32 = 0;
  let pageLo: u64 = idx - gTceMask - 1;
  let page: u32 = 0;
  regionReset();
  for (let i: u32 = 0; i < n; i++) {
    const tce = load<u64>(src + (i << 3));
    if ((tce & <u64>TCE_PERM_MASK) == 0) return i == 0 ? FAST_BAIL : H_TOO_HARD;
    const gpa = tce & ~<u64>TCE_PERM_MASK;
    if (gpa & pageMask) return misalignedTce(false);
    const ua = uaOf(xVm, gpa);
    if (ua == 0) return H_TOO_HARD;
    const rel = r0 + <u64>i;
    if (rel >= tsize) return H_TOO_HARD;
    if (ua - cUa > cLast) {
      if (!regionFind(xMm, ua, tshift)) return H_TOO_HARD;
    }
    if (rel - leafLo > gLeafMask) {
      ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
      if (ul == 0) return H_TOO_HARD;
      tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
      if (tl == 0) return H_TOO_HARD;
      leafLo = rel & ~gLeafMask;
    }
    if (xPidCheck) {
      if (atomic.load<u32>(tbl + TBL_OWNER_PID) != xPid) return H_TOO_HARD;
    }
    const off = <u32>(rel - leafLo) << 3;
    const v = lockSlot(ul + off, xTag, xSpins, xNoLock);
    if (v & <u64>VIEW_LOCK) return H_TOO_HARD;
    const oldUa = v & ~<u64>VIEW_LOCK_BITS;
    if (!transfers(load<u64>(tl + off), oldUa)) {
      if (regionMappedInc(cR) != 0) {
        store<u64>(ul + off, v);
        return H_TOO_HARD;
      }
    }
    let word = tce & <u64>TCE_PERM_MASK;
    if (word & <u64>TCE_WRITE) word = <u64>(TCE_READ | TCE_WRITE);
    const old = atomic.xchg<u64>(tl + off, cachedHpa(ua) | word);
    if ((old & <u64>TCE_PERM_MASK) != 0) {
      if (!transfers(old, oldUa)) unuseUa(xMm, oldUa, tshift);
    }
    store<u64>(ul + off, ua);
    const j = idx + <u64>i;
    if (j - pageLo > gTceMask) {
      page = sttPage(stt, j >> gTceShift, false);
      pageLo = j & ~gTceMask;
    }
    if (page != 0) store<u64>(page + (<u32>(j - pageLo) << 3), tce);
  }
  return H_SUCCESS;
}

/**
 * The fast path of H_PUT_TCE and H_PUT_TCE_INDIRECT when it applies (see
 * above): an H_* status, or FAST_BAIL to run putEntries instead, nothing
 * changed.
 */
function putFast(vcpu: u32, stt: u32, entry: u64, idx: u64, n: u32): i32 {
  if (load<u32>(stt + STT_STIT_COUNT) != 1) return FAST_BAIL;
  const tbl = stit(stt, 0);
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  if (load<u32>(tbl + TBL_PAGE_SHIFT) != gshift || (load<u32>(tbl + TBL_FLAGS) & <u32>TABLE_F_V2) == 0) return FAST_BAIL;
  xTag = tagBitsOf(vcpu);
  xSpins = <u32>LOCK_SPINS_REAL;
  xPidCheck = entryCheck();
  xPid = load<u32>(vcpu + VCPU_PID);
  const ablate = ablations();
  xNoLock = (ablate & <u32>ABLATE_VIEW_LOCK) != 0;
  const r0 = entry - load<u64>(tbl + TBL_OFFSET);
  if (ablate & <u32>ABLATE_VALIDATE) {
    const rc = putFused(tbl, stt, n, r0, idx, (<u64>1 << <u64>gshift) - 1);
    // Stopped part-way or not, every writable TCE of the list may have been stored: all count.
    if (rc != FAST_BAIL && dirtyOn(xVm)) dirtyMarkList(xVm, xSrc, n, gshift);
    return rc;
  }
  const j = lockFast(tbl, n, r0, (<u64>1 << <u64>gshift) - 1);
  if (j < n) {
    undoPass(tbl, j, r0, 0);
    return xRc;
  }
  applyFast(tbl, stt, n, r0, idx);
  if (dirtyOn(xVm)) dirtyMarkList(xVm, xSrc, n, gshift);
  return H_SUCCESS;
}

/** mm_iommu_ua_to_hpa in region `r` (at `rua`, known to hold `ua`): a device region is one run, RAM a page array. */
@inline function regionHpa(r: u32, ua: u64, rua: u64, sh: u64): u64 {
  if (load<u32>(r + REG_FLAGS) & <u32>REGION_F_DEV) return load<u64>(r + REG_DEV_HPA) + (ua - rua);
  const mask: u64 = (<u64>1 << sh) - 1;
  return (load<u64>(load<u32>(r + REG_HPAS) + (<u32>((ua - rua) >> sh) << 3)) & ~mask) | (ua & mask);
}

/**
 * H_PUT_TCE of a valid TCE in the fast case (putFast with one entry),
 * straight through: the same checks in the same order, the same lock, count
 * and writes, without the passes' set-up. FAST_BAIL when the case does not
 * apply, nothing changed.
 */
function putOne(vm: u32, vcpu: u32, stt: u32, entry: u64, page: u32, slot: u32, tce: u64): i32 {
  if (load<u32>(stt + STT_STIT_COUNT) != 1) return FAST_BAIL;
  const tbl = stit(stt, 0);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  if (tshift != load<u32>(stt + STT_PAGE_SHIFT) || (load<u32>(tbl + TBL_FLAGS) & <u32>TABLE_F_V2) == 0) return FAST_BAIL;
  const gpa = tce & ~<u64>TCE_PERM_MASK;
  const psize: u64 = <u64>1 << <u64>tshift;
  if (gpa & (psize - 1)) return misalignedTce(false);
  // kvmppc_tce_to_ua: 0 outside every memslot (and a ua of 0 is no address either).
  const ua = gpaToUa(vm, gpa);
  if (ua == 0) return H_TOO_HARD;
  const rel = entry - load<u64>(tbl + TBL_OFFSET);
  if (rel >= load<u64>(tbl + TBL_SIZE)) return H_TOO_HARD;
  // mm_iommu_lookup and the checks of mm_iommu_ua_to_hpa, as regionFind does them.
  const mm = load<u32>(vm + VM_MM);
  const sh = sysPageShift();
  const r = regionLookup(mm, ua, psize);
  if (r == 0) return H_TOO_HARD;
  const rua = load<u64>(r + REG_UA);
  const last = (load<u64>(r + REG_ENTRIES) << sh) - psize;
  if (tshift > load<u32>(r + REG_PAGE_SHIFT)) return H_TOO_HARD;
  const ul = leafPeek(tbl, TBL_UA_ROOT, rel);
  if (ul == 0) return H_TOO_HARD;
  const tl = leafPeek(tbl, TBL_ROOT, rel);
  if (tl == 0) return H_TOO_HARD;
  if (entryCheck()) {
    if (atomic.load<u32>(tbl + TBL_OWNER_PID) != load<u32>(vcpu + VCPU_PID)) return H_TOO_HARD;
  }
  const off = <u32>(rel & ((<u64>1 << <u64>leafBits(tbl)) - 1)) << 3;
  xTag = tagBitsOf(vcpu);
  xSpins = <u32>LOCK_SPINS_REAL;
  xNoLock = (ablations() & <u32>ABLATE_VIEW_LOCK) != 0;
  const v = lockSlot(ul + off, xTag, xSpins, xNoLock);
  if (v & <u64>VIEW_LOCK) return H_TOO_HARD;
  const oldUa = v & ~<u64>VIEW_LOCK_BITS;
  // transfers(), on this region: the old entry was valid and mapped from it.
  const inRegion = oldUa != 0 && oldUa - rua <= last;
  if ((load<u64>(tl + off) & <u64>TCE_PERM_MASK) == 0 || !inRegion) {
    if (regionMappedInc(r) != 0) {
      store<u64>(ul + off, v);
      return H_TOO_HARD;
    }
  }
  const hpa = regionHpa(r, ua, rua, sh);
  let word = tce & <u64>TCE_PERM_MASK;
  if (word & <u64>TCE_WRITE) word = <u64>(TCE_READ | TCE_WRITE);
  const old = atomic.xchg<u64>(tl + off, hpa | word);
  if ((old & <u64>TCE_PERM_MASK) != 0 && !inRegion) unuseUa(mm, oldUa, tshift);
  store<u64>(ul + off, ua);
  if (page != 0) store<u64>(page + slot, tce);
  if (dirtyOn(vm) && (tce & <u64>TCE_WRITE) != 0) dirtyMark(vm, tce, tshift);
  return H_SUCCESS;
}

/** H_PUT_TCE(liobn, ioba, tce). */
@inline function putTce(vm: u32, vcpu: u32, grow: bool): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  const tce = gpr(vcpu, 6);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const entry = ioba >> <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const idx = entry - load<u64>(stt + STT_OFFSET);
  // kvmppc_rm_ioba_validate's page check, keeping the page for the store.
  const gsh = tceShift();
  let page: u32 = 0;
  if (idx >> gsh < <u64>load<u32>(stt + STT_NPAGES)) page = load<u32>(load<u32>(stt + STT_PAGES) + (<u32>(idx >> gsh) << 2));
  if (!grow && tce != 0 && page == 0) return H_TOO_HARD;
  if (callCheckFails(stt, load<u32>(vcpu + VCPU_PID))) return H_TOO_HARD;
  if (!grow && (tce & <u64>TCE_PERM_MASK) != 0) {
    const rc = putOne(vm, vcpu, stt, entry, page, <u32>(idx & ((<u64>1 << gsh) - 1)) << 3, tce);
    if (rc != FAST_BAIL) return rc;
  }
  begin(vm, vcpu + VCPU_GPR + (6 << 3));
  return putEntries(vcpu, stt, entry, idx, 1, grow);
}

// --- H_PUT_TCE in real mode, straight through ---------------------------------
//
// One H_PUT_TCE of a valid TCE in real mode, the common single hypercall, in
// one function with no calls on its way (putTce and putOne of above, fused
// into hcall): every descriptor field is loaded once, the two trees (TCEs
// and the view, of identical shape) are walked together, and the counters,
// level and r3 are written here. Same checks in the same order, same
// answers, same lock, counts and writes as hcallInside → putTce → putOne;
// anything outside the case (the QEMU profile, a clear, more than one linked
// table, a v1 table or one of another page size) is decided before
// anything is written, and hcallInside then runs the call from the registers.

// The LIOBN → guest table lookup of the last H_PUT_TCE of this instance
// (thread): kvmppc_find_table walks the VM's list at every call. Why the
// cached descriptor is safe to use: a guest table descriptor is freed only
// through the host's deferred free (src/core/reclaim.ts), which first adds
// one to HDR.gracePeriods and then waits for every vCPU inside a hypercall;
// and it is never reused for anything without that free. The cache is used
// only when HDR.gracePeriods still has the value read *before* the walk that
// found the table: read inside this call's read-side section (after its
// seq_cst entry store), an unchanged count means no grace period began since
// that walk, so the descriptor has not been freed since, and cannot be during
// this call (a grace period starting now sees this vCPU inside and waits).
// It may have been unlinked meanwhile (removeTceTable unlinks, then defers
// the free): the call then acts as if it had looked the table up just before
// the unlink, which a walk racing the unlink may do too. A removed and
// re-created LIOBN, or a destroyed VM, changed the count, so the next call
// walks again and finds the new table or none. Only the pointer is kept:
// every field of the table is read again (a window's size and pages change
// in place).
let cVm: u32 = 0;
let cLiobn: u64 = 0;
let cGp: u32 = 0;
let cStt: u32 = 0;

/**
 * The guest table of `vm` with the LIOBN in r4 of `vcpu` through the cache
 * (findStt otherwise), or 0. The cache holds a table only when one was
 * found, and no VM descriptor is at 0 (cVm's initial value), so a hit needs
 * no test of cStt.
 */
@inline function findSttCached(vm: u32, vcpu: u32): u32 {
  const liobn = gpr(vcpu, 4);
  const gp = atomic.load<u32>(<u32>HEADER_BASE + HDR_GRACE_PERIODS);
  if (vm == cVm) {
    if (liobn == cLiobn) {
      if (gp == cGp) return cStt;
    }
  }
  const stt = findStt(vm, liobn);
  if (stt != 0) {
    cVm = vm;
    cLiobn = liobn;
    cGp = gp;
    cStt = stt;
  }
  return stt;
}

/**
 * H_PUT_TCE at LEVEL_REAL, from after the read-side entry (`inside`) to its
 * exit: the fast case, with r3, VCPU.level and the counter written by
 * complete() as hcallInside writes them; outside it (here or in
 * putTceRealRc, nothing written yet) hcallInside runs the call.
 */
@inline function putTceReal(vcpu: u32, inside: u32): i32 {
  const vm = load<u32>(vcpu + VCPU_VM);
  if (load<u32>(vm + VM_PROFILE) == <u32>PROFILE_QEMU) return hcallInside(vcpu, <u32>LEVEL_REAL, inside);
  const tce = gpr(vcpu, 6);
  // A clear goes through putEntries (which skips clear entries and may clear without a view).
  if ((tce & <u64>TCE_PERM_MASK) == 0) return hcallInside(vcpu, <u32>LEVEL_REAL, inside);
  return putTceRealRc(vm, vcpu, tce, inside);
}

/**
 * putTceReal's end at answer `rc`, where it was decided: complete() and the
 * read side's exit store, with `rc` a constant at each use (no status is
 * tested on the way out).
 */
@inline function putTceRealDone(vcpu: u32, inside: u32, rc: i32): i32 {
  complete(vcpu, <u32>LEVEL_REAL, <u32>LEVEL_REAL, KIND_PUT, rc);
  readExit(vcpu, inside);
  return rc;
}

/**
 * putTceReal's checks and writes: putTce's, then putOne's, in their order,
 * each answer completed where it is decided (putTceRealDone); outside the
 * fast case, with nothing written, hcallInside runs the call.
 */
@inline function putTceRealRc(vm: u32, vcpu: u32, tce: u64, inside: u32): i32 {
  const stt = findSttCached(vm, vcpu);
  if (stt == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  const ioba = gpr(vcpu, 5);
  // iobaOk(stt, ioba, 1), with the page shift and offset kept.
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  const psize: u64 = <u64>1 << <u64>gshift;
  if (ioba & (psize - 1)) return putTceRealDone(vcpu, inside, H_PARAMETER);
  const entry = ioba >> <u64>gshift;
  const soff = load<u64>(stt + STT_OFFSET);
  if (entry < soff) return putTceRealDone(vcpu, inside, H_PARAMETER);
  const idx = entry - soff;
  if (idx >= load<u64>(stt + STT_SIZE)) return putTceRealDone(vcpu, inside, H_PARAMETER);
  // kvmppc_rm_ioba_validate's page check (a page past the table is an absent one), keeping the page for the store.
  const sh = sysPageShift();
  const gsh = sh - 3;
  const pg = idx >> gsh;
  if (pg >= <u64>load<u32>(stt + STT_NPAGES)) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  const page = load<u32>(load<u32>(stt + STT_PAGES) + (<u32>pg << 2));
  if (page == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  const h = <u32>HEADER_BASE;
  const check = load<u32>(h + HDR_OWNER_CHECK);
  if (check == <u32>OWNER_CHECK_PID) {
    if (!pidCallCheck(stt, load<u32>(vcpu + VCPU_PID))) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  }
  // putOne from here.
  if (load<u32>(stt + STT_STIT_COUNT) != 1) return hcallInside(vcpu, <u32>LEVEL_REAL, inside);
  const tbl = load<u32>(stt + STT_STITS);
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  if (tshift != gshift) return hcallInside(vcpu, <u32>LEVEL_REAL, inside);
  if ((load<u32>(tbl + TBL_FLAGS) & <u32>TABLE_F_V2) == 0) return hcallInside(vcpu, <u32>LEVEL_REAL, inside);
  const gpa = tce & ~<u64>TCE_PERM_MASK;
  if (gpa & (psize - 1)) return putTceRealDone(vcpu, inside, misalignedTce(false));
  // kvmppc_tce_to_ua: 0 outside every memslot (and a ua of 0 is no address either).
  const ua = gpaToUaFirst(vm, gpa);
  if (ua == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  const rel = entry - load<u64>(tbl + TBL_OFFSET);
  if (rel >= load<u64>(tbl + TBL_SIZE)) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  // mm_iommu_lookup and the checks of mm_iommu_ua_to_hpa, as regionFind does them.
  const mm = load<u32>(vm + VM_MM);
  const r = regionLookupFirst(mm, ua, psize, sh);
  if (r == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  if (tshift > load<u32>(r + REG_PAGE_SHIFT)) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  // leafPeek of the view and of the TCEs in one walk: the trees have one shape, so each level's
  // index is computed once (either absent: H_TOO_HARD, as putOne answers both). The root level
  // is taken on its own, so that two levels (a root and the leaves) walk without a loop.
  let ul = load<u32>(tbl + TBL_UA_ROOT);
  if (ul == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  let tl = load<u32>(tbl + TBL_ROOT);
  if (tl == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  const levels = load<u32>(tbl + TBL_LEVELS);
  let lb = load<u32>(tbl + TBL_ROOT_BITS);
  if (levels > 1) {
    const bits = load<u32>(tbl + TBL_LEVEL_BITS);
    let lvl = levels - 1;
    const o = <u32>((rel >> <u64>(lvl * bits)) & ((<u64>1 << <u64>lb) - 1)) << 2;
    ul = load<u32>(ul + o);
    if (ul == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
    tl = load<u32>(tl + o);
    if (tl == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
    lb = bits;
    if (lvl > 1) {
      const m: u64 = (<u64>1 << <u64>bits) - 1;
      while (--lvl != 0) {
        const o = <u32>((rel >> <u64>(lvl * bits)) & m) << 2;
        ul = load<u32>(ul + o);
        if (ul == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
        tl = load<u32>(tl + o);
        if (tl == 0) return putTceRealDone(vcpu, inside, H_TOO_HARD);
      }
    }
  }
  if (check == <u32>OWNER_CHECK_PID) {
    if (load<u32>(h + HDR_PID_PLACEMENT) == <u32>PID_CHECK_ENTRY) {
      if (atomic.load<u32>(tbl + TBL_OWNER_PID) != load<u32>(vcpu + VCPU_PID)) return putTceRealDone(vcpu, inside, H_TOO_HARD);
    }
  }
  const off = <u32>(rel & ((<u64>1 << <u64>lb) - 1)) << 3;
  const pua = ul + off;
  // lockSlot, with this call's tag in a local and the ablation read here: one attempt inline, lockWait out of line.
  const tag = (<u64>load<u32>(vcpu + VCPU_LOCK_TAG) << <u64>VIEW_TAG_SHIFT) | <u64>VIEW_LOCK;
  // Each way to the wait its own branch: a flag for "locked" would be a value built and tested again.
  let v = load<u64>(pua);
  if (ablations() & <u32>ABLATE_VIEW_LOCK) {
    v &= ~<u64>VIEW_LOCK_BITS;
  } else if (<u32>v & <u32>VIEW_LOCK) {
    v = lockWait(pua, tag, <u32>LOCK_SPINS_REAL);
    if (v & <u64>VIEW_LOCK) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  } else if (atomic.cmpxchg<u64>(pua, v, (v & ~<u64>VIEW_LOCK_BITS) | tag) != v) {
    v = lockWait(pua, tag, <u32>LOCK_SPINS_REAL);
    if (v & <u64>VIEW_LOCK) return putTceRealDone(vcpu, inside, H_TOO_HARD);
  }
  const oldUa = v & ~<u64>VIEW_LOCK_BITS;
  const rua = load<u64>(r + REG_UA);
  const ptce = tl + off;
  // transfers(), on this region: the old entry was valid and mapped from it; then its reference
  // passes to the new entry. Under the entry's lock its TCE is what the exchange will return.
  if (oldUa != 0) {
    if (oldUa - rua <= (load<u64>(r + REG_ENTRIES) << sh) - psize) {
      if (load<u64>(ptce) & <u64>TCE_PERM_MASK) return putTceRealWrite(vm, mm, r, ua, rua, sh, tce, ptce, pua, page, idx, oldUa, tshift, true, vcpu, inside);
    }
  }
  if (regionMappedInc(r) != 0) {
    store<u64>(pua, v);
    return putTceRealDone(vcpu, inside, H_TOO_HARD);
  }
  return putTceRealWrite(vm, mm, r, ua, rua, sh, tce, ptce, pua, page, idx, oldUa, tshift, false, vcpu, inside);
}

/**
 * putTceRealRc's write phase: nothing before it wrote but the lock and the
 * count, which cannot fail from here. `keep`: the old entry's reference
 * passed to the new one (nothing counted); otherwise the new region was
 * counted, and the old entry's region, if it was valid, is released. One
 * copy per value of `keep`, so that neither tests it.
 */
@inline function putTceRealWrite(vm: u32, mm: u32, r: u32, ua: u64, rua: u64, sh: u64, tce: u64, ptce: u32, pua: u32, page: u32, idx: u64, oldUa: u64, tshift: u32, keep: bool, vcpu: u32, inside: u32): i32 {
  const hpa = regionHpa(r, ua, rua, sh);
  let word = tce & <u64>TCE_PERM_MASK;
  if (word & <u64>TCE_WRITE) word = <u64>(TCE_READ | TCE_WRITE);
  const old = atomic.xchg<u64>(ptce, hpa | word);
  if (!keep) {
    if (old & <u64>TCE_PERM_MASK) unuseUa(mm, oldUa, tshift);
  }
  store<u64>(pua, ua);
  // The guest-table slot: entry idx & (TCEs per page − 1), 8 bytes each.
  store<u64>(page + (<u32>(idx & ((<u64>1 << (sh - 3)) - 1)) << 3), tce);
  // putOne's mark (assembly/dirty.ts), after the guest-table store like kvmppc_tce_put's.
  // (The TCE's bit tested first: a test of the flag's load first became a select.)
  if (tce & <u64>TCE_WRITE) {
    if (dirtyOn(vm)) dirtyMark(vm, tce, tshift);
  }
  return putTceRealDone(vcpu, inside, H_SUCCESS);
}

/** Copies n big-endian TCEs from `list` to `dst` in native order: two at a time, a byte shuffle each. */
@inline function copyList(dst: u32, list: u32, n: u32): void {
  let i: u32 = 0;
  for (; i + 2 <= n; i += 2) {
    const v = v128.load(list + (i << 3));
    v128.store(dst + (i << 3), i8x16.shuffle(v, v, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8));
  }
  if (i < n) store<u64>(dst + (i << 3), bswap<u64>(load<u64>(list + (i << 3))));
}

/** H_PUT_TCE_INDIRECT(liobn, ioba, tce_list, npages): the list is big-endian in guest memory. */
function putTceIndirect(vm: u32, vcpu: u32, grow: bool): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  const list = gpr(vcpu, 6);
  const npages = gpr(vcpu, 7);
  if (npages > <u64>INDIRECT_MAX) return H_PARAMETER;
  if (list & 0xfff) return H_PARAMETER;
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const entry = ioba >> <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const idx = entry - load<u64>(stt + STT_OFFSET);
  if (!grow && !sttPagesPresent(stt, idx, npages)) return H_TOO_HARD;
  // The list must translate even when empty (kvmppc_rm_tce_to_ua on tce_list).
  const host = gpaToHost(vm, list, npages << 3);
  if (host == 0) return H_TOO_HARD;
  if (callCheckFails(stt, load<u32>(vcpu + VCPU_PID))) return H_TOO_HARD;
  // Read the guest's list once, into the vCPU: what is validated is what is written.
  const n = <u32>npages;
  const tces = vcpu + VCPU_TCES;
  copyList(tces, host, n);
  begin(vm, tces);
  if (!grow) {
    const rc = putFast(vcpu, stt, entry, idx, n);
    if (rc != FAST_BAIL) return rc;
  }
  return putEntries(vcpu, stt, entry, idx, n, grow);
}

/**
 * Locks, in table `tbl`, every valid entry of [lo, hi) that has a view slot
 * (the lock pass of a clear): walks present leaves only. Returns how many
 * entries the apply pass will clear, or -1 when a lock stayed held or the
 * owner check failed, after giving back the locks this pass took.
 */
function stuffLock(tbl: u32, lo: u64, hi: u64): i64 {
  const lmask: u64 = (<u64>1 << <u64>leafBits(tbl)) - 1;
  let pending: i64 = 0;
  let rel = lo;
  while (rel < hi) {
    const tl = leafPeek(tbl, TBL_ROOT, rel);
    if (tl == 0) {
      rel = skipAbsent(tbl, rel);
      continue;
    }
    let ul: u32 = 0;
    let looked = false;
    for (const e = leafEnd(rel, lmask, hi); rel < e; rel++) {
      const off = <u32>(rel & lmask) << 3;
      // Four clear entries at a time: most of a clear of clear entries is this test.
      if (rel + 4 <= e) {
        if (!v128.any_true(v128.or(v128.load(tl + off), v128.load(tl + off, 16)))) {
          rel += 3;
          continue;
        }
      }
      if (load<u64>(tl + off) == 0) continue;
      if (!looked) {
        ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        looked = true;
      }
      pending++;
      if (ul == 0) continue;
      if (xPidCheck && atomic.load<u32>(tbl + TBL_OWNER_PID) != xPid) {
        stuffUndo(tbl, lo, rel);
        return -1;
      }
      const v = lockView(ul + off, xTag, xSpins);
      if (v & <u64>VIEW_LOCK) {
        stuffUndo(tbl, lo, rel);
        return -1;
      }
      if (load<u64>(tl + off) == 0) {
        store<u64>(ul + off, v);
        pending--;
      }
    }
  }
  return pending;
}

/** Lets go of the view locks this vCPU holds in [lo, hi) of `tbl` (a failed H_STUFF_TCE). */
function stuffUndo(tbl: u32, lo: u64, hi: u64): void {
  const lmask: u64 = (<u64>1 << <u64>leafBits(tbl)) - 1;
  let rel = lo;
  while (rel < hi) {
    const tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
    if (tl == 0) {
      rel = skipAbsent(tbl, rel);
      continue;
    }
    const ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
    const e = leafEnd(rel, lmask, hi);
    if (ul == 0) {
      rel = e;
      continue;
    }
    for (; rel < e; rel++) {
      const p = ul + (<u32>(rel & lmask) << 3);
      const v = load<u64>(p);
      if ((v & <u64>VIEW_LOCK_BITS) == xTag) store<u64>(p, v & ~<u64>VIEW_LOCK_BITS);
    }
  }
}

/** Clears the entries stuffLock locked in [lo, hi) of `tbl`, and valid ones without a view (tce_iommu_clear). */
function stuffApply(tbl: u32, lo: u64, hi: u64): void {
  const lmask: u64 = (<u64>1 << <u64>leafBits(tbl)) - 1;
  const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
  let rel = lo;
  while (rel < hi) {
    const tl = leafNode(tbl, TBL_ROOT, TBL_NODE_BYTES, rel, false);
    if (tl == 0) {
      rel = skipAbsent(tbl, rel);
      continue;
    }
    let ul: u32 = 0;
    let looked = false;
    for (const e = leafEnd(rel, lmask, hi); rel < e; rel++) {
      const off = <u32>(rel & lmask) << 3;
      if (load<u64>(tl + off) == 0) continue;
      if (!looked) {
        ul = leafNode(tbl, TBL_UA_ROOT, TBL_UA_NODE_BYTES, rel, false);
        looked = true;
      }
      if (ul == 0) {
        atomic.xchg<u64>(tl + off, 0);
        continue;
      }
      const v = load<u64>(ul + off);
      if ((v & <u64>VIEW_LOCK_BITS) != xTag) continue;
      const old = atomic.xchg<u64>(tl + off, 0);
      if ((old & <u64>TCE_PERM_MASK) != 0) unuseUa(xMm, v & ~<u64>VIEW_LOCK_BITS, tshift);
      store<u64>(ul + off, 0);
    }
  }
}

/**
 * H_STUFF_TCE(liobn, ioba, value, npages): clears (KVM allows no permission
 * bits) npages entries in every linked table, then stores `value` in the
 * guest's. Walks present levels and guest-table pages only, so a clear of a
 * huge sparse table costs what exists, not what it spans.
 */
function stuffTce(vm: u32, vcpu: u32, grow: bool): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  const value = gpr(vcpu, 6);
  const npages = gpr(vcpu, 7);
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  const entry = ioba >> <u64>gshift;
  const idx = entry - load<u64>(stt + STT_OFFSET);
  // kvmppc_rm_ioba_validate (pages needed unless clearing) comes before the permission check.
  if (!grow && value != 0 && !sttPagesPresent(stt, idx, npages)) return H_TOO_HARD;
  if (value & <u64>TCE_PERM_MASK) return H_PARAMETER;
  const pid = load<u32>(vcpu + VCPU_PID);
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  if (npages != 0 && hasV1(stt)) return H_TOO_HARD;
  if (grow && value != 0 && !sttReserveRange(stt, idx, npages)) return H_TOO_HARD;
  xMm = load<u32>(vm + VM_MM);
  xTag = tagBitsOf(vcpu);
  xSpins = grow ? <u32>LOCK_SPINS_VIRTUAL : <u32>LOCK_SPINS_REAL;
  xPidCheck = entryCheck();
  xPid = pid;
  const n = stitCount(stt);
  // Bit s: table s has entries to clear.
  let todo: u32 = 0;
  for (let s: u32 = 0; s < n; s++) {
    const tbl = stit(stt, s);
    const ss = subShiftOf(gshift, tbl);
    const toff = load<u64>(tbl + TBL_OFFSET);
    const tsize = load<u64>(tbl + TBL_SIZE);
    const first = entry << <u64>ss;
    const count = npages << <u64>ss;
    // tce_iommu_clear's range check (clearRel): a range leaving the table clears nothing there.
    if (count == 0 || first < toff || first - toff >= tsize || count > tsize - (first - toff)) continue;
    const pending = stuffLock(tbl, first - toff, first - toff + count);
    if (pending < 0) {
      for (let u: u32 = 0; u < s; u++) {
        if ((todo & (1 << u)) == 0) continue;
        const t = stit(stt, u);
        const su = subShiftOf(gshift, t);
        const lo = (entry << <u64>su) - load<u64>(t + TBL_OFFSET);
        stuffUndo(t, lo, lo + (npages << <u64>su));
      }
      return H_TOO_HARD;
    }
    if (pending > 0) todo |= 1 << s;
  }
  for (let s: u32 = 0; s < n; s++) {
    if ((todo & (1 << s)) == 0) continue;
    const tbl = stit(stt, s);
    const ss = subShiftOf(gshift, tbl);
    const lo = (entry << <u64>ss) - load<u64>(tbl + TBL_OFFSET);
    stuffApply(tbl, lo, lo + (npages << <u64>ss));
  }
  sttFill(stt, idx, npages, value, grow);
  return H_SUCCESS;
}

/** H_GET_TCE(liobn, ioba) → r4. */
function getTce(vm: u32, vcpu: u32): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const idx = (ioba >> <u64>load<u32>(stt + STT_PAGE_SHIFT)) - load<u64>(stt + STT_OFFSET);
  setGpr(vcpu, 4, sttGet(stt, idx));
  return H_SUCCESS;
}

// --- profile qemu --------------------------------------------------------------

/** QEMU's table lookup: a LIOBN with bits 32..63 set matches nothing. */
@inline function qemuFind(vm: u32, liobn: u64): u32 {
  return liobn >> 32 != 0 ? 0 : findStt(vm, liobn);
}

/** put_tce_emu in `vm`'s table `stt`: ioba rounded down to the page; the index computed unsigned; raw value stored. */
function qemuPut(vm: u32, stt: u32, ioba: u64, tce: u64): i32 {
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const bus = load<u64>(stt + STT_OFFSET) << shift;
  const idx = ((ioba & ~((<u64>1 << shift) - 1)) - bus) >> shift;
  if (idx >= load<u64>(stt + STT_SIZE)) return H_PARAMETER;
  const p = sttSlot(stt, idx, tce != 0);
  // QEMU's table exists whole from creation (spapr_tce_alloc_table) and a put cannot fail; here
  // its pages come on first use, and a page the heap cannot give is H_HARDWARE, never a lost TCE.
  if (p == 0) return tce != 0 ? H_HARDWARE : H_SUCCESS;
  store<u64>(p, tce);
  if ((tce & <u64>TCE_WRITE) != 0 && dirtyOn(vm)) dirtyMark(vm, tce, <u32>shift);
  return H_SUCCESS;
}

function qemuHcall(vm: u32, vcpu: u32, nr: u64): i32 {
  if (nr != <u64>H_PUT_TCE && nr != <u64>H_PUT_TCE_INDIRECT && nr != <u64>H_STUFF_TCE && nr != <u64>H_GET_TCE) return H_TOO_HARD;
  const stt = qemuFind(vm, gpr(vcpu, 4));
  if (stt == 0) return H_PARAMETER;
  const ioba = gpr(vcpu, 5);
  if (nr == <u64>H_PUT_TCE) return qemuPut(vm, stt, ioba, gpr(vcpu, 6));
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const psize = <u64>1 << shift;
  if (nr == <u64>H_GET_TCE) {
    const bus = load<u64>(stt + STT_OFFSET) << shift;
    const idx = ((ioba & ~(psize - 1)) - bus) >> shift;
    if (idx >= load<u64>(stt + STT_SIZE)) return H_PARAMETER;
    setGpr(vcpu, 4, sttGet(stt, idx));
    return H_SUCCESS;
  }
  const npages = gpr(vcpu, 7);
  if (nr == <u64>H_PUT_TCE_INDIRECT) {
    const list = gpr(vcpu, 6);
    if (npages > <u64>INDIRECT_MAX || (list & 0xfff) != 0) return H_PARAMETER;
    // The list must be guest RAM we can read; QEMU's behaviour outside RAM is unspecified (README).
    const host = gpaToHost(vm, list, npages << 3);
    if (host == 0) return H_PARAMETER;
    let rc = H_PARAMETER;
    for (let i: u32 = 0; i < <u32>npages; i++) {
      rc = qemuPut(vm, stt, ioba + (<u64>i << shift), bswap<u64>(load<u64>(host + (i << 3))));
      if (rc != H_SUCCESS) break;
    }
    return rc;
  }
  // H_STUFF_TCE: put_tce_emu for i in [0, npages), stopping at the first index past the table.
  const size = load<u64>(stt + STT_SIZE);
  if (npages > size) return H_PARAMETER;
  if (npages == 0) return H_PARAMETER;
  const value = gpr(vcpu, 6);
  const a0 = ioba & ~(psize - 1);
  const idx0 = (a0 - (load<u64>(stt + STT_OFFSET) << shift)) >> shift;
  if (idx0 >= size) return H_PARAMETER;
  const count = npages < size - idx0 ? npages : size - idx0;
  // Entry i goes to idx0 + i while ioba + i·psize does not wrap around; past that, one by one.
  if (count - 1 <= (~a0) >> shift) {
    // Pages already filled stay so, as QEMU's loop keeps the entries before the one that failed
    // (and are marked: a page marked that no entry took is only a page copied once more).
    const full = sttFill(stt, idx0, count, value, true);
    if ((value & <u64>TCE_WRITE) != 0 && dirtyOn(vm)) dirtyMark(vm, value, <u32>shift);
    if (!full) return H_HARDWARE;
    return count < npages ? H_PARAMETER : H_SUCCESS;
  }
  let rc = H_PARAMETER;
  for (let i: u64 = 0; i < npages; i++) {
    rc = qemuPut(vm, stt, ioba + (i << shift), value);
    if (rc != H_SUCCESS) break;
  }
  return rc;
}
