// The snapshot envelope: a body (body.ts) with its format name, version and
// checksum, JSON-safe as a whole. A snapshot of another version or a
// corrupted one is refused here, before anything is built. A restored host
// gives the same answers as the original, and after the same calls the same
// memory, because restore.ts rebuilds the same objects over the same bytes.
import { createHash } from 'node:crypto';
import { BODY_VERSION, type SnapshotBody } from './body.js';

/** The format name and version every snapshot carries. */
export const SNAPSHOT_FORMAT = 'spapr-tce-snapshot';
/** The version of snapshots this library writes and reads (that of the body). */
export const SNAPSHOT_VERSION = BODY_VERSION;

/** A host snapshot: JSON-safe, versioned, checksummed. */
export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  version: number;
  /** sha256 of JSON.stringify(body). */
  checksum: string;
  body: SnapshotBody;
}

const digest = (body: unknown): string => createHash('sha256').update(JSON.stringify(body)).digest('hex');

/** A body in its envelope. */
export function seal(body: SnapshotBody): Snapshot {
  return { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, checksum: digest(body), body };
}

/** Checks a snapshot's envelope and checksum; throws a clear error before anything is built. */
export function checkSnapshot(s: unknown): Snapshot {
  if (typeof s !== 'object' || s === null) throw new TypeError('Host.restore: snapshot must be an object');
  const snap = s as Partial<Snapshot>;
  if (snap.format !== SNAPSHOT_FORMAT) throw new Error(`Host.restore: not a ${SNAPSHOT_FORMAT} (format: ${String(snap.format)})`);
  if (snap.version !== SNAPSHOT_VERSION) throw new Error(`Host.restore: snapshot version ${String(snap.version)} is not supported (this library reads version ${SNAPSHOT_VERSION})`);
  if (typeof snap.body !== 'object' || snap.body === null || typeof snap.checksum !== 'string') throw new Error('Host.restore: the snapshot has no body or checksum');
  if (digest(snap.body) !== snap.checksum) throw new Error('Host.restore: the snapshot is corrupted (its checksum does not match its contents)');
  return snap as Snapshot;
}
