// Shared by the example tests: compiles the current src/ into a scratch dist/ (the checkout's dist/ may be
// stale while src/ changes) and gives the environment that points an example at it (SPAPR_TCE_DIST).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The repository root. */
export const root = resolve(__dirname, '../..');

/** A scratch build of src/: `env` runs an example against it, `cleanup()` removes it. */
export function scratchBuild(prefix: string): { env: NodeJS.ProcessEnv; cleanup(): void } {
  const tmp = mkdtempSync(join(tmpdir(), prefix));
  const out = join(tmp, 'dist');
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json'), '--outDir', out, '--declaration', 'false', '--sourceMap', 'false'], { cwd: root, stdio: 'pipe' });
  } catch (e) {
    // type errors elsewhere in src/ still emit JavaScript; only a missing entry point is fatal
    if (!existsSync(join(out, 'index.js'))) throw e;
  }
  writeFileSync(join(tmp, 'package.json'), '{"type":"module"}\n');
  // the WASM engine loads ../../dist/wasm/tce.wasm relative to dist/engine/
  const wasm = join(root, 'dist/wasm');
  if (!existsSync(wasm)) throw new Error('dist/wasm is missing: run `npm run build:wasm`');
  symlinkSync(wasm, join(out, 'wasm'));
  return { env: { ...process.env, SPAPR_TCE_DIST: join(out, 'index.js') }, cleanup: () => rmSync(tmp, { recursive: true, force: true }) };
}
