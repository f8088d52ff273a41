// Bad input to the host and process API (docs/semantics.md §1 "Errors"): Host.create, spawn, clone and mmap reject bad arguments with an error naming them, state untouched.
import { describe, expect, it } from 'vitest';
import { Host } from '../../src/index.js';
import { expectRejected } from '../model/harness.js';

const any = (x: unknown) => x as never;

describe('bad input: host and processes', () => {
  it('Host.create options', async () => {
    await expect(Host.create(any({ pageShift: 14 }))).rejects.toThrow(/pageShift/);
    await expect(Host.create(any({ pageShift: '16' }))).rejects.toThrow(TypeError);
    await expect(Host.create(any({ engine: 'gpu' }))).rejects.toThrow(/engine/);
    await expect(Host.create(any({ ownerCheck: 'pids' }))).rejects.toThrow(/ownerCheck/);
    await expect(Host.create(any({ memlockLimit: -1n }))).rejects.toThrow(/memlockLimit/);
    await expect(Host.create(any({ memlockLimit: 1024.5 }))).rejects.toThrow(/memlockLimit/);
    await expect(Host.create(any('mm'))).rejects.toThrow(/opts/);
  });

  it('spawn options', async () => {
    const host = await Host.create();
    expectRejected(host, () => host.spawn(any({ memlockLimit: 1024.5 })), 'memlockLimit');
    expectRejected(host, () => host.spawn(any({ memlockLimit: -1n })), 'memlockLimit');
    expectRejected(host, () => host.spawn(any(5)), 'opts');
  });

  it('clone options', async () => {
    const host = await Host.create();
    const p = host.spawn();
    expectRejected(host, () => p.clone(any({ vm: 'yes' })), 'vm');
    expectRejected(host, () => p.clone(any(null)), 'opts');
  });

  it('mmap size and options', async () => {
    const host = await Host.create();
    const p = host.spawn();
    p.mmap(1n << 20n);
    expectRejected(host, () => p.mmap(any('65536')), 'size');
    expectRejected(host, () => p.mmap(-65536n), 'size');
    expectRejected(host, () => p.mmap(0n), 'size');
    expectRejected(host, () => p.mmap(1n << 16n, any({ hugePageShift: 13 })), 'hugePageShift');
    expectRejected(host, () => p.mmap(1n << 24n, any({ hugePageShift: 24.5 })), 'hugePageShift');
    expectRejected(host, () => p.mmap(1n << 16n, any({ backed: 1 })), 'backed');
    expectRejected(host, () => p.mmap(1n << 32n), 'backed');
  });
});
