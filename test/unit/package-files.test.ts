// What the tarball holds (issue 14 item 6: no stale build files or unused files): `npm pack`'s own
// file list, taken without running the prepack build. Every script of bench/ it ships is reached
// from the CLI (dist/cli.js imports bench/run.mjs, which imports the rest); a maintainer's tool
// such as bench/readme.mjs, which rewrites the repository's README, stays out, as do the text
// form of the WebAssembly module and the native build's record.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function packed(): string[] {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
}

/** The relative .mjs/.js files `file` imports (static and dynamic `new URL('…', import.meta.url)`). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\(\s*)'(\.{1,2}\/[^']+\.m?js)'|new URL\('(\.{1,2}\/[^']+\.m?js)',\s*import\.meta\.url\)/g)].map((m) => m[1] ?? m[2]!);
  return specs.map((s) => normalize(join(dirname(file), s)));
}

describe('the tarball', () => {
  const files = packed();

  it('holds no build leftovers, no tests, no maintainer tools', () => {
    const bad = files.filter((f) => /\.wat$|native-build\.json$|\.tgz$|^(test|assembly|build|node_modules|dist\/asan)\//.test(f) || f === 'bench/readme.mjs');
    expect(bad).toEqual([]);
    for (const want of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/cli.js', 'dist/wasm/tce.wasm', 'docs/traces.md']) expect(files).toContain(want);
  });

  it('every bench script it ships is reached from dist/cli.js', () => {
    const reached = new Set<string>();
    const walk = (f: string): void => {
      if (reached.has(f) || !existsSync(join(ROOT, f))) return;
      reached.add(f);
      for (const g of importsOf(f)) walk(g);
    };
    walk('dist/cli.js');
    const unreached = files.filter((f) => f.startsWith('bench/') && !reached.has(f));
    expect(unreached).toEqual([]);
  });
});
