// A container handle as one process holds it (an open file descriptor on
// /dev/vfio/vfio): every ioctl goes to the shared Container with the
// holder as the caller, and close() releases the container with the last handle.
import type { Container } from './container.js';
import type { Group } from './group.js';
import type { Task } from '../kernel/task.js';
import type { TceInfo, DmaMap, DmaUnmap, CreateWindow } from './types.js';
import { fail } from '../core/errors.js';

/** A container handle as one process holds it (an open file descriptor). */
export class ContainerFd {
  /** The task holding the handle (a Process). */
  readonly process: Task;
  readonly container: Container;
  private open = true;

  /** @internal use process.openContainer(), process.inherit(fd) or process.receive(fd) */
  constructor(process: Task, container: Container) {
    this.process = process;
    this.container = container;
  }

  private c(): Container {
    if (!this.open) fail('EBADF', 'the container handle is closed');
    return this.container;
  }

  /** VFIO_CHECK_EXTENSION. */
  checkExtension(ext: number): number { return this.c().checkExtension(ext); }
  /** VFIO_SET_IOMMU with 'v1' / 'v2' (or the raw type 2 / 7). */
  setIommu(type: 'v1' | 'v2' | number): void { this.c().setIommu(type); }
  /** VFIO_GROUP_SET_CONTAINER. */
  attachGroup(g: Group): void { this.c().attachGroup(g); }
  /** VFIO_GROUP_UNSET_CONTAINER. */
  detachGroup(g: Group): void { this.c().detachGroup(g); }
  /** VFIO_IOMMU_SPAPR_TCE_GET_INFO. */
  getInfo(): TceInfo { return this.c().getInfo(this.process); }
  /** VFIO_IOMMU_ENABLE (v1). */
  enable(): void { this.c().enable(this.process); }
  /** VFIO_IOMMU_DISABLE (v1). */
  disable(): void { this.c().disable(this.process); }
  /** VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2). */
  registerMemory(vaddr: bigint | number, size: bigint | number, flags = 0): void { this.c().registerMemory(this.process, vaddr, size, flags); }
  /** VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2). */
  unregisterMemory(vaddr: bigint | number, size: bigint | number, flags = 0): void { this.c().unregisterMemory(this.process, vaddr, size, flags); }
  /** VFIO_IOMMU_SPAPR_TCE_CREATE (v2). */
  createWindow(args: CreateWindow): { startAddr: bigint } { return this.c().createWindow(this.process, args); }
  /** VFIO_IOMMU_SPAPR_TCE_REMOVE (v2). */
  removeWindow(startAddr: bigint | number, flags = 0): void { this.c().removeWindow(this.process, startAddr, flags); }
  /** VFIO_IOMMU_MAP_DMA. */
  mapDma(args: DmaMap): void { this.c().mapDma(this.process, args); }
  /** VFIO_IOMMU_UNMAP_DMA. */
  unmapDma(args: DmaUnmap): void { this.c().unmapDma(this.process, args); }

  /**
   * close(2): the container is released when its last handle closes. The
   * kernel's release cannot fail; here clearing an entry whose view lock a
   * vCPU holds past VFIO_LOCK_WAIT_MS throws EBUSY, so the release runs
   * before the handle is let go: a close() that throws leaves the handle
   * open (and what was already cleared, cleared), and can be called again.
   */
  close(): void {
    if (!this.open) return;
    const c = this.container;
    if (c.handles === 1) {
      c.release();
      for (const g of [...c.groups]) g.container = undefined;
      c.groups.length = 0;
    }
    this.open = false;
    c.fds.delete(this);
    c.handles--;
  }

  /** Whether this handle is still open. */
  get isOpen(): boolean {
    return this.open;
  }
}
