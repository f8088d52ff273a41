// Spec: docs/semantics.md §5 (ownerCheck 'fork-close'), §5.1 (descriptor tables, inherit, receive), §3 (invariants),
// §1 (refusals change nothing). Random sequences of thread / clone({vm: true}) / fork / spawn, inherit / receive /
// close of container handles, and register / map / unmap through them, under fork-close, against a reference model
// written from the design alone: which calls are refused (EBADF for a fork child's inherit, EBUSY, EINVAL), what each
// region's `mapped` count becomes (lookups in the caller's mm, as under none), and so whether the invariants hold.
// Every refusal must leave the digest of memory and state unchanged; the invariants must hold exactly when the model
// says so. They hold whenever no task of another mm holds a handle (fork-close's promise), and they do NOT hold once
// a handle passed over a socket is used from another mm (shown by the second property).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host, InvariantError, TceError, type ContainerFd, type Process } from '../../src/index.js';
import { KiB, MiB, digest } from './helpers.js';

const RAM = 128n * KiB;
const PAGE = 0x1000n;
const SLOTS = 8;

type Op =
  | { op: 'thread' | 'vmclone' | 'fork'; t: number }
  | { op: 'spawn' }
  | { op: 'inherit' | 'receive'; t: number; h: number }
  | { op: 'close' | 'register' | 'getInfo'; h: number }
  | { op: 'map' | 'unmap'; h: number; s: number };

/** A task or handle: -1 is the newest (so a fresh task's handle is used soon after), else an index modulo the count. */
const idx = fc.oneof(fc.constant(-1), fc.nat(15));
const pick = (i: number, n: number): number => (i < 0 ? n - 1 : i % n);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('thread' as const, 'vmclone' as const, 'fork' as const), t: idx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('spawn' as const) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('inherit' as const, 'receive' as const), t: idx, h: idx }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('close' as const, 'getInfo' as const), h: idx }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('register' as const), h: idx }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constantFrom('map' as const, 'unmap' as const), h: idx, s: fc.nat(SLOTS - 1) }) },
);

/** A handle passed to another mm and used there, as one step of the generator: a new task, receive, register, map. */
interface Pass { op: 'pass'; via: 'fork' | 'spawn'; t: number; h: number; s: number }
const passArb: fc.Arbitrary<Pass> = fc.record({ op: fc.constant('pass' as const), via: fc.constantFrom('fork' as const, 'spawn' as const), t: idx, h: idx, s: fc.nat(SLOTS - 1) });

/** The primitive ops of a sequence, a pass expanded (the new task and its handle are the newest). */
function expand(ops: (Op | Pass)[]): Op[] {
  return ops.flatMap((o): Op[] => o.op !== 'pass'
    ? [o]
    : [o.via === 'fork' ? { op: 'fork', t: o.t } : { op: 'spawn' }, { op: 'receive', t: -1, h: o.h }, { op: 'register', h: -1 }, { op: 'map', h: -1, s: o.s }]);
}

/** The design's reference model: tasks by mm and descriptor table, handles, registered mms, slots and counts. */
interface Model {
  tasks: { mm: number; table: number }[];
  tableParent: (number | null)[];
  handles: { task: number; open: boolean }[];
  /** mapped − 1 of each mm's region (registered mms only). */
  count: Map<number, number>;
  /** The mm each slot was mapped from, or undefined. */
  slots: (number | undefined)[];
  nextMm: number;
  /** Whether a task of an mm other than the owner's has held a handle. */
  foreignHeld: boolean;
}

interface World {
  host: Host;
  procs: Process[];
  fds: ContainerFd[];
  ua: bigint;
  m: Model;
}

async function makeWorld(): Promise<World> {
  const host = await Host.create({ ownerCheck: 'fork-close', maxMemory: 24 << 20 });
  const owner = host.spawn();
  const ua = owner.mmap(RAM).ua;
  const fd = owner.openContainer();
  fd.attachGroup(host.addGroup());
  fd.setIommu('v2');
  fd.registerMemory(ua, RAM);
  fd.removeWindow(0n);
  fd.createWindow({ pageShift: 12, windowSize: 16n * MiB, levels: 1 });
  const m: Model = {
    tasks: [{ mm: 0, table: 0 }],
    tableParent: [null],
    handles: [{ task: 0, open: true }],
    count: new Map([[0, 0]]),
    slots: Array.from({ length: SLOTS }, () => undefined),
    nextMm: 1,
    foreignHeld: false,
  };
  return { host, procs: [owner], fds: [fd], ua, m };
}

/** Whether table `a` is a fork copy of table `b` (directly or through earlier forks), in the model. */
function copyOf(m: Model, a: number, b: number): boolean {
  for (let t = m.tableParent[a]; t !== null && t !== undefined; t = m.tableParent[t]) if (t === b) return true;
  return false;
}

/** mapped − 1 of `mm`'s region drops by one unless it is 0 (mm_iommu_mapped_dec never goes below 1). */
function dec(m: Model, mm: number): void {
  const c = m.count.get(mm);
  if (c !== undefined && c > 0) m.count.set(mm, c - 1);
}

/** The model's answer to op: 'ok' or the errno it must be refused with; applies the op's effect to the model. */
function predict(m: Model, o: Op): string {
  switch (o.op) {
    case 'thread':
    case 'vmclone':
      m.tasks.push({ ...m.tasks[pick(o.t, m.tasks.length)]! });
      return 'ok';
    case 'fork': {
      const parent = m.tasks[pick(o.t, m.tasks.length)]!;
      m.tableParent.push(parent.table);
      m.tasks.push({ mm: m.nextMm++, table: m.tableParent.length - 1 });
      return 'ok';
    }
    case 'spawn':
      m.tableParent.push(null);
      m.tasks.push({ mm: m.nextMm++, table: m.tableParent.length - 1 });
      return 'ok';
    case 'inherit':
    case 'receive': {
      const t = m.tasks[pick(o.t, m.tasks.length)]!;
      const holder = m.tasks[m.handles[openHandle(m, o.h)]!.task]!;
      if (o.op === 'inherit' && t.table !== holder.table && copyOf(m, t.table, holder.table)) return 'EBADF';
      m.handles.push({ task: pick(o.t, m.tasks.length), open: true });
      if (t.mm !== 0) m.foreignHeld = true;
      return 'ok';
    }
    case 'close': {
      const h = pick(o.h, m.handles.length);
      // the owner's first handle stays open, so the container is never released
      if (h !== 0) m.handles[h]!.open = false;
      return 'ok';
    }
  }
  const h = m.handles[pick(o.h, m.handles.length)]!;
  if (!h.open) return 'EBADF';
  const mm = m.tasks[h.task]!.mm;
  if (o.op === 'getInfo') return 'ok';
  if (o.op === 'register') {
    if (m.count.has(mm)) return 'EBUSY';
    m.count.set(mm, 0);
    return 'ok';
  }
  // Only map and unmap are left; `===` on 'map' alone would not narrow o, as 'unmap' shares its member.
  if (!('s' in o)) throw new Error(`predict: ${o.op} has no slot`);
  const old = m.slots[o.s];
  if (o.op === 'map') {
    // the page must be in a region of the caller's mm (lookups use current->mm)
    if (!m.count.has(mm)) return 'EINVAL';
    m.count.set(mm, m.count.get(mm)! + 1);
    // the old entry's region is looked up in the caller's mm too
    if (old !== undefined) dec(m, mm);
    m.slots[o.s] = mm;
    return 'ok';
  }
  if (old !== undefined) dec(m, mm);
  m.slots[o.s] = undefined;
  return 'ok';
}

/** An open handle's index for a source of inherit/receive (a closed one is replaced by the owner's). */
function openHandle(m: Model, h: number): number {
  const i = pick(h, m.handles.length);
  return m.handles[i]!.open ? i : 0;
}

/** The model's verdict: every count equals its entries, and every entry comes from the owner's mm (the table's). */
function holds(m: Model): boolean {
  for (const [mm, c] of m.count) if (c !== m.slots.filter((s) => s === mm).length) return false;
  return m.slots.every((s) => s === undefined || s === 0);
}

/** Runs op on the real host; 'ok' or the errno of the TceError. */
function apply(w: World, o: Op): string {
  const at = (t: number) => w.procs[pick(t, w.procs.length)]!;
  try {
    switch (o.op) {
      case 'thread':
        w.procs.push(at(o.t).thread());
        break;
      case 'vmclone':
        w.procs.push(at(o.t).clone({ vm: true }));
        break;
      case 'fork':
        w.procs.push(at(o.t).fork());
        break;
      case 'spawn': {
        const p = w.host.spawn();
        p.mmap(RAM); // the owner's layout: the same address
        w.procs.push(p);
        break;
      }
      case 'inherit':
      case 'receive': {
        const picked = w.fds[pick(o.h, w.fds.length)]!;
        const src = picked.isOpen ? picked : w.fds[0]!;
        w.fds.push(o.op === 'inherit' ? at(o.t).inherit(src) : at(o.t).receive(src));
        break;
      }
      case 'close': {
        const h = pick(o.h, w.fds.length);
        if (h !== 0) w.fds[h]!.close();
        break;
      }
      case 'getInfo':
        w.fds[pick(o.h, w.fds.length)]!.getInfo();
        break;
      case 'register':
        w.fds[pick(o.h, w.fds.length)]!.registerMemory(w.ua, RAM);
        break;
      case 'map':
        w.fds[pick(o.h, w.fds.length)]!.mapDma({ iova: BigInt(o.s) * PAGE, vaddr: w.ua + BigInt(o.s) * PAGE, size: PAGE, read: true, write: true });
        break;
      case 'unmap':
        w.fds[pick(o.h, w.fds.length)]!.unmapDma({ iova: BigInt(o.s) * PAGE, size: PAGE });
        break;
    }
    return 'ok';
  } catch (e) {
    if (e instanceof TceError) return e.code;
    throw e;
  }
}

function invariantsHold(host: Host): boolean {
  try {
    host.checkInvariants();
    return true;
  } catch (e) {
    if (e instanceof InvariantError) return false;
    throw e;
  }
}

describe('fork-close: random handle passing, forks and clones against the design', () => {
  it('refusals are the design\'s and change nothing; the invariants hold exactly when the model says', async () => {
    let brokenRuns = 0;
    let cleanRuns = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof({ weight: 19, arbitrary: opArb }, { weight: 1, arbitrary: passArb }), { minLength: 1, maxLength: 50 }), async (gen) => {
        const w = await makeWorld();
        let broken = false;
        for (const [i, o] of expand(gen).entries()) {
          const expected = predict(w.m, { ...o });
          const before = expected === 'ok' ? undefined : digest(w.host, [w.fds[0]!], w.procs);
          const got = apply(w, o);
          expect(got, `step ${i}: ${JSON.stringify(o)}`).toBe(expected);
          if (before !== undefined) expect(digest(w.host, [w.fds[0]!], w.procs), `step ${i}: the refused ${o.op} changed something`).toBe(before);
          const predicted = holds(w.m);
          expect(invariantsHold(w.host), `step ${i}: ${JSON.stringify(o)}: the model says the invariants ${predicted ? 'hold' : 'break'}`).toBe(predicted);
          // fork-close's promise: while no task of another mm holds a handle, nothing can break
          if (!w.m.foreignHeld) expect(predicted).toBe(true);
          broken ||= !predicted;
        }
        if (broken) brokenRuns++;
        else cleanRuns++;
      }),
      { numRuns: 100 },
    );
    // both verdicts occurred: the property saw the invariants break, and hold
    expect(brokenRuns).toBeGreaterThan(0);
    expect(cleanRuns).toBeGreaterThan(0);
  }, 120_000);

  it('the fd-passing attack: after any prefix without foreign holders, a handle received by another mm breaks the invariants', async () => {
    const benign = fc.oneof(
      fc.record({ op: fc.constantFrom('thread' as const, 'vmclone' as const, 'fork' as const), t: fc.constant(0) }),
      fc.record({ op: fc.constant('inherit' as const), t: idx, h: fc.constant(0) }),
      fc.record({ op: fc.constantFrom('map' as const, 'unmap' as const), h: fc.constant(0), s: fc.nat(SLOTS - 1) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(benign, { maxLength: 15 }), fc.boolean(), fc.nat(SLOTS - 1), async (prefix, viaFork, s) => {
        const w = await makeWorld();
        for (const o of prefix) expect(apply(w, o)).toBe(predict(w.m, o));
        expect(w.m.foreignHeld).toBe(false);
        expect(invariantsHold(w.host), 'fork-close holds before the handle leaves the mm').toBe(true);
        // the receiver: an unrelated process, or the owner's own fork child that got the handle over a socket
        const attack: Op[] = [viaFork ? { op: 'fork', t: 0 } : { op: 'spawn' }];
        const r = w.m.tasks.length;
        attack.push({ op: 'receive', t: r, h: 0 }, { op: 'register', h: w.m.handles.length }, { op: 'map', h: w.m.handles.length, s });
        for (const o of attack) expect(apply(w, o), JSON.stringify(o)).toBe(predict(w.m, o));
        expect(holds(w.m)).toBe(false);
        let problems: string[] = [];
        try {
          w.host.checkInvariants();
        } catch (e) {
          if (!(e instanceof InvariantError)) throw e;
          problems = e.problems;
        }
        expect(problems.some((p) => /but the table belongs to mm/.test(p)), problems.join('\n')).toBe(true);
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
