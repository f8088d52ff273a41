#!/usr/bin/env node
// The command line: `spapr-tce replay FILE`, `spapr-tce bench`, `spapr-tce demo fork|designs`.
// One error path: every refusal is one line on stderr, `spapr-tce CMD: reason`
// (`spapr-tce replay: FILE:LINE: reason` for a trace), never a stack; exit 2
// for usage and input errors, 1 for mismatches (and failures), 0 for success.
// SPAPR_TCE_DEBUG=1 adds the stack of an unexpected error.
import { accessSync, constants, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readTrace, TraceError } from './trace.js';
import { replay } from './replay.js';
import { OWNER_CHECKS, type OwnerCheck } from './core/context.js';

/** A usage or input error (exit 2), printed as one line by the caller. */
class CliError extends Error {}

const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
/** The recorded traces shipped with the package (docs/traces.md). */
const SHIPPED_TRACES = join(packageRoot, 'traces');

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

// A reader that stops early (`| head`) is no error: stop quietly, as other command-line tools do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

/** Prints what a command threw as one line; its exit code: 2 for usage and input errors, 1 for anything unexpected. */
function report(cmd: string, e: unknown): number {
  process.stderr.write(`spapr-tce ${cmd}: ${oneLine(e instanceof Error ? e.message : String(e))}\n`);
  if (e instanceof CliError || e instanceof TraceError) return 2;
  if (process.env.SPAPR_TCE_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  return 1;
}

/** Runs a command's action; whatever it throws becomes one line and an exit code. */
function action<A extends unknown[]>(cmd: string, fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = await fn(...args);
    } catch (e) {
      process.exitCode = report(cmd, e);
    }
  };
}

function positiveInt(what: string): (x: string) => number {
  return (x) => {
    if (!/^\d+$/.test(x) || Number(x) < 1 || !Number.isSafeInteger(Number(x))) throw new InvalidArgumentError(`${what} takes a positive whole number, got '${x}'`);
    return Number(x);
  };
}

/** Trace files of a folder (.jsonl or .jsonl.gz), sorted. */
function traceFilesIn(dir: string): string[] {
  return readdirSync(dir).filter((f) => /\.jsonl(\.gz)?$/.test(f)).sort();
}

/**
 * Refuses, before a run that may take minutes, a folder the results could not be written to: `dir`
 * must be a writable folder, or a path whose nearest existing ancestor is one (it is created later).
 */
function checkWritableDir(option: string, dir: string, shown = dir): void {
  const want = resolve(dir);
  for (let p = want; ; p = dirname(p)) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (e) {
      // ENOTDIR: a component is a file; the walk up reaches it and says so.
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'ENOENT' || code === 'ENOTDIR') && dirname(p) !== p) continue;
      throw new CliError(`${option} ${shown}: ${(e as Error).message}`);
    }
    if (!isDir) throw new CliError(`${option} ${shown}: ${p === resolve(shown) ? 'is not a folder' : `${p} is not a folder`}`);
    try {
      accessSync(p, constants.W_OK);
    } catch {
      throw new CliError(`${option} ${shown}: ${p} is not writable`);
    }
    return;
  }
}

/** The shipped traces (none when the folder is missing from a copy of the package). */
function shippedTraces(): string[] {
  try {
    return traceFilesIn(SHIPPED_TRACES);
  } catch {
    return [];
  }
}

/** FILE as given, or the name of a shipped trace (with or without .jsonl.gz) when no such file exists. */
function traceFile(file: string): string {
  if (existsSync(file) || file.includes('/')) return file;
  const shipped = shippedTraces().find((f) => f === file || f.replace(/\.jsonl(\.gz)?$/, '') === file);
  return shipped ? join(SHIPPED_TRACES, shipped) : file;
}

const program = new Command();
program
  .name('spapr-tce')
  .description('The POWER sPAPR TCE IOMMU as Linux and KVM implement it, emulated.')
  .version(version, '-V, --version', 'print the version')
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(`spapr-tce: ${s.replace(/^error: /, '')}`) });

const replayCmd = program
  .command('replay')
  .description('replay a hypercall trace (JSON Lines, plain or .gz) in the qemu profile and check every return code and translation')
  .argument('<file>', `trace file, or the name of a shipped trace (${shippedTraces().map((f) => f.replace(/\.jsonl(\.gz)?$/, '')).join(', ')})`)
  .addOption(new Option('--engine <engine>', 'engine').choices(['wasm', 'native']).default('wasm'))
  .addOption(new Option('--owner-check <mode>', 'owner check').choices(OWNER_CHECKS).default('mm'))
  .option('--snapshot-every <n>', 'snapshot and restore the host every N events', positiveInt('--snapshot-every'))
  .option('--json', 'print one JSON object on stdout')
  .addHelpText('after', '\nExit status: 0 when every return code and translation matches, 1 on a mismatch, 2 for a usage error or a trace that cannot be read.')
  .action(
    action('replay', async (file: string, o: { engine: 'wasm' | 'native'; ownerCheck: OwnerCheck; snapshotEvery?: number; json?: boolean }) => {
      const path = traceFile(file);
      const trace = readTrace(path);
      let r;
      try {
        r = await replay(trace, { host: { engine: o.engine, ownerCheck: o.ownerCheck }, snapshotEvery: o.snapshotEvery });
      } catch (e) {
        if (e instanceof TraceError) throw e.inFile(path);
        // The host refused its options (engine: 'native' without the addon): a usage error, said once.
        if (e instanceof Error && /^spapr-tce: /.test(e.message)) throw new CliError(e.message.replace(/^spapr-tce: /, ''));
        throw e;
      }
      if (o.json) {
        console.log(JSON.stringify({ ownerCheck: r.ownerCheck, events: r.events, hypercalls: r.hypercalls, translations: r.translations, mismatches: r.mismatches, hypercallsPerSecond: Math.round(r.hypercallsPerSecond) }));
      } else {
        console.log(`${trace.name}: ${r.events} events, ${r.hypercalls} hypercalls, ${r.translations} translations checked, ${r.mismatches.length} mismatch(es), ${Math.round(r.hypercallsPerSecond)} hypercalls/s`);
        for (const m of r.mismatches.slice(0, 10)) console.log(`  line ${m.line}: expected ${m.expected}, got ${m.got}`);
        if (r.mismatches.length > 10) console.log(`  … ${r.mismatches.length - 10} more`);
      }
      return r.mismatches.length === 0 ? 0 : 1;
    }),
  );

const benchCmd = program
  .command('bench')
  .description('measure what the owner check costs on the fast path (npm run bench)')
  .option('--quick', 'a smoke run that finishes in under a minute')
  .option('--filter <re>', 'only benchmarks whose name (op/engine/check, trace/NAME/check, scaling/tables/vcpus) matches')
  .option('--json <file>', 'also write the results JSON to this file')
  .option('--out <dir>', 'folder for the dated results JSON and SVG chart', 'spapr-tce-results')
  .option('--traces <dir>', 'replay the traces of this folder (*.jsonl, *.jsonl.gz) instead of the shipped ones')
  .option('--instructions', 'count instructions per entry with valgrind (callgrind)')
  .addHelpText('after', '\nExit status: 0 on success, 1 when a benchmark fails, 2 for a usage error (among them a --filter that matches nothing, an --out or --json that cannot be written).')
  .action(
    action('bench', async (o: { quick?: boolean; filter?: string; json?: string; out: string; traces?: string; instructions?: boolean }) => {
      checkWritableDir('--out', o.out);
      if (o.json !== undefined) {
        if (existsSync(o.json) && statSync(o.json).isDirectory()) throw new CliError(`--json ${o.json}: is a folder, not a file`);
        checkWritableDir('--json', dirname(resolve(o.json)), o.json);
      }
      if (o.traces !== undefined) {
        if (!existsSync(o.traces)) throw new CliError(`--traces ${o.traces}: no such folder`);
        let files: string[];
        try {
          files = traceFilesIn(o.traces);
        } catch {
          throw new CliError(`--traces ${o.traces}: not a folder`);
        }
        if (files.length === 0) throw new CliError(`--traces ${o.traces}: no *.jsonl or *.jsonl.gz file there`);
      }
      // The harness is plain JavaScript in bench/, next to this package's dist/.
      const url = new URL('../bench/run.mjs', import.meta.url);
      const mod = (await import(url.href)) as { main(o: object): Promise<number> };
      const { out, traces, ...rest } = o;
      return mod.main({ ...rest, resultsDir: resolve(out), traceDir: traces === undefined ? undefined : resolve(traces) });
    }),
  );

const demoCmd = program
  .command('demo')
  .description('runnable scenarios')
  .addArgument(
    new Argument('<name>', 'fork: the forked-child scenario of the 2015 review, in every owner-check mode; designs: every design against every way of holding the handle, with what each costs').choices(['fork', 'designs']),
  )
  .option('--json', 'print the outcome as JSON')
  .option('--results <file>', 'designs: the benchmark results JSON the cost columns come from (default: the newest full run in bench/results/ or ./spapr-tce-results/)')
  .action(
    action('demo', async (name: string, o: { json?: boolean; results?: string }) => {
      if (name === 'designs') {
        // The runnable example of examples/ is the demo, so there is one copy of the scenarios.
        const mod = (await import(new URL('../examples/designs.mjs', import.meta.url).href)) as { main(o: object): Promise<number> };
        if (o.results !== undefined && !existsSync(o.results)) throw new CliError(`--results ${o.results}: no such file`);
        try {
          return await mod.main({ json: o.json, results: o.results });
        } catch (e) {
          // A results file that does not parse is an input error.
          if (e instanceof Error && e.message.startsWith('--results')) throw new CliError(e.message);
          throw e;
        }
      }
      if (o.results !== undefined) throw new CliError('--results applies to `demo designs` only');
      // The runnable example of examples/ is the demo, so there is one copy of the scenario; it reads --json from argv.
      await import(new URL('../examples/forked-child.mjs', import.meta.url).href);
      return 0;
    }),
  );

for (const cmd of [replayCmd, benchCmd, demoCmd]) {
  cmd.exitOverride().configureOutput({ outputError: (s, write) => write(`spapr-tce ${cmd.name()}: ${s.replace(/^error: /, '')}`) });
}

try {
  await program.parseAsync();
} catch (e) {
  if (!(e instanceof CommanderError)) throw e;
  // --help and --version exit 0; a missing command shows the help and is a usage error.
  process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
}
