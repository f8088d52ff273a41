// Safe memory reclamation in the shared linear memory: quiescent-state-based
// reclamation (QSBR) over one counter per vCPU, the host's RCU.
//
// What it protects: everything a hypercall reads without a lock — region
// descriptors and their hpas arrays (mm_iommu_lookup_rm walks an RCU list,
// mm_iommu_release frees through call_rcu), TCE table descriptors and nodes
// and the LIOBN links to them (kvm_spapr_tce_release_iommu_group and
// release_spapr_tce_table free through RCU), guest-table pages and the guest
// table and memslot descriptors. Every free of the host (HostContext.free)
// comes here and is deferred until every vCPU that might hold the block has
// passed a quiescent state.
//
// The read side (assembly/hcall.ts and engine_hcall.cc, identical): VCPU.rcuSeq is
// made odd by an atomic store at hypercall entry and even again at exit, so
// a vCPU outside a hypercall holds nothing. A counter rather than an epoch
// copy because it changes at every call: a vCPU seen inside once has passed a
// quiescent state as soon as its counter moves, whatever it runs next.
//
// Why those two stores and nothing more, and why the entry one is atomic:
// the writer (the host thread) unlinks a block (LinearMemory stores are Atomics.store), then
// Atomics.add on HDR.gracePeriods (a locked RMW: a full fence), then reads
// every vCPU's rcuSeq. Either the vCPU's entry store comes first in the
// single order of seq_cst operations — the writer sees it odd and waits
// for the counter to change — or it comes after the writer's fence, and then
// every load the vCPU makes after its entry store sees the unlink, so it
// cannot reach the block. A plain store at entry would break this on x86:
// it may sit in the store buffer while the call's first loads run, so the
// writer could read "outside" from a vCPU already holding the old pointer.
// The exit store only has to stay after the call's own loads (release; x86
// keeps loads before later stores; WebAssembly has only seq_cst atomics).
// Per hypercall that is one load and two stores of the vCPU's own cache
// line, one of them locked on x86 (two under WebAssembly, where atomic.store
// is an xchg); nothing per entry, however many entries the call touches.
// The alternative — plain stores and the writer forcing a fence on every
// other CPU (sys_membarrier, liburcu's memb flavour) — needs a system call
// that WebAssembly workers cannot rely on.
//
// A grace period that does not end: a vCPU whose worker was killed inside a
// hypercall (worker.terminate()) stays odd forever. Deferred frees then wait
// (nothing is freed early and nothing blocks: a free only queues), and
// synchronize() throws EBUSY after its timeout naming the vCPU. The VMM
// declares such a vCPU gone (vcpu.release({ gone: true })): it is no longer
// waited for, and its register block is freed after a grace period of the
// others.
import { TceError } from './errors.js';
import { nap } from './nap.js';
import type { LinearMemory } from './memory.js';
import { HEADER_BASE, HDR_GRACE_PERIODS } from '../generated/layout.js';
import { VcpuView } from '../generated/views.js';

/** A block freed once a grace period has passed: engine.free(ptr, bytes), or a routine that frees (a table's trees). */
type Deferred = { ptr: number; bytes: number } | (() => void);

/** The frees of one grace period and the vCPUs it still waits for (register block → rcuSeq seen odd). */
interface Batch {
  items: Deferred[];
  waits: Map<number, number>;
  /** Whether a vCPU was inside a hypercall when it began (it had to wait). */
  waited: boolean;
  started: number;
}

/** Figures of the reclamation (host.stats().reclaim). */
export interface ReclaimStats {
  /** Grace periods started. */
  gracePeriods: number;
  /** Grace periods that had to wait for at least one vCPU inside a hypercall. */
  waited: number;
  /** The longest grace period that ended, in milliseconds. */
  longestMs: number;
  /** Frees deferred so far. */
  deferred: number;
  /** Frees still waiting for a grace period. */
  pending: number;
  /** vCPUs the reclamation waits for. */
  vcpus: number;
}

/** The host's reclamation state: the vCPUs it waits for and the frees waiting for them. */
export class Reclaimer {
  private readonly mem: LinearMemory;
  private readonly release: (ptr: number, bytes: number) => void;
  private readonly vcpus = new Map<number, string>();
  private readonly batches: Batch[] = [];
  private current: Deferred[] = [];
  private st = { gracePeriods: 0, waited: 0, longestMs: 0, deferred: 0 };

  /** `release` frees a block for real (engine.free). */
  constructor(mem: LinearMemory, release: (ptr: number, bytes: number) => void) {
    this.mem = mem;
    this.release = release;
  }

  /** Starts waiting for the vCPU whose register block is at `desc` (`name` says which in errors). */
  addVcpu(desc: number, name: string): void {
    this.vcpus.set(desc, name);
  }

  /** Whether the vCPU at `desc` is inside a hypercall now. */
  inside(desc: number): boolean {
    return (new VcpuView(this.mem, desc).rcuSeq & 1) !== 0;
  }

  /** Stops waiting for a vCPU (released, or declared gone): no grace period waits for it any more. */
  removeVcpu(desc: number): void {
    this.vcpus.delete(desc);
    for (const b of this.batches) b.waits.delete(desc);
  }

  /** call_rcu: frees the block after a grace period (at once when no vCPU is inside a hypercall). */
  defer(item: Deferred): void {
    this.current.push(item);
    this.st.deferred++;
    this.poll();
  }

  /**
   * Starts a grace period for the frees deferred since the last one, and ends
   * every grace period whose vCPUs have all passed a quiescent state. Never
   * waits.
   */
  poll(): void {
    if (this.current.length > 0) {
      const items = this.current;
      this.current = [];
      // The full fence between the unlinking stores before it and the reads of rcuSeq after it.
      Atomics.add(this.mem.u32, (HEADER_BASE + HDR_GRACE_PERIODS) >>> 2, 1);
      this.st.gracePeriods++;
      const waits = new Map<number, number>();
      for (const desc of this.vcpus.keys()) {
        const seq = new VcpuView(this.mem, desc).rcuSeq;
        if (seq & 1) waits.set(desc, seq);
      }
      if (waits.size > 0) this.st.waited++;
      this.batches.push({ items, waits, waited: waits.size > 0, started: Date.now() });
    }
    for (let i = 0; i < this.batches.length; ) {
      const b = this.batches[i]!;
      for (const [desc, seq] of b.waits) if (new VcpuView(this.mem, desc).rcuSeq !== seq) b.waits.delete(desc);
      if (b.waits.size > 0) {
        i++;
        continue;
      }
      this.batches.splice(i, 1);
      // Only a grace period that waited for a vCPU has a length worth reporting; one that ended
      // at once is 0 (so that stats() of two hosts given the same calls are equal).
      if (b.waited) this.st.longestMs = Math.max(this.st.longestMs, Date.now() - b.started);
      for (const it of b.items) {
        if (typeof it === 'function') it();
        else this.release(it.ptr, it.bytes);
      }
    }
  }

  /**
   * synchronize_rcu: waits until every free deferred so far has been done,
   * at most `timeoutMs` (sleeping in 1 ms steps). Throws EBUSY naming the
   * vCPUs still inside the hypercall they were in when the grace period
   * began; their frees stay queued (a later call finishes them).
   */
  synchronize(timeoutMs: number): { waitedMs: number } {
    const t0 = Date.now();
    this.poll();
    while (this.batches.length > 0) {
      if (Date.now() - t0 >= timeoutMs) {
        const stuck = new Set<string>();
        for (const b of this.batches) for (const d of b.waits.keys()) stuck.add(this.vcpus.get(d) ?? `the vCPU at ${d}`);
        throw new TceError('EBUSY', `synchronize: ${[...stuck].join(', ')} stayed inside a hypercall for ${timeoutMs} ms (a worker killed mid-call? vcpu.release({ gone: true }) declares it gone); ${this.pendingCount()} free(s) stay deferred`);
      }
      nap(1);
      this.poll();
    }
    return { waitedMs: Date.now() - t0 };
  }

  /** Frees not yet done. */
  pendingCount(): number {
    return this.batches.reduce((a, b) => a + b.items.length, this.current.length);
  }

  /** The figures so far. */
  stats(): ReclaimStats {
    return { ...this.st, pending: this.pendingCount(), vcpus: this.vcpus.size };
  }
}
