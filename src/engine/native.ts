// Loads the native addon built by node-gyp during `npm install`. When it is
// missing, says why (dist/native-build.json) and how to rebuild.
//
// SPAPR_TCE_NATIVE_ADDON=/path/to/spapr_tce_native.node loads another build
// of the addon instead (the AddressSanitizer build of `npm run test:asan`).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
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
  /** The C++ engine over a Uint8Array view of the whole shared memory. */
  createEngine(view: Uint8Array): NativeEngineRoutines;
  layoutVersion: number;
}

let cached: { addon?: NativeAddon; error?: string } | undefined;

/** The addon, or undefined with `nativeLoadError()` saying why. */
export function loadNative(): NativeAddon | undefined {
  if (!cached) {
    const require = createRequire(import.meta.url);
    try {
      const path = process.env.SPAPR_TCE_NATIVE_ADDON || '../../build/Release/spapr_tce_native.node';
      cached = { addon: require(path) as NativeAddon };
    } catch (e) {
      let why = (e as Error).message;
      try {
        const rec = JSON.parse(readFileSync(new URL('../../dist/native-build.json', import.meta.url), 'utf8')) as { ok: boolean; detail: string };
        if (!rec.ok) why = `the build failed: ${rec.detail}`;
      } catch {
        // No build record: the addon was never built here.
      }
      cached = { error: `the native addon could not be loaded (${why}). Rebuild it with \`npm rebuild\` (needs python3, make and a C++ compiler).` };
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
    throw new Error("spapr-tce: engine: 'native' is unavailable: this build of the addon has no C++ engine; rebuild it with `npm rebuild`");
  }
  // Node-API on Node 20 has no SharedArrayBuffer type: the addon takes a view, whose bytes are the memory's own.
  const routines = addon.createEngine(new Uint8Array(memory.buffer));
  if (missingRoutines(routines, false).length > 0) {
    throw new Error("spapr-tce: engine: 'native' is unavailable: this build of the addon predates the hypercall port; rebuild it with `npm rebuild`");
  }
  return routines;
}
