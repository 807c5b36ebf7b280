//! Single counters of the programs' own failures, and of what each slot table could not store.
use aya_ebpf::{macros::map, maps::PerCpuArray};
use netmon_common::events::{EVENT_SLOTS, Event};

#[map]
pub static EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_SLOTS, 0);

#[inline(always)]
pub fn count_event(event: Event) {
    count(event as u32);
}

/// Adds one to the counter at `index` (an [`Event`], or a table's `map_full`).
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = EVENTS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe { *slot += 1 };
    }
}
