// Run under valgrind by callgrind.mjs: prepares one (op, engine, check) and
// runs its timed body `iterations` times. Two runs with different counts
// differ only in those iterations, so their instruction counts' difference
// divided by the difference of counts is the cost of one call.
// Usage: node --single-threaded --no-liftoff callgrind-probe.mjs OP ENGINE CHECK ITERATIONS
import { prepare } from './ops.mjs';

const [op, engine, check, n] = process.argv.slice(2);
const p = await prepare(op, engine, check);
p.before?.();
// The loop is a function of its own, optimised like the benchmark's (module
// top-level code stays in the baseline compiler, whose loop costs ~100
// instructions per iteration that no call pays).
function loop(run, k) {
  for (let i = 0; i < k; i++) run();
}
// Enough warm-up calls for TurboFan to optimise the path and the loop in both runs alike.
for (let w = 0; w < 20; w++) loop(p.run, 2000 / p.entries + 50);
loop(p.run, Number(n));
p.verify();
