// The engine's one translation unit: the area files (engine.h lists them),
// compiled together, in the order the engine had when it was one file.
// binding.gyp compiles this file, not the area files; each of those still
// compiles on its own (it includes the headers it uses), for editors and
// tools.
//
// Why one unit: the hypercall path's instruction counts rest on what GCC
// inlines and specialises across areas, and GCC decides that per unit.
// Compiled as separate units, with the shared hot code inline in the
// headers, callgrind counted 6.7% more instructions per H_PUT_TCE in the C
// loop (719 instead of 673) and 1.3% more per H_PUT_TCE_INDIRECT(512)
// through the binding: leafNodeT<true> was no longer specialised for
// grow = false once its callers sat in four files, findSttCached no longer
// inlined into putTce, and the VFIO routines called region.ts's entry
// points instead of inlining them. Link-time optimisation (-flto) gives
// GCC one unit again but inlines differently: it merged most of the
// hypercall chain into hcall itself. As one unit, the engine compiles to
// the same code as before the split.
#include "engine_memory.cc"
#include "engine_alloc.cc"
#include "engine_region.cc"
#include "engine_table.cc"
#include "engine_guest.cc"
#include "engine_hcall.cc"
#include "engine_hcall_passes.cc"
#include "engine_dirty.cc"
#include "engine_hcall_indirect.cc"
#include "engine_hcall_put.cc"
#include "engine_hcall_stuff.cc"
#include "engine_hcall_qemu.cc"
