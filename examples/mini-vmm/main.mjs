// mini-vmm: the smallest VMM that embeds spapr-tce the way QEMU embeds its
// sPAPR IOMMU. One qemu-profile VM with 4 MiB of RAM, one VIO-style block
// device behind a guest-visible TCE table, a guest driver that maps its
// buffers with hypercalls, a VFIO v2 container kept in step with the guest
// table by the library (vm.attachContainer: QEMU's sPAPR VFIO listener), and
// a snapshot taken mid-run and restored into a second host that finishes the run.
//
// Run: `npm run example:vmm` (after `npm install`, which builds dist/), or
// `node examples/mini-vmm/main.mjs`. Exit code 0 iff every check passed.
//
// Files: main.mjs (the VMM: setup, vCPU hypercall exits, snapshot/restore),
// guest-driver.mjs (the guest), block-device.mjs (the device model),
// spapr-tce.mjs (the import).
import { createHash } from 'node:crypto';
import { Host, H } from './spapr-tce.mjs';
import { GuestDriver, H_SEND_CRQ, OP, STATUS } from './guest-driver.mjs';
import { BlockDevice, SECTOR } from './block-device.mjs';

const MiB = 1n << 20n;
const RAM_SIZE = 4n * MiB;
// A VIO device: QEMU numbers VIO units from 0x71000000 and uses the unit
// address as the LIOBN (SPAPR_VIO_LIOBN); its window starts at bus 0, has
// 4 KiB pages and is 256 MiB for v-scsi and l-lan (rtce_window_size).
const UNIT = 0x71000002;
const LIOBN = BigInt(UNIT);
const WINDOW_BYTES = 0x1000_0000n;
const TCE_SHIFT = 12;
const PAGE = 1 << TCE_SHIFT;

const hex = (x) => '0x' + x.toString(16);
const sha = (x) => createHash('sha256').update(x).digest('hex').slice(0, 16);
let indent = '';
const log = (s) => console.log(indent + s);
const section = (title) => { indent = ''; log(''); log(`== ${title}`); indent = '  '; };
const checks = [];
const check = (what, ok) => { checks.push({ what, ok }); log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); return ok; };

const PERM = ['none', 'R', 'W', 'RW'];
const size = (n) => (n >= 1n << 20n ? `${n >> 20n} MiB` : `${n >> 10n} KiB`);

/**
 * The container calls the library's sync makes, one line each (QEMU's
 * trace points vfio_prereg_register, vfio_spapr_create_window, vfio_dma_map…).
 */
function vfioCall(c) {
  const ok = c.error ? c.error.code : 'ok';
  const tces = c.entries === undefined ? '' : `  (${c.entries} TCE${c.entries === 1 ? '' : 's'})`;
  switch (c.op) {
    case 'registerMemory': return log(`vfio: REGISTER_MEMORY(va ${hex(c.vaddr)}, ${size(c.size)}) ${ok}`);
    case 'unregisterMemory': return log(`vfio: UNREGISTER_MEMORY(va ${hex(c.vaddr)}, ${size(c.size)}) ${ok}`);
    case 'createWindow': return log(`vfio: TCE_CREATE(${size(c.windowSize)}, 2^${c.pageShift} pages, ${c.levels} level${c.levels === 1 ? '' : 's'}) ${ok}${c.startAddr === undefined ? '' : ` -> start ${hex(c.startAddr)}`}`);
    case 'removeWindow': return log(`vfio: TCE_REMOVE(${hex(c.iova)}) ${ok}${c.liobn === undefined ? ' (the kernel\'s default window)' : ''}`);
    case 'mapDma': return log(`vfio: MAP_DMA(iova ${hex(c.iova)}, ${size(c.size)}, va ${hex(c.vaddr)}, ${c.write ? 'RW' : 'R'}) ${ok}${tces}`);
    case 'unmapDma': return log(`vfio: UNMAP_DMA(iova ${hex(c.iova)}, ${size(c.size)}) ${ok}${tces}`);
  }
}
/** What the sync could not mirror (QEMU: error_report); counted in its stats too. */
const vfioError = (e) => log(`vfio: ERROR ${e.message}`);
/** The VMM's own view of the events: one line per guest TCE written. */
const logEvent = (e) => log(e.kind === 'map' ? `event map   IOVA ${hex(e.iova)} -> gpa ${hex(e.gpa)} ${PERM[e.perm]}` : e.kind === 'unmap' ? `event unmap IOVA ${hex(e.iova)}` : `event ${e.kind} ${hex(e.liobn)}`);
const statsLine = (st) => Object.entries(st).map(([k, v]) => `${k} ${v}`).join(', ');

/**
 * Guest table vs host window, entry by entry: every guest mapping must be in
 * the host window with the host address behind its guest page and the
 * permission MAP_DMA gave it, and nothing else.
 */
function compare(vm, fd) {
  const guest = [];
  vm.replay(LIOBN, (ev) => {
    const slot = vm.memslots.find((s) => ev.gpa >= s.gpa && ev.gpa < s.gpa + s.size);
    if (slot) guest.push(`${hex(ev.iova)} va ${hex(slot.ua + ev.gpa - slot.gpa)} ${ev.perm & 2 ? 'RW' : 'R'}`);
  });
  const w = fd.container.windows.find((x) => x && x.startAddr === 0n);
  const host = [];
  for (const [entry, tce, ua] of w ? w.table.entries() : []) host.push(`${hex(entry << BigInt(w.pageShift))} va ${hex(ua)} ${PERM[Number(tce & 3n)]}`);
  return { guest, host, agree: guest.length === host.length && guest.every((g, i) => g === host[i]) };
}

const HCALL_NAME = { [H.PUT_TCE]: 'H_PUT_TCE', [H.PUT_TCE_INDIRECT]: 'H_PUT_TCE_INDIRECT', [H.STUFF_TCE]: 'H_STUFF_TCE', [H.GET_TCE]: 'H_GET_TCE', [H_SEND_CRQ]: 'H_SEND_CRQ' };
const RC_NAME = { [H.SUCCESS]: 'H_SUCCESS', [H.HARDWARE]: 'H_HARDWARE', [H.FUNCTION]: 'H_FUNCTION', [H.PARAMETER]: 'H_PARAMETER', [H.DEST_PARM]: 'H_DEST_PARM', [H.TOO_HARD]: 'H_TOO_HARD' };

/**
 * The vCPU's hypercall exit, i.e. the guest's `sc 1`: arguments go into the
 * register block in linear memory (vcpu.regs: r3 = number, r4.. = args) and
 * vcpu.hcall() runs the call there. The TCE calls finish inside the library
 * (in the qemu profile, with QEMU's h_put_tce & co. semantics) and deliver
 * their map/unmap events before returning; anything else comes back as
 * H_TOO_HARD, "not mine", and the VMM dispatches it itself, as
 * spapr_hypercall does for the calls QEMU registered (here H_SEND_CRQ).
 */
function cpu(vcpu, devices) {
  return (nr, ...args) => {
    const r = vcpu.regs;
    r[3] = BigInt(nr);
    args.forEach((a, i) => { r[4 + i] = a; });
    log(`hcall ${HCALL_NAME[nr] ?? hex(nr)}(${args.map(hex).join(', ')})`);
    const saved = indent;
    indent += '    ';
    let rc = vcpu.hcall();
    if (rc === H.TOO_HARD) {
      const dev = devices.get(r[4]);
      rc = nr === H_SEND_CRQ && dev ? dev.crq(r[5], r[6]) : H.FUNCTION;
      r[3] = BigInt.asUintN(64, BigInt(rc)); // the status the guest sees in r3
    }
    indent = saved;
    log(`  -> ${RC_NAME[rc] ?? rc}`);
    return rc;
  };
}

/** The disk image: every sector labelled, the rest a pattern. */
function makeDisk(sectors) {
  const d = new Uint8Array(sectors * SECTOR);
  for (let i = 0; i < d.length; i++) d[i] = (i * 7 + (i >> 9)) & 0xff;
  for (let s = 0; s < sectors; s++) d.set(new TextEncoder().encode(`sector ${s}`), s * SECTOR);
  return d;
}
const fill = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (seed + i * 13 + (i >> 8)) & 0xff);

// The guest's program: requests 1-3 run on host A, 4-6 on host B after the
// snapshot. Buffers are scattered guest pages; the device sees them at
// consecutive IOVAs. Request 6 is a driver bug: it reuses an IOVA it unmapped.
const REQUESTS = [
  { op: OP.WRITE, sector: 16, pages: [0x203000, 0x20a000], data: fill(2 * PAGE, 1) },
  { op: OP.READ, sector: 16, pages: [0x211000, 0x204000] },
  { op: OP.READ, sector: 0, pages: [0x215000, 0x216000, 0x217000] }, // contiguous: one MAP_DMA
  { op: OP.WRITE, sector: 64, pages: [0x230000, 0x223000, 0x229000], data: fill(3 * PAGE, 99) },
  { op: OP.READ, sector: 64, pages: [0x232000, 0x233000, 0x238000] }, // two contiguous, one apart: two MAP_DMAs
  { op: OP.READ, sector: 0, pages: [0x240000, 0x241000], staleIovaOf: 5 },
];
const SNAPSHOT_AFTER = 3;

/** Everything the VMM has for one host: the objects it talks to. */
function machine({ vm, vcpu, device, sync, fd }) {
  // Guest RAM as the guest CPU sees it: the memslot's bytes in the VMM's mapping.
  const slot = vm.memslots[0];
  const map = vm.mm.findMapping(slot.ua);
  const from = Number(slot.ua - map.ua);
  const ram = map.bytes.subarray(from, from + Number(slot.size));
  const devices = new Map([[BigInt(UNIT), device]]);
  const driver = new GuestDriver({ ram, hypercall: cpu(vcpu, devices), liobn: LIOBN, unit: UNIT, windowPages: Number(WINDOW_BYTES >> BigInt(TCE_SHIFT)), log });
  return { vm, vcpu, device, sync, fd, ram, driver };
}

/** What must be equal on both hosts at the snapshot point (read-only: nothing here allocates). */
function fingerprint(m) {
  const guestTable = [];
  m.vm.replay(LIOBN, (ev) => guestTable.push(`${hex(ev.iova)}=${hex(ev.gpa)}/${ev.perm}`));
  const cmp = compare(m.vm, m.fd);
  const regions = m.fd.container.regions.map((r) => `used=${r.used} mapped=${r.mapped}`);
  const f = {
    guestTable, hostWindow: cmp.host, regions, hcalls: m.vm.stats(),
    translate: m.vm.translate(LIOBN, m.driver.ringIova, 'write'),
    guestRam: sha(m.ram), disk: sha(m.device.disk), progress: m.driver.completed,
  };
  return { ...f, digest: sha(JSON.stringify(f, (_, v) => (typeof v === 'bigint' ? hex(v) : v))) };
}

const shadow = makeDisk(128); // what the disk must hold, to check every read against
const iovaOf = new Map();

function runRequest(m, n) {
  const req = REQUESTS[n - 1];
  const bytes = req.pages.length * PAGE;
  const first = req.sector, last = req.sector + bytes / SECTOR - 1;
  section(`request ${n}: ${req.op === OP.WRITE ? 'WRITE' : 'READ'} sectors ${first}..${last} (${bytes / 1024} KiB, guest pages ${req.pages.map(hex).join(' ')})${req.staleIovaOf ? ` -- buggy: reuses request ${req.staleIovaOf}'s unmapped IOVA` : ''}`);
  const staleIova = req.staleIovaOf ? iovaOf.get(req.staleIovaOf) : undefined;
  const r = m.driver.submit({ op: req.op, sector: req.sector, pages: req.pages, data: req.data, staleIova });
  iovaOf.set(n, r.dataIova);
  const at = req.sector * SECTOR;
  if (req.staleIovaOf) {
    check(`request ${n}: the device refused the unmapped IOVA ${hex(r.dataIova)}: ${RC_NAME[r.rc]}, status ${hex(r.status)}, guest buffer untouched`,
      r.rc === H.DEST_PARM && r.status === STATUS.DMA_ERROR && r.data.every((b) => b === 0x5a));
    return;
  }
  let ok = r.rc === H.SUCCESS && r.status === STATUS.OK;
  if (req.op === OP.WRITE) shadow.set(req.data, at);
  else ok &&= Buffer.compare(r.data, shadow.subarray(at, at + bytes)) === 0;
  ok &&= Buffer.compare(m.device.disk, shadow) === 0;
  check(`request ${n}: served, ${bytes} B ${req.op === OP.WRITE ? 'written to disk' : 'read back'}, data correct`, ok);
}

// ---------------------------------------------------------------- host A
log('mini-vmm: a qemu-profile guest, a VIO-style block device behind LIOBN ' + hex(LIOBN) + ', a VFIO v2 container kept in sync');
section('setup on host A');
const host = await Host.create({ ownerCheck: 'mm' }); // a 64 KiB-page ppc64 host (pageShift 16)
const qemu = host.spawn(); //                              the VMM process
// Guest RAM: an anonymous mapping of the VMM, registered as memslot 0 (KVM_SET_USER_MEMORY_REGION).
const ramMap = qemu.mmap(RAM_SIZE);
const vm = qemu.createVm({ profile: 'qemu' });
vm.addMemslot({ gpa: 0n, size: RAM_SIZE, ua: ramMap.ua });
log(`guest RAM: ${RAM_SIZE / MiB} MiB at VMM address ${hex(ramMap.ua)} = guest physical 0x0 (memslot 0)`);
// The device's TCE table (spapr_tce_new_table + spapr_tce_table_enable at VIO realize).
vm.createTceTable({ liobn: LIOBN, pageShift: TCE_SHIFT, offset: 0n, size: WINDOW_BYTES >> BigInt(TCE_SHIFT) });
log(`TCE table: LIOBN ${hex(LIOBN)}, bus 0x0, ${WINDOW_BYTES >> BigInt(TCE_SHIFT)} entries of 4 KiB (${WINDOW_BYTES / MiB} MiB)`);
// The host side: an IOMMU group (the passed-through device's PE) in a v2 container
// (VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU), kept in step with the guest's window by
// the library: it registers guest RAM, replaces the kernel's default window by one
// mirroring the guest's, and turns the guest's map/unmap events into MAP_DMA/UNMAP_DMA.
const group = host.addGroup();
const fdA = qemu.openContainer();
fdA.attachGroup(group);
fdA.setIommu('v2');
vm.subscribe(LIOBN, logEvent);
const syncA = vm.attachContainer(fdA, { liobns: [LIOBN], onCall: vfioCall, onError: vfioError });
log(`vfio: in sync: host window ${syncA.windows().map((w) => `${hex(w.busOffset)}+${size(w.windowSize)} of 2^${w.pageShift} pages`).join(', ')}`);
const deviceA = new BlockDevice({ unit: UNIT, dma: vm.dma(LIOBN), disk: makeDisk(128), log });
log(`block device: unit ${hex(UNIT)}, ${deviceA.disk.length / SECTOR} sectors, DMA only through vm.dma(${hex(LIOBN)})`);
const A = machine({ vm, vcpu: vm.vcpu(0), device: deviceA, sync: syncA, fd: fdA });

section('guest: probe the device (map its descriptor ring for good)');
A.driver.probe();

for (let n = 1; n <= SNAPSHOT_AFTER; n++) runRequest(A, n);

// ---------------------------------------------------------------- snapshot
section(`snapshot after request ${SNAPSHOT_AFTER}`);
// The VMM's snapshot: the host (guest RAM, vCPU registers, TCE tables,
// container, regions: all in linear memory) plus the device's own state,
// as QEMU sends spapr_iommu next to each device's vmstate.
const json = JSON.stringify({ host: host.snapshot(), devices: [A.device.save()] });
const hostJson = JSON.stringify(JSON.parse(json).host);
log(`snapshot: ${json.length} bytes of JSON (host ${hostJson.length} B in ${JSON.parse(json).host.body.memory.pages.length} non-zero 4 KiB pages of linear memory, device ${json.length - hostJson.length} B)`);
const fpA = fingerprint(A);
const statsA = syncA.stats();
log(`vfio sync on host A: ${statsLine(statsA)}`);

// ---------------------------------------------------------------- host B
section('restore into host B');
const saved = JSON.parse(json);
const hostB = Host.restore(saved.host);
// Subscribers, the sync and the VMM's own objects are not in the snapshot:
// find the restored objects again and re-attach.
const qemuB = hostB.processes.get(qemu.tid);
const vmB = [...hostB.vms].find((v) => v.process === qemuB);
const fdB = qemuB.containers()[0];
check(`host B's own snapshot has host A's checksum (${saved.host.checksum.slice(0, 16)})`, hostB.snapshot().checksum === saved.host.checksum);
// QEMU's destination rebuilds host VFIO state (prereg, window creation, replay).
// Here the container travelled with the host: the sync adopts its region and
// window, empties the window and replays the guest's mappings into it.
vmB.subscribe(LIOBN, logEvent);
const syncB = vmB.attachContainer(fdB, { liobns: [LIOBN], onCall: vfioCall, onError: vfioError });
log(`vfio: re-attached: host window ${syncB.windows().map((w) => `${hex(w.busOffset)} ${w.adopted ? 'adopted' : 'created'}`).join(', ')}, region adopted`);
const deviceB = BlockDevice.restore(saved.devices[0], { dma: vmB.dma(LIOBN), log });
const B = machine({ vm: vmB, vcpu: vmB.vcpu(0), device: deviceB, sync: syncB, fd: fdB });
hostB.checkInvariants();
const fpB = fingerprint(B);
log(`host A at the snapshot: digest ${fpA.digest}  (guest table ${fpA.guestTable.length} entr${fpA.guestTable.length === 1 ? 'y' : 'ies'}, host window ${fpA.hostWindow.length}, regions ${fpA.regions.join('; ')}, guest RAM ${fpA.guestRam}, disk ${fpA.disk})`);
log(`host B restored:      digest ${fpB.digest}  (guest table ${fpB.guestTable.length} entr${fpB.guestTable.length === 1 ? 'y' : 'ies'}, host window ${fpB.hostWindow.length}, regions ${fpB.regions.join('; ')}, guest RAM ${fpB.guestRam}, disk ${fpB.disk})`);
check('host A and host B agree at the snapshot point', fpA.digest === fpB.digest);
log(`guest progress read from host B's guest RAM: ${B.driver.completed} requests completed, ring at IOVA ${hex(B.driver.ringIova)}`);

for (let n = B.driver.completed + 1; n <= REQUESTS.length; n++) runRequest(B, n);

// ---------------------------------------------------------------- the end
section('end of run on host B');
const cmp = compare(vmB, fdB);
log(`guest table (vm.replay):    ${cmp.guest.join('; ') || '(empty)'}`);
log(`host window (container):    ${cmp.host.join('; ') || '(empty)'}`);
check(`host and guest tables agree (${cmp.guest.length} mapping${cmp.guest.length === 1 ? '' : 's'})`, cmp.agree && cmp.guest.length > 0);
const st = vmB.stats();
log(`hypercalls (both hosts): ${Object.entries(st).map(([k, v]) => `${k} ${v.real + v.virtual + v.exit}`).join(', ')}`);
const c = B.device.counters;
log(`device: ${c.requests} requests, DMA read ${c.dmaReadBytes} B, DMA written ${c.dmaWriteBytes} B, ${c.faults} DMA fault(s)`);
const statsB = syncB.stats();
log(`vfio sync on host A: ${statsLine(statsA)}`);
log(`vfio sync on host B: ${statsLine(statsB)}`);
log(`pre-registered region: ${fdB.container.regions.map((r) => `used ${r.used}, mapped ${r.mapped} (1 + TCEs pointing in)`).join('; ')}`);
hostB.checkInvariants();
log('checkInvariants(): passed');
check(`host B finished the run: ${B.driver.completed} of ${REQUESTS.length - 1} good requests completed, ${c.faults} fault`, B.driver.completed === REQUESTS.length - 1 && c.faults === 1);
check('the sync reported no error on either host', statsA.errors === 0 && statsB.errors === 0);

section('detach the sync on host B (the VMM stops passing the device through)');
syncB.detach();
log(`container: ${fdB.container.windows.filter(Boolean).length} windows, ${fdB.container.regions.length} regions; locked_vm ${qemuB.mm.lockedPages} pages`);
hostB.checkInvariants();
check('detach() undid what the sync made: no window, no region, nothing locked', fdB.container.windows.every((w) => !w) && fdB.container.regions.length === 0 && qemuB.mm.lockedPages === 0n);

const failed = checks.filter((x) => !x.ok);
section(`result: ${failed.length === 0 ? 'all' : `${checks.length - failed.length} of`} ${checks.length} checks passed`);
process.exitCode = failed.length === 0 ? 0 : 1;
