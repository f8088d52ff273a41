// vcpu.hcall() on both engines and both kernel eras in one process: a vCPU
// with real mode gets the hcall() function of its host's engine instance
// (src/kvm/vcpu.ts, hcallOf: one per instance, so that V8's call feedback of
// one host's vCPUs is not shared with another host's); a vCPU without real
// mode the plain chain. Whatever path a vCPU takes, the same calls give the
// same statuses, levels, registers and table entries, also when the calls of
// the setups are interleaved, after a release and with subscribers.
import { describe, expect, it } from 'vitest';
import { Host, H, Vcpu } from '../../src/index.js';
import { v2Container, linkedVm } from '../fixtures.js';

const MiB = 1n << 20n;
const LIOBN = 0x8000_0000n;

async function setup(engine: 'wasm' | 'native', kernel: '4.19' | '5.19') {
  const host = await Host.create({ engine, kernel, maxMemory: 32 << 20 });
  const p = host.spawn();
  const ram = p.mmap(4n * MiB);
  const { g, fd } = v2Container(host, p, ram, { pageShift: 12, windowSize: 1n << 30n, levels: 1 });
  fd.mapDma({ iova: 0n, vaddr: ram.ua, size: 0x1000n, read: true, write: true });
  const vm = linkedVm(p, ram, g, { liobn: LIOBN, pageShift: 12, size: 1n << 18n });
  return { host, vm, vcpu: vm.vcpu(0), table: fd.container.windows[0]!.table, ram };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** One hypercall through vcpu.hcall(): what the VMM sees afterwards. */
function call(s: Setup, nr: number, ...args: bigint[]) {
  const r = s.vcpu.regs;
  r[3] = BigInt(nr);
  args.forEach((a, i) => { r[4 + i] = a; });
  const rc = s.vcpu.hcall();
  return { rc, r3: r[3], r4: r[4], level: s.vcpu.lastLevel };
}

/** The calls of the test on entry `i` (page i of guest RAM): a put, a remap, a get, a refused liobn, an unknown hypercall, a clear. */
function script(s: Setup, i: bigint) {
  const ioba = i << 12n;
  return [
    call(s, H.PUT_TCE, LIOBN, ioba, (i << 12n) | 3n),
    call(s, H.PUT_TCE, LIOBN, ioba, ((i + 1n) << 12n) | 1n),
    call(s, H.GET_TCE, LIOBN, ioba),
    call(s, H.PUT_TCE, LIOBN + 1n, ioba, 3n),
    call(s, 0x104),
    call(s, H.PUT_TCE, LIOBN, ioba + 0x1000n, ((i + 2n) << 12n) | 3n),
    call(s, H.STUFF_TCE, LIOBN, ioba + 0x1000n, 0n, 1n),
  ].map(({ rc, r3, r4, level }, k) => ({ k, rc, r3, r4: k === 2 ? r4 : undefined, level }));
}

describe('vcpu.hcall() on two engines and two eras in one process gives the same kernel results', () => {
  it('chooses the path per engine instance at creation, and the calls agree, interleaved', async () => {
    const ss = [await setup('wasm', '4.19'), await setup('native', '4.19'), await setup('wasm', '5.19'), await setup('native', '5.19'), await setup('wasm', '4.19'), await setup('native', '4.19')];
    for (const s of ss) expect(s.vcpu).toBeInstanceOf(Vcpu);
    // wasm and native vCPUs with real mode run different hcall functions; a '5.19' vCPU the plain chain.
    expect(ss[0]!.vcpu.hcall).not.toBe(ss[1]!.vcpu.hcall);
    expect(ss[2]!.vcpu.hcall).toBe(ss[3]!.vcpu.hcall);
    expect(ss[2]!.vcpu.hcall).toBe(Vcpu.prototype.hcall);
    expect(ss[2]!.vcpu.hcall).not.toBe(ss[0]!.vcpu.hcall);
    // Two hosts of one kind: a function each; two vCPUs of one host: the same one.
    expect(ss[4]!.vcpu.hcall).not.toBe(ss[0]!.vcpu.hcall);
    expect(ss[5]!.vcpu.hcall).not.toBe(ss[1]!.vcpu.hcall);
    expect(ss[0]!.vm.vcpu(1).hcall).toBe(ss[0]!.vcpu.hcall);
    expect(ss[1]!.vm.vcpu(1).hcall).toBe(ss[1]!.vcpu.hcall);
    const runs: ReturnType<typeof script>[][] = ss.map(() => []);
    for (let i = 1n; i <= 8n; i++) ss.forEach((s, n) => runs[n]!.push(script(s, 2n * i)));
    const levelless = (r: ReturnType<typeof script>[]) => r.map((x) => x.map(({ level, ...rest }) => rest));
    // Same statuses and registers everywhere; the same levels for one era.
    for (const r of runs) expect(levelless(r)).toEqual(levelless(runs[0]!));
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[3]).toEqual(runs[2]);
    // The remap ends in real mode under 4.19 and in virtual mode under 5.19 (no real mode there).
    expect(runs[0]![0]![1]).toMatchObject({ rc: H.SUCCESS, level: 'real' });
    expect(runs[2]![0]![1]).toMatchObject({ rc: H.SUCCESS, level: 'virtual' });
    expect(runs[0]![0]![2]).toMatchObject({ rc: H.SUCCESS, r4: (3n << 12n) | 1n });
    expect(runs[0]![0]![4]).toMatchObject({ rc: H.TOO_HARD, level: 'exit' });
    // The hardware tables hold the same entries.
    for (const s of ss) {
      for (let i = 1n; i <= 8n; i++) {
        expect(s.table.getUa(2n * i)).toBe(s.ram.ua + ((2n * i + 1n) << 12n));
        expect(s.table.getUa(2n * i + 1n)).toBe(0n);
      }
      s.host.checkInvariants();
    }
  });

  it('subscribers and release take the same slow path on every kind', async () => {
    for (const [engine, kernel] of [['wasm', '4.19'], ['native', '4.19'], ['wasm', '5.19']] as const) {
      const s = await setup(engine, kernel);
      const seen: string[] = [];
      s.vm.subscribe('*', (e) => seen.push(e.kind));
      expect(call(s, H.PUT_TCE, LIOBN, 0x3000n, 0x5000n | 3n).rc).toBe(H.SUCCESS);
      expect(seen, `${engine}/${kernel}: one map event from a put with a subscriber`).toEqual(['map']);
      s.vcpu.release();
      expect(() => s.vcpu.hcall(), `${engine}/${kernel}`).toThrow(/released/);
    }
  });
});
