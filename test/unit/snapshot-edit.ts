// Editing a JSON snapshot as a hostile or buggy producer would, for the restore tests: the
// snapshot as plain data, a checksum recomputed over an edited body (so only the restore's own
// checks stand between the edit and a host), a word written into the saved memory, and the
// SnapshotError a restore throws.
import { createHash } from 'node:crypto';
import { Host } from '../../src/index.js';
import { SnapshotError } from '../../src/snapshot/fsck/read.js';

/** A JSON snapshot as plain data. */
export type Snap = { format: string; version: number; checksum: string; body: { memory: { pages: [number, string][] }; tables: Record<string, unknown>[] } & Record<string, unknown> };

/** `h.snapshot()` as plain data, free to edit. */
export const snapOf = (h: Host): Snap => JSON.parse(JSON.stringify(h.snapshot()));

/** `s` with its checksum recomputed over its (edited) body. */
export const reseal = (s: Snap): Snap => ({ ...s, checksum: createHash('sha256').update(JSON.stringify(s.body)).digest('hex') });

/** Writes a u32 into a snapshot's saved memory at `addr` (a zero page the snapshot skipped is added). */
export function poke(s: Snap, addr: number, v: number): void {
  const page = addr & ~4095;
  let e = s.body.memory.pages.find(([off]) => off === page);
  if (!e) {
    e = [page, Buffer.alloc(4096).toString('base64')];
    s.body.memory.pages.push(e);
    s.body.memory.pages.sort((a, b) => a[0] - b[0]);
  }
  const b = Buffer.from(e[1], 'base64');
  b.writeUInt32LE(v >>> 0, addr & 4095);
  e[1] = b.toString('base64');
}

/** The SnapshotError a restore of `s`, resealed, throws; fails the test when the restore is accepted. */
export function refusal(s: Snap): SnapshotError {
  try {
    Host.restore(reseal(s));
  } catch (e) {
    if (e instanceof SnapshotError) return e;
    throw e;
  }
  throw new Error('the snapshot was accepted');
}
