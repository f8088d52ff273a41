// A vCPU: a register block in linear memory and the hypercall chain of
// HV KVM (book3s_hv: real mode → virtual mode → exit to userspace).
// hcall() takes no arguments and does no BigInt arithmetic and no
// allocation: the VMM writes r3 (number) and r4.. (arguments) through
// `regs` (or its own view of the same bytes) and reads the results there.
import type { Vm } from './vm.js';
import type { Process } from './process.js';
import type { Engine } from './engine/engine.js';
import { wasmModule } from './engine/wasm.js';
import type { WorkerVcpuData } from './worker.js';
import {
  VCPU_BYTES, VCPU_GPR, VCPU_VM, VCPU_PID, VCPU_TID, VCPU_LEVEL, VCPU_ID, VCPU_STATS,
  H_TOO_HARD, LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT,
} from './generated/layout.js';

const TOO_HARD_R3 = BigInt(H_TOO_HARD);

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

  /** @internal use vm.vcpu() */
  constructor(vm: Vm, index: number, thread: Process) {
    this.vm = vm;
    this.index = index;
    this.thread = thread;
    this.engine = vm.host.engine;
    const mem = vm.host.mem;
    this.desc = vm.host.alloc(VCPU_BYTES, 'vCPU register block');
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
   * the arguments untouched). Returns the H_* status, also in r3.
   */
  hcall(): number {
    const rc = this.engine.hcall(this.desc, LEVEL_REAL);
    if (rc !== H_TOO_HARD) return rc;
    const rc2 = this.engine.hcall(this.desc, LEVEL_VIRTUAL);
    if (rc2 !== H_TOO_HARD) return rc2;
    this.regs[3] = TOO_HARD_R3;
    return H_TOO_HARD;
  }

  /** Real mode only (for benchmarks and tests of the fast path): H_TOO_HARD leaves r3 as it was. */
  hcallRealMode(): number {
    return this.engine.hcall(this.desc, LEVEL_REAL);
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

/** Per-hypercall completion counters. */
export interface HcallStats {
  real: number;
  virtual: number;
  exit: number;
}

export { LEVEL_REAL, LEVEL_VIRTUAL, LEVEL_EXIT };
