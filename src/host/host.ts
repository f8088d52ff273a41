// The simulated host: one shared linear memory, one engine over it, the
// host's physical memory, its processes and address spaces, and every TCE
// table. Everything else hangs off a Host.
import { LinearMemory } from './memory.js';
import type { Engine } from './engine/engine.js';
import { createWasmEngine } from './engine/wasm.js';
import { loadNative, createNativeEngine } from './engine/native.js';
import { HostMemory } from './hostmem.js';
import { Mm } from './mm.js';
import { Process } from './process.js';
import type { IommuTable } from './table.js';
import { Group, type GroupOptions } from './group.js';
import type { Container } from './container.js';
import type { Vm } from './vm.js';
import { checkInvariants } from './invariants.js';
import { takeSnapshot, checkSnapshot, restoreSnapshot, type Snapshot } from './snapshot.js';
import { TceError } from './errors.js';
import * as v from './validate.js';
import {
  HEADER_BASE, HEAP_BASE, HDR_ALLOC_BYTES, HDR_ALLOC_BLOCKS, HDR_ALLOC_TOP, HDR_OWNER_CHECK,
  HDR_PID_PLACEMENT, MM_REGION_COUNT, OWNER_CHECK_NONE, OWNER_CHECK_PID, OWNER_CHECK_MM, PID_CHECK_CALL, PID_CHECK_ENTRY,
} from './generated/layout.js';

/** Who may change a container: nobody is stopped, only the owner's pid, or only the owner's mm. */
export type OwnerCheck = 'none' | 'pid' | 'mm';

/** Options of Host.create. */
export interface HostOptions {
  ownerCheck?: OwnerCheck;
  /** Where the pid check sits on the real-mode path: once per hypercall or at every view write. */
  pidCheck?: 'call' | 'entry';
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

const OWNER_CODES: Record<OwnerCheck, number> = { none: OWNER_CHECK_NONE, pid: OWNER_CHECK_PID, mm: OWNER_CHECK_MM };

/** The simulated host. */
export class Host {
  readonly mem: LinearMemory;
  readonly engine: Engine;
  readonly hostmem: HostMemory;
  readonly pageShift: number;
  readonly ownerCheck: OwnerCheck;
  readonly pidCheck: 'call' | 'entry';
  readonly memlockLimit: bigint | null;
  readonly pinMode: 'simulated' | 'host';
  readonly mms = new Set<Mm>();
  readonly tables = new Set<IommuTable>();
  readonly groups = new Set<Group>();
  /** Every task ever spawned, by thread id (snapshot and restore find them here). */
  readonly processes = new Map<number, Process>();
  readonly containers = new Set<Container>();
  readonly vms = new Set<Vm>();
  /** Things the host could not do for real and simulated instead, said once each. */
  readonly fallbacks: string[] = [];
  private lastId = 0;
  private lastTid = 999;

  private constructor(o: Required<Omit<HostOptions, 'memlockLimit'>> & { memlockLimit: bigint | null }) {
    this.pageShift = o.pageShift;
    this.pinMode = o.pin;
    this.ownerCheck = o.ownerCheck;
    this.pidCheck = o.pidCheck;
    this.memlockLimit = o.memlockLimit;
    this.mem = LinearMemory.create(o.maxMemory);
    this.engine = o.engine === 'native' ? createNativeEngine(this.mem.memory) : createWasmEngine(this.mem.memory);
    if (this.engine.init(this.mem.byteLength, this.pageShift) !== 0) throw new Error('spapr-tce: the memory layout of the engine does not match');
    this.hostmem = new HostMemory(this.pageShift);
    this.mem.setU32(HEADER_BASE + HDR_OWNER_CHECK, OWNER_CODES[o.ownerCheck]);
    this.mem.setU32(HEADER_BASE + HDR_PID_PLACEMENT, o.pidCheck === 'entry' ? PID_CHECK_ENTRY : PID_CHECK_CALL);
  }

  /** A new host with its own linear memory. */
  static async create(opts?: HostOptions): Promise<Host> {
    const o = v.options<HostOptions>('opts', opts);
    const ownerCheck = v.oneOf('opts.ownerCheck', o.ownerCheck, ['none', 'pid', 'mm'] as const, 'mm');
    const pidCheck = v.oneOf('opts.pidCheck', o.pidCheck, ['call', 'entry'] as const, 'call');
    const engine = v.oneOf('opts.engine', o.engine, ['wasm', 'native'] as const, 'wasm');
    const pageShift = o.pageShift === undefined ? 16 : v.int('opts.pageShift', o.pageShift, 12, 16);
    if (pageShift !== 12 && pageShift !== 16) throw new RangeError(`opts.pageShift must be 12 or 16, got ${pageShift}`);
    const maxMemory = o.maxMemory === undefined ? 128 << 20 : v.int('opts.maxMemory', o.maxMemory, 1 << 20, 4 * 1024 * 1024 * 1024 - 65536);
    let memlockLimit: bigint | null = null;
    if (o.memlockLimit === 'host') {
      const addon = loadNative();
      if (!addon) throw new Error(`spapr-tce: memlockLimit: 'host' needs the native addon, which did not load; run \`npm rebuild\``);
      memlockLimit = addon.getMemlockLimit().soft;
    } else if (o.memlockLimit !== undefined && o.memlockLimit !== 'unlimited') {
      memlockLimit = v.u64('opts.memlockLimit', o.memlockLimit);
    }
    const pin = v.oneOf('opts.pin', o.pin, ['simulated', 'host'] as const, 'simulated');
    if (pin === 'host' && !loadNative()) throw new Error("spapr-tce: pin: 'host' needs the native addon, which did not load; run `npm rebuild`");
    return new Host({ ownerCheck, pidCheck, engine, pageShift, maxMemory, memlockLimit, pin });
  }

  /** The shared WebAssembly.Memory holding all hot state. */
  get memory(): WebAssembly.Memory {
    return this.mem.memory;
  }

  /** A new process with its own address space. */
  spawn(opts?: { memlockLimit?: bigint | 'unlimited' }): Process {
    const o = v.options<{ memlockLimit: bigint | 'unlimited' }>('opts', opts);
    let limit = this.memlockLimit;
    if (o.memlockLimit === 'unlimited') limit = null;
    else if (o.memlockLimit !== undefined) limit = v.u64('opts.memlockLimit', o.memlockLimit);
    const pid = this.nextTid();
    return new Process(this, pid, pid, this.newMm(), limit);
  }

  /** An IOMMU group (a PE) of this host, owned by the host until VFIO takes it. */
  addGroup(opts?: GroupOptions): Group {
    const g = new Group(this, this.nextId(), opts);
    this.groups.add(g);
    return g;
  }

  /** @internal a fresh address space. */
  newMm(): Mm {
    const desc = this.alloc(Mm.DESC_BYTES, 'mm descriptor');
    const mm = new Mm(this, this.nextId(), desc);
    this.mms.add(mm);
    return mm;
  }

  /** @internal a new pid/tid. */
  nextTid(): number {
    return ++this.lastTid;
  }

  /** @internal a new descriptor id. */
  nextId(): number {
    return ++this.lastId;
  }

  /** @internal allocates linear memory (virtual mode); ENOMEM when full. */
  alloc(bytes: number, what: string): number {
    // The engine takes a u32 and allocates blocks of at most 2 GiB.
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0x8000_0000) throw new TceError('ENOMEM', `no ${what} of ${bytes} bytes can be allocated (at most 2 GiB)`);
    const p = this.engine.alloc(bytes);
    if (p === 0) throw new TceError('ENOMEM', `linear memory is full (${this.mem.byteLength} bytes): no room for a ${what} of ${bytes} bytes; raise maxMemory`);
    return p;
  }

  /** @internal */
  free(ptr: number, bytes: number): void {
    this.engine.free(ptr, bytes);
  }

  /** @internal pins the system page of `hpa`. */
  pin(hpa: bigint): void {
    this.hostmem.pin(hpa);
  }

  /** @internal */
  unpin(hpa: bigint): void {
    this.hostmem.unpin(hpa);
  }

  /**
   * @internal With pin: 'host', mlock()s the bytes behind [ua, ua + size) of
   * `mm`; where that is impossible (no bytes, or the kernel refuses) the
   * simulated pin stands alone and the reason is noted in stats().fallbacks.
   */
  lockBytes(mm: Mm, ua: bigint, size: bigint, lock: boolean): void {
    if (this.pinMode !== 'host') return;
    const m = mm.findMapping(ua);
    const what = `${lock ? 'mlock' : 'munlock'} of ${size} bytes at 0x${ua.toString(16)}`;
    if (!m?.bytes || ua + size > m.ua + m.size) {
      this.noteFallback(`${what}: the range is not backed by bytes (mmap backed: false); pinned in simulation only`);
      return;
    }
    const off = Number(ua - m.ua);
    const view = m.bytes.subarray(off, off + Number(size));
    const addon = loadNative()!;
    const rc = lock ? addon.mlockRange(view) : addon.munlockRange(view);
    if (rc !== 0) this.noteFallback(`${what}: the kernel refused (errno ${rc}); pinned in simulation only`);
  }

  private noteFallback(msg: string): void {
    if (!this.fallbacks.includes(msg)) this.fallbacks.push(msg);
  }

  /** Counters: linear memory use, processes, regions, tables, pins. */
  stats(): HostStats {
    const h = HEADER_BASE;
    let regions = 0;
    let lockedPages = 0n;
    for (const mm of this.mms) {
      lockedPages += mm.lockedPages;
      regions += this.mem.getU32(mm.desc + MM_REGION_COUNT);
    }
    return {
      memory: {
        bytes: this.mem.byteLength,
        heapUsedBytes: Number(this.mem.getU64(h + HDR_ALLOC_BYTES)),
        heapBlocks: this.mem.getU32(h + HDR_ALLOC_BLOCKS),
        heapTop: this.mem.getU32(h + HDR_ALLOC_TOP) - HEAP_BASE,
      },
      mms: this.mms.size,
      regions,
      tables: this.tables.size,
      lockedPages,
      pins: this.hostmem.totalPins(),
      engine: this.engine.kind,
      ownerCheck: this.ownerCheck,
      fallbacks: [...this.fallbacks],
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
    const h = HEADER_BASE;
    const pid = check === 'pid-call' || check === 'pid-entry';
    this.mem.u32[(h + HDR_OWNER_CHECK) >>> 2] = pid ? OWNER_CHECK_PID : OWNER_CHECK_NONE;
    this.mem.u32[(h + HDR_PID_PLACEMENT) >>> 2] = check === 'pid-entry' ? PID_CHECK_ENTRY : PID_CHECK_CALL;
  }

  /** @internal the id counters, for snapshots. */
  idCounters(): { lastId: number; lastTid: number } {
    return { lastId: this.lastId, lastTid: this.lastTid };
  }

  /** @internal restores the counters and the host memory a snapshot saved. */
  restoreInternals(c: { lastId: number; lastTid: number }, hostmem: HostMemory): void {
    this.lastId = c.lastId;
    this.lastTid = c.lastTid;
    (this as { hostmem: HostMemory }).hostmem = hostmem;
  }

  /** A JSON-safe snapshot of everything (no vCPU may run on another thread meanwhile). */
  snapshot(): Snapshot {
    return takeSnapshot(this);
  }

  /** A new host equal to the one a snapshot was taken of; a snapshot of another version or a corrupted one is refused. */
  static restore(snapshot: unknown): Host {
    const snap = checkSnapshot(snapshot);
    return restoreSnapshot(snap, (o) => {
      const memlockLimit = o.memlockLimit === 'unlimited' || o.memlockLimit === undefined ? null : (o.memlockLimit as bigint);
      return new Host({ ownerCheck: o.ownerCheck!, pidCheck: o.pidCheck!, engine: o.engine!, pageShift: o.pageShift!, maxMemory: o.maxMemory, memlockLimit, pin: o.pin! });
    });
  }

  /** Verifies the accounting invariants (kernel-behaviour §3); throws InvariantError listing each broken one. */
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
  fallbacks: string[];
}
