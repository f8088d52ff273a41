// A vCPU: a register block in linear memory and the hypercall chain of
// HV KVM (book3s_hv: real mode → virtual mode → exit to userspace).
// hcall() takes no arguments and does no BigInt arithmetic and no
// allocation: the VMM writes r3 (number) and r4.. (arguments) through
// `regs` (or its own view of the same bytes) and reads the results there.
import type { KvmVm, HcallObserver } from './vm.js';
import type { Task } from '../kernel/task.js';
import type { Engine } from '../engine/engine.js';
import { hcallChain } from '../engine/chain.js';
import { wasmModule } from '../engine/wasm.js';
import type { WorkerVcpuData } from './worker.js';
import { HdrView, VcpuView, VmView } from '../generated/views.js';
import { HEADER_BASE, H_TOO_HARD, LEVEL_REAL, MAX_LOCK_TAG } from '../generated/layout.js';
import type { LinearMemory } from '../core/memory.js';
import { fail } from '../core/errors.js';
import * as v from '../core/validate.js';

/** Which level finished a hypercall. */
export type Level = 'real' | 'virtual' | 'exit' | 'none';
const LEVELS: Level[] = ['none', 'real', 'virtual', 'exit'];
// hcall()'s two constants, written into the text of each engine's hcall() (hcallOf) as literals.
const REAL: number = LEVEL_REAL;
const TOO_HARD: number = H_TOO_HARD;

/** Options of vcpu.release(). */
export interface ReleaseOptions {
  /** The vCPU's worker was killed mid-call: release it although it looks inside a hypercall. */
  gone?: boolean;
}
const RELEASE_OPTIONS = v.keys<ReleaseOptions>('vcpu.release', { gone: true });

/** A virtual CPU of a VM (with real mode, its hcall() is its engine instance's: hcallOf). */
export class Vcpu {
  readonly vm: KvmVm;
  readonly index: number;
  /** The thread running this vCPU, a Process (its pid is what the pid owner check compares). */
  readonly thread: Task;
  /** Offset of the register block in linear memory. */
  readonly desc: number;
  /** r0..r31 as u64, a view of the register block: regs[3] is r3. */
  readonly regs: BigUint64Array;
  private readonly engine: Engine;
  private readonly events: HcallObserver;
  private readonly d: VcpuView;
  /** Whether the kernel has real-mode handlers (all eras before '5.19'). */
  private readonly realMode: boolean;
  private released = false;
  /**
   * hcall()'s one test for its common case: real mode exists and the vCPU is
   * not released (cleared by release()). Compared with `=== true`: V8 then
   * compares one word instead of running a generic truth test. This field,
   * engineHcall and afterReal() are read by the text hcallOf compiles, which
   * TypeScript does not see: protected, not private, for that reason alone.
   */
  protected direct: boolean;
  /** The engine's hcall routine, kept in the vCPU: one field load per call instead of two and a map check. */
  protected readonly engineHcall: (vcpu: number, level: number) => number;

  /** @internal use vm.vcpu(). Allocates the register block, or adopts `desc` (a restored vCPU). */
  constructor(vm: KvmVm, index: number, thread: Task, desc?: number) {
    this.vm = vm;
    this.index = index;
    this.thread = thread;
    this.engine = vm.host.engine;
    this.events = vm.events;
    this.realMode = vm.host.kernel !== '5.19';
    this.direct = this.realMode;
    this.engineHcall = this.engine.hcall;
    if (desc === undefined) {
      // The tag first: a host out of tags refuses the vCPU before anything is allocated.
      const tag = takeLockTag(vm.host.mem);
      const d = new VcpuView(vm.host.mem, vm.host.alloc(VcpuView.BYTES, 'vCPU register block'));
      d.lockTag = tag;
      d.vm = vm.desc;
      d.pid = thread.pid;
      d.tid = thread.tid;
      d.id = index;
      desc = d.at;
    }
    this.desc = desc;
    this.d = new VcpuView(vm.host.mem, desc);
    this.regs = this.d.gprArray();
    // With real mode, hcall() is the engine instance's own function (hcallOf), an own property set
    // here so that every such vCPU has one shape.
    if (this.realMode) this.hcall = hcallOf(this.engine);
    vm.host.reclaim.addVcpu(desc, `vCPU ${index === -1 >>> 0 ? '(vm.hcall)' : index} of VM ${new VmView(vm.host.mem, vm.desc).id}`);
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
    return this.hcallSlow();
  }

  /** hcall() outside its common case: released, subscribers, or no real mode (a plain Vcpu's hcall()). */
  private hcallSlow(): number {
    if (this.released) return fail('EBADF', `vCPU ${this.index} has been released`);
    if (this.events.active) return this.hcallNotify();
    return this.run();
  }

  /** The chain after real mode deferred (or from virtual mode under '5.19'): virtual mode, then the exit. */
  protected afterReal(): number {
    return hcallChain(this.engine, this.desc, this.regs, false);
  }

  /** The hypercall chain itself. */
  private run(): number {
    return hcallChain(this.engine, this.desc, this.regs, this.realMode);
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

  /**
   * Real mode only (for benchmarks and tests of the fast path): H_TOO_HARD
   * leaves r3 as it was. Under kernel '5.19' there is no real mode: always
   * H_TOO_HARD, and nothing runs.
   */
  hcallRealMode(): number {
    if (!this.realMode) return H_TOO_HARD;
    return this.engine.hcall(this.desc, LEVEL_REAL);
  }

  /**
   * Closes the vCPU (its fd): the host stops waiting for it at grace periods
   * and frees its register block after one. A vCPU inside a hypercall (its
   * worker still running it) is EBUSY: stop and join the worker first. A
   * worker killed mid-call (worker.terminate() while in WebAssembly) leaves
   * the vCPU inside forever: `{ gone: true }` declares it dead and releases
   * it anyway, which unblocks host.synchronize() and every deferred free.
   * View-entry locks such a call held stay held (the entries are refused in
   * bounded time, see docs/semantics.md). A second release does nothing.
   */
  release(opts?: ReleaseOptions): void {
    const o = v.options('opts', opts, RELEASE_OPTIONS);
    const gone = v.bool('opts.gone', o.gone, false);
    if (this.released) return;
    const host = this.vm.host;
    if (host.reclaim.inside(this.desc) && !gone) {
      fail('EBUSY', `vcpu.release: vCPU ${this.index} is inside a hypercall; join its worker first, or release({ gone: true }) once the worker was terminated`);
    }
    this.released = true;
    this.direct = false;
    // The view-lock tag goes back, unless a killed call may still hold locks under it: a new vCPU
    // with that tag would take those entries for its own.
    if (!gone || !host.reclaim.inside(this.desc)) giveBackLockTag(host.mem, this.d.lockTag);
    host.reclaim.removeVcpu(this.desc);
    host.free(this.desc, VcpuView.BYTES);
    if (this.vm.vcpus.get(this.index) === this) this.vm.vcpus.delete(this.index);
    if (this.vm.friendly === this) this.vm.friendly = undefined;
    this.vm.vcpuGone();
  }

  /** Whether release() has run. */
  get isReleased(): boolean {
    return this.released;
  }

  /** What a worker thread needs to run this vCPU (post it as workerData; see spapr-tce/worker). */
  workerData(): WorkerVcpuData {
    return { memory: this.vm.host.mem.memory, module: wasmModule(), engine: this.engine.kind, vcpu: this.desc };
  }

  /** The level that finished the last hypercall. */
  get lastLevel(): Level {
    return LEVELS[this.d.level] ?? 'none';
  }

  /** @internal completions of one hcall kind at one level. */
  count(kind: number, level: number): number {
    return this.d.statsAt(kind * 4 + level);
  }
}

// hcall() of a vCPU with real mode: real mode inline (hcallChain's first step), since most calls
// end there and the call through the chain cost about 40 instructions of JavaScript per hypercall
// (callgrind, bench/callgrind-probe.mjs); the only cost of events when nobody subscribed is one
// boolean. One function per engine instance, compiled from its own source text: V8 keeps call
// feedback per function (per source text: its eval cache hands equal texts one function and one
// feedback vector), and it inlines the JS→WASM call (or the addon call) only where every call saw
// one target. Each host's engine has its own exports (a WebAssembly instance per memory), so one
// shared method saw a target per host and went megamorphic in a process with several hosts — the
// benchmark's, or a VMM's with several VMs: then every call went through the generic js-to-wasm
// stub, 55 more instructions per H_PUT_TCE (callgrind: 560 against 505 with one host), and once
// native vCPUs had run too, ~100 more.
const fastHcalls = new WeakMap<Engine, () => number>();
let fastHcallSerial = 0;

/** The hcall() of the vCPUs with real mode on `engine`, made once per engine instance. */
function hcallOf(engine: Engine): () => number {
  let f = fastHcalls.get(engine);
  if (f === undefined) {
    // The serial makes each text unique; the constants are literals for TurboFan to fold.
    const src = `"use strict"; // spapr-tce vcpu.hcall() of ${engine.kind} engine ${++fastHcallSerial}
return function hcall() {
  if (this.direct === true && this.events.active === false) {
    const rc = this.engineHcall(this.desc, ${REAL});
    if (rc !== ${TOO_HARD}) return rc;
    return this.afterReal();
  }
  return this.hcallSlow();
};`;
    try {
      f = new Function(src)() as () => number;
    } catch {
      // Code generation from strings is disallowed (node --disallow-code-generation-from-strings):
      // the prototype's hcall(), the same chain through hcallSlow(), one function for every host.
      f = Vcpu.prototype.hcall;
    }
    fastHcalls.set(engine, f);
  }
  return f;
}

/**
 * Takes a free view-lock tag of the host (1..MAX_LOCK_TAG): the hypercall
 * paths tell their own view locks from other vCPUs' by it, so no two live
 * vCPUs of a host share one. Only the thread that owns the host creates
 * vCPUs, so the bitmap in the header needs no lock.
 */
function takeLockTag(mem: LinearMemory): number {
  const hdr = new HdrView(mem, HEADER_BASE);
  for (let t = 1; t <= MAX_LOCK_TAG; t++) {
    const bits = hdr.lockTagsAt(t >>> 5);
    if ((bits & (1 << (t & 31))) === 0) {
      hdr.setLockTagsAt(t >>> 5, (bits | (1 << (t & 31))) >>> 0);
      return t;
    }
  }
  return fail('ENOSPC', `vcpu: a host runs at most ${MAX_LOCK_TAG} vCPUs (each needs its own view-lock tag)`);
}

/** Returns a tag takeLockTag() handed out. */
function giveBackLockTag(mem: LinearMemory, tag: number): void {
  if (tag < 1 || tag > MAX_LOCK_TAG) return;
  const hdr = new HdrView(mem, HEADER_BASE);
  hdr.setLockTagsAt(tag >>> 5, (hdr.lockTagsAt(tag >>> 5) & ~(1 << (tag & 31))) >>> 0);
}

/** Per-hypercall completion counters. */
export interface HcallStats {
  real: number;
  virtual: number;
  exit: number;
}
