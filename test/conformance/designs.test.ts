// Spec: docs/semantics.md §5 (the owner-check designs) and §5.1 (how a task comes to hold a handle).
// Every cell of the answer table (`spapr-tce demo designs`, README "The answer to the 2015 question"):
// designs none, pid per call, pid per view write, fork-close, mm × a forked child, a handle passed to an
// unrelated process, a clone({vm: true}) child, a thread of the owner. The actor registers its own memory,
// maps a page from it and unmaps the owner's page.
import { describe, expect, it } from 'vitest';
import { Host, InvariantError, TceError, type ContainerFd, type Process } from '../../src/index.js';
import { MiB, digest, expectErr, regionAt } from './helpers.js';

const PAGE = 0x1000n;

type Design = 'none' | 'pid-call' | 'pid-entry' | 'fork-close' | 'mm';
type Actor = 'fork' | 'passed' | 'vm-clone' | 'thread';

async function setup(design: Design) {
  const ownerCheck = design.startsWith('pid') ? 'pid' : (design as 'none' | 'fork-close' | 'mm');
  const host = await Host.create({ ownerCheck, pidCheck: design === 'pid-entry' ? 'entry' : 'call', maxMemory: 24 << 20 });
  const owner = host.spawn();
  const ram = owner.mmap(MiB);
  const ram2 = owner.mmap(MiB);
  const fd = owner.openContainer();
  fd.attachGroup(host.addGroup());
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: PAGE, read: true, write: true });
  const ownerRegion = regionAt(fd, ram.ua);
  expect(ownerRegion.mapped).toBe(2n);
  host.checkInvariants();
  return { host, owner, ram, ram2, fd, ownerRegion };
}

/** The actor of a column, made from the owner, and how it comes to hold the handle. */
function actorOf(host: Host, owner: Process, which: Actor): { actor: Process; take(fd: ContainerFd): ContainerFd } {
  if (which === 'fork') {
    const actor = owner.fork();
    return { actor, take: (fd) => actor.inherit(fd) };
  }
  if (which === 'passed') {
    const actor = host.spawn();
    actor.mmap(MiB);
    actor.mmap(MiB); // the same layout as the owner's, so the actor's second mapping is at ram2.ua too
    return { actor, take: (fd) => actor.receive(fd) };
  }
  const actor = which === 'thread' ? owner.thread() : owner.clone({ vm: true });
  return { actor, take: (fd) => actor.inherit(fd) };
}

/** The actor's three calls; each is tried, and each refused one must have changed nothing. */
function attack(host: Host, afd: ContainerFd, procs: Process[], fd: ContainerFd, ram2ua: bigint): (string | 'ok')[] {
  const calls = [
    () => afd.registerMemory(ram2ua, MiB),
    () => afd.mapDma({ iova: MiB, vaddr: ram2ua, size: PAGE, read: true }),
    () => afd.unmapDma({ iova: 0n, size: PAGE }),
  ];
  return calls.map((call) => {
    const before = digest(host, [fd], procs);
    try {
      call();
      return 'ok';
    } catch (e) {
      if (!(e instanceof TceError)) throw e;
      expect(digest(host, [fd], procs), `the refused call (${e.code}) changed nothing`).toBe(before);
      return e.code;
    }
  });
}

/** What the owner finds afterwards: its unregister, and the invariant check. */
function aftermath(host: Host, fd: ContainerFd, ramUa: bigint): { unregister: string; problems: string[] } {
  let unregister = 'ok';
  try {
    fd.unregisterMemory(ramUa, MiB);
  } catch (e) {
    if (!(e instanceof TceError)) throw e;
    unregister = e.code;
  }
  try {
    host.checkInvariants();
    return { unregister, problems: [] };
  } catch (e) {
    if (!(e instanceof InvariantError)) throw e;
    return { unregister, problems: e.problems };
  }
}

const hexOf = (x: bigint): string => '0x' + x.toString(16);

describe('the answer table: every design × every way of holding the handle', () => {
  // refused: the actor's calls, all refused with this errno, change nothing; the owner is unaffected.
  const refused: [Design, Actor][] = [
    ['pid-call', 'fork'], ['pid-entry', 'fork'], ['mm', 'fork'],
    ['pid-call', 'passed'], ['pid-entry', 'passed'], ['mm', 'passed'],
    ['pid-call', 'vm-clone'], ['pid-entry', 'vm-clone'],
  ];
  for (const [design, which] of refused) {
    it(`${design} × ${which}: every call of the actor → EPERM, nothing changed, the owner unaffected`, async () => {
      const { host, owner, ram, ram2, fd, ownerRegion } = await setup(design);
      const { actor, take } = actorOf(host, owner, which);
      const afd = take(fd);
      expect(attack(host, afd, [owner, actor], fd, ram2.ua)).toEqual(['EPERM', 'EPERM', 'EPERM']);
      expect(ownerRegion.mapped).toBe(2n);
      expect(actor.mm.lockedPages).toBe(which === 'vm-clone' ? owner.mm.lockedPages : 0n);
      fd.unmapDma({ iova: 0n, size: PAGE });
      expect(aftermath(host, fd, ram.ua)).toEqual({ unregister: 'ok', problems: [] });
    });
  }

  it('fork-close × fork: the child never holds the handle (inherit → EBADF), nothing changed', async () => {
    const { host, owner, ram, fd, ownerRegion } = await setup('fork-close');
    const { actor, take } = actorOf(host, owner, 'fork');
    const before = digest(host, [fd], [owner, actor]);
    expectErr(() => take(fd), 'EBADF');
    expect(actor.containers()).toEqual([]);
    expect(fd.container.handles).toBe(1);
    expect(digest(host, [fd], [owner, actor])).toBe(before);
    expect(ownerRegion.mapped).toBe(2n);
    fd.unmapDma({ iova: 0n, size: PAGE });
    expect(aftermath(host, fd, ram.ua)).toEqual({ unregister: 'ok', problems: [] });
  });

  // allowed: the actor shares the owner's mm (and, but for pid, may act for it): every call works, counts stay exact.
  const allowed: [Design, Actor][] = [
    ['none', 'vm-clone'], ['fork-close', 'vm-clone'], ['mm', 'vm-clone'],
    ['none', 'thread'], ['pid-call', 'thread'], ['pid-entry', 'thread'], ['fork-close', 'thread'], ['mm', 'thread'],
  ];
  for (const [design, which] of allowed) {
    it(`${design} × ${which}: allowed, and the invariants hold`, async () => {
      const { host, owner, ram, ram2, fd, ownerRegion } = await setup(design);
      const { actor, take } = actorOf(host, owner, which);
      expect(actor.mm).toBe(owner.mm);
      expect(attack(host, take(fd), [owner, actor], fd, ram2.ua)).toEqual(['ok', 'ok', 'ok']);
      expect(ownerRegion.mapped, 'the owner\'s page was unmapped and its region decremented').toBe(1n);
      expect(regionAt(fd, ram2.ua).mapped).toBe(2n);
      host.checkInvariants();
      expect(aftermath(host, fd, ram.ua)).toEqual({ unregister: 'ok', problems: [] });
    });
  }

  // damage: another mm's calls all go through; the unmap decrements nothing of the owner's, the map puts the
  // actor's page into the owner's table; the owner's region stays "in use" forever.
  const damaged: [Design, Actor][] = [['none', 'fork'], ['none', 'passed'], ['fork-close', 'passed']];
  for (const [design, which] of damaged) {
    it(`${design} × ${which}: allowed, and the accounting breaks (the owner's region leaks a count; a TCE of another mm in the owner's table)`, async () => {
      const { host, owner, ram, ram2, fd, ownerRegion } = await setup(design);
      const { actor, take } = actorOf(host, owner, which);
      expect(actor.mm).not.toBe(owner.mm);
      expect(attack(host, take(fd), [owner, actor], fd, ram2.ua)).toEqual(['ok', 'ok', 'ok']);
      expect(ownerRegion.mapped, 'the owner\'s page is gone but its region was not decremented').toBe(2n);
      expect(fd.container.windows[0]!.table.get(0n)).toBe(0n);
      expect(actor.mm.lockedPages, 'the actor\'s own region is charged to its own mm').toBe(16n);
      const { unregister, problems } = aftermath(host, fd, ram.ua);
      expect(unregister).toBe('EBUSY');
      const ua = hexOf(ram.ua);
      expect(problems.some((m) => m.includes(`region ${ua} (mm ${owner.mm.id}): mapped − 1 = 1, but 0 TCE(s)`)), problems.join('\n')).toBe(true);
      expect(problems.some((m) => m.includes(`maps a page of mm ${actor.mm.id}'s region at ${hexOf(ram2.ua)}, but the table belongs to mm ${owner.mm.id}`)), problems.join('\n')).toBe(true);
    });
  }

  it('the table has 20 cells and the lists above cover each once', () => {
    const all = [...refused, ...allowed, ...damaged, ['fork-close', 'fork']].map(([d, a]) => `${d}×${a}`);
    expect(new Set(all).size).toBe(20);
  });
});
