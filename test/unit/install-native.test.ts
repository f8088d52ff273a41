// The install script (scripts/build-native.mjs) where the package is installed and
// neither a prebuild nor a build from source gives an addon: the install still
// succeeds (exit 0), prints one line saying why and what to run, and records the
// reason for engine: 'native' to report. Run in a scratch copy laid out as
// node_modules/spapr-tce, with no prebuilds/ and a node-gyp that fails as one
// without make does.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('scripts/build-native.mjs, installed, with nothing that works', () => {
  it('exits 0 with one line naming the reason and `npm rebuild spapr-tce`, and records it', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'spapr-install-'));
    try {
      const pkg = join(tmp, 'node_modules/spapr-tce');
      mkdirSync(pkg, { recursive: true });
      for (const p of ['package.json', 'scripts/build-native.mjs', 'scripts/gen-layout.mjs', 'scripts/gen-engine.mjs', 'src/layout', 'binding.gyp']) cpSync(join(root, p), join(pkg, p), { recursive: true });
      // The loader is there (a dependency), the prebuild is not.
      symlinkSync(join(root, 'node_modules/node-gyp-build'), join(tmp, 'node_modules/node-gyp-build'));
      const gyp = join(tmp, 'node-gyp.js');
      writeFileSync(gyp, "console.error('gyp info it worked if it ends with ok'); console.error('gyp ERR! stack Error: not found: make'); console.error('gyp ERR! not ok'); process.exit(1);\n");
      const r = spawnSync(process.execPath, [join(pkg, 'scripts/build-native.mjs')], { cwd: pkg, encoding: 'utf8', env: { ...process.env, npm_config_node_gyp: gyp, npm_config_build_from_source: '' } });
      expect(r.status).toBe(0);
      const lines = r.stderr.split('\n').filter((l) => l.length > 0);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^spapr-tce: the native engine is unavailable \(no prebuilt addon for platform=\S+ arch=\S+ .*; the build from source failed: not found: make\); engine: 'wasm' works\. .*`npm rebuild spapr-tce`\.$/);
      const rec = JSON.parse(readFileSync(join(pkg, 'dist/native-build.json'), 'utf8')) as { ok: boolean; detail: string };
      expect(rec.ok).toBe(false);
      expect(rec.detail.split('\n')[0]).toMatch(/^no prebuilt addon .*; the build from source failed: not found: make$/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 30_000);
});
