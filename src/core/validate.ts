// Argument checks for every public entry point: wrong JavaScript types are
// TypeError, values no u64/u32 can hold are RangeError, both naming the
// argument. Kernel-level refusals (misalignment, ranges) are TceError and
// live next to the operation they belong to.

const U64_MAX = (1n << 64n) - 1n;

/** A u64 argument: a bigint in [0, 2^64). */
export function u64(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint, got ${describe(v)}`);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${name} must be in [0, 2^64), got ${v}`);
  return v;
}

/** A whole number in [min, max]. */
export function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  if (v < min || v > max) throw new RangeError(`${name} must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** A boolean, or the default when undefined. */
export function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${describe(v)}`);
  return v;
}

/** One of a fixed set of strings, or the default when undefined (required when there is no default). */
export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[], dflt?: T): T {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new TypeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

/** An object of class `ctor` (by instanceof), named `what` in the message. */
export function instance<T>(name: string, v: unknown, ctor: abstract new (...args: never[]) => T, what: string): T {
  if (!(v instanceof ctor)) throw new TypeError(`${name} must be ${what}, got ${describe(v)}`);
  return v;
}

/**
 * The one same-host check: `o` (an object with a `host`) must belong to
 * `host`, or a TypeError says "`name` belongs to another host".
 */
export function sameHost(name: string, o: { readonly host: unknown }, host: unknown): void {
  if (o.host !== host) throw new TypeError(`${name} belongs to another host`);
}

/** An object of class `ctor` (instance()) that belongs to `host` (sameHost()). */
export function owned<T extends { readonly host: unknown }>(name: string, v: unknown, ctor: abstract new (...args: never[]) => T, what: string, host: unknown): T {
  const o = instance(name, v, ctor, what);
  sameHost(name, o, host);
  return o;
}

/** A function (a listener, a callback). */
export function fn<T extends (...args: never[]) => unknown>(name: string, v: unknown): T {
  if (typeof v !== 'function') throw new TypeError(`${name} must be a function, got ${describe(v)}`);
  return v as T;
}

/** An array (its elements are the caller's to check). */
export function array(name: string, v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new TypeError(`${name} must be an array of ${what}, got ${describe(v)}`);
  return v;
}

/** An options object (or undefined → {}). */
export function options<T extends object>(name: string, v: unknown): Partial<T> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${name} must be an object, got ${describe(v)}`);
  return v as Partial<T>;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return typeof v === 'object' ? (Array.isArray(v) ? 'an array' : 'an object') : `${typeof v} ${String(v)}`;
}
