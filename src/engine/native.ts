// Loads the native addon: the one built from source (build/Release, what
// `npm install` makes in a checkout) or else the prebuilt one of prebuilds/
// that `npm pack` puts in the package, found by node-gyp-build for this
// platform, architecture and libc. When neither loads, says why (with the
// install script's record, dist/native-build.json) and the command that fixes it.
//
// SPAPR_TCE_NATIVE_ADDON=/path/to/spapr_tce_native.node loads another build
// of the addon instead (the AddressSanitizer build of `npm run test:asan`).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Engine } from './engine.js';
import { missingRoutines } from '../generated/engine.js';

/** The C++ engine (src/native/engine.h): every routine of Engine, and the benchmark's C floor. */
export interface NativeEngineRoutines extends Omit<Engine, 'kind'> {
  readonly kind: 'native';
  /**
   * The C floor of the benchmark (src/native/engine_binding.cc, BenchLoop):
   * runs hcall(vcpuDesc, level) `iterations` times in a C++ loop, r3 and r4
   * put back before each call, and returns the elapsed nanoseconds.
   */
  benchLoop(vcpuDesc: number, level: number, iterations: number): number;
}

/** An engine of kind 'native': the Engine routines plus benchLoop. */
export type NativeEngine = Engine & Pick<NativeEngineRoutines, 'kind' | 'benchLoop'>;

/** The addon's host memory services and its engine factory. */
export interface NativeAddon {
  getMemlockLimit(): { soft: bigint | null; hard: bigint | null };
  getPageSize(): number;
  lockedBytes(): number;
  mlockRange(bytes: Uint8Array): number;
  munlockRange(bytes: Uint8Array): number;
  /** madvise(MADV_HUGEPAGE) over the whole 2 MiB pages of a view (src/native/huge_pages.cc): 0 or the errno. */
  adviseHugePages?(bytes: Uint8Array): number;
  /** CRC-32 of a view continuing from `crc`, as zlib.crc32 gives it (src/native/crc32.cc); absent without PCLMULQDQ. */
  crc32?(bytes: Uint8Array, crc?: number): number;
  /** The index of the first non-zero byte of `bytes` in [from, to), or `to` (src/native/zero_scan.cc; `loop` one of firstNonZeroLoops, default the widest). */
  firstNonZero?(bytes: Uint8Array, from: number, to: number, loop?: string): number;
  /** The loops firstNonZero can be asked for on this CPU, widest first. */
  firstNonZeroLoops?: readonly string[];
  /** The C++ engine over a Uint8Array view of the whole shared memory. */
  createEngine(view: Uint8Array): NativeEngineRoutines;
  layoutVersion: number;
}

let cached: { addon?: NativeAddon; error?: string } | undefined;

/** The package's folder: the nearest one above this module whose package.json is spapr-tce's (so this file may move). */
function packageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'spapr-tce') return dir;
    } catch {
      // No package.json here: look further up.
    }
    if (dirname(dir) === dir) return join(start, '..', '..');
  }
}

/** The command that builds the addon from source here: `npm rebuild spapr-tce` where it is installed, `npm run build` in a checkout. */
export function nativeRebuildCommand(root = packageRoot()): string {
  return root.split(sep).includes('node_modules') ? 'npm rebuild spapr-tce' : 'npm run build';
}

/** The addon, or undefined with `nativeLoadError()` saying why. */
export function loadNative(): NativeAddon | undefined {
  if (!cached) {
    const require = createRequire(import.meta.url);
    const root = packageRoot();
    try {
      const path = process.env.SPAPR_TCE_NATIVE_ADDON || (require('node-gyp-build') as { path(dir: string): string }).path(root);
      cached = { addon: require(path) as NativeAddon };
    } catch (e) {
      // node-gyp-build's message spans lines (what it looked for, where): its first line is the reason.
      let why = (e as Error).message.split('\n')[0]!.trim();
      try {
        const rec = JSON.parse(readFileSync(join(root, 'dist/native-build.json'), 'utf8')) as { ok: boolean; detail: string };
        // The install script's record says why neither its prebuild nor its build from source worked.
        if (!rec.ok) why = rec.detail.split('\n')[0]!;
      } catch {
        // No record: the install script never ran here (npm --ignore-scripts, or a copy of the files).
        why = `${why}; no build from source was made`;
      }
      cached = { error: `the native addon could not be loaded (${why}). Build it with \`${nativeRebuildCommand(root)}\` (needs python3, make and a C++ compiler); engine: 'wasm' needs none.` };
    }
  }
  return cached.addon;
}

/** Why loadNative() returned undefined. */
export function nativeLoadError(): string | undefined {
  loadNative();
  return cached?.error;
}

/**
 * A native engine over `memory`: the C++ real-mode routines on the same bytes.
 * Throws, saying why and how to rebuild, when the addon is unavailable.
 */
export function createNativeEngine(memory: WebAssembly.Memory): NativeEngine {
  const addon = loadNative();
  if (!addon) throw new Error(`spapr-tce: engine: 'native' is unavailable: ${nativeLoadError()}`);
  if (typeof addon.createEngine !== 'function') {
    throw new Error("spapr-tce: engine: 'native' is unavailable: this build of the addon has no C++ engine; rebuild it with `" + nativeRebuildCommand() + "`");
  }
  // Node-API on Node 20 has no SharedArrayBuffer type: the addon takes a view, whose bytes are the memory's own.
  const routines = addon.createEngine(new Uint8Array(memory.buffer));
  if (missingRoutines(routines, false).length > 0) {
    throw new Error("spapr-tce: engine: 'native' is unavailable: this build of the addon predates the hypercall port; rebuild it with `" + nativeRebuildCommand() + "`");
  }
  return routines;
}
