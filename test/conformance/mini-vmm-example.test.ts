// Spec: docs/semantics.md §8.3 (DMA), §8.5 (host VFIO sync), §8.6 (snapshot); issue 7 item 5.
// Runs examples/mini-vmm/main.mjs as a child process against a fresh build of src/
// (the mechanism of forked-child-example.test.ts) and checks the transcript's key facts.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { root, scratchBuild } from './example-build.js';

let cleanup = (): void => {};
let run: { status: number | null; stdout: string; stderr: string } = { status: null, stdout: '', stderr: '' };

beforeAll(() => {
  const build = scratchBuild('spapr-tce-mini-vmm-');
  cleanup = build.cleanup;
  const r = spawnSync(process.execPath, [join(root, 'examples/mini-vmm/main.mjs')], { cwd: root, env: build.env, encoding: 'utf8', timeout: 60_000 });
  run = { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}, 120_000);

afterAll(() => cleanup());

/** The transcript section of request n (up to the next `== ` heading). */
const request = (n: number): string => {
  const m = run.stdout.match(new RegExp(`^== request ${n}:[^]*?(?=^== )`, 'm'));
  if (!m) throw new Error(`no section for request ${n} in:\n${run.stdout}`);
  return m[0];
};

describe('examples/mini-vmm', () => {
  it('exits 0 with every check passed and nothing on stderr', () => {
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).not.toMatch(/^\s*FAIL /m);
    expect(run.stdout).toMatch(/^== result: all \d+ checks passed$/m);
  });

  it('sets up the container as QEMU does: prereg, default window removed, window at the guest bus offset', () => {
    expect(run.stdout).toMatch(/vfio: REGISTER_MEMORY\(va 0x[0-9a-f]+, 4 MiB\)/);
    expect(run.stdout).toMatch(/vfio: default window at 0x0 removed/);
    expect(run.stdout).toMatch(/vfio: TCE_CREATE 256 MiB, 2\^12 pages, 1 level\(s\) -> start 0x0 = guest bus offset/);
  });

  it('serves every good request with the right data, mapping with H_PUT_TCE_INDIRECT and unmapping with H_STUFF_TCE', () => {
    for (const n of [1, 2, 3, 4, 5]) {
      const s = request(n);
      expect(s).toMatch(/guest: TCE list at gpa 0x20000 \(big-endian\)/);
      expect(s).toMatch(/hcall H_PUT_TCE_INDIRECT\(0x71000002, [^)]*\)\n(?:.*event map .*=> MAP_DMA\(.*\) ok\n)+\s+-> H_SUCCESS/);
      expect(s).toMatch(/hcall H_SEND_CRQ\([^)]*\)\n(?:.*device: DMA .*\n)+\s+-> H_SUCCESS/);
      expect(s).toMatch(/hcall H_STUFF_TCE\(0x71000002, 0x[0-9a-f]+, 0x0, 0x[23]\)\n(?:.*event unmap .*=> UNMAP_DMA\(.*\) ok\n)+\s+-> H_SUCCESS/);
      expect(s).toMatch(new RegExp(`ok   request ${n}: served, \\d+ B (written to disk|read back), data correct`));
    }
    // writes map the data read-only for the device (DMA_TO_DEVICE), reads read-write
    expect(request(1)).toMatch(/MAP_DMA\(iova 0x1000, 4 KiB, va 0x[0-9a-f]+, R\) ok/);
    expect(request(2)).toMatch(/MAP_DMA\(iova 0x3000, 4 KiB, va 0x[0-9a-f]+, RW\) ok/);
  });

  it('shows exactly one DmaFault, for the unmapped IOVA, answered with H_DEST_PARM and nothing transferred', () => {
    expect(run.stdout.match(/DmaFault/g)).toHaveLength(1);
    const s = request(6);
    expect(s).not.toMatch(/H_PUT_TCE/);
    expect(s).toMatch(/device: DmaFault: write at IOVA 0x[0-9a-f]+ through LIOBN 0x71000002 \(no-permission\); nothing transferred/);
    expect(s).toMatch(/-> H_DEST_PARM/);
    expect(s).toMatch(/ok   request 6: the device refused the unmapped IOVA 0x[0-9a-f]+: H_DEST_PARM, status 0xee, guest buffer untouched/);
  });

  it('snapshots after request 3, and the restored host agrees, then finishes requests 4-6', () => {
    const out = run.stdout;
    expect(out).toMatch(/snapshot: \d+ bytes of JSON/);
    const a = out.match(/host A at the snapshot: digest ([0-9a-f]{16})/)![1];
    const b = out.match(/host B restored: +digest ([0-9a-f]{16})/)![1];
    expect(b).toBe(a);
    expect(out).toMatch(/ok   host A and host B agree at the snapshot point/);
    expect(out).toMatch(/ok   host B's own snapshot has host A's checksum/);
    expect(out).toMatch(/guest progress read from host B's guest RAM: 3 requests completed/);
    // requests 1-3 before the snapshot, 4-6 after the restore
    const snap = out.indexOf('== snapshot after request 3');
    const restore = out.indexOf('== restore into host B');
    expect(out.indexOf('== request 3:')).toBeLessThan(snap);
    expect(snap).toBeLessThan(restore);
    expect(restore).toBeLessThan(out.indexOf('== request 4:'));
    expect(out).toMatch(/ok   host B finished the run: 5 of 5 good requests completed, 1 fault/);
  });

  it('ends with the host window equal to the guest table', () => {
    const guest = run.stdout.match(/guest table \(vm\.replay\): +(.*)/)![1];
    const host = run.stdout.match(/host window \(container\): +(.*)/)![1];
    expect(guest).toBe(host);
    expect(guest).toMatch(/^0x0 va 0x[0-9a-f]+ RW$/);
    expect(run.stdout).toMatch(/ok   host and guest tables agree \(1 mapping\)/);
    expect(run.stdout).toMatch(/checkInvariants\(\): passed/);
  });
});
