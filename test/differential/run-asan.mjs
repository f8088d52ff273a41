#!/usr/bin/env node
// `npm run test:asan`: builds the native addon with AddressSanitizer into its
// own directory (dist/asan/, next to nothing node-gyp rebuilds, so the normal
// build/ and whoever is testing with it are left alone) and runs the
// differential tests against that build, with libasan preloaded into Node.
// Not part of CI: it needs g++'s libasan and takes a few minutes.
//
//   npm run test:asan                      # build + every test in test/differential/
//   npm run test:asan -- --no-build        # reuse dist/asan/build
//   DIFF_STEPS=2000 npm run test:asan      # longer random sequences
//
// How it works: dist/asan/binding.gyp is binding.gyp with its paths made
// relative to dist/asan/ and -fsanitize=address added; node-gyp builds it
// there (with --nodedir, as scripts/build-native.mjs does: no header
// download); SPAPR_TCE_NATIVE_ADDON points src/engine/native.ts at the
// result. Node itself is not instrumented, so the runtime must be preloaded
// (LD_PRELOAD) and leak detection is off (Node does not free everything at
// exit); every heap, stack and global error in the addon is still reported,
// and ASAN_OPTIONS makes the first one abort the test process.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = join(root, 'dist/asan');
const addon = join(dir, 'build/Release/spapr_tce_native.node');
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const noBuild = args.includes('--no-build');
const vitestArgs = args.filter((a) => a !== '--no-build');

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const libasan = spawnSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout?.trim();
if (!libasan || !existsSync(libasan)) {
  console.error(`test:asan: libasan.so not found (g++ -print-file-name=libasan.so gave ${JSON.stringify(libasan)}); install g++'s libasan`);
  process.exit(1);
}

if (!noBuild) {
  if (run(process.execPath, [join(root, 'scripts/gen-layout.mjs')]) !== 0) process.exit(1);
  const gyp = JSON.parse(readFileSync(join(root, 'binding.gyp'), 'utf8'));
  const up = (p) => (p.startsWith('<') || p.startsWith('/') ? p : `../../${p}`);
  const asanFlags = ['-fsanitize=address', '-fno-omit-frame-pointer', '-g'];
  for (const t of gyp.targets) {
    t.sources = t.sources.map(up);
    t.include_dirs = (t.include_dirs ?? []).map(up);
    t.cflags_cc = [...(t.cflags_cc ?? []).filter((f) => !/^-O/.test(f)), '-O1', ...asanFlags];
    t.cflags = [...(t.cflags ?? []), ...asanFlags];
    t.ldflags = [...(t.ldflags ?? []), '-fsanitize=address'];
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'binding.gyp'), JSON.stringify(gyp, null, 2) + '\n');
  const gypArgs = ['rebuild', `--directory=${dir}`];
  const prefix = dirname(dirname(process.execPath));
  if (existsSync(join(prefix, 'include/node/node_api.h'))) gypArgs.push(`--nodedir=${prefix}`);
  let gypBin;
  try {
    gypBin = require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    gypBin = process.env.npm_config_node_gyp;
  }
  if (!gypBin) {
    console.error('test:asan: node-gyp not found');
    process.exit(1);
  }
  if (run(process.execPath, [gypBin, ...gypArgs], { cwd: dir }) !== 0) process.exit(1);
}
if (!existsSync(addon)) {
  console.error(`test:asan: ${addon} is missing; run without --no-build`);
  process.exit(1);
}

const env = {
  ...process.env,
  LD_PRELOAD: [libasan, process.env.LD_PRELOAD].filter(Boolean).join(' '),
  ASAN_OPTIONS: ['detect_leaks=0', 'abort_on_error=1', 'halt_on_error=1', process.env.ASAN_OPTIONS].filter(Boolean).join(':'),
  SPAPR_TCE_NATIVE_ADDON: addon,
};
// Check that the instrumented addon is what loads, with the runtime in place.
const probe = spawnSync(process.execPath, ['-e', `
  require(process.env.SPAPR_TCE_NATIVE_ADDON);
  const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
  process.stdout.write(JSON.stringify({ asan: /libasan/.test(maps), addon: maps.includes(process.env.SPAPR_TCE_NATIVE_ADDON) }));
`], { env, encoding: 'utf8' });
let seen;
try {
  seen = JSON.parse(probe.stdout);
} catch {
  console.error(`test:asan: the instrumented addon does not load:\n${probe.stderr}`);
  process.exit(1);
}
if (!seen.asan || !seen.addon) {
  console.error(`test:asan: expected libasan and ${addon} in the process, found ${JSON.stringify(seen)}`);
  process.exit(1);
}
const nm = spawnSync('nm', ['-D', addon], { encoding: 'utf8' });
if (nm.status === 0 && !/__asan_/.test(nm.stdout)) {
  console.error(`test:asan: ${addon} has no __asan_ symbols: it was not built with -fsanitize=address`);
  process.exit(1);
}
console.log(`test:asan: ${addon} (instrumented), runtime ${libasan}`);

const vitest = join(root, 'node_modules/vitest/vitest.mjs');
// Not test/unit/native-host-memory.test.ts: ASan replaces mlock/munlock with
// no-ops (its shadow memory cannot be locked), so VmLck never moves under it.
const files = vitestArgs.length ? vitestArgs : ['test/differential/'];
process.exit(run(process.execPath, [vitest, 'run', ...files], { cwd: root, env }));
