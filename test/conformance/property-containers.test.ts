// Spec: docs/semantics.md §3 (invariants after any op sequence), §2.3 (refusals), §5 (the owner check and its modes).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Host, TceError, InvariantError, regionsOf, type OwnerCheck, type ContainerFd, type Group, type Process } from '../../src/index.js';
import { DDW_BASE, KiB, MiB, digest } from './helpers.js';

const RAM = 256n * KiB;
const TCE32 = 256n * MiB;

type Cmd =
  | { op: 'register' | 'unregister'; a: number; r: number }
  | { op: 'create'; a: number; g: number }
  | { op: 'remove'; a: number; s: number }
  | { op: 'map'; a: number; i: number; v: number; s: number; p: number }
  | { op: 'unmap'; a: number; i: number; s: number; f: number }
  | { op: 'enable' | 'disable' | 'getInfo' | 'setIommu' | 'close' | 'badType'; a: number }
  | { op: 'attach' | 'detach'; a: number; g: number };

const actor = fc.integer({ min: 0, max: 3 });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('register' as const), a: actor, r: fc.nat(6) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unregister' as const), a: actor, r: fc.nat(6) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('create' as const), a: actor, g: fc.nat(6) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), a: actor, s: fc.nat(4) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('map' as const), a: actor, i: fc.nat(7), v: fc.nat(5), s: fc.nat(4), p: fc.nat(5) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('unmap' as const), a: actor, i: fc.nat(7), s: fc.nat(4), f: fc.nat(5) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('enable' as const, 'disable' as const, 'getInfo' as const, 'setIommu' as const, 'close' as const, 'badType' as const), a: actor }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('attach' as const, 'detach' as const), a: actor, g: fc.nat(2) }) },
);

interface World {
  host: Host;
  mode: OwnerCheck;
  v2: boolean;
  procs: Process[];
  fds: ContainerFd[];
  groups: Group[];
  A: bigint;
  B: bigint;
  legacyTables: number;
}

async function makeWorld(mode: OwnerCheck, v2: boolean): Promise<World> {
  const host = await Host.create({ ownerCheck: mode, maxMemory: 32 << 20 });
  const owner = host.spawn();
  const A = owner.mmap(RAM).ua;
  const B = owner.mmap(RAM).ua;
  const procs = [owner, owner.thread(), owner.fork(), owner.clone({ vm: true })];
  const groups = [0, 1, 2].map(() => host.addGroup({ ddw: v2, tce32Size: TCE32 }));
  const fd = owner.openContainer();
  fd.attachGroup(groups[0]!);
  fd.setIommu(v2 ? 'v2' : 'v1');
  const fds = [fd, ...procs.slice(1).map((p) => p.inherit(fd))];
  return { host, mode, v2, procs, fds, groups, A, B, legacyTables: v2 ? 0 : 3 };
}

function run(w: World, c: Cmd): void {
  const fd = w.fds[c.a]!;
  const { A, B } = w;
  switch (c.op) {
    case 'register':
    case 'unregister': {
      const ranges: [bigint, bigint, number][] = [
        [A, RAM, 0], [A, RAM / 2n, 0], [B, RAM, 0], [A + 0x1000n, RAM / 2n, 0], [A, B + RAM - A, 0], [A, RAM, 1], [B + 0x10000n, 0x10000n, 0],
      ];
      const [ua, size, flags] = ranges[c.r]!;
      if (c.op === 'register') fd.registerMemory(ua, size, flags);
      else fd.unregisterMemory(ua, size, flags);
      return;
    }
    case 'create': {
      const geoms = [
        { pageShift: 16, windowSize: 256n * MiB, levels: 1 }, { pageShift: 12, windowSize: 16n * MiB, levels: 2 }, { pageShift: 24, windowSize: 1n << 30n, levels: 1 },
        { pageShift: 13, windowSize: 16n * MiB, levels: 1 }, { pageShift: 16, windowSize: 16n * MiB, levels: 0 }, { pageShift: 16, windowSize: 16n * MiB, levels: 1, flags: 1 },
        { pageShift: 16, windowSize: 3n * MiB, levels: 1 },
      ];
      fd.createWindow(geoms[c.g]!);
      return;
    }
    case 'remove':
      fd.removeWindow([0n, DDW_BASE, DDW_BASE + 0x10000n, 1n << 58n, 0x1000n][c.s]!);
      return;
    case 'map': {
      const iova = [0n, 0x10000n, DDW_BASE, DDW_BASE + 0x10000n, 0x800n, 1n << 40n, TCE32 - 0x1000n, 0x3000n][c.i]!;
      const vaddr = [A, A + 0x10000n, B, A + 0x800n, A + RAM, B + 0x30000n][c.v]!;
      const size = [0x1000n, 0x10000n, 0x20000n, 0x800n, 0n][c.s]!;
      const perm = [{ read: true }, { write: true }, { read: true, write: true }, {}, { flags: 4 }, { flags: 3 }][c.p]!;
      fd.mapDma({ iova, vaddr, size, ...perm });
      return;
    }
    case 'unmap': {
      const iova = [0n, 0x10000n, DDW_BASE, DDW_BASE + 0x10000n, 0x800n, 1n << 40n, TCE32 - 0x1000n, 0x3000n][c.i]!;
      const size = [0x1000n, 0x10000n, 0x100000n, 0x800n, TCE32][c.s]!;
      fd.unmapDma({ iova, size, flags: c.f === 5 ? 1 : 0 });
      return;
    }
    case 'enable': fd.enable(); return;
    case 'disable': fd.disable(); return;
    case 'getInfo': fd.getInfo(); return;
    case 'setIommu': fd.setIommu(w.v2 ? 'v2' : 'v1'); return;
    case 'attach': fd.attachGroup(w.groups[c.g]!); return;
    case 'detach': fd.detachGroup(w.groups[c.g]!); return;
    case 'badType':
      fd.mapDma({ iova: 0, vaddr: A, size: 0x1000n, read: true } as never);
      return;
    case 'close': {
      // close this actor's handle, having re-opened it from another handle first (the container stays alive)
      const fresh = w.procs[c.a]!.inherit(fd);
      fd.close();
      w.fds[c.a] = fresh;
      return;
    }
  }
}

/** Independent oracles besides host.checkInvariants(). */
function extraChecks(w: World): void {
  const c = w.fds[0]!.container;
  // §3.6: each window programmed in every attached DDW group at its slot
  if (c.v2) for (const g of c.groups) for (let i = 0; i < 2; i++) expect(g.slots[i], `group ${g.id} slot ${i}`).toBe(c.windows[i]?.table);
  // §3.6: windows ≤ 2, mm never changes once set (checked by caller), enabled monotonic for v2 (checked by caller)
  // §3.5 + §2.1: pins = Σ region pages + one per valid v1 entry
  let pins = 0;
  for (const mm of w.host.mms) for (const r of regionsOf(mm)) pins += Number(r.entries);
  for (const g of w.groups) if (g.legacyTable) for (const _ of g.legacyTable.entries()) pins++;
  expect(w.host.stats().pins, 'pins = region pages + valid v1 entries').toBe(pins);
}

const ALLOWED = (e: unknown): boolean => e instanceof TceError || e instanceof TypeError || e instanceof RangeError;

async function runSequence(mode: OwnerCheck, v2: boolean, cmds: Cmd[]): Promise<void> {
  const w = await makeWorld(mode, v2);
  const strict = mode !== 'none';
  let prevMm = w.fds[0]!.container.mm;
  let prevEnabled = false;
  for (const [k, cmd] of cmds.entries()) {
    const c = w.fds[0]!.container;
    const before = digest(w.host, w.fds.slice(0, 1), w.procs);
    const pendingBefore = c.defWindowPending;
    const mmBefore = c.mm;
    const ownerPidBefore = c.ownerPid;
    let refused: unknown;
    try {
      run(w, cmd);
    } catch (e) {
      if (!ALLOWED(e)) throw e;
      refused = e;
    }
    const where = `step ${k} ${JSON.stringify(cmd)} (${mode}, ${v2 ? 'v2' : 'v1'})${refused ? ` → ${String(refused)}` : ''}`;
    if (refused) {
      // documented side effects of a refused call: the claim (REGISTER/ENABLE/CREATE/REMOVE) and the default window (MAP/UNMAP/CREATE)
      const claimed = mmBefore === undefined && c.mm !== undefined || ownerPidBefore !== c.ownerPid;
      const madeDefault = pendingBefore && !c.defWindowPending && ['map', 'unmap', 'create'].includes(cmd.op);
      const ownerRefusal = refused instanceof TceError && refused.code === 'EPERM' && mmBefore !== undefined;
      if (ownerRefusal || !(claimed || madeDefault)) {
        expect(digest(w.host, w.fds.slice(0, 1), w.procs), `refused call changed the state: ${where}`).toBe(before);
      }
    }
    if (strict) {
      try {
        w.host.checkInvariants();
      } catch (e) {
        if (e instanceof InvariantError) throw new Error(`invariants broken after ${where}:\n${e.problems.join('\n')}`);
        throw e;
      }
      extraChecks(w);
      if (c.iommuSet) {
        if (prevMm && c.mm) expect(c.mm, `container mm changed: ${where}`).toBe(prevMm);
        if (c.v2 && prevEnabled) expect(c.enabled, `v2 enabled is monotonic: ${where}`).toBe(true);
      }
    }
    prevMm = c.iommuSet ? c.mm : undefined;
    prevEnabled = c.iommuSet ? c.enabled : false;
  }
  // §3.7: closing every handle returns everything
  for (const fd of w.fds) fd.close();
  if (strict) {
    w.host.checkInvariants();
    const st = w.host.stats();
    expect(st.lockedPages, 'locked_vm after release').toBe(0n);
    expect(st.pins, 'pins after release').toBe(0);
    expect(st.regions, 'regions after release').toBe(0);
    expect(st.tables, 'tables after release').toBe(w.legacyTables);
    for (const g of w.groups) expect(g.owned).toBe(false);
  }
}

describe('property: random container call sequences from several processes', () => {
  for (const mode of ['mm', 'pid', 'none'] as const) {
    it(`${mode}: invariants hold after every step${mode === 'none' ? ' (not checked: mode none may break them)' : ''}; refused calls change nothing`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.boolean(), fc.array(cmdArb, { minLength: 1, maxLength: 30 }), async (v2, cmds) => {
          await runSequence(mode, v2, cmds);
        }),
        {
          numRuns: 100,
          seed: mode === 'mm' ? 1 : mode === 'pid' ? 2 : 3,
          // a failing first MAP into a fresh window (vaddr in the unmapped gap) must not allocate or charge anything
          examples: [[true, [{ op: 'register', a: 0, r: 0 }, { op: 'create', a: 0, g: 0 }, { op: 'map', a: 0, i: 0, v: 4, s: 0, p: 0 }]]],
        },
      );
    });
  }

  it('the property can fail: a refused call that changed state is caught (sanity of the digest)', async () => {
    const w = await makeWorld('mm', true);
    const before = digest(w.host, w.fds.slice(0, 1), w.procs);
    w.procs[0]!.mm.account('sabotage', 1n, null);
    expect(digest(w.host, w.fds.slice(0, 1), w.procs)).not.toBe(before);
  });
});
