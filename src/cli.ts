#!/usr/bin/env node
// The command line: `spapr-tce replay FILE`, `spapr-tce bench`, `spapr-tce demo fork`.
import { Command, Option } from 'commander';
import { readTrace } from './trace.js';
import { replay } from './replay.js';

const program = new Command();
program.name('spapr-tce').description('The POWER sPAPR TCE IOMMU as Linux and KVM implement it, emulated.');

program
  .command('replay')
  .description('replay a hypercall trace (JSON Lines, plain or .gz) in the qemu profile and check every return code and translation')
  .argument('<file>', 'trace file')
  .addOption(new Option('--engine <engine>', 'engine').choices(['wasm', 'native']).default('wasm'))
  .addOption(new Option('--owner-check <mode>', 'owner check').choices(['none', 'pid', 'mm']).default('mm'))
  .option('--snapshot-every <n>', 'snapshot and restore the host every N events', (x) => Number.parseInt(x, 10))
  .option('--json', 'print one JSON object on stdout')
  .action(async (file: string, o: { engine: 'wasm' | 'native'; ownerCheck: 'none' | 'pid' | 'mm'; snapshotEvery?: number; json?: boolean }) => {
    if (o.snapshotEvery !== undefined && !(Number.isInteger(o.snapshotEvery) && o.snapshotEvery > 0)) {
      console.error('spapr-tce replay: --snapshot-every takes a positive whole number of events');
      process.exit(2);
    }
    const trace = readTrace(file);
    const r = await replay(trace, { host: { engine: o.engine, ownerCheck: o.ownerCheck }, snapshotEvery: o.snapshotEvery });
    if (o.json) {
      console.log(JSON.stringify({ events: r.events, hypercalls: r.hypercalls, translations: r.translations, mismatches: r.mismatches, hypercallsPerSecond: Math.round(r.hypercallsPerSecond) }));
    } else {
      console.log(`${trace.name}: ${r.events} events, ${r.hypercalls} hypercalls, ${r.translations} translations checked, ${r.mismatches.length} mismatch(es), ${Math.round(r.hypercallsPerSecond)} hypercalls/s`);
      for (const m of r.mismatches.slice(0, 10)) console.log(`  line ${m.line}: expected ${m.expected}, got ${m.got}`);
      if (r.mismatches.length > 10) console.log(`  … ${r.mismatches.length - 10} more`);
    }
    process.exitCode = r.mismatches.length === 0 ? 0 : 1;
  });

program
  .command('bench')
  .description('measure what the owner check costs on the fast path (npm run bench)')
  .option('--quick', 'a smoke run that finishes in under a minute')
  .option('--filter <re>', 'only benchmarks whose name matches')
  .option('--json <file>', 'also write the results JSON to this file')
  .option('--instructions', 'count instructions per entry with valgrind (callgrind)')
  .action(async (o: { quick?: boolean; filter?: string; json?: string; instructions?: boolean }) => {
    // The harness is plain JavaScript in bench/, next to its results.
    const url = new URL('../bench/run.mjs', import.meta.url);
    const mod = (await import(url.href)) as { main(o: object): Promise<number> };
    process.exitCode = await mod.main(o);
  });

program
  .command('demo')
  .description('runnable scenarios')
  .argument('<name>', 'fork: the forked-child scenario of the 2015 review, in every owner-check mode')
  .action(async (name: string) => {
    if (name !== 'fork') {
      console.error(`spapr-tce demo: unknown demo '${name}' (try: fork)`);
      process.exit(2);
    }
    // The runnable example of examples/ is the demo, so there is one copy of the scenario.
    await import(new URL('../examples/forked-child.mjs', import.meta.url).href);
  });

await program.parseAsync();
