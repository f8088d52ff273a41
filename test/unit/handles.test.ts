// Spec: docs/semantics.md §5.1 (how a task comes to hold a container handle: openContainer, inherit, receive;
// descriptor tables shared by threads and vm-clones, copied by fork; ownerCheck 'fork-close').
import { describe, expect, it } from 'vitest';
import { Host, ContainerFd, FdTable, type OwnerCheck } from '../../src/index.js';
import { digest, expectErr, MiB } from '../conformance/helpers.js';

async function owner(mode: OwnerCheck) {
  const host = await Host.create({ ownerCheck: mode, maxMemory: 16 << 20 });
  const p = host.spawn();
  const ram = p.mmap(MiB);
  const g = host.addGroup();
  const fd = p.openContainer();
  fd.attachGroup(g);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  return { host, p, ram, fd };
}

describe('descriptor tables (files_struct)', () => {
  it('threads and clone({vm: true}) children share the table; fork() copies it, and the copy remembers its source', async () => {
    const host = await Host.create({ maxMemory: 16 << 20 });
    const p = host.spawn();
    const t = p.thread();
    const v = p.clone({ vm: true });
    const c = p.fork();
    const gc = c.fork();
    const cc = p.clone();
    const other = host.spawn();
    expect(t.files).toBe(p.files);
    expect(v.files).toBe(p.files);
    expect(p.files).toBeInstanceOf(FdTable);
    for (const x of [c, gc, cc, other]) expect(x.files).not.toBe(p.files);
    expect(c.files.isCopyOf(p.files)).toBe(true);
    expect(gc.files.isCopyOf(p.files)).toBe(true);
    expect(gc.files.isCopyOf(c.files)).toBe(true);
    expect(cc.files.isCopyOf(p.files)).toBe(true);
    expect(p.files.isCopyOf(c.files)).toBe(false);
    expect(p.files.isCopyOf(p.files)).toBe(false);
    expect(other.files.isCopyOf(p.files)).toBe(false);
    // a thread of a fork child shares the child's copy
    expect(c.thread().files).toBe(c.files);
  });
});

describe('inherit(fd) and receive(fd)', () => {
  for (const mode of ['none', 'pid', 'mm', 'fork-close'] as const) {
    it(`${mode}: a thread and a vm-clone inherit a descriptor of their own on the same container; receive works for anyone`, async () => {
      const { host, p, fd } = await owner(mode);
      const t = p.thread().inherit(fd);
      const v = p.clone({ vm: true }).inherit(fd);
      const r = host.spawn().receive(fd);
      for (const h of [t, v, r]) {
        expect(h).toBeInstanceOf(ContainerFd);
        expect(h.container).toBe(fd.container);
        expect(h).not.toBe(fd);
      }
      expect(fd.container.handles).toBe(4);
      // a descriptor of its own: closing the owner's leaves the others open
      fd.close();
      expect(t.isOpen).toBe(true);
      expect(t.getInfo().flags).toBe(1);
      expect(fd.container.iommuSet).toBe(true);
      for (const h of [t, v, r]) h.close();
      expect(fd.container.iommuSet).toBe(false);
    });
  }

  for (const mode of ['none', 'pid', 'mm'] as const) {
    it(`${mode}: a fork child inherits the copy fork() made (the check, if any, comes when it is used)`, async () => {
      const { p, fd } = await owner(mode);
      const child = p.fork();
      const cfd = child.inherit(fd);
      expect(cfd.process).toBe(child);
      expect(child.containers()).toEqual([cfd]);
      // a grandchild through a thread of the child, too
      expect(child.thread().fork().inherit(fd).container).toBe(fd.container);
    });
  }

  it('fork-close: a fork child (and a grandchild) gets EBADF and nothing changes: no handle, no state', async () => {
    const { host, p, fd } = await owner('fork-close');
    const child = p.fork();
    const grandchild = child.fork();
    const forked = p.clone();
    const before = digest(host, [fd], [p, child]);
    const e = expectErr(() => child.inherit(fd), 'EBADF');
    expect(e.message).toMatch(/closed on fork/);
    expectErr(() => grandchild.inherit(fd), 'EBADF');
    expectErr(() => forked.inherit(fd), 'EBADF');
    expect(fd.container.handles).toBe(1);
    expect(child.containers()).toEqual([]);
    expect(digest(host, [fd], [p, child])).toBe(before);
    // the same process can still be handed the container over a socket
    const rfd = child.receive(fd);
    expect(child.containers()).toEqual([rfd]);
    // a handle the child received and then forked with is closed in its own child too
    expectErr(() => grandchild.inherit(rfd), 'EBADF');
    // inherit from an unrelated task keeps its old meaning: fd passing
    expect(host.spawn().inherit(fd).container).toBe(fd.container);
  });

  it('fork-close: a thread of a fork child shares the child\'s table, so the child\'s received handle is its own too', async () => {
    const { p, fd } = await owner('fork-close');
    const child = p.fork();
    const rfd = child.receive(fd);
    expect(child.thread().inherit(rfd).container).toBe(fd.container);
    expectErr(() => child.thread().inherit(fd), 'EBADF');
  });

  it('bad input: not a handle (TypeError), another host\'s handle, a closed handle (inherit: TypeError; receive: EBADF)', async () => {
    const { host, p, fd } = await owner('mm');
    const other = await owner('mm');
    const q = host.spawn();
    expect(() => q.inherit({} as never)).toThrow(TypeError);
    expect(() => q.receive({} as never)).toThrow(TypeError);
    expect(() => q.receive(other.fd)).toThrow(/another host/);
    expect(() => q.inherit(other.fd)).toThrow(/another host/);
    const dup = p.thread().inherit(fd);
    dup.close();
    expect(() => q.inherit(dup)).toThrow(TypeError);
    const before = fd.container.handles;
    expectErr(() => q.receive(dup), 'EBADF');
    expect(fd.container.handles).toBe(before);
  });

  it('a snapshot keeps the tables: a restored fork child is still refused under fork-close, a restored thread is not', async () => {
    const { host, p, fd } = await owner('fork-close');
    const child = p.fork();
    const thread = p.thread();
    const clone = p.clone({ vm: true });
    const b = Host.restore(host.snapshot());
    const [bp, bchild, bthread, bclone] = [p, child, thread, clone].map((x) => b.processes.get(x.tid)!);
    const bfd = bp!.containers()[0]!;
    expect(bthread!.files).toBe(bp!.files);
    expect(bclone!.files).toBe(bp!.files);
    expect(bchild!.files.isCopyOf(bp!.files)).toBe(true);
    expectErr(() => bchild!.inherit(bfd), 'EBADF');
    expect(bthread!.inherit(bfd).container).toBe(bfd.container);
    expect(b.stats().ownerCheck).toBe('fork-close');
    void fd;
  });
});
