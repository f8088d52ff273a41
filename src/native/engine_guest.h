// guest.ts: the guest side of a VM: memslots (guest physical -> userspace
// address and the linear-memory bytes behind it) and the guest-visible TCE
// tables (kvmppc_spapr_tce_table.pages[], QEMU's table), whose pages of
// TCEs are allocated on demand.
//
// As templates on the kind of access, for the hypercall path to inline;
// engine_guest.cc has the checked routine the VMM calls.
#pragma once

#include "engine_access.h"

namespace spapr {

// The lists of memslots, guest tables and regions are walked with plain
// loads: the VMM thread publishes them with plain stores (guest.ts).

/** The guest TCE table of `vm` with this LIOBN, or 0 (kvmppc_find_table). */
template <bool R>
uint32_t TceEngine::findSttT(uint32_t vm, uint64_t liobn) {
  uint32_t s = L32<R>(at(vm, VM_STTS));
  while (s != 0) {
    if (!need<R>(s, STT_BYTES)) return 0;
    if (L64<R>(at(s, STT_LIOBN)) == liobn) return s;
    s = L32<R>(at(s, STT_NEXT));
    if (!R && fault_ != Fault::kNone) return 0;
  }
  return 0;
}

/** The memslot holding `gpa`, or 0. */
template <bool R>
uint32_t TceEngine::findSlotT(uint32_t vm, uint64_t gpa) {
  uint32_t s = L32<R>(at(vm, VM_SLOTS));
  while (s != 0) {
    if (!need<R>(s, SLOT_BYTES)) return 0;
    const uint64_t base = L64<R>(at(s, SLOT_GPA));
    if (gpa >= base && gpa - base < L64<R>(at(s, SLOT_SIZE))) return s;
    s = L32<R>(at(s, SLOT_NEXT));
    if (!R && fault_ != Fault::kNone) return 0;
  }
  return 0;
}

/** Linear-memory offset of `len` guest bytes at `gpa`, 0 when not all backed by one memslot. */
template <bool R>
uint32_t TceEngine::gpaToHostT(uint32_t vm, uint64_t gpa, uint64_t len) {
  const uint32_t s = findSlotT<R>(vm, gpa);
  if (s == 0) return 0;
  const uint32_t host = L32<R>(at(s, SLOT_HOST_OFF));
  const uint64_t off = gpa - L64<R>(at(s, SLOT_GPA));
  if (host == 0 || len > L64<R>(at(s, SLOT_SIZE)) - off) return 0;
  return host + static_cast<uint32_t>(off);
}

/** log2 of the TCEs per page of a guest table (one system page of u64s: TCES_PER_PAGE): shifts, not a division. */
template <bool R>
SPAPR_HOT uint64_t TceEngine::tceShiftT() {
  return static_cast<uint64_t>(L32<R>(at(H, HDR_SYS_PAGE_SHIFT))) - 3;
}

/**
 * The page of guest TCEs number `pg`, 0 if absent (allocated when `grow`; 0
 * if that fails) or past the table. The raw kind checks `stt`'s page array
 * entry and the page.
 */
template <bool R>
uint32_t TceEngine::sttPageT(uint32_t stt, uint64_t pg, bool grow) {
  if (pg >= L32<R>(at(stt, STT_NPAGES))) return 0;
  const uint32_t pp = L32<R>(at(stt, STT_PAGES)) + (static_cast<uint32_t>(pg) << 2);
  if (!need<R>(pp, 4, false)) return 0;
  uint32_t page = AL32<R>(pp);
  if (page == 0 && grow) {
    const uint32_t bytes = static_cast<uint32_t>(shl64(8, tceShiftT<R>()));
    const uint32_t fresh = alloc(bytes);
    if (fresh == 0) return 0;
    page = CAS32<R>(pp, 0, fresh);
    if (page != 0) {
      free(fresh, bytes);
    } else {
      page = fresh;
    }
  }
  if constexpr (R) {
    const uint64_t sh = tceShiftT<R>();
    if (page != 0 && !need<R>(page, sh < 32 ? uint64_t{8} << sh : ~uint64_t{0})) return 0;
  }
  return page;
}

/** Pointer to the guest TCE of relative index `idx`; 0 if its page is absent and `grow` is false or allocation fails. */
template <bool R>
uint32_t TceEngine::sttSlotT(uint32_t stt, uint64_t idx, bool grow) {
  const uint64_t sh = tceShiftT<R>();
  const uint32_t page = sttPageT<R>(stt, shr64(idx, sh), grow);
  return page == 0 ? 0 : page + (static_cast<uint32_t>(idx & (shl64(1, sh) - 1)) << 3);
}

/** Whether every guest-table page of relative entries [idx, idx + n) exists (kvmppc_rm_ioba_validate). */
template <bool R>
bool TceEngine::sttPagesPresentT(uint32_t stt, uint64_t idx, uint64_t n) {
  if (n == 0) return true;
  const uint64_t sh = tceShiftT<R>();
  const uint32_t pages = L32<R>(at(stt, STT_PAGES));
  const uint64_t last = shr64(idx + n - 1, sh);
  // After a fault the checked atomic load answers 0, which ends the loop.
  for (uint64_t pg = shr64(idx, sh); pg <= last; pg++) {
    const uint32_t pp = static_cast<uint32_t>(pages + (static_cast<uint32_t>(pg) << 2));
    if (!need<R>(pp, 4, false)) return false;
    if (AL32<R>(pp) == 0) return false;
  }
  return true;
}

/**
 * Stores `value` in guest entries [idx, idx + n) page by page (guest.ts#sttFill):
 * an absent page stays so for 0 and is allocated otherwise when `grow`.
 */
template <bool R>
bool TceEngine::sttFillT(uint32_t stt, uint64_t idx, uint64_t n, uint64_t value, bool grow) {
  const uint64_t sh = tceShiftT<R>();
  const uint64_t mask = shl64(1, sh) - 1;
  uint64_t j = idx;
  const uint64_t end = idx + n;
  while (j < end) {
    uint64_t stop = (j | mask) + 1;
    if (stop == 0 || stop > end) stop = end;
    const uint32_t page = sttPageT<R>(stt, shr64(j, sh), grow && value != 0);
    if (fault_ != Fault::kNone) return false;
    if (page == 0 && value != 0) return false;
    if (page != 0) {
      if (value == 0) {
        FILL0<R>(page + (static_cast<uint32_t>(j & mask) << 3), (stop - j) << 3);
      } else {
        for (uint64_t k = j; k < stop; k++) W64<R>(page + (static_cast<uint32_t>(k & mask) << 3), value);
      }
    }
    j = stop;
  }
  return true;
}

/** The guest TCE at relative index `idx` (0 when its page is absent). */
template <bool R>
uint64_t TceEngine::sttGetT(uint32_t stt, uint64_t idx) {
  const uint32_t p = sttSlotT<R>(stt, idx, false);
  return p == 0 ? 0 : AL64<R>(p);
}
}  // namespace spapr
