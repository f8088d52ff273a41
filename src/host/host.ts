// The simulated host, the composition root: a HostContext (the linear memory,
// the engine over it, the host's physical memory, ids; what every lower layer
// receives) plus the lists of everything created through it, which it alone
// keeps: processes and their address spaces, groups, containers, VMs, and
// (read from the kernel layer's own list) every TCE table.
import { HostContext, type OwnerCheck, type KernelEra } from '../core/context.js';
import { loadNative, nativeLoadError } from '../engine/native.js';
import { createMm, type Mm } from '../kernel/mm.js';
import { liveTables, type IommuTable } from '../kernel/table.js';
import { Group, groupOptions, type GroupOptions } from '../vfio/group.js';
import type { Container } from '../vfio/container.js';
import type { Vm } from '../vmm/vm.js';
import { saveBody, saveBinary, saveIncremental, saveRamless } from '../snapshot/save.js';
import { restoreObjects, settingsOf } from '../snapshot/restore.js';
import { seal, readSnapshot, type Snapshot, type RestoreOptions } from '../snapshot/snapshot.js';
import type { RamSource } from '../snapshot/image.js';
import { fsck, accountingProblems, refuse } from '../snapshot/fsck/index.js';
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
  /** Bytes of linear memory (fixed for the host's life), 1 MiB to 4 GiB − 64 KiB: 128 MiB by default. */
  maxMemory?: bigint | number;
  /** RLIMIT_MEMLOCK of spawned processes: bytes, 'host' (this process's real limit) or 'unlimited' (default). */
  memlockLimit?: bigint | number | 'host' | 'unlimited';
  /** 'host': also mlock() the bytes behind each registered region (needs the addon); default 'simulated'. */
  pin?: 'simulated' | 'host';
}

const HOST_OPTIONS = v.keys<HostOptions>('Host.create', { ownerCheck: true, pidCheck: true, kernel: true, engine: true, pageShift: true, maxMemory: true, memlockLimit: true, pin: true });

/** Options of host.spawn(). */
export interface SpawnOptions {
  /** RLIMIT_MEMLOCK of the new process: bytes or 'unlimited'; default the host's memlockLimit. */
  memlockLimit?: bigint | number | 'unlimited';
}
const SPAWN_OPTIONS = v.keys<SpawnOptions>('host.spawn', { memlockLimit: true });

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
    const o = v.options('opts', opts, HOST_OPTIONS);
    const ownerCheck = v.oneOf('opts.ownerCheck', o.ownerCheck, ['none', 'pid', 'mm', 'fork-close'] as const, 'mm');
    const pidCheck = v.oneOf('opts.pidCheck', o.pidCheck, ['call', 'entry'] as const, 'call');
    const kernel = v.oneOf('opts.kernel', o.kernel, ['4.12', '4.19', '5.19'] as const, '4.19');
    const engine = v.oneOf('opts.engine', o.engine, ['wasm', 'native'] as const, 'wasm');
    const pageShift = o.pageShift === undefined ? 16 : v.int('opts.pageShift', o.pageShift, 12, 16);
    if (pageShift !== 12 && pageShift !== 16) throw new RangeError(`opts.pageShift must be 12 or 16, got ${pageShift}`);
    const maxMemory = o.maxMemory === undefined ? 128 << 20 : v.size('opts.maxMemory', o.maxMemory, 1 << 20, 4 * 1024 * 1024 * 1024 - 65536);
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
  spawn(opts?: SpawnOptions): Process {
    const o = v.options('opts', opts, SPAWN_OPTIONS);
    let limit = this.memlockLimit;
    if (o.memlockLimit === 'unlimited') limit = null;
    else if (o.memlockLimit !== undefined) limit = v.u64('opts.memlockLimit', o.memlockLimit);
    const pid = this.nextTid();
    return this.adoptProcess(new Process(this, pid, pid, this.newMm(), limit));
  }

  /** An IOMMU group (a PE) of this host, owned by the host until VFIO takes it. */
  addGroup(opts?: GroupOptions): Group {
    // Checked before an id is taken: a refused call changes nothing.
    groupOptions(opts);
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
  synchronize(opts?: SynchronizeOptions): { waitedMs: number } {
    const o = v.options('opts', opts, SYNCHRONIZE_OPTIONS);
    return this.reclaim.synchronize(v.int('opts.timeoutMs', o.timeoutMs ?? 1000, 0, 3_600_000));
  }

  /**
   * A snapshot of everything: by default JSON-safe data (`Snapshot`); with
   * `format: 'binary'` a Uint8Array (zero pages skipped, other pages as they
   * are); `since: base` (a full binary snapshot) keeps only the pages changed
   * since it; `ram: false` (binary) leaves guest RAM out and costs
   * O(allocated state). Pause every vCPU first: a snapshot copies memory that
   * running vCPUs change (an allocation in progress is refused).
   */
  snapshot(): Snapshot;
  snapshot(opts: { format?: 'json' }): Snapshot;
  snapshot(opts: SnapshotOptions & ({ format: 'binary' } | { ram: false } | { since: Uint8Array })): Uint8Array;
  snapshot(opts?: SnapshotOptions): Snapshot | Uint8Array;
  snapshot(opts?: SnapshotOptions): Snapshot | Uint8Array {
    const o = v.options('opts', opts, SNAPSHOT_OPTIONS);
    const ram = v.bool('opts.ram', o.ram, true);
    if (o.since !== undefined && !(o.since instanceof Uint8Array)) throw new TypeError('opts.since must be a binary snapshot (a Uint8Array)');
    const since = o.since as Uint8Array | undefined;
    const format = v.oneOf('opts.format', o.format, ['json', 'binary'] as const, !ram || since !== undefined ? 'binary' : 'json');
    // The pending frees are done first (no vCPU may run on another thread meanwhile).
    this.synchronize({ timeoutMs: 0 });
    if (format === 'json') {
      if (!ram || since !== undefined) throw new TypeError("opts.ram: false and opts.since are options of format: 'binary'");
      return seal(saveBody(this));
    }
    if (since !== undefined) {
      if (!ram) throw new TypeError('opts.since: a RAM-less snapshot is already O(allocated state); take it whole (ram: false without since)');
      return saveIncremental(this, since);
    }
    return ram ? saveBinary(this) : saveRamless(this);
  }

  /**
   * A new host equal to the one a snapshot was taken of (any format). Nothing
   * is trusted: every field and every structure in memory is checked first
   * (src/snapshot/fsck/), and a snapshot that fails is refused with a
   * SnapshotError naming the field. `opts.base`: the full snapshot an
   * incremental one applies to; `opts.ram`: the guest RAM of a RAM-less one
   * (default zeros).
   */
  static restore(snapshot: unknown, opts?: RestoreOptions): Host {
    const o = v.options('opts', opts, RESTORE_OPTIONS);
    if (o.base !== undefined && !(o.base instanceof Uint8Array)) throw new TypeError('opts.base must be a binary snapshot (a Uint8Array)');
    const ram = o.ram === undefined ? undefined : v.fn<RamSource>('opts.ram', o.ram);
    const read = readSnapshot(snapshot, { base: o.base as Uint8Array | undefined, ram });
    const { settings, memlockLimit } = settingsOf(read.state);
    if (settings.engine === 'native' && !loadNative()) refuse('body.options.engine', `'native' needs the native addon: ${nativeLoadError()}`);
    if (settings.pin === 'host' && !loadNative()) refuse('body.options.pin', `'host' needs the native addon: ${nativeLoadError()}`);
    // The bare host: its memory is where the image is checked; no object exists until every check passed.
    const host = new Host(settings, memlockLimit);
    const heap = read.load(host.mem);
    const graph = fsck(read.state, { mem: host.mem, heapCheck: () => host.engine.heapCheck(), root: 'body', heap });
    const problems = accountingProblems(graph);
    if (problems.length) refuse(problems[0]!.field, problems[0]!.message + (problems.length > 1 ? ` (and ${problems.length - 1} more problem(s))` : ''));
    restoreObjects(host, read.state, {
      mm: (mm) => void host.mms.add(mm),
      process: (pid, tid, mm, limit, files) => host.adoptProcess(new Process(host, pid, tid, mm, limit, files)),
      group: (g) => void host.groups.add(g),
      container: (c) => void host.containers.add(c),
      vm: (vm) => {
        host.vms.add(vm);
        vm.onDestroy = () => void host.vms.delete(vm);
      },
    });
    return host;
  }

  /** Verifies the accounting invariants (docs/semantics.md §3); throws InvariantError listing each broken one. */
  checkInvariants(): void {
    checkInvariants(this);
  }
}

/** Options of host.snapshot(). */
export interface SnapshotOptions {
  /** 'json' (default): JSON-safe data; 'binary': a Uint8Array at memory speed. */
  format?: 'json' | 'binary';
  /** Binary only: the full binary snapshot to take an incremental one against. */
  since?: Uint8Array;
  /** false (binary only): leave guest RAM out; Host.restore gets it from opts.ram, or zeros. */
  ram?: boolean;
}

/** Options of host.synchronize(). */
export interface SynchronizeOptions {
  /** How long to wait for the vCPUs inside a hypercall, in ms (default 1000; 0: do not wait). */
  timeoutMs?: number;
}
const SYNCHRONIZE_OPTIONS = v.keys<SynchronizeOptions>('host.synchronize', { timeoutMs: true });
const SNAPSHOT_OPTIONS = v.keys<SnapshotOptions>('host.snapshot', { format: true, since: true, ram: true });
const RESTORE_OPTIONS = v.keys<RestoreOptions>('Host.restore', { base: true, ram: true });

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
