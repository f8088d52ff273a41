// A vCPU: a register block in linear memory and the hypercall chain of
// HV KVM (book3s_hv: real mode → virtual mode → exit to userspace).
// hcall() takes no arguments and does no BigInt arithmetic and no
// allocation: the VMM writes r3 (number) and r4.. (arguments) through
// `regs` (or its own view of the same bytes) and reads the results there.
import type { Vm } from './vm.js';
import type { Process } from './process.js';
import type { Engine } from './engine/engine.js';
import { hcallChain } from './engine/chain.js';
import { wasmModule } from './engine/wasm.js';
import type { WorkerVcpuData } from './worker.js';
import type { EventHub } from './events.js';
import type { LinearMemory } from './memory.js';
import { fail } from './errors.js';
import {
  VCPU_BYTES, VCPU_GPR, VCPU_VM, VCPU_PID, VCPU_TID, VCPU_LEVEL, VCPU_ID, VCPU_STATS, VCPU_LOCK_TAG,
  HEADER_BASE, HDR_LOCK_TAGS, MAX_LOCK_TAG, LEVEL_REAL,
} from './generated/layout.js';

/** Which level finished a hypercall. */
export type Level = 'real' | 'virtual' | 'exit' | 'none';
const LEVELS: Level[] = ['none', 'real', 'virtual', 'exit'];

/** A virtual CPU of a VM. */
export class Vcpu {
  readonly vm: Vm;
  readonly index: number;
  /** The thread running this vCPU (its pid is what the pid owner check compares). */
  readonly thread: Process;
  /** Offset of the register block in linear memory. */
  readonly desc: number;
  /** r0..r31 as u64, a view of the register block: regs[3] is r3. */
  readonly regs: BigUint64Array;
  private readonly engine: Engine;
  private readonly events: EventHub;

  /** @internal use vm.vcpu() */
  constructor(vm: Vm, index: number, thread: Process) {
    this.vm = vm;
    this.index = index;
    this.thread = thread;
    this.engine = vm.host.engine;
    this.events = vm.events;
    const mem = vm.host.mem;
    const tag = takeLockTag(mem);
    this.desc = vm.host.alloc(VCPU_BYTES, 'vCPU register block');
    mem.setU32(this.desc + VCPU_LOCK_TAG, tag);
    mem.setU32(this.desc + VCPU_VM, vm.desc);
    mem.setU32(this.desc + VCPU_PID, thread.pid);
    mem.setU32(this.desc + VCPU_TID, thread.tid);
    mem.setU32(this.desc + VCPU_ID, index);
    this.regs = new BigUint64Array(mem.memory.buffer, this.desc + VCPU_GPR, 32);
  }

  /**
   * Runs the hypercall in the registers: real mode first; on H_TOO_HARD
   * virtual mode re-runs it from scratch and may allocate; on H_TOO_HARD
   * again the call exits to the VMM (H_TOO_HARD is returned and left in r3,
   * the arguments untouched). Returns the H_* status, also in r3. With
   * map/unmap subscribers (vm.subscribe) the events of the entries written
   * are delivered before it returns.
   */
  hcall(): number {
    // The only cost of events when nobody subscribed: one boolean.
    if (this.events.active) return this.hcallNotify();
    return this.run();
  }

  /** The hypercall chain itself. */
  private run(): number {
    return hcallChain(this.engine, this.desc, this.regs);
  }

  /** hcall() with subscribers: the arguments are copied first, since r3 receives the status. */
  private hcallNotify(): number {
    const r = this.regs;
    const nr = r[3]!;
    const liobn = r[4]!;
    const ioba = r[5]!;
    const arg = r[6]!;
    const npages = r[7]!;
    const rc = this.run();
    this.events.afterHcall(nr, liobn, ioba, arg, npages, rc);
    return rc;
  }

  /** Real mode only (for benchmarks and tests of the fast path): H_TOO_HARD leaves r3 as it was. */
  hcallRealMode(): number {
    return this.engine.hcall(this.desc, LEVEL_REAL);
  }

  /** The vCPU whose register block a snapshot left at `desc`. */
  static restore(vm: Vm, index: number, thread: Process, desc: number): Vcpu {
    const c = Object.create(Vcpu.prototype) as Vcpu;
    Object.assign(c, { vm, index, thread, desc, engine: vm.host.engine, events: vm.events, regs: new BigUint64Array(vm.host.mem.memory.buffer, desc + VCPU_GPR, 32) });
    return c;
  }

  /** What a worker thread needs to run this vCPU (post it as workerData; see spapr-tce/worker). */
  workerData(): WorkerVcpuData {
    return { memory: this.vm.host.memory, module: wasmModule(), engine: this.engine.kind, vcpu: this.desc };
  }

  /** The level that finished the last hypercall. */
  get lastLevel(): Level {
    return LEVELS[this.vm.host.mem.getU32(this.desc + VCPU_LEVEL)] ?? 'none';
  }

  /** @internal completions of one hcall kind at one level. */
  count(kind: number, level: number): number {
    return this.vm.host.mem.getU32(this.desc + VCPU_STATS + (kind * 4 + level) * 4);
  }
}

/**
 * Takes a free view-lock tag of the host (1..MAX_LOCK_TAG): the hypercall
 * paths tell their own view locks from other vCPUs' by it, so no two live
 * vCPUs of a host share one. Only the thread that owns the host creates
 * vCPUs, so the bitmap in the header needs no lock.
 */
function takeLockTag(mem: LinearMemory): number {
  for (let t = 1; t <= MAX_LOCK_TAG; t++) {
    const w = HEADER_BASE + HDR_LOCK_TAGS + (t >>> 5) * 4;
    const bits = mem.getU32(w);
    if ((bits & (1 << (t & 31))) === 0) {
      mem.setU32(w, (bits | (1 << (t & 31))) >>> 0);
      return t;
    }
  }
  return fail('ENOSPC', `vcpu: a host runs at most ${MAX_LOCK_TAG} vCPUs (each needs its own view-lock tag)`);
}

/** Per-hypercall completion counters. */
export interface HcallStats {
  real: number;
  virtual: number;
  exit: number;
}
