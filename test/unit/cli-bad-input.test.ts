// The built command line (dist/cli.js) on bad input: a missing file, a
// folder, an empty file, text, a JSON file that is no trace, truncated gzip,
// wrong types, huge numbers, and a seeded set of structured mutations of the
// head of recorded trace B. Each run must end with exit 2 (input or usage
// error) and one line `spapr-tce replay: FILE[:LINE]: reason` on stderr naming
// the line at fault, 1 for a mismatch, 0 when the damage is in a field the
// replay does not read (unknown kinds and extra fields are tolerated), and
// never print a stack frame.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(root, 'dist/cli.js');
const traceB = join(root, 'traces/trace-b-pci-virtio-ddw.jsonl.gz');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [cli, ...args], { cwd: dir, env: { ...process.env, SPAPR_TCE_DEBUG: '', ...env }, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** At most `n` runs at once: the machine has two cores. */
async function pool<T, R>(items: T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

/** The one-line, stack-free stderr every refusal must have. */
function expectOneLine(r: Run, cmd = 'replay'): string {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  expect(lines).toHaveLength(1);
  expect(lines[0]!).toMatch(new RegExp(`^spapr-tce ${cmd}: \\S`));
  expect(lines[0]!.length).toBeLessThan(400);
  return lines[0]!;
}

let dir = '';
let head: string[] = [];
const write = (name: string, data: string | Buffer): string => {
  writeFileSync(join(dir, name), data);
  return name;
};

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'spapr-cli-'));
  // The head of trace B: both default windows, SLOF's H_PUT_TCEs with translations, the boot-time clears,
  // the DDW creation and its first H_PUT_TCE_INDIRECT: every event kind the replay reads, in 1,720 lines.
  head = gunzipSync(readFileSync(traceB)).toString('utf8').split('\n').slice(0, 1720);
  write('head.jsonl', head.join('\n') + '\n');
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('spapr-tce replay on bad input', () => {
  it('the untouched head of trace B replays with no mismatch (the baseline the mutations start from)', async () => {
    const r = await run(['replay', 'head.jsonl']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 mismatch\(es\)/);
  });

  it('--owner-check accepts every design, fork-close included, and refuses others in one line', async () => {
    for (const mode of ['none', 'pid', 'mm', 'fork-close']) {
      const ok = await run(['replay', 'head.jsonl', '--owner-check', mode, '--json']);
      expect(ok.stderr, mode).toBe('');
      expect(ok.code, mode).toBe(0);
      // The mode the replaying host ran, from the result rather than the option: each one, and mm by default.
      expect(JSON.parse(ok.stdout), mode).toMatchObject({ ownerCheck: mode, mismatches: [] });
    }
    const byDefault = await run(['replay', 'head.jsonl', '--json']);
    expect(JSON.parse(byDefault.stdout)).toMatchObject({ ownerCheck: 'mm', mismatches: [] });
    const bad = await run(['replay', 'head.jsonl', '--owner-check', 'bogus']);
    expect(bad.code).not.toBe(0);
    expect(expectOneLine(bad)).toMatch(/fork-close/);
  });

  it('files that are no trace: exit 2 and one line naming the file (and line 1 when it is the content)', async () => {
    const gz = gzipSync(Buffer.from(head.join('\n')));
    mkdirSync(join(dir, 'a-folder'), { recursive: true });
    const cases: [string, RegExp][] = [
      ['missing.jsonl', /^spapr-tce replay: missing\.jsonl: no such file$/],
      ['a-folder', /^spapr-tce replay: a-folder: is a directory/],
      [write('empty.jsonl', ''), /^spapr-tce replay: empty\.jsonl:1: empty file/],
      [write('blank.jsonl', '\n\n'), /^spapr-tce replay: blank\.jsonl:1: /],
      [write('text.txt', 'hello world\nsecond line\n'), /^spapr-tce replay: text\.txt:1: not JSON/],
      [write('pretty.json', JSON.stringify({ name: 'x', version: '1.0.0' }, null, 2)), /^spapr-tce replay: pretty\.json:1: not JSON/],
      [write('long.json', JSON.stringify({ name: 'x', data: 'y'.repeat(3000) })), /^spapr-tce replay: long\.json:1: not a trace/],
      [write('array.json', JSON.stringify(['y'.repeat(3000)])), /^spapr-tce replay: array\.json:1: expected a JSON object/],
      [write('truncated.jsonl.gz', gz.subarray(0, gz.length >> 1)), /^spapr-tce replay: truncated\.jsonl\.gz: the gzip data ends early/],
      [write('badgz.jsonl.gz', Buffer.concat([gz.subarray(0, 10), Buffer.alloc(64, 0xa5)])), /^spapr-tce replay: badgz\.jsonl\.gz: /],
      [write('binary.bin', Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) & 0xff))), /^spapr-tce replay: binary\.bin:1: /],
      [write('header-only-bad.jsonl', '{"type":"header","tables":"none"}\n'), /^spapr-tce replay: header-only-bad\.jsonl:1: tables: /],
      [write('header-table.jsonl', '{"type":"header","tables":[{"liobn":"0x80000000","bus_offset":"0x0","window_size":"0x40000000","page_shift":99,"nb_entries":1}]}\n'), /:1: tables\[0\]\.page_shift: 99 is outside/],
    ];
    const runs = await pool(cases, 4, ([file]) => run(['replay', file]));
    runs.forEach((r, i) => {
      expect(r.code, cases[i]![0]).toBe(2);
      expect(expectOneLine(r), cases[i]![0]).toMatch(cases[i]![1]);
    });
  }, 60_000);

  it('wrong types and huge numbers in a record: exit 2, the line and the field named', async () => {
    // Line 5 of trace B is SLOF's first H_PUT_TCE (pci_put), line 314 its first translation.
    const put = JSON.parse(head[4]!) as Record<string, unknown>;
    const xlate = JSON.parse(head[313]!) as Record<string, unknown>;
    expect([put.ev, xlate.ev]).toEqual(['pci_put', 'xlate']);
    const cases: [string, number, Record<string, unknown>, RegExp][] = [
      ['liobn-zz', 5, { ...put, liobn: 'zz' }, /:5: liobn: "zz" is not a hex number/],
      ['liobn-number', 5, { ...put, liobn: 2147483648 }, /:5: liobn: expected a hex string/],
      ['ioba-huge', 5, { ...put, ioba: '0x' + 'f'.repeat(20) }, /:5: ioba: .* does not fit in 64 bits/],
      ['tce-missing', 5, (({ tce: _, ...rest }) => rest)(put), /:5: tce: expected a hex string .* got nothing/],
      ['ret-string', 5, { ...put, ret: '0' }, /:5: ret: expected an integer/],
      ['ret-huge', 5, { ...put, ret: 1e300 }, /:5: ret: .* is outside/],
      ['perm-5', 314, { ...xlate, perm: 5 }, /:314: perm: 5 is outside \[0, 3\]/],
      ['page-shift-float', 314, { ...xlate, page_shift: 12.5 }, /:314: page_shift: expected an integer/],
      ['in-window-string', 314, { ...xlate, in_window: 'yes' }, /:314: in_window: expected true or false/],
      ['ev-number', 314, { ...xlate, ev: 7 }, /:314: ev: expected the event's name/],
    ];
    const files = cases.map(([name, line, rec]) => {
      const lines = [...head];
      lines[line - 1] = JSON.stringify(rec);
      return write(`${name}.jsonl`, lines.join('\n'));
    });
    const runs = await pool(files, 4, (f) => run(['replay', f]));
    runs.forEach((r, i) => {
      expect(r.code, cases[i]![0]).toBe(2);
      expect(expectOneLine(r), cases[i]![0]).toMatch(cases[i]![3]);
    });
  }, 60_000);

  it('a seeded set of structured mutations: each ends in 0, 1 or 2 as its kind says, with one line naming the mutated line', async () => {
    // Fields the replay reads, per event kind; damage anywhere else must be tolerated.
    const used: Record<string, string[]> = {
      pci_put: ['liobn', 'ioba', 'tce', 'ret'],
      pci_stuff: ['liobn', 'ioba', 'tce_value', 'npages', 'ret'],
      pci_indirect: ['liobn', 'ioba', 'tce_list', 'npages', 'tces', 'ret'],
      xlate: ['liobn', 'ioba', 'xlated', 'perm', 'page_shift'],
      new_table: ['liobn'],
    };
    // Values no field of its type accepts: for the hex fields (and the TCE list) and for the integer ones.
    const badHex: unknown[] = [null, true, 42, -1, 1e300, 'zz', '0x', '0x' + '1'.repeat(17), [], {}, 'x'.repeat(3000)];
    const badInt: unknown[] = [null, true, 1e300, 12.5, 'zz', '0x10', [], {}, 'x'.repeat(3000)];
    const ints = new Set(['ret', 'npages', 'perm', 'page_shift']);
    let seed = 0x5eed;
    const rand = (n: number): number => {
      // mulberry32: a small deterministic generator, so a failure is reproducible.
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const events = head.map((l, i) => ({ i, e: JSON.parse(l) as Record<string, unknown> })).filter(({ e }) => e.type === 'ev' && used[e.ev as string]);
    type Case = { name: string; line: number; text: string; expect: 0 | 2 };
    const cases: Case[] = [];
    for (let k = 0; k < 36; k++) {
      const { i, e } = events[rand(events.length)]!;
      const fields = used[e.ev as string]!;
      const kind = rand(5);
      let rec: Record<string, unknown> | string;
      let expectCode: 0 | 2 = 2;
      let insert = false;
      if (kind === 0) {
        const f = fields[rand(fields.length)]!;
        const pool = ints.has(f) ? badInt : badHex;
        rec = { ...e, [f]: pool[rand(pool.length)] };
      }
      else if (kind === 1) {
        const f = fields[rand(fields.length)]!;
        rec = Object.fromEntries(Object.entries(e).filter(([key]) => key !== f));
      } else if (kind === 2) {
        const text = JSON.stringify(e);
        rec = text.slice(0, 1 + rand(text.length - 2));
      } else if (kind === 3) {
        rec = { ...e, [`extra_${k}`]: badHex[rand(badHex.length)] };
        expectCode = 0;
      } else {
        // An event of a kind this replay does not know, inserted before the chosen one.
        rec = { type: 'ev', ev: `unknown_event_${k}`, t_us: e.t_us, liobn: badHex[rand(badHex.length)] };
        expectCode = 0;
        insert = true;
      }
      const lines = [...head];
      lines.splice(i, insert ? 0 : 1, typeof rec === 'string' ? rec : JSON.stringify(rec));
      cases.push({ name: `mut-${k}.jsonl`, line: i + 1, text: lines.join('\n'), expect: expectCode });
    }
    for (const c of cases) write(c.name, c.text);
    const runs = await pool(cases, 4, (c) => run(['replay', c.name]));
    const outcomes = { 0: 0, 2: 0 };
    runs.forEach((r, k) => {
      const c = cases[k]!;
      expect(r.stderr, c.name).not.toMatch(/^\s+at /m);
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(c.expect);
      if (c.expect === 2) expect(expectOneLine(r), c.name).toMatch(new RegExp(`^spapr-tce replay: ${c.name.replace('.', '\\.')}:${c.line}: `));
      else expect(r.stderr).toBe('');
      outcomes[c.expect]++;
    });
    // The seed gives both kinds of case.
    expect(outcomes[0]).toBeGreaterThan(3);
    expect(outcomes[2]).toBeGreaterThan(10);
  }, 120_000);

  it('a changed return code is a mismatch: exit 1, the line on stdout, nothing on stderr', async () => {
    const lines = [...head];
    const put = JSON.parse(lines[4]!) as Record<string, unknown>;
    lines[4] = JSON.stringify({ ...put, ret: -4 });
    const r = await run(['replay', write('mismatch.jsonl', lines.join('\n'))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/line 5: expected ret -4, got ret 0/);
  });
});

describe('spapr-tce usage errors, --help and --version', () => {
  it('usage errors exit 2 with one line; --help and --version exit 0', async () => {
    write('empty.jsonl', '');
    mkdirSync(join(dir, 'a-folder'), { recursive: true });
    const usage: [string[], string, RegExp][] = [
      [['replay'], 'replay', /missing required argument 'file'/],
      [['replay', 'head.jsonl', '--snapshot-every', '0'], 'replay', /--snapshot-every takes a positive whole number/],
      [['replay', 'head.jsonl', '--engine', 'gpu'], 'replay', /gpu/],
      [['replay', 'head.jsonl', '--frob'], 'replay', /unknown option '--frob'/],
      [['demo', 'nosuch'], 'demo', /nosuch/],
      [['bench', '--filter', '^NOTHING$'], 'bench', /--filter \^NOTHING\$ matches no benchmark/],
      [['bench', '--filter', '('], 'bench', /--filter/],
      [['bench', '--traces', 'missing-folder'], 'bench', /--traces missing-folder: no such folder/],
      // Refused before the run, not after minutes of it: a results folder under a file, a --json that is a folder.
      [['bench', '--quick', '--out', 'empty.jsonl/results'], 'bench', /^spapr-tce bench: --out empty\.jsonl\/results: \S*empty\.jsonl is not a folder$/],
      [['bench', '--quick', '--out', 'empty.jsonl'], 'bench', /^spapr-tce bench: --out empty\.jsonl: is not a folder$/],
      [['bench', '--quick', '--json', 'a-folder'], 'bench', /^spapr-tce bench: --json a-folder: is a folder, not a file$/],
      [['bench', '--quick', '--json', 'empty.jsonl/out.json'], 'bench', /--json .*empty\.jsonl is not a folder$/],
    ];
    const runs = await pool(usage, 4, ([args]) => run(args));
    runs.forEach((r, i) => {
      const [args, cmd, re] = usage[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(expectOneLine(r, cmd), args.join(' ')).toMatch(re);
    });
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;
    const ok = await pool([['--version'], ['--help'], ['replay', '--help'], ['bench', '--help'], ['demo', '--help']], 4, (a) => run(a));
    expect(ok.map((r) => r.code)).toEqual([0, 0, 0, 0, 0]);
    expect(ok[0]!.stdout.trim()).toBe(version);
    expect(ok[2]!.stdout).toMatch(/Usage: spapr-tce replay/);
    expect(ok[3]!.stdout).toMatch(/--out <dir>[\s\S]*--traces <dir>/);
    expect(ok[4]!.stdout).toMatch(/fork/);
  }, 60_000);

  it('--engine native without a loadable addon: exit 2, one line with the reason and the command that builds it', async () => {
    const r = await run(['replay', 'head.jsonl', '--engine', 'native'], { SPAPR_TCE_NATIVE_ADDON: join(dir, 'no-such-addon.node') });
    expect(r.code).toBe(2);
    // In a checkout the build is `npm run build`; installed, `npm rebuild spapr-tce` (.ci/run checks that one on the tarball).
    expect(expectOneLine(r)).toMatch(/engine: 'native' is unavailable: .*no-such-addon\.node.*Build it with `npm run build`/);
  });
});

describe('spapr-tce demo fork', () => {
  it('prints every line once per owner-check mode', async () => {
    const r = await run(['demo', 'fork']);
    expect(r.code).toBe(0);
    const sections = r.stdout.split(/^== ownerCheck: /m).slice(1);
    expect(sections).toHaveLength(3);
    for (const s of sections) {
      const lines = s.split('\n').filter((l) => l.trim());
      expect(new Set(lines).size).toBe(lines.length);
      // No fact told twice: the result of the parent's unregister and of the vm-clone's register appear once each.
      expect(lines.filter((l) => /unregister/i.test(l))).toHaveLength(1);
      expect(lines.filter((l) => /vm-clone/.test(l))).toHaveLength(1);
    }
  }, 60_000);
});
