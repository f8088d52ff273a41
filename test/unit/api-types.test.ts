// The public API's types, as a strict consumer (strict, module nodenext) sees
// them: test/types/consumer.ts pins every string result to its literal union
// and lists calls the types must refuse (@ts-expect-error). tsc must accept
// the file as it is, and, with the directives removed, report an error on
// exactly each line that had one (so no directive is there for nothing).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const dir = join(root, 'test/types');

/** tsc --noEmit on a project; its diagnostics as "file(line,col): error …" lines ([] when it compiles). */
function compile(project: string): string[] {
  try {
    execFileSync(process.execPath, [tsc, '-p', project, '--pretty', 'false'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    return [];
  } catch (e) {
    const out = String((e as { stdout?: string }).stdout ?? '');
    const lines = out.split('\n').filter((l) => / error TS\d+/.test(l));
    if (lines.length === 0) throw e;
    return lines;
  }
}

describe('the types a strict consumer compiles against', () => {
  it('the consumer compiles: string results are their literal unions, numbers and bigints go where the API says', () => {
    expect(compile(join(dir, 'tsconfig.json'))).toEqual([]);
  }, 120_000);

  it('every @ts-expect-error line is an error without its directive', () => {
    const src = readFileSync(join(dir, 'consumer.ts'), 'utf8').split('\n');
    // the line after each directive is the one that must not compile
    const expected = src.flatMap((l, i) => (/^\s*\/\/ @ts-expect-error/.test(l) ? [i + 2] : []));
    expect(expected.length).toBeGreaterThanOrEqual(8);
    const tmp = mkdtempSync(join(tmpdir(), 'spapr-tce-types-'));
    try {
      // the directives become blank comments, so the line numbers stay the same
      writeFileSync(join(tmp, 'consumer.ts'), src.map((l) => l.replace('// @ts-expect-error', '//')).join('\n').replaceAll("'../../src/index.js'", JSON.stringify(relative(tmp, join(root, 'src/index.js')))));
      const cfg = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8')) as { compilerOptions: Record<string, unknown> };
      writeFileSync(join(tmp, 'tsconfig.json'), JSON.stringify({ ...cfg, compilerOptions: { ...cfg.compilerOptions, typeRoots: [join(root, 'node_modules/@types')] } }));
      const errors = compile(join(tmp, 'tsconfig.json'));
      const lines = [...new Set(errors.filter((e) => e.includes('consumer.ts(')).map((e) => Number(/consumer\.ts\((\d+),/.exec(e)![1])))].sort((a, b) => a - b);
      expect(errors.filter((e) => !e.includes('consumer.ts(')), 'errors outside the consumer').toEqual([]);
      expect(lines).toEqual(expected);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
