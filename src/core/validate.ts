// Argument checks for every public entry point, one rule per kind of
// argument, each naming the argument it refuses:
//   missing (undefined where a value is required)  TypeError  "X is required"
//   the wrong JavaScript type                      TypeError  "X must be …, got …"
//   a value outside what the argument can hold     RangeError "X must be in […], got …"
//   an options key the entry point does not have   TypeError  "opts.k is not an option of F"
// Every check runs before the entry point changes anything, so a refused
// call changes nothing. Kernel-level refusals (misalignment, ranges the
// kernel checks) are TceError and live next to the operation they belong to.

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffff_ffff;
const U32_MAX_N = 0xffff_ffffn;
const SAFE = 2 ** 53;

/** The TypeError of a required argument or option that is undefined. */
function missing(name: string): TypeError {
  return new TypeError(`${name} is required`);
}

/**
 * A u64 argument (an address, a size, an offset, a register value): a
 * bigint in [lo, hi] (default [0, 2^64)), or a number that is a safe
 * integer there (above 2^53 a number is not exact: pass a bigint). Returned
 * as a bigint; results are always bigints (see u64Safe for a hot path).
 */
export function u64(name: string, v: unknown, lo?: bigint, hi?: bigint): bigint {
  // The common case, a safe non-negative number against the default bounds: one conversion, no BigInt compares.
  if (typeof v === 'number' && lo === undefined && hi === undefined && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  const min = lo ?? 0n;
  const max = hi ?? U64_MAX;
  if (typeof v === 'bigint') {
    if (v < min || v > max) throw new RangeError(`${name} must be in ${range(min, max)}, got ${v}n`);
    return v;
  }
  if (v === undefined) throw missing(name);
  if (typeof v !== 'number') throw new TypeError(`${name} must be a bigint or a number, got ${describe(v)}`);
  if (!Number.isInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  if (!Number.isSafeInteger(v)) throw new RangeError(`${name} must be a safe integer when it is a number (pass a bigint), got ${v}`);
  const b = BigInt(v);
  if (b < min || b > max) throw new RangeError(`${name} must be in ${range(min, max)}, got ${v}`);
  return b;
}

/**
 * u64()'s rule with the default bounds, for an address on a hot path: a
 * value in [0, 2^53), number or bigint, comes back as an exact number (for
 * a number argument with no BigInt work at all); anything else is checked
 * by u64(), with its errors, and a valid one comes back as a bigint.
 */
export function u64Safe(name: string, v: unknown): number | bigint {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return v + 0; // + 0: -0 comes back as 0
  } else if (typeof v === 'bigint') {
    // Conversion rounds monotonically and 2^53 is exact, so a result in [0, 2^53) means v itself is there.
    const n = Number(v);
    if (n >= 0 && n < SAFE) return n;
  }
  return u64(name, v);
}

/** A byte count that must fit a number (a linear-memory size): u64()'s rule, returned as a number. */
export function size(name: string, v: unknown, min: number, max: number): number {
  return Number(u64(name, v, BigInt(min), BigInt(max)));
}

/** "[0, 2^64)" for the full range, else "[min, max]". */
function range(min: bigint, max: bigint): string {
  return min === 0n && max === U64_MAX ? '[0, 2^64)' : `[${min}, ${max}]`;
}

/**
 * A 32-bit id (a hypercall number, an RTAS cell): a number or a bigint in
 * [0, 2^32), returned as a number.
 */
export function u32(name: string, v: unknown): number {
  if (v === undefined) throw missing(name);
  if (typeof v === 'bigint') {
    if (v < 0n || v > U32_MAX_N) throw new RangeError(`${name} must be in [0, 2^32), got ${v}n`);
    return Number(v);
  }
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number or a bigint, got ${describe(v)}`);
  if (!Number.isInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  if (v < 0 || v > U32_MAX) throw new RangeError(`${name} must be in [0, 2^32), got ${v}`);
  return v;
}

/**
 * A LIOBN given to the API (docs/semantics.md §8.1): a 32-bit id, number or
 * bigint in [0, 2^32), returned as the bigint the tables are keyed by.
 * Guest register contents are not checked with this: a hypercall's r4 may
 * hold any 64-bit value, and the hypercall semantics answer it.
 */
export function liobn(name: string, v: unknown): bigint {
  if (typeof v === 'bigint' && v >= 0n && v <= U32_MAX_N) return v;
  return BigInt(u32(name, v));
}

/** A whole number in [min, max]. */
export function int(name: string, v: unknown, min: number, max: number): number {
  if (v === undefined) throw missing(name);
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
  if (v === undefined) {
    if (dflt !== undefined) return dflt;
    throw missing(name);
  }
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

/** The keys an options object of type T may have, and the entry point it belongs to (make with keys()). */
export interface OptionKeys<T extends object> {
  /** The entry point, as the message names it ('Host.create', 'fd.mapDma'). */
  readonly where: string;
  readonly names: ReadonlySet<string>;
  /** Never set: ties the set to T for options(). */
  readonly type?: T;
}

/**
 * The options of an entry point: `k` must list every key of T (the compiler
 * checks it, so a key added to the interface and not here does not compile).
 * Make one per options type, next to its interface.
 */
export function keys<T extends object>(where: string, k: { readonly [K in keyof T]-?: true }): OptionKeys<T> {
  return Object.freeze({ where, names: new Set(Object.keys(k)) });
}

/** What options() returns: the keys of T, each still to be checked by its own rule. */
export type Unchecked<T extends object> = { readonly [K in keyof T]?: unknown };

/**
 * An options object (undefined → {}): a plain object whose own keys are all
 * among `allowed`; an unknown key (a typo such as `ownercheck`) is a
 * TypeError naming it, as Node's own APIs refuse what they do not know.
 * The values are `unknown` until each is checked by its rule.
 */
export function options<T extends object>(name: string, v: unknown, allowed: OptionKeys<T>): Unchecked<T> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${name} must be an object, got ${describe(v)}`);
  // for-in with an own-key test: no array of keys allocated per call.
  for (const k in v) {
    if (Object.hasOwn(v, k) && !allowed.names.has(k)) throw new TypeError(`${name}.${k} is not an option of ${allowed.where}${suggest(k, allowed.names)}`);
  }
  return v as Unchecked<T>;
}

/** " (did you mean x?)" for the option a mistyped key most likely meant, else the list of options. */
function suggest(k: string, names: ReadonlySet<string>): string {
  const all = [...names];
  const near = all.find((n) => n.toLowerCase() === k.toLowerCase()) ?? all.find((n) => distance(n.toLowerCase(), k.toLowerCase()) <= 2);
  if (near !== undefined) return ` (did you mean ${near}?)`;
  return all.length === 0 ? ' (it takes none)' : ` (its options: ${all.join(', ')})`;
}

/** Levenshtein distance, for suggest(); option names are short. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return typeof v === 'object' ? (Array.isArray(v) ? 'an array' : 'an object') : `${typeof v} ${String(v)}`;
}
