// Options objects (docs/semantics.md §1.1): in every options or arguments
// object of the public API an unknown key is a TypeError naming it and the
// entry point (a typo gets a suggestion), a missing required option is
// "X is required", and either refusal changes nothing.
import { describe, expect, it } from 'vitest';
import { Host, IommuTable, checkGeometry } from '../../src/index.js';
import { world, refused, any, LIOBN, VIO } from './api-helpers.js';

type World = Awaited<ReturnType<typeof world>>;

/** Each entry point taking an object: a valid object, the call, and the name the message gives the object. */
const ENTRY_POINTS: { where: string; name: string; valid: (w: World) => Record<string, unknown>; call: (w: World, o: unknown) => unknown; prepare?: (w: World) => void }[] = [
  { where: 'host.spawn', name: 'opts', valid: () => ({ memlockLimit: 'unlimited' }), call: (w, o) => w.host.spawn(any(o)) },
  { where: 'host.addGroup', name: 'opts', valid: () => ({ maxLevels: 3 }), call: (w, o) => w.host.addGroup(any(o)) },
  { where: 'mmap', name: 'opts', valid: () => ({ backed: false }), call: (w, o) => w.p.mmap(1n << 16n, any(o)) },
  { where: 'process.clone', name: 'opts', valid: () => ({ vm: true }), call: (w, o) => w.p.clone(any(o)) },
  { where: 'process.createVm', name: 'opts', valid: () => ({ profile: 'qemu' }), call: (w, o) => w.p.createVm(any(o)) },
  { where: 'fd.createWindow', name: 'args', valid: () => ({ pageShift: 16, windowSize: 1n << 30n, levels: 2 }), call: (w, o) => w.fd.createWindow(any(o)) },
  { where: 'fd.mapDma', name: 'args', valid: (w) => ({ iova: 0x1000n, vaddr: w.ram.ua + 0x1000n, size: 0x1000n, read: true }), call: (w, o) => w.fd.mapDma(any(o)) },
  { where: 'fd.unmapDma', name: 'args', valid: () => ({ iova: 0n, size: 0x1000n }), call: (w, o) => w.fd.unmapDma(any(o)) },
  { where: 'vm.createTceTable', name: 'args', valid: () => ({ liobn: 5n, pageShift: 12, offset: 0n, size: 16n }), call: (w, o) => w.vm.createTceTable(any(o)) },
  { where: 'vm.addMemslot', name: 'slot', valid: (w) => ({ gpa: 1n << 32n, size: 1n << 16n, ua: w.ram.ua }), call: (w, o) => w.vm.addMemslot(any(o)) },
  { where: 'vm.addPhb', name: 'opts', valid: () => ({ buid: 7n, index: 1 }), call: (w, o) => w.qvm.addPhb(any(o)) },
  { where: 'vm.addPhb', name: 'opts.dma32', valid: () => ({ addr: 0n, size: 1n << 20n }), call: (w, o) => w.qvm.addPhb({ buid: 7n, index: 1, dma32: any(o) }) },
  { where: 'vm.vcpu', name: 'opts', valid: (w) => ({ thread: w.p }), call: (w, o) => w.vm.vcpu(1, any(o)) },
  { where: 'vm.attachContainer', name: 'opts', valid: () => ({ liobns: [VIO] }), call: (w, o) => w.qvm.attachContainer(w.qfd, any(o)), prepare: (w) => w.sync.detach() },
  { where: 'a table geometry', name: 'geometry', valid: () => ({ pageShift: 12, windowSize: 1n << 20n, levels: 1, busOffset: 0n }), call: (w, o) => IommuTable.create(w.host, any(o), true) },
  { where: 'a table geometry', name: 'geometry', valid: () => ({ pageShift: 12, windowSize: 1n << 20n, levels: 1, busOffset: 0n }), call: (w, o) => checkGeometry(any(o), 16) },
  { where: 'table.buildV2', name: 'opts', valid: () => ({ realMode: false }), call: (w, o) => w.fd.container.windows[0]!.table.buildV2(w.p.mm, 1n, 1n, w.ram.ua, 3, any(o)) },
  { where: 'host.snapshot', name: 'opts', valid: () => ({ format: 'binary' }), call: (w, o) => w.host.snapshot(any(o)) },
  { where: 'Host.restore', name: 'opts', valid: () => ({ ram: () => undefined }), call: (w, o) => Host.restore(w.host.snapshot({ format: 'binary', ram: false }), any(o)) },
  { where: 'table.clearV2', name: 'opts', valid: () => ({}), call: (w, o) => w.fd.container.windows[0]!.table.clearV2(w.p.mm, 0n, 1n, any(o)) },
];

describe('an unknown option key is a TypeError naming it and the entry point; nothing changes', () => {
  it('Host.create: a misspelt key (ownercheck) is refused with a suggestion, an unknown one with the list', async () => {
    await expect(Host.create(any({ ownercheck: 'none' }))).rejects.toThrow(new TypeError('opts.ownercheck is not an option of Host.create (did you mean ownerCheck?)'));
    await expect(Host.create(any({ maxMemroy: 1 << 20 }))).rejects.toThrow(/^opts\.maxMemroy is not an option of Host\.create \(did you mean maxMemory\?\)$/);
    const e = await Host.create(any({ colour: 'blue' })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TypeError);
    expect((e as Error).message).toBe('opts.colour is not an option of Host.create (its options: ownerCheck, pidCheck, kernel, engine, pageShift, maxMemory, memlockLimit, pin)');
    // an unknown key set to undefined is still a typo
    await expect(Host.create(any({ ownerCheck: 'mm', enigne: undefined }))).rejects.toThrow(/opts\.enigne is not an option of Host\.create \(did you mean engine\?\)/);
  });

  for (const ep of ENTRY_POINTS) {
    it(`${ep.where} (${ep.name})`, async () => {
      const fresh = async (): Promise<World> => {
        const x = await world();
        ep.prepare?.(x);
        return x;
      };
      const w = await fresh();
      const bad = { ...ep.valid(w), bogusKey: 1 };
      const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      refused(w.host, () => ep.call(w, bad), TypeError, new RegExp(`^${esc(ep.name)}\\.bogusKey is not an option of ${esc(ep.where)} \\(`));
      // the same object without the bad key is accepted (and so it was the key that was refused)
      expect(() => ep.call(w, ep.valid(w))).not.toThrow();
      // an inherited key is not the caller's: only own keys count
      const v = await fresh();
      expect(() => ep.call(v, Object.assign(Object.create({ inherited: 1 }) as object, ep.valid(v)))).not.toThrow();
    });
  }

  it('a typo of a key of an ioctl argument gets its suggestion (fd.mapDma {ioba} → iova)', async () => {
    const w = await world();
    refused(w.host, () => w.fd.mapDma(any({ ioba: 0n, vaddr: w.ram.ua, size: 0x1000n, read: true })), TypeError, /^args\.ioba is not an option of fd\.mapDma \(did you mean iova\?\)$/);
    refused(w.host, () => w.vm.createTceTable(any({ liobn: 9n, pageshift: 12, offset: 0n, size: 1n })), TypeError, /did you mean pageShift\?/);
  });
});

describe('a missing required option or argument is "X is required"; nothing changes', () => {
  const cases: { what: string; call: (w: World) => unknown; message: RegExp }[] = [
    { what: 'createTceTable liobn', call: (w) => w.vm.createTceTable(any({ pageShift: 12, offset: 0n, size: 1n })), message: /^liobn is required$/ },
    { what: 'createTceTable size', call: (w) => w.vm.createTceTable(any({ liobn: 9n, pageShift: 12, offset: 0n })), message: /^size is required$/ },
    { what: 'createTceTable pageShift', call: (w) => w.vm.createTceTable(any({ liobn: 9n, offset: 0n, size: 1n })), message: /^pageShift is required$/ },
    { what: 'addMemslot ua', call: (w) => w.vm.addMemslot(any({ gpa: 1n << 32n, size: 1n << 16n })), message: /^ua is required$/ },
    { what: 'mapDma size', call: (w) => w.fd.mapDma(any({ iova: 0x1000n, vaddr: w.ram.ua, read: true })), message: /^size is required$/ },
    { what: 'unmapDma iova', call: (w) => w.fd.unmapDma(any({ size: 0x1000n })), message: /^iova is required$/ },
    { what: 'createWindow levels', call: (w) => w.fd.createWindow(any({ pageShift: 16, windowSize: 1n << 30n })), message: /^levels is required$/ },
    { what: 'addPhb buid', call: (w) => w.qvm.addPhb(any({ index: 1 })), message: /^opts\.buid is required$/ },
    { what: 'addPhb index', call: (w) => w.qvm.addPhb(any({ buid: 7n })), message: /^opts\.index is required$/ },
    { what: 'addPhb dma32.size', call: (w) => w.qvm.addPhb(any({ buid: 7n, index: 1, dma32: { addr: 0n } })), message: /^opts\.dma32\.size is required$/ },
    { what: 'mmap size', call: (w) => w.p.mmap(any(undefined)), message: /^size is required$/ },
    { what: 'registerMemory size', call: (w) => w.fd.registerMemory(w.ram.ua, any(undefined)), message: /^size is required$/ },
    { what: 'removeWindow startAddr', call: (w) => w.fd.removeWindow(any(undefined)), message: /^startAddr is required$/ },
    { what: 'translate iova', call: (w) => w.vm.translate(LIOBN, any(undefined)), message: /^iova is required$/ },
    { what: 'vcpu index', call: (w) => w.vm.vcpu(any(undefined)), message: /^index is required$/ },
    { what: 'rtas nret', call: (w) => w.qvm.rtas('ibm,reset-pe-dma-window', [0, 0, 0], any(undefined)), message: /^nret is required$/ },
    { what: 'rtas name', call: (w) => w.qvm.rtas(any(undefined), [], 1), message: /^name is required$/ },
    { what: 'IommuTable.create busOffset', call: (w) => IommuTable.create(w.host, any({ pageShift: 12, windowSize: 1n << 20n, levels: 1 }), true), message: /^busOffset is required$/ },
  ];
  for (const c of cases) {
    it(c.what, async () => {
      const w = await world();
      refused(w.host, () => c.call(w), TypeError, c.message);
    });
  }

  it('checkGeometry: the bus offset its checks do not read may be left out, and is checked when given', () => {
    expect(() => checkGeometry({ pageShift: 12, windowSize: 1n << 20n, levels: 1 }, 16)).not.toThrow();
    expect(() => checkGeometry({ pageShift: 12, windowSize: 1n << 20n, levels: 9 }, 16)).toThrow(/levels must be in \[1, 5\]/);
    expect(() => checkGeometry(any({ pageShift: 12, windowSize: 1n << 20n, levels: 1, busOffset: '0' }), 16)).toThrow(/^busOffset must be a bigint or a number/);
  });

  it('Host.create: every option has a default, and an empty object or none is the default host', async () => {
    const a = await Host.create();
    const b = await Host.create({});
    expect(a.stats()).toEqual(b.stats());
  });
});
