// Under `node --disallow-code-generation-from-strings` (a hardened process
// that forbids eval and new Function), vcpu.hcall() cannot compile its
// per-engine function (src/kvm/vcpu.ts, hcallOf) and falls back to the
// prototype's chain: a whole recorded trace still replays with every return
// code and translation matching, on both engines.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeAvailable } from '../differential/support.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '../..');
const cli = join(root, 'dist/cli.js');
const ENGINES = nativeAvailable ? ['wasm', 'native'] : ['wasm'];

describe('without code generation from strings', () => {
  it('the flag does forbid new Function in a child process', () => {
    const r = spawnSync(process.execPath, ['--disallow-code-generation-from-strings', '-e', "new Function('')"], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/EvalError/);
  });

  for (const engine of ENGINES) {
    it(`${engine}: trace A replays with no mismatch through the fallback hcall()`, () => {
      const r = spawnSync(process.execPath, ['--disallow-code-generation-from-strings', cli, 'replay', 'trace-a-vio-vscsi-vlan', '--engine', engine, '--json'], { cwd: root, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout) as { hypercalls: number; mismatches: unknown[] | number };
      expect(out.hypercalls).toBe(8149);
      expect(Array.isArray(out.mismatches) ? out.mismatches.length : out.mismatches).toBe(0);
    }, 60_000);
  }
});
