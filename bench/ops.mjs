// The benchmarked operations on the library (engines 'wasm' and 'native'):
// one host per (engine, check), a VFIO v2 container with pre-registered
// guest RAM, a KVM VM whose guest table is linked to the container's
// hardware table, and one vCPU. Each op returns a `run` closure for the
// timed loop that only calls vcpu.hcall() (or mapDma/unmapDma with argument
// objects built once), so the loop itself does no BigInt arithmetic and
// allocates nothing: the registers are written once, here, outside it.
import { Host, H } from '../dist/index.js';
import { HEADER_BASE, HDR_ABLATE, ABLATE_VIEW_LOCK, ABLATE_VALIDATE, ABLATE_SMR_READ } from '../dist/generated/layout.js';
import { BURST } from './harness.mjs';

export const OPS = ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'MAP_UNMAP_1', 'MAP_UNMAP_512', 'H_PUT_TCE_64K_OVER_4K'];
export const HCALL_OPS = new Set(['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'H_PUT_TCE_64K_OVER_4K']);
/** The owner checks (a)–(c): each is timed against `none`. */
export const CHECKS = ['none', 'pid-call', 'pid-entry', 'mm'];

/**
 * The other safety mechanisms of the real-mode path, (d)–(f): each is timed
 * by running the path without it (HDR.ablate, honoured by both engines'
 * map paths only for the benchmark), its cost being `none` minus that run.
 * `ops` lists where the mechanism is on the path; elsewhere the variant is
 * reported as not applicable, with the reason.
 */
export const ABLATIONS = [
  {
    key: 'no-view-lock',
    mechanism: '(d) per-entry view lock',
    bits: ABLATE_VIEW_LOCK,
    ops: ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_PUT_TCE_64K_OVER_4K'],
    elsewhere: 'a clear of clear entries takes no lock',
  },
  {
    key: 'one-pass',
    mechanism: '(e) validate-before-write pass',
    bits: ABLATE_VALIDATE,
    ops: ['H_PUT_TCE_INDIRECT_512'],
    elsewhere: 'one entry, or a clear: no separate pass to remove',
  },
  {
    // Issue 12 item 1: the vCPU's rcuSeq stores at hypercall entry and exit (src/core/reclaim.ts).
    key: 'no-smr-read',
    mechanism: '(f) read side of safe memory reclamation',
    bits: ABLATE_SMR_READ,
    ops: ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512', 'H_STUFF_TCE_512', 'H_PUT_TCE_64K_OVER_4K'],
    elsewhere: 'the VFIO ioctl path runs on the host thread, which reclamation never waits for',
  },
];
/**
 * Kernel eras beside the default '4.19' (HDR.kernel): `k5.19` runs the
 * cell's op on a host created with kernel '5.19', which has no real mode
 * (cad32d9d42e8), so every call runs in virtual mode; its difference to
 * `none` is what losing real mode costs on that op. Its own host: the era
 * is fixed when the host and its vCPUs are created.
 */
export const ERAS = [{ key: 'k5.19', kernel: '5.19', label: 'kernel 5.19 (virtual mode only)', ops: ['H_PUT_TCE', 'H_PUT_TCE_INDIRECT_512'] }];
/** Every variant of a hypercall cell: the checks, the ablations, then the eras. */
export const VARIANTS = [...CHECKS, ...ABLATIONS.map((a) => a.key), ...ERAS.map((e) => e.key)];

/** The era of `variant`, or undefined. */
export const eraOf = (variant) => ERAS.find((e) => e.key === variant);

/** The ablation of `variant`, or undefined for a check. */
export const ablationOf = (variant) => ABLATIONS.find((a) => a.key === variant);

/** Why `variant` cannot run for (op, engine), or undefined when it can. */
export function variantUnavailable(op, engine, variant) {
  const era = eraOf(variant);
  if (era) {
    if (!era.ops.includes(op)) return `measured for ${era.ops.join(' and ')} only`;
    if (engine === 'js' || engine === 'c-floor') return 'the hypercall chain of the library (vcpu.hcall()) only: wasm and native';
    return undefined;
  }
  const a = ablationOf(variant);
  if (!a) return undefined;
  if (!HCALL_OPS.has(op)) return 'the VFIO ioctl path has none of the real-mode mechanisms';
  if (engine === 'js') return 'the JavaScript baseline models the owner checks only';
  if (a.bits === null || !a.ops.includes(op)) return a.elsewhere;
  return undefined;
}

/** Host options of a check variant of the issue. */
export function hostOptions(engine, check) {
  if (check === 'none') return { engine, ownerCheck: 'none' };
  if (check === 'pid-call') return { engine, ownerCheck: 'pid', pidCheck: 'call' };
  if (check === 'pid-entry') return { engine, ownerCheck: 'pid', pidCheck: 'entry' };
  if (check === 'mm') return { engine, ownerCheck: 'mm' };
  throw new Error(`unknown check ${check}`);
}

/** Hardware entries one call of `op` writes (what "per entry" divides by). */
export function entriesOf(op) {
  return { H_PUT_TCE: 1, H_PUT_TCE_INDIRECT_512: 512, H_STUFF_TCE_512: 512, MAP_UNMAP_1: 1, MAP_UNMAP_512: 512, H_PUT_TCE_64K_OVER_4K: 16 }[op];
}

const LIOBN = 0x80000000n;
const PAGE = 0x10000; // the guest's and the host's 64 KiB page
const RAM = 40n << 20n; // 512 distinct 64 KiB target pages (32 MiB) and the TCE list page
const LIST_GPA = 0x2400000; // 36 MiB: the INDIRECT list, 4 KiB aligned, outside the targets

/** The VFIO + KVM setup of the smoke and stress tests, with the hardware window's page shift `hwShift`, under `kernel` (default '4.19'). */
export async function makeSetup(engine, check, hwShift = 16, kernel = undefined) {
  const host = await Host.create({ ...hostOptions(engine, check), maxMemory: 96 << 20, ...(kernel ? { kernel } : {}) });
  const qemu = host.spawn();
  const ram = qemu.mmap(RAM);
  const group = host.addGroup();
  const fd = qemu.openContainer();
  fd.attachGroup(group);
  fd.setIommu('v2');
  fd.registerMemory(ram.ua, ram.size);
  fd.removeWindow(0n); // cancel the pending default window, as QEMU does
  fd.createWindow({ pageShift: hwShift, windowSize: 1n << 30n, levels: 2 });
  // One map and unmap before the link: under '4.12' it makes the userspace view; from '4.19' the view
  // comes with the table and this only allocates the first leaf level, kept so the setup is the one of earlier runs.
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 1n << BigInt(hwShift), read: true, write: true });
  fd.unmapDma({ iova: 0n, size: 1n << BigInt(hwShift) });
  const vm = qemu.createVm({ profile: 'kvm' });
  vm.addMemslot({ gpa: 0n, size: ram.size, ua: ram.ua });
  vm.createTceTable({ liobn: LIOBN, pageShift: 16, offset: 0n, size: 1n << 14n });
  vm.attachGroup(group, LIOBN);
  const vcpu = vm.vcpu(0, { thread: qemu });
  return { host, qemu, ram, group, fd, vm, vcpu, liobn: LIOBN };
}

/** Writes the INDIRECT list (big-endian, as the guest does) once: entry i → guest page i, read+write. */
function writeList(ram, n) {
  const dv = new DataView(ram.bytes.buffer, ram.bytes.byteOffset, ram.bytes.byteLength);
  for (let i = 0; i < n; i++) dv.setBigUint64(LIST_GPA + i * 8, BigInt(i * PAGE) | 3n, false);
}

/** Fails loudly unless the last hypercall succeeded at `level` (real mode; virtual under kernel '5.19'). */
function expectReal(vcpu, rc, what, level = 'real') {
  if (rc !== H.SUCCESS || vcpu.lastLevel !== level) {
    throw new Error(`${what}: expected H_SUCCESS in ${level} mode before timing, got rc ${rc} at level '${vcpu.lastLevel}'`);
  }
}

/**
 * Prepares `op` on a fresh host: {run, entries, host, check(): verifies the
 * state after timing}. Throws (with the reason) when the engine cannot run it.
 */
export async function prepare(op, engine, check) {
  if (HCALL_OPS.has(op)) return prepareHcall(op, engine, check);
  const why = variantUnavailable(op, engine, check);
  if (why) throw new Error(why);
  const s = await makeSetup(engine, check, 16);
  return prepareVfio(op, s);
}

// One prepared hypercall setup per (op, engine), shared by the four check
// variants: separate hosts lay their memory out differently, and that alone
// moved timings by several percent, more than the checks cost. The host is
// created with ownerCheck 'pid' (its tables carry the owner's pid) and each
// variant's closure selects what real mode checks (host.setRealModeCheck)
// before each of its runs (a benchmark.js run calls only that variant).
const sharedHcall = new Map();

/** Selects what real mode runs with for `variant`: its owner check, or no check and its ablation. */
export function selectVariant(host, variant) {
  const a = ablationOf(variant);
  host.setRealModeCheck(a ? 'none' : variant);
  host.mem.setU32(HEADER_BASE + HDR_ABLATE, a ? a.bits : 0);
}

async function prepareHcall(op, engine, check) {
  const why = variantUnavailable(op, engine, check);
  if (why) throw new Error(why);
  const era = eraOf(check);
  const key = `${op}/${engine}${era ? `/${era.key}` : ''}`;
  if (!sharedHcall.has(key)) sharedHcall.set(key, prepareHcallSetup(op, engine, era?.kernel));
  const base = await sharedHcall.get(key);
  const { host, vcpu } = base.setup;
  const { r32, nr } = base;
  // An era's host has only that variant: no owner check, no ablation.
  const variant = era ? 'none' : check;
  const level = era ? 'virtual' : 'real';
  const { run, burst } = cellClosures(vcpu, r32, nr);
  return {
    setup: base.setup,
    entries: base.entries,
    check,
    nr,
    // Selects this variant; the harness calls it before each run of `run`.
    before: () => selectVariant(host, variant),
    run,
    burst,
    verify() {
      selectVariant(host, variant);
      r32[6] = nr;
      r32[7] = 0;
      expectReal(vcpu, vcpu.hcall(), `${op} (${check}) after timing`, level);
      selectVariant(host, 'none');
      host.checkInvariants();
    },
  };
}

let cellSerial = 0;

/**
 * The timed closures of one hypercall cell: `run` writes r3 (the guest's
 * hypercall number, as two u32 words) and calls vcpu.hcall(); `burst` runs
 * it BURST times (matrix.mjs times cells of fewer than 512 entries so). They
 * are compiled per cell from their own source text, as a VMM's own vCPU loop
 * is its own code: V8 keeps call feedback per function literal (and its eval
 * cache shares one for equal texts), so one literal shared by every cell saw
 * every host's vCPU and hcall() function and made each call in the burst
 * loop, and the hcall() call in it, a megamorphic call that nobody's vCPU
 * loop makes (interleaved, same run: H_PUT_TCE 2.5–2.6× INDIRECT(512) per
 * entry through the shared closures, 1.95–2.0× through a loop of its own).
 */
function cellClosures(vcpu, r32, nr) {
  const make = new Function('vcpu', 'r32', 'nr', 'BURST', `"use strict"; // bench hypercall cell ${++cellSerial}
const run = () => {
  r32[6] = nr;
  r32[7] = 0;
  return vcpu.hcall();
};
const burst = () => {
  let rc = 0;
  for (let i = 0; i < BURST; i++) rc |= run();
  return rc;
};
return { run, burst };`);
  return make(vcpu, r32, nr, BURST);
}

async function prepareHcallSetup(op, engine, kernel) {
  const s = await makeSetup(engine, 'pid-call', op === 'H_PUT_TCE_64K_OVER_4K' ? 12 : 16, kernel);
  const level = kernel === '5.19' ? 'virtual' : 'real';
  const { vcpu, ram } = s;
  const r = vcpu.regs;
  const entries = entriesOf(op);
  {
    if (op === 'H_STUFF_TCE_512' || op === 'H_PUT_TCE_INDIRECT_512') {
      writeList(ram, 512);
      // Map the 512 entries first (virtual mode allocates the levels and the guest-table pages).
      r[3] = BigInt(H.PUT_TCE_INDIRECT); r[4] = s.liobn; r[5] = 0n; r[6] = BigInt(LIST_GPA); r[7] = 512n;
      let rc = vcpu.hcall();
      if (rc !== H.SUCCESS) throw new Error(`${op}: the preparing INDIRECT returned ${rc}`);
      if (op === 'H_STUFF_TCE_512') {
        // Steady state: each timed call clears 512 entries (the first one mapped ones, the others already clear ones).
        r[3] = BigInt(H.STUFF_TCE); r[4] = s.liobn; r[5] = 0n; r[6] = 0n; r[7] = 512n;
      } else {
        r[3] = BigInt(H.PUT_TCE_INDIRECT); // r3 came back as the status
      }
      const nr3 = r[3];
      rc = vcpu.hcall();
      expectReal(vcpu, rc, op, level);
      r[3] = nr3;
    } else {
      // H_PUT_TCE of guest page 5 at entry 5 (with 64K over 4K: 16 hardware subpages).
      r[3] = BigInt(H.PUT_TCE); r[4] = s.liobn; r[5] = 5n * BigInt(PAGE); r[6] = (5n * BigInt(PAGE)) | 3n;
      vcpu.hcall(); // virtual mode: levels and the guest-table page
      r[3] = BigInt(H.PUT_TCE);
      expectReal(vcpu, vcpu.hcall(), op, level);
      r[3] = BigInt(H.PUT_TCE);
    }
    // r3 returns the status, so the guest writes the hypercall number before every call. It is
    // written as two u32 words through a Uint32Array view of the same register bytes: plain
    // number stores, no BigInt conversion and no allocation inside the timed loop.
    const r32 = new Uint32Array(r.buffer, r.byteOffset, 64);
    const nr = Number(r[3]);
    return { setup: s, entries, r32, nr };
  }
}

/** MAP_DMA + UNMAP_DMA through VFIO on its own host (the check is in TypeScript, per ioctl). */
function prepareVfio(op, s) {
  const { fd, ram } = s;
  const entries = entriesOf(op);
  // MAP_DMA + UNMAP_DMA through VFIO, argument objects built once.
  const size = BigInt(entries * PAGE);
  const map = { iova: 0x1000000n, vaddr: ram.ua, size, read: true, write: true };
  const unmap = { iova: 0x1000000n, size };
  fd.mapDma(map); // first map allocates the levels (then kept)
  fd.unmapDma(unmap);
  return {
    setup: s,
    entries,
    run: () => {
      fd.mapDma(map);
      fd.unmapDma(unmap);
    },
    verify() {
      fd.mapDma(map);
      const t = fd.container.windows[0].table;
      if (t.getUa(0x1000000n >> 16n) !== ram.ua) throw new Error(`${op}: the mapping did not land`);
      fd.unmapDma(unmap);
      s.host.checkInvariants();
    },
  };
}
