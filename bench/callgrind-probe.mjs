// Run under valgrind by callgrind.mjs: prepares one (op, engine, check) and
// runs its timed body `iterations` times. Two runs with different counts
// differ only in those iterations, so their instruction counts' difference
// divided by the difference of counts is the cost of one call.
// Usage: node --single-threaded --no-liftoff callgrind-probe.mjs OP ENGINE CHECK ITERATIONS
import { prepare } from './ops.mjs';

const [op, engine, check, n] = process.argv.slice(2);
const p = await prepare(op, engine, check);
// Enough warm-up calls for TurboFan to optimise the path in both runs alike.
for (let i = 0; i < 2000 / p.entries + 50; i++) p.run();
const iterations = Number(n);
for (let i = 0; i < iterations; i++) p.run();
p.verify();
