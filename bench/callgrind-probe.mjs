// Run under valgrind by callgrind.mjs: prepares one (op, engine, check) and
// runs its timed body `iterations` times. Two runs with different counts
// differ only in those iterations, so their instruction counts' difference
// divided by the difference of counts is the cost of one call. Engine
// `c-floor` runs the native routine `iterations` times in one C++ loop
// (engine.benchLoop), as the c-floor column times it.
// Usage: node <NODE_FLAGS of callgrind.mjs> callgrind-probe.mjs OP ENGINE CHECK ITERATIONS (ITERATIONS may be zero-padded)
import { prepare } from './ops.mjs';
import { prepareCFloor } from './cfloor.mjs';

const [op, engine, check, n] = process.argv.slice(2);
if (engine === 'c-floor') {
  const p = await prepareCFloor(op, check);
  p.verify();
  // The same warm-up calls as the JavaScript path below; the loop itself has nothing to tier up.
  for (let w = 0; w < 20; w++) p.loop(Math.ceil(2000 / p.entries) + 50);
  p.loop(Number(n));
  p.verify();
} else {
  const p = await prepare(op, engine, check);
  p.before?.();
  // The loop is a function of its own, optimised like the benchmark's (module
  // top-level code stays in the baseline compiler, whose loop costs ~100
  // instructions per iteration that no call pays).
  function loop(run, k) {
    for (let i = 0; i < k; i++) run();
  }
  // Enough warm-up calls for TurboFan to optimise the path and the loop before either run's
  // measured calls: it marks hcall() after ~1,200 calls, run() after ~1,900 and loop() after
  // ~3,500 (--trace-opt); at 2000 / 512 + 50 per round INDIRECT(512) had 1,080, and its K2 run
  // compiled hcall() inside the measured calls (bench/results/callgrind-gc-2026-12-02.md).
  for (let w = 0; w < 20; w++) loop(p.run, Math.max(2000 / p.entries + 50, 250));
  loop(p.run, Number(n));
  p.verify();
}
