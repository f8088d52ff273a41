// Loads the native addon built by node-gyp during `npm install`. When it is
// missing, says why (dist/native-build.json) and how to rebuild.
//
// SPAPR_TCE_NATIVE_ADDON=/path/to/spapr_tce_native.node loads another build
// of the addon instead (the AddressSanitizer build of `npm run test:asan`).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import type { Engine } from './engine.js';

/** The routines the C++ engine implements (src/native/engine.h): all of Engine except the hypercall layer. */
export type NativeEngineRoutines = Omit<Engine, 'hcall' | 'sttFreePages'>;

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
export function createNativeEngine(memory: WebAssembly.Memory): Engine {
  const addon = loadNative();
  if (!addon) throw new Error(`spapr-tce: engine: 'native' is unavailable: ${nativeLoadError()}`);
  if (typeof addon.createEngine !== 'function') {
    throw new Error("spapr-tce: engine: 'native' is unavailable: this build of the addon has no C++ engine; rebuild it with `npm rebuild`");
  }
  // Node-API on Node 20 has no SharedArrayBuffer type: the addon takes a view, whose bytes are the memory's own.
  const routines = addon.createEngine(new Uint8Array(memory.buffer));
  // The hypercall layer (assembly/hcall.ts, assembly/guest.ts) has no C++ port yet: say so rather than fail with "not a function".
  const missing = (name: string) => (): never => {
    throw new Error(`spapr-tce: the native engine does not implement ${name} yet; use engine: 'wasm' for hypercalls`);
  };
  return { ...routines, kind: 'native', hcall: missing('hcall'), sttFreePages: missing('sttFreePages') };
}
