#!/usr/bin/env node
// The native addon, at install and pack time.
//
// `node scripts/build-native.mjs` (the package's `install` script):
// - in a checkout (`npm install` / `npm ci` in the repository) it always builds
//   the addon from source with node-gyp;
// - installed as a dependency it first tries the prebuilt addon of prebuilds/
//   (made by `npm pack`, see --prebuild) and builds from source only when no
//   prebuild loads on this machine, or when asked (`npm install
//   --build-from-source`).
// When neither gives an addon the install still succeeds (engine: 'wasm'
// needs none) and prints one line saying why and what to run; the reason is
// kept in dist/native-build.json, which engine: 'native' reports.
// With --strict (npm run build) a failed build is an error.
//
// `node scripts/build-native.mjs --prebuild` (`prepack`): builds the N-API
// prebuild of this platform with prebuildify into prebuilds/<platform>-<arch>/
// (stripped, tagged with the libc), then puts the same addon back into
// build/Release, so a checkout keeps working as before the pack.
//
// node-gyp is given --nodedir when Node's own headers sit next to the running
// binary, so it never tries to download them.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const require = createRequire(import.meta.url);
const installed = root.split(sep).includes('node_modules');
const platform = `${process.platform}-${process.arch}`;

const prefix = dirname(dirname(process.execPath));
const nodedir = existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : undefined;

const record = (ok, detail) => {
  mkdirSync(join(root, 'dist'), { recursive: true });
  writeFileSync(join(root, 'dist/native-build.json'), JSON.stringify({ ok, detail, date: new Date().toISOString() }, null, 2) + '\n');
};

/**
 * The one line an install prints when the native engine is unavailable. npm
 * shows a dependency's install output only when the script fails, so during
 * `npm install` the line also goes to the terminal itself when there is one.
 */
function unavailable(why) {
  const fix = installed ? 'npm rebuild spapr-tce' : 'npm run build';
  const line = `spapr-tce: the native engine is unavailable (${why}); engine: 'wasm' works. To build it, install python3, make and a C++ compiler, then run \`${fix}\`.\n`;
  process.stderr.write(line);
  if (installed && process.env.npm_lifecycle_event === 'install' && !process.stderr.isTTY) {
    try {
      const tty = openSync('/dev/tty', 'w');
      writeSync(tty, line);
      closeSync(tty);
    } catch {
      // No terminal (CI, a pipe): stderr, kept in npm's log, is all there is.
    }
  }
}

/** node-gyp: the project's own, else the one npm ships (npm_config_node_gyp points at it during scripts). */
function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return process.env.npm_config_node_gyp;
  }
}

/** The layout header the C++ includes: generated from src/layout/layout.def.mjs. */
function genLayout() {
  const gen = spawnSync(process.execPath, [join(root, 'scripts/gen-layout.mjs')], { stdio: 'inherit' });
  if (gen.status !== 0) process.exit(gen.status ?? 1);
}

/** A prebuilt addon for this machine that loads and has the engine: its path, or why not. */
function loadablePrebuild() {
  let loader;
  try {
    loader = require.resolve('node-gyp-build');
  } catch {
    return { why: 'node-gyp-build is not installed' };
  }
  // In a child process: a prebuild that does not load (another libc, a missing symbol) must not take this script down.
  const probe = `try { const p = require(${JSON.stringify(loader)}).path(${JSON.stringify(root)}); const a = require(p); if (typeof a.createEngine !== 'function') throw new Error(p + ' has no engine'); process.stdout.write(p); } catch (e) { process.stderr.write(String(e.message).split('\\n')[0]); process.exit(1); }`;
  const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
  if (r.status === 0) return { path: r.stdout };
  // node-gyp-build says which platform, architecture, ABI and libc it looked for.
  const msg = r.stderr.trim() || `exit ${r.status}`;
  return { why: /^No native build was found for /.test(msg) ? `no prebuilt addon for ${msg.replace(/^No native build was found for /, '')}` : `the prebuilt addon does not load (${msg})` };
}

function buildFromSource() {
  genLayout();
  const gyp = nodeGyp();
  if (!gyp) return { why: 'node-gyp was not found (neither in node_modules nor from npm)' };
  const args = ['rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  // Installed, the build log stays out of the way (its tail goes into the record); in a checkout it is shown.
  const res = spawnSync(process.execPath, [gyp, ...args], { cwd: root, stdio: ['ignore', installed ? 'pipe' : 'inherit', 'pipe'], encoding: 'utf8' });
  if (res.stderr && !installed) process.stderr.write(res.stderr);
  if (res.status === 0) return { detail: `built from source: node-gyp ${args.join(' ')}` };
  const lines = `${res.stdout ?? ''}\n${res.stderr ?? ''}`.trim().split('\n');
  // The reason is the compiler's first error, else the error node-gyp threw (no python, no make), else make's; the tail has the context.
  const first =
    lines.find((l) => /\berror\b/i.test(l) && !/^(gyp|make)/.test(l)) ??
    lines.find((l) => /^gyp ERR! stack Error: /.test(l)) ??
    lines.find((l) => /^make: \*\*\*/.test(l)) ??
    `node-gyp exited with ${res.status}`;
  const reason = first.replace(/^gyp ERR! stack Error: /, '').trim();
  return { why: `the build from source failed: ${reason.length > 160 ? `${reason.slice(0, 157)}...` : reason}`, tail: lines.slice(-15).join('\n') };
}

function prebuild() {
  genLayout();
  const bin = join(root, 'node_modules/prebuildify/bin.js');
  if (!existsSync(bin)) {
    console.error('spapr-tce: prebuildify is not installed (a devDependency): run `npm install` first');
    process.exit(1);
  }
  const env = { ...process.env, ...(nodedir ? { npm_config_nodedir: nodedir } : {}) };
  const res = spawnSync(process.execPath, [bin, '--napi', '--strip', '--tag-libc'], { cwd: root, stdio: 'inherit', env });
  if (res.status !== 0) {
    console.error(`spapr-tce: prebuildify exited with ${res.status}: the package would ship without a prebuilt addon`);
    process.exit(1);
  }
  const dir = join(root, 'prebuilds', platform);
  const made = readdirSync(dir).filter((f) => f.endsWith('.node'));
  if (made.length !== 1) {
    console.error(`spapr-tce: expected one prebuilt addon in ${dir}, found ${made.length}`);
    process.exit(1);
  }
  // prebuildify moved the build out of build/Release: put it back, the checkout's tests and benchmarks load it from there.
  mkdirSync(join(root, 'build/Release'), { recursive: true });
  copyFileSync(join(dir, made[0]), join(root, 'build/Release/spapr_tce_native.node'));
  console.log(`spapr-tce: prebuilt addon ${join('prebuilds', platform, made[0])}`);
}

if (process.argv.includes('--prebuild')) {
  prebuild();
} else {
  const fromSource = !installed || strict || process.env.npm_config_build_from_source === 'true' || process.argv.includes('--build-from-source');
  let why;
  if (!fromSource) {
    const pre = loadablePrebuild();
    if (pre.path) {
      record(true, `prebuilt: ${pre.path}`);
      process.exit(0);
    }
    why = pre.why;
  }
  const built = buildFromSource();
  if (built.detail) {
    record(true, built.detail);
  } else {
    const reason = why ? `${why}; ${built.why}` : built.why;
    record(false, built.tail ? `${reason}\n${built.tail}` : reason);
    unavailable(reason);
    process.exit(strict ? 1 : 0);
  }
}
