// The worker side of a vCPU: a VMM that runs each vCPU on its own
// worker_thread posts `vcpu.workerData()` to the worker, which attaches to
// the same shared linear memory and runs hypercalls there. Entry updates are
// atomic exchanges and region counters atomic, as in the kernel's real
// mode, so vCPUs on several threads lose nothing.
import type { Engine } from '../engine/engine.js';
import { createWasmEngine } from '../engine/wasm.js';
import { createNativeEngine } from '../engine/native.js';
import { hcallChain } from '../engine/chain.js';
import { LinearMemory } from '../core/memory.js';
import { HdrView, VcpuView } from '../generated/views.js';
import { HEADER_BASE, KERNEL_5_19 } from '../generated/layout.js';

/** What a Vcpu hands to a worker (structured-clone safe: the memory and module are shared, not copied). */
export interface WorkerVcpuData {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  engine: 'wasm' | 'native';
  vcpu: number;
}

/** A vCPU driven from a worker thread: the same registers and the same hypercall chain as Vcpu. */
export class WorkerVcpu {
  /** r0..r31 of the vCPU, a view of the shared register block. */
  readonly regs: BigUint64Array;
  private readonly engine: Engine;
  private readonly desc: number;
  /** Whether the host's kernel era has real mode, read from the shared header ('5.19' has none). */
  private readonly realMode: boolean;

  private constructor(data: WorkerVcpuData) {
    this.engine = data.engine === 'native' ? createNativeEngine(data.memory) : createWasmEngine(data.memory, data.module);
    this.desc = data.vcpu;
    const mem = new LinearMemory(data.memory);
    this.regs = new VcpuView(mem, data.vcpu).gprArray();
    this.realMode = new HdrView(mem, HEADER_BASE).kernel !== KERNEL_5_19;
  }

  /** Attaches to a vCPU from the data its Vcpu produced (vcpu.workerData()). */
  static attach(data: WorkerVcpuData): WorkerVcpu {
    if (!data || !(data.memory instanceof WebAssembly.Memory) || typeof data.vcpu !== 'number') {
      throw new TypeError('WorkerVcpu.attach: expected the object returned by vcpu.workerData()');
    }
    return new WorkerVcpu(data);
  }

  /** Runs the hypercall in the registers: real mode, then virtual mode, then H_TOO_HARD (exit to the VMM). */
  hcall(): number {
    return hcallChain(this.engine, this.desc, this.regs, this.realMode);
  }
}
