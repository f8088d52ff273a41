// The engine: the real-mode routines, over the shared linear memory. The
// WebAssembly build (assembly/) and the native addon (src/native/) implement
// the same functions with the same meaning; the TypeScript layer above
// calls only this interface. Pointers are u32 offsets, u64 values bigints,
// failures negative errnos (as in the kernel). The routines are declared
// once, in src/layout/engine.def.mjs; src/generated/engine.ts is generated from it.
import type { EngineRoutines } from '../generated/engine.js';

/** The routines every engine provides (see src/layout/engine.def.mjs for each one's contract). */
export interface Engine extends EngineRoutines {
  readonly kind: 'wasm' | 'native';
}
