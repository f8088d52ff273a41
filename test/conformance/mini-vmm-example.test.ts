// Spec: docs/semantics.md §8.3 (DMA), §8.5 (host VFIO sync, vm.attachContainer), §8.6 (snapshot); issues 7 item 5, 13 item 1.
// Runs examples/mini-vmm/main.mjs as a child process against a fresh build of src/
// (the mechanism of forked-child-example.test.ts) and checks the transcript's key facts.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, scratchBuild } from './example-build.js';

interface VmmReadmeModule {
  outputIn(text: string): string;
}
const vmmReadme = (): Promise<VmmReadmeModule> => import('../../scripts/gen-vmm-readme.mjs' as string) as Promise<VmmReadmeModule>;

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

  it('the library\'s sync sets up the container as QEMU does: prereg, default window removed, window at the guest bus offset', () => {
    const setup = run.stdout.slice(run.stdout.indexOf('== setup on host A'), run.stdout.indexOf('== guest: probe'));
    expect(setup).toMatch(/vfio: REGISTER_MEMORY\(va 0x[0-9a-f]+, 4 MiB\) ok\n.*vfio: TCE_REMOVE\(0x0\) ok \(the kernel's default window\)\n.*vfio: TCE_CREATE\(256 MiB, 2\^12 pages, 1 level\) ok -> start 0x0\n/);
    expect(setup).toMatch(/vfio: in sync: host window 0x0\+256 MiB of 2\^12 pages/);
  });

  it('serves every good request with the right data, mapping with H_PUT_TCE_INDIRECT and unmapping with H_STUFF_TCE, coalesced', () => {
    for (const n of [1, 2, 3, 4, 5]) {
      const s = request(n);
      expect(s).toMatch(/guest: TCE list at gpa 0x20000 \(big-endian\)/);
      expect(s).toMatch(/hcall H_PUT_TCE_INDIRECT\(0x71000002, [^)]*\)\n(?:.*event map .*\n)+(?:.*vfio: MAP_DMA\(.*\) ok .*\n)+\s+-> H_SUCCESS/);
      expect(s).toMatch(/hcall H_SEND_CRQ\([^)]*\)\n(?:.*device: DMA .*\n)+\s+-> H_SUCCESS/);
      // every request's buffers sit at consecutive IOVAs: the H_STUFF_TCE is one UNMAP_DMA
      expect(s).toMatch(/hcall H_STUFF_TCE\(0x71000002, 0x[0-9a-f]+, 0x0, 0x([23])\)\n(?:.*event unmap .*\n)+.*vfio: UNMAP_DMA\(.*\) ok  \(\1 TCEs\)\n\s+-> H_SUCCESS/);
      expect(s).toMatch(new RegExp(`ok   request ${n}: served, \\d+ B (written to disk|read back), data correct`));
    }
    // writes map the data read-only for the device (DMA_TO_DEVICE), reads read-write
    expect(request(1)).toMatch(/MAP_DMA\(iova 0x1000, 4 KiB, va 0x[0-9a-f]+, R\) ok/);
    expect(request(2)).toMatch(/MAP_DMA\(iova 0x3000, 4 KiB, va 0x[0-9a-f]+, RW\) ok/);
    // contiguous guest pages are one MAP_DMA; scattered ones one each
    expect(request(3).match(/vfio: MAP_DMA/g)).toHaveLength(1);
    expect(request(3)).toMatch(/MAP_DMA\(iova 0x5000, 12 KiB, va 0x[0-9a-f]+, RW\) ok  \(3 TCEs\)/);
    expect(request(4).match(/vfio: MAP_DMA/g)).toHaveLength(3);
    expect(request(5).match(/vfio: MAP_DMA/g)).toHaveLength(2);
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
    // re-attaching on host B adopts the container's window, empties it and replays the guest's one mapping
    expect(out).toMatch(/vfio: UNMAP_DMA\(iova 0x0, 256 MiB\) ok\n.*vfio: MAP_DMA\(iova 0x0, 4 KiB, va 0x[0-9a-f]+, RW\) ok  \(1 TCE\)\n.*vfio: re-attached: host window 0x0 adopted/);
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

  it('shows the sync\'s stats on both hosts, and detach() undoing what it made', () => {
    const a = run.stdout.match(/vfio sync on host A: mapDma (\d+), unmapDma (\d+), registerMemory 1, unregisterMemory 0, createWindow 1, removeWindow 1, linkGroup 0, unlinkGroup 0, errors 0/);
    const b = run.stdout.match(/vfio sync on host B: mapDma (\d+), unmapDma (\d+), registerMemory 0, unregisterMemory 0, createWindow 0, removeWindow 0, linkGroup 0, unlinkGroup 0, errors 0/);
    expect(a).not.toBeNull();
    expect(b).not.toBeNull();
    // host A: the probe's map, then requests 1-3 (2 + 2 + 1 MAP_DMA, one UNMAP_DMA each)
    expect([Number(a![1]), Number(a![2])]).toEqual([6, 3]);
    // host B: the replay (1 MAP, after 1 UNMAP of the adopted window), then requests 4-5 (3 + 2 MAP_DMA, one UNMAP_DMA each)
    expect([Number(b![1]), Number(b![2])]).toEqual([6, 3]);
    expect(run.stdout).toMatch(/ok   detach\(\) undid what the sync made: no window, no region, nothing locked/);
    expect(run.stdout).toMatch(/container: 0 windows, 0 regions; locked_vm 0 pages/);
  });

  it('the README\'s transcript is what the example prints now (regenerate it with `npm run docs:vmm`)', async () => {
    const text = readFileSync(join(root, 'README.md'), 'utf8');
    expect((await vmmReadme()).outputIn(text), 'README.md is stale: run `npm run docs:vmm`').toBe(run.stdout);
  });
});
