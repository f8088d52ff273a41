// The TCE hypercalls on a vCPU register block (r3 = number, r4.. = args).
//
// Profile kvm (arch/powerpc/kvm/book3s_64_vio_hv.c, the real-mode handlers
// of ≤v5.18, and book3s_64_vio.c): one routine serves both modes. Real mode
// (flags without OP_ALLOC) never allocates; virtual mode (OP_ALLOC, driven
// from src/vcpu.ts after real mode answered H_TOO_HARD) may. Every call
// first checks everything it will need for every hardware table, every
// subpage and every entry, and only then writes, so H_TOO_HARD and
// H_PARAMETER always leave the tables exactly as they were.
//
// Profile qemu (QEMU hw/ppc/spapr_iommu.c): the emulated handlers, which
// only return H_SUCCESS or H_PARAMETER and may stop part-way.
import {
  VCPU_GPR, VCPU_VM, VCPU_PID, VM_MM, VM_PROFILE, STT_OFFSET, STT_SIZE, STT_PAGE_SHIFT,
  STT_STIT_COUNT, STT_STITS, TBL_PAGE_SHIFT, TBL_OWNER_PID, TBL_OFFSET, TBL_FLAGS, TABLE_F_V2,
  HEADER_BASE, HDR_OWNER_CHECK, HDR_PID_PLACEMENT, OWNER_CHECK_PID, PID_CHECK_ENTRY, HDR_KERNEL, KERNEL_4_19,
  H_GET_TCE, H_PUT_TCE, H_STUFF_TCE, H_PUT_TCE_INDIRECT, H_SUCCESS, H_PARAMETER, H_TOO_HARD,
  OP_ALLOC, OP_CHECK_PID, TCE_PERM_MASK, PROFILE_QEMU, INDIRECT_MAX, VCPU_LEVEL, VCPU_STATS,
  LEVEL_NONE, LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT, KIND_PUT, KIND_INDIRECT, KIND_STUFF, KIND_GET, VCPU_RCU_SEQ,
} from './generated/layout';
import { findStt, gpaToUa, gpaToHost, sttSlot, sttPagesPresent, sttGet } from './guest';
import { buildOneV2, checkMapOne, clearRel } from './table';

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
 * not ours. The QEMU profile is userspace: any level runs it, as LEVEL_EXIT.
 * Counts the completion in the vCPU's stats[kind][level].
 */
export function hcall(vcpu: u32, level: u32): i32 {
  // The reclamation read side (src/core/reclaim.ts): rcuSeq is odd from here
  // to the end of the call. The entry store is atomic (seq_cst, an xchg on
  // x86): it must be visible before the first load of a shared descriptor,
  // which a plain store is not (x86 lets a later load pass it). The exit store
  // must not move before the call's loads: WebAssembly has no release store,
  // so it is atomic too. Nothing else of the call is touched.
  const inside = (load<u32>(vcpu + VCPU_RCU_SEQ) + 1) | 1;
  atomic.store<u32>(vcpu + VCPU_RCU_SEQ, inside);
  const rc = hcallInside(vcpu, level);
  atomic.store<u32>(vcpu + VCPU_RCU_SEQ, inside + 1);
  return rc;
}

/** hcall() between the read-side entry and exit. */
function hcallInside(vcpu: u32, level: u32): i32 {
  const vm = load<u32>(vcpu + VCPU_VM);
  const nr = gpr(vcpu, 3);
  const flags: u32 = level == <u32>LEVEL_REAL ? 0 : <u32>OP_ALLOC;
  let rc: i32;
  let done = level;
  if (load<u32>(vm + VM_PROFILE) == <u32>PROFILE_QEMU) {
    rc = qemuHcall(vm, vcpu, nr);
    done = <u32>LEVEL_EXIT;
  } else if (nr == <u64>H_PUT_TCE) {
    rc = putTce(vm, vcpu, flags);
  } else if (nr == <u64>H_PUT_TCE_INDIRECT) {
    rc = putTceIndirect(vm, vcpu, flags);
  } else if (nr == <u64>H_STUFF_TCE) {
    rc = stuffTce(vm, vcpu, flags);
  } else if (nr == <u64>H_GET_TCE) {
    rc = getTce(vm, vcpu);
  } else {
    rc = H_TOO_HARD;
  }
  if (rc != H_TOO_HARD) setGpr(vcpu, 3, <u64><i64>rc);
  else if (level == <u32>LEVEL_VIRTUAL) done = <u32>LEVEL_EXIT;
  else done = <u32>LEVEL_NONE;
  store<u32>(vcpu + VCPU_LEVEL, done);
  const kind = kindOf(nr);
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

/** The pid check once per hypercall: every linked table must belong to the vCPU's process. */
@inline function pidCallCheck(stt: u32, pid: u32): bool {
  const n = load<u32>(stt + STT_STIT_COUNT);
  for (let i: u32 = 0; i < n; i++) {
    if (load<u32>(load<u32>(stt + STT_STITS + (i << 2)) + TBL_OWNER_PID) != pid) return false;
  }
  return true;
}

/** OP_CHECK_PID when the host checks the pid at every view write, else 0. */
@inline function entryCheckFlag(): u32 {
  const h = <u32>HEADER_BASE;
  return load<u32>(h + HDR_OWNER_CHECK) == <u32>OWNER_CHECK_PID && load<u32>(h + HDR_PID_PLACEMENT) == <u32>PID_CHECK_ENTRY ? <u32>OP_CHECK_PID : 0;
}

/**
 * The pid check at hypercall entry. With the per-write placement it runs too,
 * so that a refused call changes nothing; the per-write compare then comes on
 * top of it, at every view write (buildOneV2 / clearOne with OP_CHECK_PID).
 */
@inline function callCheckFails(stt: u32, pid: u32): bool {
  return load<u32>(<u32>HEADER_BASE + HDR_OWNER_CHECK) == <u32>OWNER_CHECK_PID && !pidCallCheck(stt, pid);
}

/**
 * Checks that guest entry `entry` (absolute) can be mapped to `ua` (perm ≠ 0)
 * or unmapped in every linked hardware table, subpage by subpage
 * (kvmppc_tce_validate + the failure cases of kvmppc_rm_tce_iommu_do_map).
 */
function checkStits(stt: u32, mm: u32, entry: u64, ua: u64, perm: u32, grow: bool): bool {
  const n = load<u32>(stt + STT_STIT_COUNT);
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  for (let i: u32 = 0; i < n; i++) {
    const tbl = load<u32>(stt + STT_STITS + (i << 2));
    // A v1 table pins pages per entry, which only the VMM can do: every change exits (kernel: no
    // userspace view, H_TOO_HARD), so a guest clear can never drop a pin behind VFIO's back.
    if ((load<u32>(tbl + TBL_FLAGS) & <u32>TABLE_F_V2) == 0) return false;
    if (perm == 0) continue;
    const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
    const sub: u64 = <u64>1 << <u64>(gshift - tshift);
    const rel = entry * sub - load<u64>(tbl + TBL_OFFSET);
    for (let k: u64 = 0; k < sub; k++) {
      if (checkMapOne(tbl, mm, rel + k, ua + (k << <u64>tshift), grow) != 0) return false;
    }
  }
  return true;
}

/**
 * Maps or unmaps guest entry `entry` in every linked table; checkStits has
 * passed, so only an allocation can fail. `checkPid` (OP_CHECK_PID or 0)
 * compares the pid at every view write; the entry check already passed it.
 */
function applyStits(stt: u32, mm: u32, entry: u64, ua: u64, perm: u32, flags: u32, checkPid: u32, pid: u32): bool {
  const n = load<u32>(stt + STT_STIT_COUNT);
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  const f = (flags & <u32>OP_ALLOC) | checkPid;
  for (let i: u32 = 0; i < n; i++) {
    const tbl = load<u32>(stt + STT_STITS + (i << 2));
    const tshift = load<u32>(tbl + TBL_PAGE_SHIFT);
    const sub: u64 = <u64>1 << <u64>(gshift - tshift);
    const rel = entry * sub - load<u64>(tbl + TBL_OFFSET);
    if (perm == 0) {
      clearRel(tbl, mm, rel, sub, checkPid, pid);
      continue;
    }
    for (let k: u64 = 0; k < sub; k++) {
      if (buildOneV2(tbl, mm, rel + k, ua + (k << <u64>tshift), perm, f, pid) < 0) {
        // Only an allocation failure of virtual mode gets here: undo this table's subpages.
        clearRel(tbl, mm, rel, k, 0, 0);
        return false;
      }
    }
  }
  return true;
}

/**
 * The answer to a TCE whose address is misaligned to the guest page: real
 * mode (kvmppc_rm_tce_validate) and the 4.12 virtual mode say H_PARAMETER;
 * from 4.19 the virtual-mode kvmppc_tce_validate (42de7b9e2167) says
 * H_TOO_HARD, which exits to the VMM. Read only on that error path.
 */
@inline function misalignedTce(flags: u32): i32 {
  return (flags & <u32>OP_ALLOC) != 0 && load<u32>(<u32>HEADER_BASE + HDR_KERNEL) >= <u32>KERNEL_4_19 ? H_TOO_HARD : H_PARAMETER;
}

/** Stores a guest TCE (kvmppc_tce_put): an absent page is allocated unless the TCE is 0. */
@inline function sttPut(stt: u32, idx: u64, tce: u64, grow: bool): void {
  const p = sttSlot(stt, idx, grow && tce != 0);
  if (p != 0) atomic.store<u64>(p, tce);
}

/** H_PUT_TCE(liobn, ioba, tce). */
function putTce(vm: u32, vcpu: u32, flags: u32): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  const tce = gpr(vcpu, 6);
  if (!iobaOk(stt, ioba, 1)) return H_PARAMETER;
  const grow = (flags & <u32>OP_ALLOC) != 0;
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const entry = ioba >> shift;
  const idx = entry - load<u64>(stt + STT_OFFSET);
  if (!grow && tce != 0 && !sttPagesPresent(stt, idx, 1)) return H_TOO_HARD;
  const perm = <u32>(tce & <u64>TCE_PERM_MASK);
  const pid = load<u32>(vcpu + VCPU_PID);
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  const mm = load<u32>(vm + VM_MM);
  let ua: u64 = 0;
  if (perm != 0) {
    const gpa = tce & ~<u64>TCE_PERM_MASK;
    if (gpa & ((<u64>1 << shift) - 1)) return misalignedTce(flags);
    ua = gpaToUa(vm, gpa);
    if (ua == 0) return H_TOO_HARD;
  }
  if (!checkStits(stt, mm, entry, ua, perm, grow)) return H_TOO_HARD;
  if (!applyStits(stt, mm, entry, ua, perm, flags, entryCheckFlag(), pid)) return H_TOO_HARD;
  sttPut(stt, idx, tce, grow);
  return H_SUCCESS;
}

/** H_PUT_TCE_INDIRECT(liobn, ioba, tce_list, npages): the list is big-endian in guest memory. */
function putTceIndirect(vm: u32, vcpu: u32, flags: u32): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  const list = gpr(vcpu, 6);
  const npages = gpr(vcpu, 7);
  if (npages > <u64>INDIRECT_MAX) return H_PARAMETER;
  if (list & 0xfff) return H_PARAMETER;
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const grow = (flags & <u32>OP_ALLOC) != 0;
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const entry = ioba >> shift;
  const idx = entry - load<u64>(stt + STT_OFFSET);
  if (!grow && !sttPagesPresent(stt, idx, npages)) return H_TOO_HARD;
  // The list must translate even when empty (kvmppc_rm_tce_to_ua on tce_list).
  const host = gpaToHost(vm, list, npages << 3);
  if (host == 0) return H_TOO_HARD;
  const pid = load<u32>(vcpu + VCPU_PID);
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  const mm = load<u32>(vm + VM_MM);
  const checkPid = entryCheckFlag();
  const pageMask = (<u64>1 << shift) - 1;
  // Validate every TCE before changing anything.
  for (let i: u64 = 0; i < npages; i++) {
    const tce = bswap<u64>(load<u64>(host + <u32>(i << 3)));
    const perm = <u32>(tce & <u64>TCE_PERM_MASK);
    let ua: u64 = 0;
    if (perm != 0) {
      const gpa = tce & ~<u64>TCE_PERM_MASK;
      if (gpa & pageMask) return misalignedTce(flags);
      ua = gpaToUa(vm, gpa);
      if (ua == 0) return H_TOO_HARD;
    }
    if (!checkStits(stt, mm, entry + i, ua, perm, grow)) return H_TOO_HARD;
  }
  for (let i: u64 = 0; i < npages; i++) {
    const tce = bswap<u64>(load<u64>(host + <u32>(i << 3)));
    const perm = <u32>(tce & <u64>TCE_PERM_MASK);
    const ua = perm != 0 ? gpaToUa(vm, tce & ~<u64>TCE_PERM_MASK) : 0;
    if (!applyStits(stt, mm, entry + i, ua, perm, flags, checkPid, pid)) return H_TOO_HARD;
    sttPut(stt, idx + i, tce, grow);
  }
  return H_SUCCESS;
}

/** H_STUFF_TCE(liobn, ioba, value, npages): clears (KVM allows no permission bits) npages entries. */
function stuffTce(vm: u32, vcpu: u32, flags: u32): i32 {
  const stt = findStt(vm, gpr(vcpu, 4));
  if (stt == 0) return H_TOO_HARD;
  const ioba = gpr(vcpu, 5);
  const value = gpr(vcpu, 6);
  const npages = gpr(vcpu, 7);
  if (!iobaOk(stt, ioba, npages)) return H_PARAMETER;
  const grow = (flags & <u32>OP_ALLOC) != 0;
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const entry = ioba >> shift;
  const idx = entry - load<u64>(stt + STT_OFFSET);
  // kvmppc_rm_ioba_validate (pages needed unless clearing) comes before the permission check.
  if (!grow && value != 0 && !sttPagesPresent(stt, idx, npages)) return H_TOO_HARD;
  if (value & <u64>TCE_PERM_MASK) return H_PARAMETER;
  const pid = load<u32>(vcpu + VCPU_PID);
  if (callCheckFails(stt, pid)) return H_TOO_HARD;
  const mm = load<u32>(vm + VM_MM);
  const checkPid = entryCheckFlag();
  if (npages != 0 && !checkStits(stt, mm, entry, 0, 0, grow)) return H_TOO_HARD;
  const n = load<u32>(stt + STT_STIT_COUNT);
  const gshift = load<u32>(stt + STT_PAGE_SHIFT);
  for (let s: u32 = 0; s < n; s++) {
    const tbl = load<u32>(stt + STT_STITS + (s << 2));
    const sub: u64 = <u64>1 << <u64>(gshift - load<u32>(tbl + TBL_PAGE_SHIFT));
    clearRel(tbl, mm, entry * sub - load<u64>(tbl + TBL_OFFSET), npages * sub, checkPid, pid);
  }
  for (let i: u64 = 0; i < npages; i++) sttPut(stt, idx + i, value, grow);
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

/** put_tce_emu: ioba rounded down to the page; the index computed unsigned; raw value stored. */
function qemuPut(stt: u32, ioba: u64, tce: u64): i32 {
  const shift = <u64>load<u32>(stt + STT_PAGE_SHIFT);
  const bus = load<u64>(stt + STT_OFFSET) << shift;
  const idx = ((ioba & ~((<u64>1 << shift) - 1)) - bus) >> shift;
  if (idx >= load<u64>(stt + STT_SIZE)) return H_PARAMETER;
  sttPut(stt, idx, tce, true);
  return H_SUCCESS;
}

function qemuHcall(vm: u32, vcpu: u32, nr: u64): i32 {
  if (nr != <u64>H_PUT_TCE && nr != <u64>H_PUT_TCE_INDIRECT && nr != <u64>H_STUFF_TCE && nr != <u64>H_GET_TCE) return H_TOO_HARD;
  const stt = qemuFind(vm, gpr(vcpu, 4));
  if (stt == 0) return H_PARAMETER;
  const ioba = gpr(vcpu, 5);
  if (nr == <u64>H_PUT_TCE) return qemuPut(stt, ioba, gpr(vcpu, 6));
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
    for (let i: u64 = 0; i < npages; i++) {
      rc = qemuPut(stt, ioba + (i << shift), bswap<u64>(load<u64>(host + <u32>(i << 3))));
      if (rc != H_SUCCESS) break;
    }
    return rc;
  }
  // H_STUFF_TCE
  if (npages > load<u64>(stt + STT_SIZE)) return H_PARAMETER;
  const value = gpr(vcpu, 6);
  let rc = H_PARAMETER;
  for (let i: u64 = 0; i < npages; i++) {
    rc = qemuPut(stt, ioba + (i << shift), value);
    if (rc != H_SUCCESS) break;
  }
  return rc;
}
