// The simulated host, the composition root: a HostContext (the linear memory,
// the engine over it, the host's physical memory, ids; what every lower layer
// receives) plus the lists of everything created through it, which it alone
// keeps: processes and their address spaces, groups, containers, VMs, and
// (read from the kernel layer's own list) every TCE table.
import { HostContext, KERNEL_CODES, type OwnerCheck, type KernelEra } from '../core/context.js';
import { loadNative, nativeLoadError } from '../engine/native.js';
import { createMm, type Mm } from '../kernel/mm.js';
import { liveTables, type IommuTable } from '../kernel/table.js';
import { Group, type GroupOptions } from '../vfio/group.js';
import type { Container } from '../vfio/container.js';
import type { Vm } from '../vmm/vm.js';
import { saveBody } from '../snapshot/save.js';
import { restoreBody, settingsOf } from '../snapshot/restore.js';
import { seal, checkSnapshot, type Snapshot } from '../snapshot/snapshot.js';
import { Process } from './process.js';
import { checkInvariants } from './invariants.js';
import type { ReclaimStats } from '../core/reclaim.js';
import * as v from '../core/validate.js';
import { HdrView } from '../generated/views.js';
import { HEADER_BASE, HEAP_BASE, OWNER_CHECK_NONE, OWNER_CHECK_PID, PID_CHECK_CALL, PID_CHECK_ENTRY } from '../generated/layout.js';

export type { OwnerCheck, KernelEra };

/** Where the two settings setRealModeCheck switches live: plain stores inside a benchmark's timed loop. */
const OWNER_CHECK_AT = HEADER_BASE + HdrView.OFFSET.ownerCheck;
const PID_PLACEMENT_AT = HEADER_BASE + HdrView.OFFSET.pidPlacement;

/** Options of Host.create. */
export interface HostOptions {
  ownerCheck?: OwnerCheck;
  /** Where the pid check sits on the real-mode path: once per hypercall or at every view write. */
  pidCheck?: 'call' | 'entry';
  /**
   * The kernel era: '4.12' (the userspace view at the first VFIO map), '4.19'
   * (default: the view with the table, levels on demand), '5.19' (no real mode).
   */
  kernel?: KernelEra;
  engine?: 'wasm' | 'native';
  /** The host kernel's PAGE_SHIFT: 16 (64 KiB, ppc64 server) by default, or 12. */
  pageShift?: number;
  /** Bytes of linear memory (fixed for the host's life): 128 MiB by default. */
  maxMemory?: number;
  /** RLIMIT_MEMLOCK of spawned processes: bytes, 'host' (this process's real limit) or 'unlimited' (default). */
  memlockLimit?: bigint | 'host' | 'unlimited';
  /** 'host': also mlock() the bytes behind each registered region (needs the addon); default 'simulated'. */
  pin?: 'simulated' | 'host';
}

/** The simulated host. */
export class Host extends HostContext {
  readonly memlockLimit: bigint | null;
  readonly mms = new Set<Mm>();
  readonly groups = new Set<Group>();
  /** Every task ever spawned, by thread id (snapshot and restore find them here). */
  readonly processes = new Map<number, Process>();
  readonly containers = new Set<Container>();
  readonly vms = new Set<Vm>();

  private constructor(s: ConstructorParameters<typeof HostContext>[0], memlockLimit: bigint | null) {
    super(s);
    this.memlockLimit = memlockLimit;
  }

  /** A new host with its own linear memory. */
  static async create(opts?: HostOptions): Promise<Host> {
    const o = v.options<HostOptions>('opts', opts);
    const ownerCheck = v.oneOf('opts.ownerCheck', o.ownerCheck, ['none', 'pid', 'mm', 'fork-close'] as const, 'mm');
    const pidCheck = v.oneOf('opts.pidCheck', o.pidCheck, ['call', 'entry'] as const, 'call');
    const kernel = v.oneOf('opts.kernel', o.kernel, ['4.12', '4.19', '5.19'] as const, '4.19');
    const engine = v.oneOf('opts.engine', o.engine, ['wasm', 'native'] as const, 'wasm');
    const pageShift = o.pageShift === undefined ? 16 : v.int('opts.pageShift', o.pageShift, 12, 16);
    if (pageShift !== 12 && pageShift !== 16) throw new RangeError(`opts.pageShift must be 12 or 16, got ${pageShift}`);
    const maxMemory = o.maxMemory === undefined ? 128 << 20 : v.int('opts.maxMemory', o.maxMemory, 1 << 20, 4 * 1024 * 1024 * 1024 - 65536);
    let memlockLimit: bigint | null = null;
    if (o.memlockLimit === 'host') {
      const addon = loadNative();
      if (!addon) throw new Error(`spapr-tce: memlockLimit: 'host' needs the native addon: ${nativeLoadError()}`);
      memlockLimit = addon.getMemlockLimit().soft;
    } else if (o.memlockLimit !== undefined && o.memlockLimit !== 'unlimited') {
      memlockLimit = v.u64('opts.memlockLimit', o.memlockLimit);
    }
    const pin = v.oneOf('opts.pin', o.pin, ['simulated', 'host'] as const, 'simulated');
    if (pin === 'host' && !loadNative()) throw new Error(`spapr-tce: pin: 'host' needs the native addon: ${nativeLoadError()}`);
    return new Host({ ownerCheck, pidCheck, kernel, engine, pageShift, maxMemory, pin }, memlockLimit);
  }

  /** The shared WebAssembly.Memory holding all hot state. */
  get memory(): WebAssembly.Memory {
    return this.mem.memory;
  }

  /** Every live TCE table (the kernel layer's list). */
  get tables(): Set<IommuTable> {
    return liveTables(this);
  }

  /** A new process with its own address space. */
  spawn(opts?: { memlockLimit?: bigint | 'unlimited' }): Process {
    const o = v.options<{ memlockLimit: bigint | 'unlimited' }>('opts', opts);
    let limit = this.memlockLimit;
    if (o.memlockLimit === 'unlimited') limit = null;
    else if (o.memlockLimit !== undefined) limit = v.u64('opts.memlockLimit', o.memlockLimit);
    const pid = this.nextTid();
    return this.adoptProcess(new Process(this, pid, pid, this.newMm(), limit));
  }

  /** An IOMMU group (a PE) of this host, owned by the host until VFIO takes it. */
  addGroup(opts?: GroupOptions): Group {
    const g = new Group(this, this.nextId(), opts);
    this.groups.add(g);
    return g;
  }

  /** @internal a fresh address space, listed. */
  newMm(): Mm {
    const mm = createMm(this);
    this.mms.add(mm);
    return mm;
  }

  /** @internal lists a process created through this host. */
  adoptProcess(p: Process): Process {
    this.processes.set(p.tid, p);
    return p;
  }

  /** Counters: linear memory use, processes, regions, tables, pins. */
  stats(): HostStats {
    const h = this.header;
    let regions = 0;
    let lockedPages = 0n;
    for (const mm of this.mms) {
      lockedPages += mm.lockedPages;
      regions += mm.regionCount;
    }
    return {
      memory: {
        bytes: this.mem.byteLength,
        heapUsedBytes: Number(h.allocBytes),
        heapBlocks: h.allocBlocks,
        heapTop: h.allocTop - HEAP_BASE,
      },
      mms: this.mms.size,
      regions,
      tables: this.tables.size,
      lockedPages,
      pins: this.hostmem.totalPins(),
      engine: this.engine.kind,
      ownerCheck: this.ownerCheck,
      kernel: this.kernel,
      fallbacks: [...this.fallbacks],
      reclaim: this.reclaim.stats(),
    };
  }

  /**
   * For A/B measurement on one set of tables: switches only the check the
   * real-mode hypercall path makes ('pid-call', 'pid-entry', or 'none', which
   * is also what 'mm' costs there), leaving claims and tables as they are.
   * The tables of a host created with ownerCheck: 'pid' carry their owner's
   * pid, so every variant runs over the same memory.
   */
  setRealModeCheck(check: 'none' | 'pid-call' | 'pid-entry' | 'mm'): void {
    const pid = check === 'pid-call' || check === 'pid-entry';
    this.mem.storeU32(OWNER_CHECK_AT, pid ? OWNER_CHECK_PID : OWNER_CHECK_NONE);
    this.mem.storeU32(PID_PLACEMENT_AT, check === 'pid-entry' ? PID_CHECK_ENTRY : PID_CHECK_CALL);
  }

  /**
   * synchronize_rcu: waits until every vCPU that was inside a hypercall has
   * left it, so that every free deferred so far is done; at once when none
   * is. Bounded: after `timeoutMs` (default 1000) it throws EBUSY naming the
   * vCPUs still inside (a worker killed mid-call: vcpu.release({ gone: true })),
   * and their frees stay deferred. Returns how long it waited.
   */
  synchronize(opts?: { timeoutMs?: number }): { waitedMs: number } {
    const o = v.options<{ timeoutMs: number }>('opts', opts);
    return this.reclaim.synchronize(v.int('opts.timeoutMs', o.timeoutMs ?? 1000, 0, 3_600_000));
  }

  /** A JSON-safe snapshot of everything (no vCPU may run on another thread meanwhile: the pending frees are done first). */
  snapshot(): Snapshot {
    this.synchronize({ timeoutMs: 0 });
    return seal(saveBody(this));
  }

  /** A new host equal to the one a snapshot was taken of; a snapshot of another version or a corrupted one is refused. */
  static restore(snapshot: unknown): Host {
    const { body } = checkSnapshot(snapshot);
    const { settings, memlockLimit } = settingsOf(body);
    const host = new Host(settings, memlockLimit);
    restoreBody(host, body, {
      mm: (mm) => void host.mms.add(mm),
      process: (pid, tid, mm, limit, files) => host.adoptProcess(new Process(host, pid, tid, mm, limit, files)),
      group: (g) => void host.groups.add(g),
      container: (c) => void host.containers.add(c),
      vm: (vm) => {
        host.vms.add(vm);
        vm.onDestroy = () => void host.vms.delete(vm);
      },
    });
    // A header saved before eras existed has 0 there: the era comes from the settings.
    host.header.kernel = KERNEL_CODES[host.kernel];
    return host;
  }

  /** Verifies the accounting invariants (docs/semantics.md §3); throws InvariantError listing each broken one. */
  checkInvariants(): void {
    checkInvariants(this);
  }
}

/** What host.stats() returns. */
export interface HostStats {
  memory: { bytes: number; heapUsedBytes: number; heapBlocks: number; heapTop: number };
  mms: number;
  regions: number;
  tables: number;
  lockedPages: bigint;
  pins: number;
  engine: 'wasm' | 'native';
  ownerCheck: OwnerCheck;
  kernel: KernelEra;
  fallbacks: string[];
  /** Safe memory reclamation: grace periods, deferred frees (src/core/reclaim.ts). */
  reclaim: ReclaimStats;
}
