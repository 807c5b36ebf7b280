//! Single counters: the TCP event hooks' counts and the programs' own failures.
use aya_ebpf::{macros::map, maps::PerCpuArray};
use netmon_common::events::{EVENT_SLOTS, Event};

#[map]
pub static EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_SLOTS, 0);

#[inline(always)]
pub fn count_event(event: Event) {
    if let Some(slot) = EVENTS.get_ptr_mut(event as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe { *slot += 1 };
    }
}
