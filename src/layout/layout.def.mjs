// The one declaration of the shared linear memory, the error numbers and the
// hypercall numbers. `scripts/gen-layout.mjs` turns it into
//   assembly/generated/layout.ts     (AssemblyScript constants)
//   src/native/generated/layout.h    (C++ constexprs)
//   src/generated/layout.ts          (TypeScript constants and struct metadata)
// Nothing else in the repository spells an offset, an errno or an H_* number.
//
// Linear memory (one shared WebAssembly.Memory, fixed maximum):
//
//   0            64 KiB        68 KiB                                       top       end
//   +------------+-------------+-----------+---------------------------------+---------+
//   | AS statics | header      | granule   | heap: blocks of 64 B granules   | never   |
//   | (unused)   | (4 KiB)     | bitmaps   | mm, region, table descriptors,  | used    |
//   |            |             | (2 bits   | hpas[], table and view nodes,   | (zero)  |
//   |            |             | per 64 B) | vCPU blocks, guest tables, RAM  |         |
//   +------------+-------------+-----------+---------------------------------+---------+
//
// The allocator (assembly/alloc.ts) is a TLSF over that heap; its drawing of
// the blocks and bitmaps is there.
//
// Every pointer stored in memory is a u32 byte offset into this memory;
// 0 means "absent". Descriptors are plain structs below; their fields are
// naturally aligned so 64-bit fields can be used with atomics.
//
// A TCE table (iommu_table) is a tree of `levels` levels. Levels below the
// root index `levelBits` bits of the entry index (at most 4: 64–128-byte
// nodes), the root the remaining `rootBits`, so memory follows what is
// mapped rather than the window (the kernel uses equal levels of at least a
// system page; see README). Interior nodes hold u32 child offsets, leaf
// nodes hold u64 TCEs (host address | READ 1 | WRITE 2). The userspace view
// (it_userspace) is a second tree of the same shape whose leaves hold the
// userspace address each entry was mapped from.
//
//   table ─ root ─┬─ node ─┬─ leaf [tce tce tce …]
//                 │        └─ (0: absent, allocated on demand)
//   table ─ uaRoot ─ node ─ leaf [ua ua ua …]       (same index split)

export const LAYOUT_VERSION = 5;

/** Where the header lives; the heap follows it. */
export const regions = {
  HEADER_BASE: 65536,
  HEAP_BASE: 65536 + 4096,
};

// The allocator's geometry (assembly/alloc.ts): 64-byte granules; TLSF free
// lists, SL_BITS second-level lists per power of two, sizes below
// 2^(MIN_BLOCK_SHIFT + SL_BITS) one list per granule count.
const MIN_BLOCK_SHIFT = 6;
const ALLOC_SL_BITS = 4;
const ALLOC_FL_COUNT = 32 - (MIN_BLOCK_SHIFT + ALLOC_SL_BITS) + 1;

/** Structs in linear memory, in field order; offsets are computed by the generator. */
export const structs = {
  HDR: {
    doc: 'host header: allocator state and host-wide settings',
    size: 4096,
    fields: [
      ['magic', 'u32', 'LAYOUT_MAGIC once initialised'],
      ['version', 'u32', 'LAYOUT_VERSION'],
      ['memEnd', 'u32', 'end of the heap arena (bytes)'],
      ['sysPageShift', 'u32', 'the host kernel PAGE_SHIFT (16 on ppc64 server)'],
      ['allocLock', 'u32', 'allocator lock, taken within ALLOC_LOCK_SPINS tries (virtual mode only)'],
      ['allocTop', 'u32', 'end of the heap\'s blocks; memory above is never used (zero); HEAP_BASE before the first allocation'],
      ['allocBytes', 'u64', 'bytes in live blocks'],
      ['allocBlocks', 'u32', 'live blocks'],
      ['ownerCheck', 'u32', 'OWNER_CHECK_* of this host'],
      ['pidPlacement', 'u32', 'PID_CHECK_* for the pid mode'],
      // One bit per view-lock tag handed to a vCPU (bit 0, the VFIO path's tag, stays clear).
      ['lockTags', 'u32', 'view-lock tags in use: bit t of word t >> 5', 64],
      ['ablate', 'u32', 'ABLATE_* bits: 0 except while bench/ measures a safety mechanism by running without it'],
      ['hostId', 'u32', 'random id of this host, for workers attaching'],
      ['allocFreeBlocks', 'u32', 'free blocks in the heap (all on the free lists)'],
      ['allocRefused', 'u32', 'frees refused: not a live block of that size, or a corrupt heap'],
      ['allocBusy', 'u64', 'calls that gave up on the allocator lock (atomic)'],
      ['allocFlMap', 'u32', 'TLSF first-level bitmap: bit f set when allocSlMap[f] != 0'],
      ['allocSlMap', 'u32', 'TLSF second-level bitmaps: bit s of [f] set when list f·2^SL_BITS+s is not empty', ALLOC_FL_COUNT],
      ['allocHeads', 'u32', 'TLSF free-list heads, one per (first, second) level', ALLOC_FL_COUNT << ALLOC_SL_BITS],
      ['kernel', 'u32', 'KERNEL_* era of this host: whether real mode exists (vCPUs on workers read it) and what virtual mode answers a misaligned TCE'],
      ['gracePeriods', 'u32', 'grace periods started by the host thread: its atomic add is the full fence between unlinking and reading the vCPUs\' rcuSeq (src/core/reclaim.ts)'],
    ],
  },
  MM: {
    doc: 'an address space (struct mm_struct, the parts the IOMMU code reads)',
    size: 64,
    fields: [
      ['id', 'u32', 'mm id, host-unique, non-zero'],
      ['regions', 'u32', 'head of this mm\'s pre-registered region list'],
      ['lockedPages', 'u64', 'locked_vm in system pages'],
      ['regionCount', 'u32', 'regions in the list'],
      ['pad', 'u32', ''],
    ],
  },
  REG: {
    doc: 'a pre-registered region (mm_iommu_table_group_mem_t)',
    size: 128,
    fields: [
      ['next', 'u32', 'next region of the same mm'],
      ['mm', 'u32', 'owning mm descriptor'],
      ['ua', 'u64', 'userspace start address'],
      ['entries', 'u64', 'size in system pages'],
      ['pageShift', 'u32', 'largest IOMMU page shift the region can back'],
      ['used', 'u32', 'containers referencing the region'],
      ['hpas', 'u32', 'offset of u64[entries]: host address of each system page'],
      ['flags', 'u32', 'REGION_F_*'],
      ['devHpa', 'u64', 'device memory base (REGION_F_DEV)'],
      ['id', 'u32', 'region id, host-unique'],
      // Lookups of other vCPUs read the fields above on every hypercall; the
      // counter every map and unmap changes gets a cache line of its own.
      ['pad', 'u32', 'up to the next cache line', 3],
      ['mapped', 'u64', '1 + live TCEs into the region; 0 = dying (atomic)'],
    ],
  },
  TBL: {
    doc: 'a TCE table (struct iommu_table) with its userspace view',
    size: 128,
    fields: [
      ['offset', 'u64', 'it_offset: index of the first entry (bus start >> pageShift)'],
      ['size', 'u64', 'it_size: number of entries'],
      ['pageShift', 'u32', 'it_page_shift'],
      ['levels', 'u32', 'number of levels (it_indirect_levels + 1)'],
      ['levelBits', 'u32', 'index bits of each level below the root'],
      ['rootBits', 'u32', 'index bits of the root level (all of them for one level)'],
      ['root', 'u32', 'TCE tree root'],
      ['uaRoot', 'u32', 'userspace view root; 0 until the first v2 map'],
      ['ownerPid', 'u32', 'pid allowed to change the view (pid owner check); 0 = unclaimed'],
      ['nodeBytes', 'u64', 'bytes of TCE tree nodes'],
      ['uaNodeBytes', 'u64', 'bytes of userspace-view nodes'],
      ['id', 'u32', 'table id, host-unique'],
      ['flags', 'u32', 'TABLE_F_*'],
      ['refs', 'u32', 'references (VFIO + each KVM link)'],
    ],
  },
  VM: {
    doc: 'a KVM guest: its mm, memslots and guest-visible TCE tables',
    size: 64,
    fields: [
      ['mm', 'u32', 'the creator\'s mm descriptor (kvm->mm)'],
      ['slots', 'u32', 'head of the memslot list'],
      ['stts', 'u32', 'head of the guest TCE table list'],
      ['profile', 'u32', 'PROFILE_*'],
      ['id', 'u32', 'vm id'],
      // Read once per hypercall that wrote TCEs, after the writes (assembly/dirty.ts): nothing per entry while 0.
      ['dirtyTrack', 'u32', '1 while vm.trackDmaWritable(true): the write phase marks the pages of writable TCEs in the memslots\' dirty logs'],
    ],
  },
  SLOT: {
    doc: 'a memslot: guest physical range backed by userspace memory',
    size: 64,
    fields: [
      ['next', 'u32', 'next memslot of the VM'],
      ['hostOff', 'u32', 'linear-memory offset of the bytes at gpa; 0 when not backed'],
      ['gpa', 'u64', 'guest physical start'],
      ['size', 'u64', 'bytes'],
      ['ua', 'u64', 'userspace address of gpa'],
      // The block: u32 pages (what the bits cover: the writer bounds its marks by it, not by SLOT.size,
      // which a reuse of the descriptor can change under it), u32 0, then the bits from byte 8.
      ['dirtyLog', 'u32', 'the dirty log: DIRTY_LOG_HEADER bytes, then one bit per system page in u64 words (KVM_GET_DIRTY_LOG); 0 = none'],
    ],
  },
  STT: {
    doc: 'a guest-visible TCE table (kvmppc_spapr_tce_table / QEMU SpaprTceTable)',
    size: 128,
    fields: [
      ['next', 'u32', 'next table of the VM'],
      ['vm', 'u32', 'owning VM descriptor'],
      ['liobn', 'u64', 'logical I/O bus number'],
      ['offset', 'u64', 'first entry index (bus offset >> pageShift)'],
      ['size', 'u64', 'entries (0: a disabled QEMU table)'],
      ['pageShift', 'u32', 'guest IOMMU page shift'],
      ['npages', 'u32', 'pages of TCEs (each one system page)'],
      ['pages', 'u32', 'u32[npages]: each page of TCEs, 0 until allocated'],
      ['stitCount', 'u32', 'hardware tables linked (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE)'],
      ['stits', 'u32', 'hardware table descriptors', 4],
      ['stitRefs', 'u32', 'reference count of each link', 4],
      ['id', 'u32', 'table id'],
      ['flags', 'u32', 'STT_F_*'],
    ],
  },
  // Every hypercall writes r3, level, stats and rcuSeq from the thread running
  // the vCPU. Blocks are 64-byte aligned and never share a line, but x86's
  // adjacent-line prefetchers fetch lines in 128-byte pairs, so the block
  // starts and ends with a line nothing uses: whatever the allocator puts
  // next to it, a line this vCPU writes never pairs with another block's
  // (per-CPU data padded to the destructive interference size, as
  // DEFINE_PER_CPU_SHARED_ALIGNED and crossbeam's CachePadded do).
  VCPU: {
    doc: 'a vCPU register block: GPRs, who runs it, and the list of the hypercall it runs',
    size: 4736,
    fields: [
      ['padHead', 'u32', 'never used: keeps the written lines out of the first 128-byte pair', 16],
      ['gpr', 'u64', 'r0..r31: r3 hcall number in, status out; r4.. arguments and outputs', 32],
      ['vm', 'u32', 'VM descriptor'],
      ['pid', 'u32', 'pid of the thread running the vCPU'],
      ['tid', 'u32', 'thread id'],
      ['level', 'u32', 'LEVEL_* that finished the last hypercall'],
      ['id', 'u32', 'vcpu index'],
      ['lockTag', 'u32', 'the tag this vCPU writes into the view slots it locks (1..MAX_LOCK_TAG, unique in the host)'],
      ['stats', 'u32', 'completions per [hcall kind][level]: 4 kinds × 4 levels', 16],
      // The reclamation read side (src/core/reclaim.ts): written only by the
      // thread running the vCPU, read by the host thread at a grace period.
      ['rcuSeq', 'u32', 'hypercall entries + exits: odd while the vCPU is inside one (its read-side critical section)'],
      // H_PUT_TCE_INDIRECT copies the guest's list here before it validates
      // it: the apply pass then writes exactly what was validated, however
      // the guest rewrites its list meanwhile (the kernel reads it twice).
      ['tces', 'u64', 'the H_PUT_TCE_INDIRECT list being applied (native byte order)', 512],
      ['padTail', 'u32', 'never used: keeps the written lines out of the last 128-byte pair', 16],
    ],
  },
};

/** Named constants, grouped only for readability; every name is global. */
export const constants = {
  layout: {
    LAYOUT_MAGIC: 0x54434531, // "TCE1"
  },
  alloc: {
    MIN_BLOCK_SHIFT, // log2 of the granule: every block is a multiple of 64 bytes, 64-byte aligned
    ALLOC_SL_BITS,
    ALLOC_FL_COUNT,
    ALLOC_MAX_BYTES: 0x80000000, // the largest request
    ALLOC_LOCK_SPINS: 1 << 26, // tries at the allocator lock (0.05–0.1 s of spinning here) before alloc answers 0 (ENOMEM / H_TOO_HARD)
  },
  tce: {
    TCE_READ: 1, // the device may read memory
    TCE_WRITE: 2, // the device may write memory
    TCE_PERM_MASK: 3,
  },
  view: {
    /**
     * A userspace-view slot holds a 4 KiB-aligned ua; its low 12 bits are
     * the entry's lock: bit 0 set = locked, bits 1..11 = the holder's tag
     * (a vCPU's VCPU.lockTag; 0 for the VFIO path, which holds one lock at
     * a time). A hypercall locks every entry it changes before it writes
     * any and recognises its own locks by the tag.
     */
    VIEW_LOCK: 1,
    VIEW_LOCK_BITS: 0xfff,
    VIEW_TAG_SHIFT: 1,
    MAX_LOCK_TAG: 2047,
    /**
     * Attempts at a held view lock before giving up (H_TOO_HARD from a
     * hypercall, EBUSY from VFIO), which changes nothing: a holder finishes
     * its call in bounded time, but one on a killed worker never does.
     */
    LOCK_SPINS_REAL: 4096,
    LOCK_SPINS_VIRTUAL: 4194304,
    LOCK_SPINS_VFIO: 4194304,
    /** Attempts of a lock-free counter update (each failure is another vCPU's success). */
    COUNTER_RETRIES: 1048576,
  },
  ablate: {
    /**
     * Benchmark ablations (HDR.ablate), so that bench/ can measure what a
     * safety mechanism of the real-mode map path costs by timing the path
     * without it. Never set by the library; each one breaks a guarantee:
     * ABLATE_VIEW_LOCK reads the view slot instead of locking it (racing
     * vCPUs on one entry can lose counts, and a call refused after its lock
     * pass began keeps the counts it took: the undo pass finds its entries
     * by the lock tag); ABLATE_VALIDATE writes each entry
     * of an H_PUT_TCE_INDIRECT as soon as it is checked (a refused call can
     * leave earlier entries changed).
     */
    ABLATE_VIEW_LOCK: 1,
    ABLATE_VALIDATE: 2,
    // ABLATE_SMR_READ skips the reclamation read side (VCPU.rcuSeq stays as it was): a grace period
    // then cannot see the vCPU inside a call, so a free may reach memory the call still reads.
    ABLATE_SMR_READ: 4,
  },
  flags: {
    REGION_F_DEV: 1,
    TABLE_F_V2: 1,
    /** entry-operation flags */
    OP_ALLOC: 1, // virtual mode: levels may be allocated
    OP_CHECK_PID: 2, // compare the caller's pid with the table's owner at every view write
  },
  vm: {
    PROFILE_KVM: 0,
    PROFILE_QEMU: 1,
    STT_F_DEFAULT: 1, // QEMU: the PHB's default window
    MAX_STITS: 4,
    /** Which level finished a hypercall. */
    LEVEL_NONE: 0,
    LEVEL_REAL: 1,
    LEVEL_VIRTUAL: 2,
    LEVEL_EXIT: 3,
    /** hcall kinds, for the per-vCPU counters. */
    KIND_PUT: 0,
    KIND_INDIRECT: 1,
    KIND_STUFF: 2,
    KIND_GET: 3,
    /** Bytes before the bits of a memslot's dirty log block (SLOT.dirtyLog): its u32 page count and a zero u32. */
    DIRTY_LOG_HEADER: 8,
    /** PAPR: at most 512 TCEs in an H_PUT_TCE_INDIRECT list, which must be 4 KiB aligned. */
    INDIRECT_MAX: 512,
  },
  ownerCheck: {
    OWNER_CHECK_NONE: 0,
    OWNER_CHECK_PID: 1,
    OWNER_CHECK_MM: 2,
    OWNER_CHECK_FORK_CLOSE: 3, // handles closed on fork(); nothing checked on any path (real mode treats it as none)
    PID_CHECK_CALL: 0,
    PID_CHECK_ENTRY: 1,
  },
  /** The kernel eras of Host.create({ kernel }) (HDR.kernel); 0 in a header written before eras existed reads as 4.12. */
  kernel: {
    KERNEL_4_12: 412, // userspace view allocated at the first VFIO map; real mode; virtual mode answers a misaligned TCE H_PARAMETER
    KERNEL_4_19: 419, // the view allocated with the table (090bad39b237), levels on demand; virtual mode H_TOO_HARD (42de7b9e2167)
    KERNEL_5_19: 519, // no real mode (cad32d9d42e8): every TCE hypercall runs in virtual mode
  },
  /** Linux errno values (positive); internal routines return them negated. */
  errno: {
    EPERM: 1,
    ENOENT: 2,
    EIO: 5,
    ENXIO: 6,
    EBADF: 9,
    ENOMEM: 12,
    EFAULT: 14,
    EBUSY: 16,
    ENODEV: 19,
    EINVAL: 22,
    ENOTTY: 25,
    ENOSPC: 28,
  },
  /** PAPR hypercall numbers (arch/powerpc/include/asm/hvcall.h). */
  hcall: {
    H_GET_TCE: 0x1c,
    H_PUT_TCE: 0x20,
    H_STUFF_TCE: 0x138,
    H_PUT_TCE_INDIRECT: 0x13c,
  },
  /** Hypercall return codes; H_TOO_HARD is KVM-internal. */
  hret: {
    H_SUCCESS: 0,
    H_HARDWARE: -1,
    H_FUNCTION: -2,
    H_PARAMETER: -4,
    H_DEST_PARM: -14,
    H_CLOSED: 2,
    H_TOO_HARD: 9999,
  },
  vfio: {
    VFIO_SPAPR_TCE_IOMMU: 2,
    VFIO_SPAPR_TCE_V2_IOMMU: 7,
    VFIO_EEH: 5,
  },
};

/** Which constant groups are errno values (the generator also emits a name table for them). */
export const errnoGroup = 'errno';
