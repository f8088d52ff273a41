// The "no WASM" column: the same real-mode hypercalls written in plain
// JavaScript on typed arrays (not the library). It does what the WASM
// routine does per entry — ioba validation, the big-endian list read,
// memslot translation gpa → ua, the pre-registered region lookup ua → hpa,
// the owner check where the variant puts it, validate-all-then-apply, the
// hardware TCE exchange, the userspace view, the region `mapped` counters
// and the guest table — but on flat, fully allocated arrays (no levels), so
// it is a lower bound for a JavaScript implementation. Values are Numbers
// (every address here is below 2^53): no BigInt anywhere.
import { entriesOf } from './ops.mjs';

const PAGE = 0x10000;
const LIST_GPA = 0x2400000;
const RAM = 40 * 1024 * 1024;
const UA_BASE = 0x7f0000000000; // where the guest RAM sits in the VMM's address space
const HPA_BASE = 0x40000000; // where the pinned host pages start
const H_SUCCESS = 0;
const H_PARAMETER = -4;
const H_TOO_HARD = 9999;

/** One VM with one guest table (64 KiB pages) linked to one hardware table of 2^hwShift pages. */
class Model {
  constructor(check, hwShift) {
    this.pidCall = check === 'pid-call';
    this.pidEntry = check === 'pid-entry';
    this.gshift = 16;
    this.tshift = hwShift;
    this.sub = 1 << (16 - hwShift);
    this.size = 1 << 14; // guest entries
    this.guestHi = new Uint32Array(this.size);
    this.guestLo = new Uint32Array(this.size);
    const hwEntries = this.size * this.sub;
    this.hw = new Float64Array(hwEntries); // hpa | perm
    this.view = new Float64Array(hwEntries); // the userspace view: ua per entry
    this.ownerPid = 1000;
    // One memslot: gpa 0 → UA_BASE.
    this.slotGpa = 0;
    this.slotSize = RAM;
    this.slotUa = UA_BASE;
    // One pre-registered region over the slot, 64 KiB system pages.
    this.regUa = UA_BASE;
    this.regSize = RAM;
    this.regHpas = new Float64Array(RAM / PAGE);
    for (let i = 0; i < this.regHpas.length; i++) this.regHpas[i] = HPA_BASE + i * PAGE;
    this.regMapped = 1;
    this.ram = new DataView(new ArrayBuffer(RAM));
    // The vCPU's registers (r0..r31) as Numbers, and the vCPU thread's pid.
    this.regs = new Float64Array(32);
    this.pid = 1000;
  }

  gpaToUa(gpa) {
    return gpa >= this.slotGpa && gpa - this.slotGpa < this.slotSize ? this.slotUa + (gpa - this.slotGpa) : 0;
  }

  /** hpa of `ua` (a 2^tshift page of a 64 KiB region page), -1 when not pre-registered. */
  uaToHpa(ua) {
    const off = ua - this.regUa;
    if (off < 0 || off >= this.regSize) return -1;
    const pg = Math.floor(off / PAGE);
    return this.regHpas[pg] + (off - pg * PAGE);
  }

  /** Can guest entry `e` take `ua` (perm ≠ 0) in the hardware table? */
  check(e, ua, perm) {
    if (this.pidEntry && this.ownerPid !== this.pid) return false;
    if (perm === 0) return true;
    const step = 1 << this.tshift;
    for (let k = 0; k < this.sub; k++) if (this.uaToHpa(ua + k * step) < 0) return false;
    return true;
  }

  /** Writes guest entry `e` into the hardware table (subpage by subpage) and the view. */
  apply(e, ua, perm) {
    const step = 1 << this.tshift;
    const base = e * this.sub;
    for (let k = 0; k < this.sub; k++) {
      const i = base + k;
      if (this.pidEntry && this.ownerPid !== this.pid) return false;
      if (this.hw[i] !== 0) this.regMapped--; // the old page's region (one region here)
      if (perm !== 0) {
        this.hw[i] = this.uaToHpa(ua + k * step) + perm;
        this.view[i] = ua + k * step;
        this.regMapped++;
      } else {
        this.hw[i] = 0;
        this.view[i] = 0;
      }
    }
    return true;
  }

  putTce() {
    const r = this.regs;
    const ioba = r[5];
    const hi = r[6] >= 4294967296 ? Math.floor(r[6] / 4294967296) : 0;
    const lo = r[6] - hi * 4294967296;
    if (ioba % PAGE !== 0) return H_PARAMETER;
    const e = ioba / PAGE;
    if (e >= this.size) return H_PARAMETER;
    if (this.pidCall && this.ownerPid !== this.pid) return H_TOO_HARD;
    const perm = lo & 3;
    const gpa = hi * 4294967296 + ((lo & ~3) >>> 0);
    let ua = 0;
    if (perm !== 0) {
      if (gpa % PAGE !== 0) return H_PARAMETER;
      ua = this.gpaToUa(gpa);
      if (ua === 0) return H_TOO_HARD;
    }
    if (!this.check(e, ua, perm)) return H_TOO_HARD;
    this.apply(e, ua, perm);
    this.guestHi[e] = hi;
    this.guestLo[e] = lo;
    return H_SUCCESS;
  }

  putTceIndirect() {
    const r = this.regs;
    const ioba = r[5];
    const list = r[6];
    const n = r[7];
    if (n > 512 || list % 4096 !== 0 || ioba % PAGE !== 0) return H_PARAMETER;
    const e0 = ioba / PAGE;
    if (e0 + n > this.size) return H_PARAMETER;
    if (this.pidCall && this.ownerPid !== this.pid) return H_TOO_HARD;
    const dv = this.ram;
    for (let i = 0; i < n; i++) {
      const hi = dv.getUint32(list + i * 8, false);
      const lo = dv.getUint32(list + i * 8 + 4, false);
      const perm = lo & 3;
      let ua = 0;
      if (perm !== 0) {
        const gpa = hi * 4294967296 + ((lo & ~3) >>> 0);
        if (gpa % PAGE !== 0) return H_PARAMETER;
        ua = this.gpaToUa(gpa);
        if (ua === 0) return H_TOO_HARD;
      }
      if (!this.check(e0 + i, ua, perm)) return H_TOO_HARD;
    }
    for (let i = 0; i < n; i++) {
      const hi = dv.getUint32(list + i * 8, false);
      const lo = dv.getUint32(list + i * 8 + 4, false);
      const perm = lo & 3;
      const ua = perm !== 0 ? this.gpaToUa(hi * 4294967296 + ((lo & ~3) >>> 0)) : 0;
      this.apply(e0 + i, ua, perm);
      this.guestHi[e0 + i] = hi;
      this.guestLo[e0 + i] = lo;
    }
    return H_SUCCESS;
  }

  stuffTce() {
    const r = this.regs;
    const ioba = r[5];
    const value = r[6];
    const n = r[7];
    if (ioba % PAGE !== 0) return H_PARAMETER;
    const e0 = ioba / PAGE;
    if (e0 + n > this.size || value % 4 !== 0) return H_PARAMETER;
    if (this.pidCall && this.ownerPid !== this.pid) return H_TOO_HARD;
    if (this.pidEntry) for (let i = 0; i < n; i++) if (!this.check(e0 + i, 0, 0)) return H_TOO_HARD;
    for (let i = 0; i < n; i++) {
      this.apply(e0 + i, 0, 0);
      this.guestHi[e0 + i] = 0;
      this.guestLo[e0 + i] = value;
    }
    return H_SUCCESS;
  }

  hcall() {
    const nr = this.regs[3];
    let rc;
    if (nr === 0x20) rc = this.putTce();
    else if (nr === 0x13c) rc = this.putTceIndirect();
    else if (nr === 0x138) rc = this.stuffTce();
    else rc = H_TOO_HARD;
    if (rc !== H_TOO_HARD) this.regs[3] = rc;
    return rc;
  }
}

/** The JS baseline of `op` for a check variant: {run, entries, verify}; MAP/UNMAP has no JS baseline. */
export function prepareJs(op, check) {
  if (op.startsWith('MAP_UNMAP')) throw new Error('the JS baseline covers the hypercalls only (MAP/UNMAP is the library\'s own TypeScript path)');
  const m = new Model(check, op === 'H_PUT_TCE_64K_OVER_4K' ? 12 : 16);
  for (let i = 0; i < 512; i++) {
    m.ram.setUint32(LIST_GPA + i * 8, 0, false);
    m.ram.setUint32(LIST_GPA + i * 8 + 4, i * PAGE + 3, false);
  }
  const r = m.regs;
  let nr;
  if (op === 'H_PUT_TCE_INDIRECT_512' || op === 'H_STUFF_TCE_512') {
    r[3] = 0x13c; r[4] = 0x80000000; r[5] = 0; r[6] = LIST_GPA; r[7] = 512;
    m.hcall();
    nr = op === 'H_STUFF_TCE_512' ? 0x138 : 0x13c;
    if (nr === 0x138) { r[6] = 0; r[7] = 512; }
  } else {
    nr = 0x20;
    r[4] = 0x80000000; r[5] = 5 * PAGE; r[6] = 5 * PAGE + 3;
  }
  const run = () => {
    r[3] = nr;
    return m.hcall();
  };
  return {
    entries: entriesOf(op),
    run,
    verify() {
      const rc = run();
      if (rc !== H_SUCCESS) throw new Error(`js ${op}: rc ${rc}`);
    },
  };
}
