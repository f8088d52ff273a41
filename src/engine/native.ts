// Loads the native addon built by node-gyp during `npm install`. When it is
// missing, says why (dist/native-build.json) and how to rebuild.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import type { Engine } from './engine.js';

/** The addon's host memory services. */
export interface NativeAddon {
  getMemlockLimit(): { soft: bigint | null; hard: bigint | null };
  getPageSize(): number;
  lockedBytes(): number;
  mlockRange(bytes: Uint8Array): number;
  munlockRange(bytes: Uint8Array): number;
  layoutVersion: number;
}

let cached: { addon?: NativeAddon; error?: string } | undefined;

/** The addon, or undefined with `nativeLoadError()` saying why. */
export function loadNative(): NativeAddon | undefined {
  if (!cached) {
    const require = createRequire(import.meta.url);
    try {
      cached = { addon: require('../../build/Release/spapr_tce_native.node') as NativeAddon };
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
  if (typeof (addon as unknown as { createEngine?: unknown }).createEngine !== 'function') {
    throw new Error("spapr-tce: engine: 'native' is unavailable: this build of the addon has no C++ engine yet");
  }
  return (addon as unknown as { createEngine(view: Uint8Array): Engine }).createEngine(new Uint8Array(memory.buffer));
}
