// Every design the 2015 review of the userspace-view patch proposed or Linux
// chose, side by side (docs/semantics.md §5): no check (`none`), the owner's
// pid compared per hypercall or per view write (`pid`), handles closed on
// fork (`fork-close`), and the container bound to an mm (`mm`, Linux 4.10).
// Each is run against every way a task can come to hold the container's
// handle: a forked child (inherit), an unrelated process it was passed to
// (receive, SCM_RIGHTS), a clone({vm: true}) child and a thread of the
// owner (which share its descriptor table). The actor registers its own
// memory, maps a page from it, and unmaps the owner's page; every cell is
// what happened, and the last columns are what the design costs on the
// hypercall path, read from the newest full benchmark run.
//
// Run: `npx spapr-tce demo designs [--json] [--results FILE]`, or
// `node examples/designs.mjs [--json | --markdown] [--results FILE]`.
// SPAPR_TCE_DIST may point at another build's index.js (a path or file: URL).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const MiB = 1n << 20n;
const PAGE = 0x1000n;
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/** The rows: each design and the Host.create options that select it. */
export const DESIGNS = [
  { key: 'none', label: '`none` (the patch as posted)', host: { ownerCheck: 'none' }, noCost: 'nothing is checked' },
  { key: 'pid-call', label: '`pid`, per call', host: { ownerCheck: 'pid', pidCheck: 'call' } },
  { key: 'pid-entry', label: '`pid`, per view write (the review)', host: { ownerCheck: 'pid', pidCheck: 'entry' } },
  { key: 'fork-close', label: '`fork-close` (the review\'s other fix)', host: { ownerCheck: 'fork-close' }, noCost: 'decided at fork()' },
  { key: 'mm', label: '`mm` (Linux 4.10)', host: { ownerCheck: 'mm' }, noCost: 'checked at ioctl/link time' },
];

/** The columns: who holds the handle, and how it came to. */
export const HOLDERS = [
  { key: 'fork', label: 'forked child', who: 'child', how: 'inherit' },
  { key: 'passed', label: 'handle passed to an unrelated process', who: 'receiver', how: 'receive' },
  { key: 'vm-clone', label: '`clone({vm: true})` child', who: 'vm-clone', how: 'inherit' },
  { key: 'thread', label: 'thread of the owner', who: 'thread', how: 'inherit' },
];

/** The library: the build SPAPR_TCE_DIST names, else this checkout's or package's dist/. */
export async function loadLibrary() {
  const dist = process.env.SPAPR_TCE_DIST;
  const spec = dist ? (dist.startsWith('file:') ? dist : pathToFileURL(dist).href) : new URL('../dist/index.js', import.meta.url).href;
  return import(spec);
}

/** SHA-256 of the host's linear memory and counters: what "nothing changed" is checked against. */
function stateDigest(host) {
  const h = createHash('sha256');
  h.update(new Uint8Array(host.memory.buffer).slice());
  h.update(JSON.stringify(host.stats(), (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
  h.update(JSON.stringify([...host.mms].map((mm) => [mm.id, String(mm.lockedPages)])));
  return h.digest('hex');
}

/** Runs fn; 'ok' or the errno name of the TceError it threw. */
function attempt(lib, fn) {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!(e instanceof lib.TceError)) throw e;
    return e.code;
  }
}

/** One invariant problem in a few words, naming whose counter broke. */
function shortProblem(msg, whose) {
  let m = /^region \S+ \(mm (\d+)\): mapped − 1 = (\d+), but (\d+) TCE/.exec(msg);
  if (m) return `the ${whose(m[1])}'s region: mapped − 1 = ${m[2]} with ${m[3]} TCE(s)`;
  m = /maps a page of mm (\d+)'s region .* but the table belongs to mm (\d+)/.exec(msg);
  if (m) return `a TCE into the ${whose(m[1])}'s memory in the ${whose(m[2])}'s table`;
  m = /^mm (\d+): locked_vm is (\d+) pages, but .* account for (\d+)/.exec(msg);
  if (m) return `the ${whose(m[1])}'s locked_vm: ${m[2]} pages for ${m[3]}`;
  return msg;
}

/** Runs one cell: the owner's container, the holder's three calls, then the owner's unregister and the invariants. */
export async function runCell(lib, design, holder) {
  const host = await lib.Host.create({ ...design.host, maxMemory: 16 << 20 });
  const owner = host.spawn();
  const ram = owner.mmap(MiB);
  const ram2 = owner.mmap(MiB);
  const fd = owner.openContainer();
  fd.attachGroup(host.addGroup());
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: PAGE, read: true, write: true });
  host.checkInvariants();

  let actor;
  if (holder.key === 'fork') actor = owner.fork();
  else if (holder.key === 'vm-clone') actor = owner.clone({ vm: true });
  else if (holder.key === 'thread') actor = owner.thread();
  else {
    actor = host.spawn();
    // a fresh process maps the same addresses as the owner did (another QEMU, say)
    actor.mmap(MiB);
    actor.mmap(MiB);
  }
  const whose = (mmId) => (Number(mmId) === owner.mm.id ? 'owner' : Number(mmId) === actor.mm.id ? holder.who : `mm ${mmId}`);

  const calls = [];
  let changedByRefusals = false;
  /** A call by the holder; a refused one must leave the state as it was. */
  const call = (what, fn) => {
    const before = stateDigest(host);
    const result = attempt(lib, fn);
    if (result !== 'ok' && stateDigest(host) !== before) changedByRefusals = true;
    calls.push({ call: what, result });
    return result;
  };
  let afd;
  call(holder.how === 'receive' ? 'receive(fd)' : 'inherit(fd)', () => {
    afd = holder.how === 'receive' ? actor.receive(fd) : actor.inherit(fd);
  });
  if (afd) {
    call('registerMemory(its own 1 MiB)', () => afd.registerMemory(ram2.ua, MiB));
    call('mapDma(iova 0x100000, a page of it)', () => afd.mapDma({ iova: MiB, vaddr: ram2.ua, size: PAGE, read: true }));
    call("unmapDma(iova 0x0, the owner's page)", () => afd.unmapDma({ iova: 0n, size: PAGE }));
  }
  // The owner tidies up its page (a no-op if the holder unmapped it) and unregisters its memory.
  attempt(lib, () => fd.unmapDma({ iova: 0n, size: PAGE }));
  const ownerUnregister = attempt(lib, () => fd.unregisterMemory(ram.ua, ram.size));
  let problems = [];
  try {
    host.checkInvariants();
  } catch (e) {
    if (!(e instanceof lib.InvariantError)) throw e;
    problems = e.problems;
  }

  const refused = calls.filter((c) => c.result !== 'ok');
  let outcome;
  let text;
  if (problems.length > 0 || ownerUnregister !== 'ok') {
    outcome = 'damage';
    const broke = [...new Set(problems.map((p) => shortProblem(p, whose)))];
    if (ownerUnregister !== 'ok') broke.push(`the owner's unregister: ${ownerUnregister}`);
    text = `damage: ${broke.join('; ')}`;
  } else if (refused.length > 0) {
    outcome = 'refused';
    const codes = [...new Set(refused.map((c) => c.result))].join('/');
    const first = refused[0];
    text = first.call.startsWith('inherit') || first.call.startsWith('receive')
      ? `refused: ${codes} at ${first.call.replace('(fd)', '')} (the handle was closed on fork)`
      : `refused: ${codes} (${refused.length} of ${calls.length - 1} calls)`;
    if (refused.length < calls.length - 1 && !first.call.startsWith('inherit')) text += `, ${calls.length - 1 - refused.length} allowed`;
    text += changedByRefusals ? '; A REFUSED CALL CHANGED STATE' : '; nothing changed';
  } else {
    outcome = 'allowed';
    text = 'allowed; invariants hold';
  }
  return { design: design.key, holder: holder.key, outcome, text, calls, ownerUnregister, problems, changedByRefusals };
}

/** Every cell, design by design. */
export async function runDesigns(lib) {
  const cells = [];
  for (const d of DESIGNS) for (const h of HOLDERS) cells.push(await runCell(lib, d, h));
  return cells;
}

const num = (x) => typeof x === 'number' && Number.isFinite(x);

/**
 * The one reader of a benchmark results file (the JSON `spapr-tce bench`
 * writes), so a change of its schema is met here: for the pid checks, what
 * they add over `none` on the WebAssembly engine per H_PUT_TCE and per entry
 * of H_PUT_TCE_INDIRECT(512), in ns and instructions. It reads `date`,
 * `settings.mode`, `results[]` {op, engine, check, entries, overhead.ns} and
 * `instructions.results[]` {op, engine, check, overheadPerCall}; a field that
 * is missing reads as undefined.
 */
export function benchFigures(json) {
  const find = (list, op, check) => (Array.isArray(list) ? list.find((r) => r && r.op === op && r.engine === 'wasm' && r.check === check) : undefined);
  const figures = {};
  for (const check of ['pid-call', 'pid-entry']) {
    const put = find(json?.results, 'H_PUT_TCE', check);
    const ind = find(json?.results, 'H_PUT_TCE_INDIRECT_512', check);
    const putIr = find(json?.instructions?.results, 'H_PUT_TCE', check);
    const indIr = find(json?.instructions?.results, 'H_PUT_TCE_INDIRECT_512', check);
    const entries = num(ind?.entries) && ind.entries > 0 ? ind.entries : 512;
    figures[check] = {
      putTce: { ns: num(put?.overhead?.ns) ? put.overhead.ns : undefined, instructions: num(putIr?.overheadPerCall) ? putIr.overheadPerCall : undefined },
      indirectEntry: {
        ns: num(ind?.overhead?.ns) ? ind.overhead.ns / entries : undefined,
        instructions: num(indIr?.overheadPerCall) ? indIr.overheadPerCall / entries : undefined,
      },
    };
  }
  return { date: typeof json?.date === 'string' ? json.date : undefined, mode: json?.settings?.mode, figures };
}

/** Whether a results file is a full run of every benchmark. */
export function isFullRun(json) {
  const s = json?.settings;
  return (s?.mode === undefined || s.mode === 'full') && (s?.filter === undefined || s.filter === null);
}

/** Results files of a folder that parse, newest first (by their date, else their name). */
function resultsIn(dir) {
  if (!existsSync(dir)) return [];
  let names;
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const out = [];
  for (const name of names) {
    try {
      const json = JSON.parse(readFileSync(join(dir, name), 'utf8'));
      out.push({ path: join(dir, name), json, key: typeof json?.date === 'string' ? json.date : name });
    } catch {
      // not a results file
    }
  }
  return out.sort((a, b) => (a.key < b.key ? 1 : a.key > b.key ? -1 : 0));
}

/**
 * The results file the cost columns come from: `file` if given; else the
 * newest full run in the repository's bench/results/, else in
 * ./spapr-tce-results/ (where an installed package's `spapr-tce bench`
 * writes), or in `dirs` when given. A run without settings.mode counts as
 * full; a run of some sections only (settings.filter, e.g. `--filter
 * snapshot`) does not, as it has no hypercall figures.
 */
export function findResults(file, dirs = [join(packageRoot, 'bench/results'), resolve('spapr-tce-results')]) {
  if (file !== undefined) {
    let json;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`--results ${file}: ${e.code === 'ENOENT' ? 'no such file' : 'not a JSON file'}`);
    }
    return { path: file, json };
  }
  for (const dir of dirs) {
    const full = resultsIn(dir).find((r) => isFullRun(r.json));
    if (full) return { path: full.path, json: full.json };
  }
  return undefined;
}

/** A path as the table names it: relative to the package if inside it. */
function shown(path) {
  const abs = resolve(path);
  const rel = relative(packageRoot, abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

const signed = (x, digits) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;

/** The two cost cells of a design: H_PUT_TCE and one INDIRECT(512) entry. */
function costCells(design, results) {
  if (design.noCost) return [`0 — ${design.noCost}`, `0 — ${design.noCost}`];
  if (!results) return ['no full benchmark run found (run `spapr-tce bench`)', 'no full benchmark run found'];
  const f = benchFigures(results.json).figures[design.key];
  const cell = (x, nsDigits, irDigits) => {
    if (x.ns === undefined && x.instructions === undefined) return `no figures in ${shown(results.path)}`;
    const ns = x.ns === undefined ? 'ns: not in the file' : `${signed(x.ns, nsDigits)} ns`;
    const ir = x.instructions === undefined ? 'instructions: not in the file' : `${signed(x.instructions, irDigits)} instructions`;
    return `${ns}, ${ir}`;
  };
  return [cell(f.putTce, 1, 0), cell(f.indirectEntry, 2, 2)];
}

/** The answer table as Markdown (the README's copy and the terminal's), with the line naming the results file. */
export function renderTable(cells, results) {
  const head = ['design', ...HOLDERS.map((h) => h.label), 'cost per H_PUT_TCE', 'cost per INDIRECT(512) entry'];
  const rows = DESIGNS.map((d) => [d.label, ...HOLDERS.map((h) => cells.find((c) => c.design === d.key && c.holder === h.key).text), ...costCells(d, results)]);
  const esc = (s) => s.replace(/\|/g, '\\|');
  const lines = [head, ['---', ...head.slice(1).map(() => '---')], ...rows].map((r) => `| ${r.map(esc).join(' | ')} |`);
  const src = results
    ? `Costs: what the check adds to \`none\` on the WebAssembly engine (wall time: median difference; instructions: callgrind), from \`${shown(results.path)}\`${benchFigures(results.json).date ? ` (${benchFigures(results.json).date})` : ''}.`
    : 'Costs: no full benchmark run was found (bench/results/ in a checkout, ./spapr-tce-results/ otherwise; or name a file with --results FILE).';
  return `${lines.join('\n')}\n\n${src}\n`;
}

/** The command: the table, or --json (the cells and figures as data), or --markdown (the README section's body). */
export async function main(opts = {}) {
  const lib = await loadLibrary();
  const results = findResults(opts.results);
  const cells = await runDesigns(lib);
  if (opts.json) {
    const out = { cells, results: results ? { path: shown(results.path), ...benchFigures(results.json) } : null };
    console.log(JSON.stringify(out, null, 1));
  } else {
    if (!opts.markdown) {
      console.log('The 2015 question, every design against every way of holding the container handle.');
      console.log('The holder registers its own memory, maps a page of it and unmaps the owner\'s page; then the owner unregisters.\n');
    }
    process.stdout.write(renderTable(cells, results));
  }
  // A refusal that changed state breaks the library's own rule: say so with the exit status.
  return cells.some((c) => c.changedByRefusals) ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { json: { type: 'boolean' }, markdown: { type: 'boolean' }, results: { type: 'string' } } });
  try {
    process.exitCode = await main(values);
  } catch (e) {
    process.stderr.write(`designs: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  }
}
