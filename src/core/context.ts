// The host as every layer below Host sees it: the linear memory and the
// engine over it, the one allocation path, the host's physical memory (frames
// and pins), the ids, and the settings a model object may consult. Nothing
// here knows a model object: the kernel, VFIO and KVM layers receive this,
// never Host, and Host (src/host/host.ts) is this plus the lists of objects.
import { LinearMemory } from './memory.js';
import { HostMemory } from './hostmem.js';
import { TceError } from './errors.js';
import type { Engine } from '../engine/engine.js';
import { createWasmEngine } from '../engine/wasm.js';
import { createNativeEngine } from '../engine/native.js';
import { HdrView } from '../generated/views.js';
import { Reclaimer } from './reclaim.js';
import {
  HEADER_BASE, OWNER_CHECK_NONE, OWNER_CHECK_PID, OWNER_CHECK_MM, OWNER_CHECK_FORK_CLOSE, PID_CHECK_CALL, PID_CHECK_ENTRY,
  KERNEL_4_12, KERNEL_4_19, KERNEL_5_19,
} from '../generated/layout.js';

/**
 * Who may change a container: nobody is stopped ('none'), only the owner's
 * pid ('pid'), only the owner's mm ('mm'), or whoever holds a handle, which
 * fork() does not pass on ('fork-close').
 */
export type OwnerCheck = 'none' | 'pid' | 'mm' | 'fork-close';

/**
 * The kernel a host follows where kernels differ: '4.12' allocates the
 * userspace view at the first VFIO map (until then guest TCE hypercalls on a
 * linked table exit); '4.19' allocates it with the table, levels on demand;
 * '5.19' has no real-mode handlers. Charges are the ≥4.19 ones in every era.
 */
export type KernelEra = '4.12' | '4.19' | '5.19';

/** What a host is made of; checked by Host.create before it gets here. */
export interface HostSettings {
  ownerCheck: OwnerCheck;
  kernel: KernelEra;
  pidCheck: 'call' | 'entry';
  engine: 'wasm' | 'native';
  pageShift: number;
  maxMemory: number;
  pin: 'simulated' | 'host';
}

const OWNER_CODES: Record<OwnerCheck, number> = { none: OWNER_CHECK_NONE, pid: OWNER_CHECK_PID, mm: OWNER_CHECK_MM, 'fork-close': OWNER_CHECK_FORK_CLOSE };
/** Every owner-check mode, in the order the designs table prints them. */
export const OWNER_CHECKS = Object.keys(OWNER_CODES) as OwnerCheck[];
/** HDR.kernel of each era. */
export const KERNEL_CODES: Record<KernelEra, number> = { '4.12': KERNEL_4_12, '4.19': KERNEL_4_19, '5.19': KERNEL_5_19 };

/** The services and settings of one host, as the layers below Host use them. */
export class HostContext {
  readonly mem: LinearMemory;
  readonly engine: Engine;
  readonly hostmem: HostMemory;
  /** The host kernel's PAGE_SHIFT. */
  readonly pageShift: number;
  readonly ownerCheck: OwnerCheck;
  readonly pidCheck: 'call' | 'entry';
  /** The kernel era this host follows. */
  readonly kernel: KernelEra;
  readonly pinMode: 'simulated' | 'host';
  /** Things the host could not do for real and simulated instead, said once each. */
  readonly fallbacks: string[] = [];
  /** The header of the linear memory: allocator state and the settings real mode reads. */
  readonly header: HdrView;
  /** The reclamation: every free waits for the vCPUs inside a hypercall (src/core/reclaim.ts). */
  readonly reclaim: Reclaimer;
  private lastId = 0;
  private lastTid = 999;

  /** A fresh linear memory with its engine, its header initialised for `s`. */
  constructor(s: HostSettings) {
    this.pageShift = s.pageShift;
    this.pinMode = s.pin;
    this.ownerCheck = s.ownerCheck;
    this.pidCheck = s.pidCheck;
    this.kernel = s.kernel;
    this.mem = LinearMemory.create(s.maxMemory);
    this.engine = s.engine === 'native' ? createNativeEngine(this.mem.memory) : createWasmEngine(this.mem.memory);
    if (this.engine.init(this.mem.byteLength, this.pageShift) !== 0) throw new Error('spapr-tce: the memory layout of the engine does not match');
    this.hostmem = new HostMemory(this.pageShift);
    this.header = new HdrView(this.mem, HEADER_BASE);
    this.header.ownerCheck = OWNER_CODES[s.ownerCheck];
    this.header.pidPlacement = s.pidCheck === 'entry' ? PID_CHECK_ENTRY : PID_CHECK_CALL;
    this.header.kernel = KERNEL_CODES[s.kernel];
    this.reclaim = new Reclaimer(this.mem, (p, b) => this.engine.free(p, b));
  }

  /** A new pid/tid. */
  nextTid(): number {
    return ++this.lastTid;
  }

  /** A new descriptor id. */
  nextId(): number {
    return ++this.lastId;
  }

  /** The id counters (for snapshots). */
  idCounters(): { lastId: number; lastTid: number } {
    return { lastId: this.lastId, lastTid: this.lastTid };
  }

  /** Sets the id counters a restored host continues from. */
  setIdCounters(c: { lastId: number; lastTid: number }): void {
    this.lastId = c.lastId;
    this.lastTid = c.lastTid;
  }

  /**
   * Allocates zeroed linear memory (virtual mode), the one path every
   * descriptor, array and backed mapping takes: ENOMEM, naming `what`, when
   * the memory is full or the request impossible.
   */
  alloc(bytes: number, what: string): number {
    const p = this.tryAlloc(bytes);
    if (p === 0) {
      if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x8000_0000) throw new TceError('ENOMEM', `no ${what} of ${bytes} bytes can be allocated (at most 2 GiB)`);
      throw new TceError('ENOMEM', `linear memory is full (${this.mem.byteLength} bytes): no room for a ${what} of ${bytes} bytes; raise maxMemory`);
    }
    return p;
  }

  /** alloc() for callers that answer a full memory themselves (QEMU's window enable): 0 when it cannot. */
  tryAlloc(bytes: number): number {
    // The engine takes a u32 and allocates blocks of at most 2 GiB.
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x8000_0000) return 0;
    const p = this.engine.alloc(bytes);
    if (p !== 0 || this.reclaim.pendingCount() === 0) return p;
    // Frees whose grace period has ended since may make room.
    this.reclaim.poll();
    return this.engine.alloc(bytes);
  }

  /**
   * Returns a block of alloc(bytes) once no vCPU can still be reading it
   * (call_rcu): at once when no vCPU is inside a hypercall, else after they
   * all have left the one they were in. The caller has unlinked it first.
   */
  free(ptr: number, bytes: number): void {
    this.reclaim.defer({ ptr, bytes });
  }

  /** Runs `fn` (a routine that frees linear memory, such as a table's trees) after a grace period, as free() does. */
  deferFree(fn: () => void): void {
    this.reclaim.defer(fn);
  }

  /** Pins the system page of `hpa`. */
  pin(hpa: bigint): void {
    this.hostmem.pin(hpa);
  }

  /** Drops a pin taken by pin(). */
  unpin(hpa: bigint): void {
    this.hostmem.unpin(hpa);
  }

  /** Records something simulated instead of done for real (stats().fallbacks), once. */
  noteFallback(msg: string): void {
    if (!this.fallbacks.includes(msg)) this.fallbacks.push(msg);
  }
}
