// The VM a VMM drives: KVM's VM (src/kvm/vm.ts) plus what QEMU adds around
// it for device models: DMA through a LIOBN's window (dma.ts), the map/unmap
// events of guest TCE writes and their replay (events.ts), and the PCI host
// bridges with the guest's DDW RTAS calls (rtas.ts).
import { KvmVm } from '../kvm/vm.js';
import type { Task } from '../kernel/task.js';
import { createDma, type DmaAccessor } from './dma.js';
import { EventHub, replayMappings, type IommuListener } from './events.js';
import { Phb, rtasCall, type PhbOptions } from './rtas.js';

/** A virtual machine. */
export class Vm extends KvmVm {
  /** PCI host bridges added with addPhb() (qemu profile). */
  readonly phbs: Phb[] = [];
  /** @internal map/unmap subscribers; Vcpu checks `events.active`. */
  declare readonly events: EventHub;

  /** @internal use process.createVm(); `desc` adopts the descriptor of a restored VM. */
  constructor(process: Task, profile: 'kvm' | 'qemu', desc?: number) {
    super(process, profile, desc, (vm) => new EventHub(vm));
  }

  /**
   * A device model's view of guest memory through LIOBN `liobn`: read(iova,
   * length) and write(iova, bytes), translated page by page when called (so
   * later PUTs take effect at once); a DmaFault, with nothing touched, when
   * any page has no window, no permission or no backed RAM behind it.
   */
  dma(liobn: bigint): DmaAccessor {
    return createDma(this, liobn);
  }

  /**
   * Calls `fn` synchronously with one map/unmap event per guest TCE written
   * by this VM's hypercalls (vcpu.hcall() and vm.hcall() on this thread; not
   * vCPUs run by workers), on LIOBN `liobn` or on any ('*'), in hypercall
   * order. Returns the unsubscribe function.
   */
  subscribe(liobn: bigint | '*', fn: IommuListener): () => void {
    return this.events.subscribe(liobn, fn);
  }

  /** Calls `fn` with a 'map' event for every present mapping (perm ≠ 0) of LIOBN `liobn`, in ascending IOVA. */
  replay(liobn: bigint, fn: IommuListener): void {
    replayMappings(this, liobn, fn);
  }

  /** Adds a PCI host bridge with its two DMA windows, the default one enabled (qemu profile; see PhbOptions). */
  addPhb(opts: PhbOptions): Phb {
    const p = new Phb(this, opts, this.phbs);
    this.phbs.push(p);
    return p;
  }

  /** Runs a guest DDW RTAS call by name (RTAS_DDW_CALLS) with u32 argument cells; returns the result cells, [status] on an error. */
  rtas(name: string, args: number[], nret: number): number[] {
    return rtasCall(this.phbs, name, args, nret);
  }
}
