// The 2015 review question for the userspace-view patch: "what stops a forked
// child from changing a container it does not own?" — run in each owner-check
// mode (docs/semantics.md, "The owner check"). Run: `npm run example:fork` (after `npm install`,
// which builds dist/), or `node examples/forked-child.mjs [--json]`.
// SPAPR_TCE_DIST may point at another build's index.js (a path or file: URL).
import { pathToFileURL } from 'node:url';

const spec = process.env.SPAPR_TCE_DIST
  ? (process.env.SPAPR_TCE_DIST.startsWith('file:') ? process.env.SPAPR_TCE_DIST : pathToFileURL(process.env.SPAPR_TCE_DIST).href)
  : new URL('../dist/index.js', import.meta.url).href;
const { Host, TceError, InvariantError } = await import(spec);

const json = process.argv.includes('--json');
const MiB = 1n << 20n;
const PAGE = 0x1000n;
const hex = (x) => '0x' + x.toString(16);

/** Runs fn and says what it returned: 'ok' or the errno name. */
function attempt(log, who, what, fn) {
  let result = 'ok';
  try {
    fn();
  } catch (e) {
    if (!(e instanceof TceError)) throw e;
    result = e.code;
  }
  log.push({ who, call: what, result });
  return result;
}

async function scenario(mode) {
  const host = await Host.create({ ownerCheck: mode });
  const parent = host.spawn();
  const ram = parent.mmap(MiB);
  const ram2 = parent.mmap(MiB);
  const group = host.addGroup();
  const fd = parent.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  const calls = [];
  attempt(calls, 'parent', `registerMemory(${hex(ram.ua)}, 1 MiB)`, () => fd.registerMemory(ram.ua, ram.size));
  attempt(calls, 'parent', 'mapDma(iova 0x0, 1 page)', () => fd.mapDma({ iova: 0n, vaddr: ram.ua, size: PAGE, read: true, write: true }));
  const parentRegion = fd.container.regions[0];

  const child = parent.fork();
  const cfd = child.inherit(fd);
  attempt(calls, 'child', `registerMemory(${hex(ram.ua)}, 1 MiB)`, () => cfd.registerMemory(ram.ua, ram.size));
  attempt(calls, 'child', 'mapDma(iova 0x100000, 1 page)', () => cfd.mapDma({ iova: MiB, vaddr: ram.ua, size: PAGE, read: true }));
  attempt(calls, 'child', "unmapDma(iova 0x0, 1 page) [the parent's]", () => cfd.unmapDma({ iova: 0n, size: PAGE }));
  const childRegion = fd.container.regions.find((r) => r.desc !== parentRegion.desc);
  // Where the counters and the invariant check fall among the calls, for the printed story.
  const countersAt = calls.length;
  const counters = {
    parentRegion: { used: parentRegion.used, mapped: Number(parentRegion.mapped) },
    childRegion: childRegion ? { used: childRegion.used, mapped: Number(childRegion.mapped) } : null,
  };

  attempt(calls, 'parent', 'unmapDma(iova 0x0, 1 page)', () => fd.unmapDma({ iova: 0n, size: PAGE }));
  const parentUnregister = attempt(calls, 'parent', `unregisterMemory(${hex(ram.ua)}, 1 MiB)`, () => fd.unregisterMemory(ram.ua, ram.size));
  const invariantsAt = calls.length;
  let invariants = 'passed';
  let problems = [];
  try {
    host.checkInvariants();
  } catch (e) {
    if (!(e instanceof InvariantError)) throw e;
    invariants = 'FAILED';
    problems = e.problems;
  }

  // A clone({vm: true}) child: a new pid sharing the parent's mm.
  const vm = parent.clone({ vm: true });
  const vfd = vm.inherit(fd);
  const vmClone = attempt(calls, 'vm-clone', `registerMemory(${hex(ram2.ua)}, 1 MiB)`, () => vfd.registerMemory(ram2.ua, ram2.size));
  fd.close();
  cfd.close();
  vfd.close();
  return { mode, calls, counters, parentUnregister, invariants, problems, vmClone, countersAt, invariantsAt };
}

const results = [];
for (const mode of ['none', 'pid', 'mm']) results.push(await scenario(mode));

if (json) {
  console.log(JSON.stringify(results.map(({ countersAt, invariantsAt, ...r }) => r)));
} else {
  // In the order things happened, each once: the calls, the counters after the child's, the invariants after the parent's.
  for (const r of results) {
    console.log(`== ownerCheck: ${r.mode} ==`);
    for (let i = 0; i <= r.calls.length; i++) {
      if (i === r.countersAt) {
        const pr = r.counters.parentRegion;
        const cr = r.counters.childRegion;
        console.log(`  counters after the child: parent region used=${pr.used} mapped=${pr.mapped}; child region ${cr ? `used=${cr.used} mapped=${cr.mapped}` : 'none'}`);
      }
      if (i === r.invariantsAt) {
        console.log(`  checkInvariants: ${r.invariants}${r.problems.length ? ` (${r.problems.length} problem(s))` : ''}`);
        for (const p of r.problems) console.log(`    - ${p}`);
      }
      const c = r.calls[i];
      if (c) console.log(`  ${c.who.padEnd(8)} ${c.call.padEnd(48)} -> ${c.result}`);
    }
  }
}
