//! Slot tables: counters in an array (per-CPU where the events are frequent), found through
//! a shared array of tags (see `netmon-common`). The common case costs one tag compare and
//! one array lookup; claiming a slot happens once per identity, out of the packet's way.
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg};

use aya_ebpf::maps::{Array, PerCpuArray};
use netmon_common::{Event, SLOT_PROBES, SlotTag, slot_hash};

use crate::events::count_event;

/// The tags of a table and its size mask: which slot counts for which identity.
pub struct Slots {
    pub tags: &'static Array<SlotTag>,
    pub mask: u32,
    /// Counted when no slot could be had.
    pub full: Event,
}

/// A table whose counts are per CPU.
pub struct Table<V: 'static> {
    pub slots: Slots,
    pub counts: &'static PerCpuArray<V>,
}

impl<V> Table<V> {
    /// This CPU's counts for the identity (`id`, `extra`, `extra2`), claiming a slot if it
    /// has none yet (then `meta(slot)` is stored for the agent); `None` when the identity's
    /// candidate slots all count something else.
    #[inline(always)]
    #[allow(
        clippy::mut_from_ref,
        reason = "the counts are map memory, not part of `self`"
    )]
    pub fn counts(
        &self,
        id: u64,
        extra: u64,
        extra2: u64,
        meta: impl FnOnce(u32) -> u64,
    ) -> Option<&mut V> {
        let index = self.slots.find(id, extra, extra2, meta)?;
        let counts = self.counts.get_ptr_mut(index)?;
        // SAFETY: this CPU's value; one program per hook, which does not nest on a CPU.
        Some(unsafe { &mut *counts })
    }
}

impl Slots {
    /// The slot of the identity (`id`, `extra`, `extra2`), claimed if it has none yet (then
    /// `meta(slot)`, called once the slot is this program's, is stored for the agent; it may
    /// fill the slot's entries of other tables, before the claim is complete); `None` when its
    /// candidate slots all count something else.
    #[inline(always)]
    pub fn find(
        &self,
        id: u64,
        extra: u64,
        extra2: u64,
        meta: impl FnOnce(u32) -> u64,
    ) -> Option<u32> {
        let start = slot_hash(id, extra, extra2);
        let first = start & self.mask;
        if let Some(tag) = self.tags.get_ptr_mut(first)
            && holds(tag, id, extra, extra2)
        {
            return Some(first);
        }
        let identity = Identity { id, extra, extra2 };
        let index = self.find_or_claim(start, &identity, meta);
        (index != NO_SLOT).then_some(index)
    }

    /// The slow path: the identity may sit further along (its first slot was taken when it
    /// came), or it is new and takes the first free slot. A function of its own (a BPF
    /// subprogram): inlined, its loops and the values they keep made every packet's path
    /// spill registers to the stack and spread over several times the code.
    #[inline(never)]
    fn find_or_claim(&self, start: u32, identity: &Identity, meta: impl FnOnce(u32) -> u64) -> u32 {
        let Identity { id, extra, extra2 } = *identity;
        for i in 1..SLOT_PROBES {
            let index = start.wrapping_add(i) & self.mask;
            if let Some(tag) = self.tags.get_ptr_mut(index)
                && holds(tag, id, extra, extra2)
            {
                return index;
            }
        }
        let mut claimed = None;
        for i in 0..SLOT_PROBES {
            let index = start.wrapping_add(i) & self.mask;
            let Some(tag) = self.tags.get_ptr_mut(index) else {
                continue;
            };
            // SAFETY: a map value, read before trying the atomic claim.
            let free = unsafe { core::ptr::read_volatile(&raw const (*tag).id) } == 0;
            if free && claim(tag, 0, id) {
                claimed = Some((index, tag));
                break;
            }
            // Another CPU claimed it first, maybe for the same identity.
            if holds(tag, id, extra, extra2) {
                return index;
            }
        }
        if let Some((index, tag)) = claimed {
            let meta = meta(index);
            // SAFETY: the slot is this program's from the successful claim on. The last word
            // goes last: until it is written, no other program matches the slot.
            unsafe {
                core::ptr::write_volatile(&raw mut (*tag).meta, meta);
                core::ptr::write_volatile(&raw mut (*tag).extra, extra);
                core::ptr::write_volatile(&raw mut (*tag).extra2, extra2);
            }
            return index;
        }
        count_event(self.full);
        NO_SLOT
    }
}

/// The three words that identify what a slot counts, passed to the slow path by reference (a
/// BPF function takes at most five arguments).
#[derive(Clone, Copy)]
struct Identity {
    id: u64,
    extra: u64,
    extra2: u64,
}

/// What the slow path answers when no slot could be had (tables have fewer slots).
const NO_SLOT: u32 = u32::MAX;

/// Whether the slot's tag is exactly (`id`, `extra`, `extra2`).
#[inline(always)]
fn holds(tag: *mut SlotTag, id: u64, extra: u64, extra2: u64) -> bool {
    // SAFETY: a map value; a concurrent claim changes each word from 0 to its final value
    // once.
    unsafe {
        core::ptr::read_volatile(&raw const (*tag).id) == id
            && core::ptr::read_volatile(&raw const (*tag).extra) == extra
            && core::ptr::read_volatile(&raw const (*tag).extra2) == extra2
    }
}

/// Atomically replaces the tag's `id` with `new` if it still is `current`.
#[inline(always)]
fn claim(tag: *mut SlotTag, current: u64, new: u64) -> bool {
    // The BPF target offers no `AtomicU64::compare_exchange`; the intrinsic is BPF's
    // `BPF_CMPXCHG` instruction.
    // SAFETY: an aligned u64 in a map value, shared with other CPUs only through atomics.
    unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(&raw mut (*tag).id, current, new) }.1
}
