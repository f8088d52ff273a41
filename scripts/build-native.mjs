#!/usr/bin/env node
// Builds the native addon from source with node-gyp during `npm install`.
// Passes --nodedir when Node's own headers sit next to the running binary,
// so node-gyp never tries to download them. A failed build does not fail the
// install (the WebAssembly engine works without the addon): the reason is
// kept in dist/native-build.json, and engine: 'native' reports it. With
// --strict (npm run build) a failure is an error.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const require = createRequire(import.meta.url);

const gen = spawnSync(process.execPath, [join(root, 'scripts/gen-layout.mjs')], { stdio: 'inherit' });
if (gen.status !== 0) process.exit(gen.status ?? 1);

const args = ['rebuild'];
const prefix = dirname(dirname(process.execPath));
if (existsSync(join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);

let gypBin;
try {
  gypBin = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  // npm ships its own node-gyp; npm_config_node_gyp points at it during installs.
  gypBin = process.env.npm_config_node_gyp;
}
const record = (ok, detail) => {
  mkdirSync(join(root, 'dist'), { recursive: true });
  writeFileSync(join(root, 'dist/native-build.json'), JSON.stringify({ ok, detail, date: new Date().toISOString() }, null, 2) + '\n');
};
if (!gypBin) {
  record(false, 'node-gyp was not found (neither in node_modules nor from npm)');
  console.warn('spapr-tce: node-gyp not found; the native engine is unavailable (engine: "wasm" still works).');
  process.exit(strict ? 1 : 0);
}
const res = spawnSync(process.execPath, [gypBin, ...args], { cwd: root, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
if (res.stderr) process.stderr.write(res.stderr);
if (res.status === 0) {
  record(true, `node-gyp ${args.join(' ')}`);
} else {
  const tail = (res.stderr || '').trim().split('\n').slice(-15).join('\n');
  record(false, `node-gyp ${args.join(' ')} exited with ${res.status}:\n${tail}`);
  console.warn('spapr-tce: the native addon did not build; engine: "wasm" still works. Fix the toolchain and run `npm rebuild`.');
  process.exit(strict ? 1 : 0);
}
