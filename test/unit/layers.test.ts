// The layers of src/ (.dependency-cruiser.cjs): no import from a lower layer
// to a higher one, type-only imports included, and no cycle of runtime
// imports, and every module in a layer. The second test proves the rules
// can fail, on a scratch tree with one violation of each kind.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { cruise, type ICruiseResult, type IForbiddenRuleType, type ICruiseOptions } from 'dependency-cruiser';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

const root = resolve(__dirname, '../..');
const config = createRequire(import.meta.url)(join(root, '.dependency-cruiser.cjs')) as { forbidden: IForbiddenRuleType[]; options: ICruiseOptions };

/** Cruises `baseDir`/src with the repository's rules. */
async function cruiseSrc(baseDir: string): Promise<ICruiseResult> {
  const tsConfig = join(baseDir, 'tsconfig.json');
  const r = await cruise(
    ['src'],
    { ...config.options, baseDir, validate: true, ruleSet: { forbidden: config.forbidden }, tsConfig: { fileName: tsConfig } },
    undefined,
    { tsConfig: extractTSConfig(tsConfig) },
  );
  return r.output as ICruiseResult;
}

const violations = (r: ICruiseResult): string[] => r.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`).sort();

describe('layers of src/', () => {
  it('no upward import, no runtime cycle, every import resolved', async () => {
    const r = await cruiseSrc(root);
    expect(violations(r)).toEqual([]);
    // The graph is the real one: every layer's folder is there, and imports were resolved across layers.
    const sources = r.modules.map((m) => m.source);
    for (const dir of ['core', 'engine', 'generated', 'kernel', 'vfio', 'kvm', 'vmm', 'snapshot', 'host']) {
      expect(sources.some((s) => s.startsWith(`src/${dir}/`))).toBe(true);
    }
    const host = r.modules.find((m) => m.source === 'src/host/host.ts')!;
    expect(host.dependencies.map((d) => d.resolved)).toEqual(expect.arrayContaining(['src/kernel/table.ts', 'src/core/context.ts', 'src/snapshot/save.ts']));
  }, 60_000);

  it('the rules catch an upward import (runtime or type-only), a runtime cycle, an unresolved import and a module outside every layer, and let a type-only cycle pass', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spapr-layers-'));
    try {
      const files: Record<string, string> = {
        'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true }, include: ['src/**/*.ts'] }),
        'src/vfio/b.ts': 'export const b = 1;\n',
        'src/kernel/a.ts': "import { b } from '../vfio/b.js';\nexport const a = b;\n",
        'src/host/h.ts': 'export interface H { x: number }\n',
        'src/core/g.ts': "import type { H } from '../host/h.js';\nexport const g = (h: H): number => h.x;\n",
        'src/vmm/c.ts': "import { d } from './d.js';\nexport const c = (): number => d() + 1;\n",
        'src/vmm/d.ts': "import { c } from './c.js';\nexport const d = (): number => (c ? 1 : 0);\n",
        'src/kvm/e.ts': "import type { F } from './f.js';\nexport interface E { f?: F }\nexport const e = 1;\n",
        'src/kvm/f.ts': "import { e } from './e.js';\nexport interface F { n: number }\nexport const f = e;\n",
        'src/vfio/u.ts': "import { nothing } from './nowhere.js';\nexport const u = nothing;\n",
        'src/misc/m.ts': "import { e } from '../kvm/e.js';\nexport const m = e;\n",
        'src/vmm/w.ts': "import { m } from '../misc/m.js';\nexport const w = m;\n",
      };
      for (const [f, text] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, f)), { recursive: true });
        writeFileSync(join(dir, f), text);
      }
      expect(violations(await cruiseSrc(dir))).toEqual([
        'in-a-layer: src/misc/m.ts -> src/kvm/e.ts',
        'into-a-layer: src/vmm/w.ts -> src/misc/m.ts',
        'no-runtime-cycle: src/vmm/c.ts -> src/vmm/d.ts',
        'not-unresolvable: src/vfio/u.ts -> ./nowhere.js',
        'not-up-from-core: src/core/g.ts -> src/host/h.ts',
        'not-up-from-kernel: src/kernel/a.ts -> src/vfio/b.ts',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
