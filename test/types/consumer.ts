// A strict consumer of the public API's types (compiled by
// test/unit/api-types.test.ts with tsc --noEmit, never run). Each `Exact`
// line pins a string result to its literal union: it stops compiling when
// the type widens (to string) or changes. Each @ts-expect-error line is a
// call the types must refuse; when a type widens the line compiles, the
// directive is unused, and tsc fails.
import { Host, H, H64, TceError, DmaFault, VfioSyncError } from '../../src/index.js';
import type {
  HcallResult, Level, Translation, IommuEvent, WindowEvent, HostStats, OwnerCheck, KernelEra, ErrnoCode,
  DmaFaultReason, VfioSyncReason, VfioOp, Vm, Vcpu, ContainerFd,
} from '../../src/index.js';

/** true exactly when A and B are the same type. */
type Exact<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const pinned = <T extends true>(): T | undefined => undefined;

// String results are literal unions.
pinned<Exact<HcallResult['level'], 'real' | 'virtual' | 'exit' | 'none'>>();
pinned<Exact<Level, 'real' | 'virtual' | 'exit' | 'none'>>();
pinned<Exact<Vcpu['lastLevel'], Level>>();
pinned<Exact<ReturnType<Vm['hcall']>, HcallResult>>();
pinned<Exact<Extract<Translation, { ok: false }>['fault'], 'no-window' | 'out-of-range' | 'no-permission'>>();
pinned<Exact<DmaFaultReason, 'no-window' | 'out-of-range' | 'no-permission' | 'not-ram'>>();
pinned<Exact<DmaFault['reason'], DmaFaultReason>>();
pinned<Exact<IommuEvent['kind'], 'map' | 'unmap'>>();
pinned<Exact<WindowEvent['kind'], 'window-add' | 'window-remove'>>();
pinned<Exact<Vm['profile'], 'kvm' | 'qemu'>>();
pinned<Exact<Host['kernel'], KernelEra>>();
pinned<Exact<KernelEra, '4.12' | '4.19' | '5.19'>>();
pinned<Exact<Host['ownerCheck'], OwnerCheck>>();
pinned<Exact<OwnerCheck, 'none' | 'pid' | 'mm' | 'fork-close'>>();
pinned<Exact<Host['pidCheck'], 'call' | 'entry'>>();
pinned<Exact<Host['pinMode'], 'simulated' | 'host'>>();
pinned<Exact<HostStats['engine'], 'wasm' | 'native'>>();
pinned<Exact<TceError['code'], ErrnoCode>>();
pinned<Exact<VfioSyncError['reason'], VfioSyncReason>>();
pinned<Exact<VfioSyncError['op'], VfioOp>>();
// Hypercall numbers: H is numbers (literal), H64 the register contents (bigint).
pinned<Exact<typeof H.PUT_TCE, 32>>();
pinned<Exact<typeof H64.PUT_TCE, bigint>>();
// Results are bigints whatever the arguments were.
pinned<Exact<ReturnType<ContainerFd['createWindow']>, { startAddr: bigint }>>();
pinned<Exact<IommuEvent['liobn'], bigint>>();

/** Calls a consumer writes; compiled, never run. */
export async function uses(fd: ContainerFd, vm: Vm, vcpu: Vcpu): Promise<void> {
  const r = vm.hcall(H.PUT_TCE, 0x8000_0000, 0x1000n, 0x2000n | 3n);
  // @ts-expect-error a level that does not exist: no overlap with the union
  if (r.level === 'realmode') return;
  // @ts-expect-error the profile is 'kvm' | 'qemu'
  if (vm.profile === 'KVM') return;

  // ids: number or bigint; sizes: bigint or number
  vm.hcall(BigInt(H.GET_TCE), 0x8000_0000n, 0x1000n);
  vm.translate(0x8000_0000, 0x1000, 'read');
  fd.mapDma({ iova: 0x1000, vaddr: 0x7fff_0000n, size: 4096, read: true });
  // @ts-expect-error an access that does not exist
  vm.translate(0x8000_0000, 0x1000, 'exec');
  // @ts-expect-error a size is not a string
  fd.mapDma({ iova: 0x1000n, vaddr: 0x7fff_0000n, size: '4096', read: true });

  // registers: a BigUint64Array; H64 goes in, H does not
  vcpu.regs[3] = H64.PUT_TCE;
  // @ts-expect-error a number into a BigUint64Array element (the runtime's "Cannot convert 32 to a BigInt")
  vcpu.regs[3] = H.PUT_TCE;
  const st: number = vcpu.hcall();
  if (st === H.SUCCESS && vcpu.regs[3] === H64.SUCCESS) return;

  // options: unknown keys and wrong values are refused by the types too
  await Host.create({ ownerCheck: 'mm', kernel: '4.19', maxMemory: 64n << 20n });
  await Host.create({ maxMemory: 64 << 20 });
  // @ts-expect-error a misspelt option (the runtime's TypeError names it)
  await Host.create({ ownercheck: 'mm' });
  // @ts-expect-error an era that does not exist
  await Host.create({ kernel: '6.1' });
  // @ts-expect-error maxMemory is a size, not a string
  await Host.create({ maxMemory: '64M' });
}
