// The C floor: the native engine's hypercall routine run N times by a plain
// C++ loop inside the addon (engine.benchLoop → TceEngine::hcallLoop), with
// no JavaScript between iterations: the physical limit of this routine on
// this machine. The loop puts r3/r4 back before each call, inside its
// timing, as the JavaScript path writes r3 before each call. When the addon
// lacks the entry, the column is reported as not available, never estimated.
// Same work per entry as `native`: the same prepared host and registers, the
// real-mode success and checkInvariants() verified before and after timing,
// and under callgrind the engine routines (lockFast, applyFast, leafNodeT,
// putTceIndirect) count the same instructions per call in both columns; what
// differs is what runs around them (the JavaScript call and N-API crossing).
import { prepare, selectVariant } from './ops.mjs';
import { KIND_PUT, KIND_INDIRECT, KIND_STUFF, KIND_GET, LEVEL_REAL as REAL, H_PUT_TCE, H_GET_TCE, H_STUFF_TCE, H_PUT_TCE_INDIRECT } from '../dist/generated/layout.js';
import { diffInterval, median, significant } from './stats.mjs';
import { sampleOnce } from './harness.mjs';

/** What the benchmark needs from src/native to fill the c-floor column. */
export const NEEDED =
  'a method `benchLoop(vcpuDesc: number, level: number, iterations: number) → elapsed ns` on the native engine object ' +
  '(src/native/engine_binding.cc) running `TceEngine::hcallLoop(vcpu, level, iterations)` (src/native/engine.h): ' +
  'hcall(vcpu, level) `iterations` times in C++, r3/r4 restored before each call, timed with std::chrono::steady_clock';

const LEVEL_REAL = 1;
/** The vCPU's completion counter of each hypercall number (VCPU.stats[kind][level]). */
const KIND_OF = { [H_PUT_TCE]: KIND_PUT, [H_GET_TCE]: KIND_GET, [H_STUFF_TCE]: KIND_STUFF, [H_PUT_TCE_INDIRECT]: KIND_INDIRECT };
let cached;

/** {ok: true} when a native host's engine has benchLoop, else {reason, needed?}. */
export async function cFloor() {
  if (cached) return cached;
  try {
    const p = await prepare('H_PUT_TCE', 'native', 'none');
    if (typeof p.setup.host.engine.benchLoop === 'function') cached = { ok: true };
    else cached = { reason: 'the native engine has no C-floor entry point (benchLoop)', needed: NEEDED };
  } catch (e) {
    cached = { reason: `the native engine cannot run hypercalls here (${e.message.split('\n')[0]})`, needed: NEEDED };
  }
  return cached;
}

/** A c-floor variant of `op`: the prepared native host (real mode verified) and its loop. */
export async function prepareCFloor(op, check) {
  const p = await prepare(op, 'native', check);
  const { host, vcpu } = p.setup;
  // The loop restores r3 as it found it, and leaves the last status there: write the number first
  // (the prepared setup is shared with the native column, so r3 may hold a status by now).
  const r32 = new Uint32Array(vcpu.regs.buffer, vcpu.regs.byteOffset, 64);
  const nr = p.nr;
  const loop = (iterations) => {
    selectVariant(host, check);
    r32[6] = nr;
    r32[7] = 0;
    return host.engine.benchLoop(vcpu.desc, LEVEL_REAL, iterations);
  };
  return {
    entries: p.entries,
    loop,
    verify() {
      // Every iteration, not only the last, completed in real mode: the vCPU counts each completion.
      const kind = KIND_OF[nr];
      const before = vcpu.count(kind, REAL);
      loop(3);
      selectVariant(host, 'none');
      if (vcpu.lastLevel !== 'real' || vcpu.regs[3] !== 0n) throw new Error(`c-floor ${op} ${check}: the loop did not stay in real mode (r3 ${vcpu.regs[3]}, ${vcpu.lastLevel})`);
      if (vcpu.count(kind, REAL) - before !== 3) throw new Error(`c-floor ${op} ${check}: ${vcpu.count(kind, REAL) - before} of 3 iterations completed in real mode`);
      host.checkInvariants();
    },
  };
}

/** Samples of the C loop per turn, in sampleCFloor's rounds and in headToHead's (each the ns per call of one loop). */
const SAMPLES_PER_TURN = 20;

/** Iterations of `loop` (ns for n iterations) for one sample of about `seconds`, timed from a loop of at least 100 µs. */
function iterationsFor(loop, seconds) {
  let per = loop(1);
  for (let n = 1; per * n < 1e5; n *= 4) per = loop(n * 4) / (n * 4);
  return Math.max(1, Math.round((seconds * 1e9) / per));
}

/**
 * Samples the C loop, interleaved as the matrix is: `rounds` × variants,
 * SAMPLES_PER_TURN samples per turn, each the ns per call of one loop of about `sampleSeconds`.
 * Returns Map key → samples in seconds per call.
 */
export function sampleCFloor(variants, rounds, sampleSeconds, tick = () => {}) {
  const pooled = new Map(variants.map((v) => [v.key, []]));
  // The `none` variant calibrates all.
  const iterations = iterationsFor(variants[0].loop, sampleSeconds);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length];
      for (let k = 0; k < SAMPLES_PER_TURN; k++) pooled.get(v.key).push(v.loop(iterations) / iterations / 1e9);
      tick();
    }
  }
  return pooled;
}

/**
 * c-floor and native `none` of one op sampled head to head: `rounds`
 * rounds, each one benchmark.js run of the native closure (as the matrix
 * samples it) and SAMPLES_PER_TURN loops of the C floor, in an order that alternates from
 * round to round, on the one prepared host both share. Sampled apart, minutes
 * from each other, the two drifted with the machine: in
 * 2026-12-02T03-18-24Z.json c-floor came out 110.6 ns (1.5%) slower than
 * native on INDIRECT(512) while counting 5,600 fewer instructions per call.
 * Returns {native, cFloor}: samples in seconds per call.
 */
export function headToHead(native, cFloor, profile, tick = () => {}) {
  const out = { native: [], cFloor: [] };
  const iterations = iterationsFor(cFloor.loop, profile.minTime);
  const turns = {
    native() {
      native.before?.();
      for (const x of sampleOnce(`head-to-head native`, native.run, profile, native.burst ?? 1)) out.native.push(x);
    },
    cFloor() {
      for (let k = 0; k < SAMPLES_PER_TURN; k++) out.cFloor.push(cFloor.loop(iterations) / iterations / 1e9);
    },
  };
  for (let r = 0; r < profile.rounds; r++) {
    const order = r % 2 === 0 ? ['native', 'cFloor'] : ['cFloor', 'native'];
    for (const t of order) turns[t]();
    tick();
  }
  return out;
}

/**
 * c-floor − native of one op from head-to-head `none` samples (seconds per
 * call, headToHead): {ns, lo, hi, pct, pctLo, pctHi, significant}, the
 * difference of medians with its bootstrap interval and the bench's one
 * verdict (stats.mjs).
 */
export function versusNative(nativeSamples, cFloorSamples) {
  const a = nativeSamples.map((x) => x * 1e9);
  const b = cFloorSamples.map((x) => x * 1e9);
  const d = diffInterval(a, b);
  const base = median(a);
  const diff = median(b) - base;
  return { ns: diff, lo: d.lo, hi: d.hi, pct: (100 * diff) / base, pctLo: 100 * d.relLo, pctHi: 100 * d.relHi, significant: significant(d), samples: { native: a.length, cFloor: b.length } };
}
