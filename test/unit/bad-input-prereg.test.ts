// Bad input to pre-registration (docs/semantics.md §1 "Errors", §2.1): preregNew/Get/Put reject wrong types, negative, huge, non-integer and foreign arguments with an error naming the argument, never a trap, state untouched.
import { describe, it } from 'vitest';
import { Host, preregNew, preregGet, preregPut, type Region, type Mm } from '../../src/index.js';
import { expectRejected } from '../model/harness.js';

async function setup() {
  const host = await Host.create();
  const p = host.spawn();
  const ram = p.mmap(1n << 20n);
  const r = preregNew(p, ram.ua, 4n);
  return { host, p, ram, r };
}
const any = (x: unknown) => x as never;

describe('bad input: preregNew', () => {
  const badUa: [string, unknown][] = [['unsafe number', 2 ** 60], ['string', '0x7fff0000'], ['negative', -65536n], ['≥ 2^64', 1n << 64n], ['undefined', undefined], ['null', null]];
  for (const [name, ua] of badUa) {
    it(`ua ${name}`, async () => {
      const { host, p } = await setup();
      expectRejected(host, () => preregNew(p, any(ua), 1n), 'ua');
    });
  }
  const badEntries: [string, unknown][] = [['unsafe number', 2 ** 53], ['negative', -1n], ['≥ 2^64', 1n << 64n], ['string', '4'], ['float', 1.5]];
  for (const [name, n] of badEntries) {
    it(`entries ${name}`, async () => {
      const { host, p, ram } = await setup();
      expectRejected(host, () => preregNew(p, ram.ua + (8n << 16n), any(n)), 'entries');
    });
  }
  it('proc not a Process', async () => {
    const { host, ram } = await setup();
    expectRejected(host, () => preregNew(any(undefined), ram.ua, 1n), 'proc');
    expectRejected(host, () => preregNew(any({}), ram.ua, 1n), 'proc');
  });
});

describe('bad input: preregGet', () => {
  it('ua and entries of the wrong type or range', async () => {
    const { host, p, ram } = await setup();
    expectRejected(host, () => preregGet(p.mm, any(String(ram.ua)), 4n), 'ua');
    expectRejected(host, () => preregGet(p.mm, -1n, 4n), 'ua');
    expectRejected(host, () => preregGet(p.mm, ram.ua, any(4.5)), 'entries');
    expectRejected(host, () => preregGet(p.mm, ram.ua, 1n << 64n), 'entries');
  });
  it('mm not an Mm', async () => {
    const { host, ram } = await setup();
    expectRejected(host, () => preregGet(any(undefined), ram.ua, 4n), 'mm');
  });
});

describe('bad input: preregPut', () => {
  it('region not a Region', async () => {
    const { host, p } = await setup();
    expectRejected(host, () => preregPut(p.mm, any(undefined)), 'region');
    expectRejected(host, () => preregPut(p.mm, any({})), 'region');
    expectRejected(host, () => preregPut(p.mm, any(12345)), 'region');
  });
  it('mm not an Mm', async () => {
    const { host, r } = await setup();
    expectRejected(host, () => preregPut(any(undefined), r), 'mm');
  });
  it('a region of another mm (a forked child passing the parent region) is refused, the parent region stays listed and accounted', async () => {
    const { host, p, r } = await setup();
    const child = p.fork();
    const mm: Mm = child.mm;
    const reg: Region = r;
    expectRejected(host, () => preregPut(mm, reg), 'region');
  });
});
