// No source file under src/ is over MAX_LINES lines (issue 11, "a house you
// can change": one concern per file, each small enough to read whole). Every
// .ts, .mjs, .cc and .h counts, the C++ engine's area files included; the
// generated/ folders do not (scripts/gen-layout.mjs writes them, nobody edits
// them by hand). The second test shows the check can fail, on a scratch tree.
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const MAX_LINES = 400;
const SOURCE = /\.(ts|mjs|cc|h)$/;
const root = resolve(__dirname, '../..');

/** Lines of a file as `wc -l` counts them (a last line without its newline counts too). */
function lineCount(text: string): number {
  const newlines = text.split('\n').length - 1;
  return text.length > 0 && !text.endsWith('\n') ? newlines + 1 : newlines;
}

/** "path: N lines" for every source file under `dir` (its generated/ folders skipped) longer than `max`, sorted. */
function offenders(base: string, dir: string, max: number): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'generated') walk(p);
      } else if (SOURCE.test(e.name)) {
        const n = lineCount(readFileSync(p, 'utf8'));
        if (n > max) out.push(`${relative(base, p)}: ${n} lines`);
      }
    }
  };
  walk(dir);
  return out.sort();
}

describe('file sizes in src/', () => {
  it(`no source file is over ${MAX_LINES} lines`, () => {
    expect(offenders(root, join(root, 'src'), MAX_LINES)).toEqual([]);
  });

  it('the check names a file one line over, and skips generated/ and other extensions', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spapr-file-size-'));
    try {
      const lines = (n: number): string => 'x\n'.repeat(n);
      mkdirSync(join(dir, 'src/native/generated'), { recursive: true });
      mkdirSync(join(dir, 'src/vmm'), { recursive: true });
      writeFileSync(join(dir, 'src/vmm/at-limit.ts'), lines(MAX_LINES));
      writeFileSync(join(dir, 'src/vmm/over.ts'), lines(MAX_LINES + 1));
      writeFileSync(join(dir, 'src/native/over.cc'), lines(MAX_LINES) + 'no newline at the end');
      writeFileSync(join(dir, 'src/native/over.h'), lines(MAX_LINES + 7));
      writeFileSync(join(dir, 'src/native/generated/layout.h'), lines(5 * MAX_LINES));
      writeFileSync(join(dir, 'src/notes.md'), lines(5 * MAX_LINES));
      expect(offenders(dir, join(dir, 'src'), MAX_LINES)).toEqual([
        `src/native/over.cc: ${MAX_LINES + 1} lines`,
        `src/native/over.h: ${MAX_LINES + 7} lines`,
        `src/vmm/over.ts: ${MAX_LINES + 1} lines`,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
