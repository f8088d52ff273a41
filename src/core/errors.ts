// One error class for everything the ioctl-like API refuses, with the
// kernel's errno name as `code` and its positive number as `errno`.
import { ERRNO } from '../generated/layout.js';

/** The errno names this library can return. */
export type ErrnoCode = keyof typeof ERRNO;

const NAME_OF = new Map<number, ErrnoCode>(Object.entries(ERRNO).map(([k, v]) => [v, k as ErrnoCode]));

/** An operation refused the way the kernel refuses it: `code` is 'EINVAL' etc., `errno` the Linux number. */
export class TceError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  constructor(code: ErrnoCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'TceError';
    this.code = code;
    this.errno = ERRNO[code];
  }
}

/** Throws a TceError. */
export function fail(code: ErrnoCode, message: string): never {
  throw new TceError(code, message);
}

/** Converts a negative errno from an engine routine into a TceError. */
export function errnoError(negErrno: number, message: string): TceError {
  const code = NAME_OF.get(-negErrno);
  if (!code) return new TceError('EINVAL', `${message} (engine returned ${negErrno})`);
  return new TceError(code, message);
}

/** An internal consistency check failed (checkInvariants); `problems` lists every violation. */
export class InvariantError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`${problems.length} invariant(s) broken:\n  ${problems.slice(0, 20).join('\n  ')}${problems.length > 20 ? `\n  … and ${problems.length - 20} more` : ''}`);
    this.name = 'InvariantError';
    this.problems = problems;
  }
}
