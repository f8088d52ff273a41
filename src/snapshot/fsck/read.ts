// Reading untrusted snapshot data field by field: each reader checks the
// JavaScript type and range of one value and names the field it refuses
// (`body.mms[0].desc: must be …`), so nothing of the wrong shape reaches a
// checker or a constructor.

/** A snapshot refused by the restore: `field` names what is wrong, `reason` why. */
export class SnapshotError extends Error {
  readonly field: string;
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`Host.restore: ${field}: ${reason}`);
    this.name = 'SnapshotError';
    this.field = field;
    this.reason = reason;
  }
}

/** Throws a SnapshotError naming `field`. */
export function refuse(field: string, reason: string): never {
  throw new SnapshotError(field, reason);
}

const HEX64 = /^0x(?:0|[1-9a-f][0-9a-f]{0,15})$/;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 24 ? v.slice(0, 24) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** A plain object with exactly `keys` (none missing, none extra), and any of `optional` (fields older writers left out). */
export function obj(v: unknown, field: string, keys: readonly string[], optional: readonly string[] = []): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) refuse(field, `must be an object, got ${describe(v)}`);
  const o = v as Record<string, unknown>;
  for (const k of keys) if (!Object.prototype.hasOwnProperty.call(o, k)) refuse(`${field}.${k}`, 'is missing');
  for (const k of Object.keys(o)) if (!keys.includes(k) && !optional.includes(k)) refuse(`${field}.${k}`, 'is not a field of this version');
  return o;
}

/** Whether optional field `k` of a checked object is present. */
export function has(o: Record<string, unknown>, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** An array of at most `max` elements. */
export function arr(v: unknown, field: string, max = 1 << 24): unknown[] {
  if (!Array.isArray(v)) refuse(field, `must be an array, got ${describe(v)}`);
  if (v.length > max) refuse(field, `has ${v.length} elements, more than ${max}`);
  return v;
}

/** A whole number in [min, max]. */
export function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) refuse(field, `must be a whole number, got ${describe(v)}`);
  if (v < min || v > max) refuse(field, `must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** A u32. */
export function u32(v: unknown, field: string): number {
  return int(v, field, 0, 0xffff_ffff);
}

/** A boolean. */
export function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') refuse(field, `must be a boolean, got ${describe(v)}`);
  return v;
}

/** One of a fixed set of strings. */
export function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) refuse(field, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(v)}`);
  return v as T;
}

/** A string of at most `max` characters. */
export function str(v: unknown, field: string, max: number): string {
  if (typeof v !== 'string') refuse(field, `must be a string, got ${describe(v)}`);
  if (v.length > max) refuse(field, `is longer than ${max} characters`);
  return v;
}

/** A u64 spelled as the library spells it: 0x-prefixed lowercase hex without leading zeros. */
export function hex64(v: unknown, field: string): bigint {
  if (typeof v !== 'string' || !HEX64.test(v)) refuse(field, `must be a 64-bit value in 0x-hex, got ${describe(v)}`);
  return BigInt(v);
}

/** null, or what `read` reads. */
export function nullable<T>(v: unknown, read: (v: unknown) => T): T | null {
  return v === null ? null : read(v);
}

/** A pair [a, b] (JSON's tuple). */
export function pair(v: unknown, field: string): [unknown, unknown] {
  const a = arr(v, field, 2);
  if (a.length !== 2) refuse(field, `must be a pair, got ${a.length} element(s)`);
  return [a[0], a[1]];
}
