//! Slot tables: counters in an array (per-CPU where the events are frequent), found through
//! a shared array of tags (see `netmon-common`). The common case costs one tag compare and
//! one array lookup; claiming a slot happens once per identity, out of the packet's way.
//!
//! Two walks, one per object the agent may load (see `netmon-ebpf/Cargo.toml`): a `bpf_loop`
//! with a compare-and-swap claim (Linux 5.17 and later), and, built with `bounded-walk`, a
//! loop the verifier follows to its bound, with a claim made by inserting the slot's index
//! into the table's claims (a hash map, whose `BPF_NOEXIST` insert exactly one program wins):
//! kernels before 5.17 have no `bpf_loop`, before 5.13 no callbacks, before 5.12 no
//! compare-and-swap. Both find and claim the same slots.
#[cfg(not(feature = "bounded-walk"))]
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg};

#[cfg(not(feature = "bounded-walk"))]
use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop};
use aya_ebpf::{
    helpers::bpf_get_smp_processor_id,
    maps::{Array, PerCpuArray},
};
#[cfg(not(feature = "bounded-walk"))]
use netmon_common::slots::SLOT_PROBES;
use netmon_common::{
    events::map_full,
    slots::{SlotMasks, SlotTableSpec, SlotTag, slot_hash},
};

use crate::events::count;

/// Sizes of the tables, set by the agent (which may shrink them) before loading.
#[unsafe(no_mangle)]
static SLOT_MASKS: SlotMasks = SlotMasks::full();

/// The tags of a table and its size mask: which slot counts for which identity.
pub struct Slots {
    pub tags: &'static Array<SlotTag>,
    pub mask: u32,
    /// The table's number: the index of its mask, of its full counter and, for the bounded
    /// walk, of its claims.
    number: u32,
}

#[cfg(feature = "bounded-walk")]
unsafe extern "C" {
    /// The bounded walk of `bounded_walk`: a global BPF function, which the verifier checks
    /// once on its own, whatever its callers know of its arguments, rather than once for
    /// each path that calls it. Returns the slot found or claimed (or [`NO_SLOT`]), with 1
    /// in the high word when it was claimed.
    fn netmon_slot_walk(table_mask: u64, start: u32, id: u64, extra: u64, extra2: u64) -> u64;
}

/// Where a table keeps each CPU's counts of a slot.
pub trait Counts {
    type Value;
    /// This CPU's counts in slot `index`.
    fn at(&self, index: u32) -> Option<*mut Self::Value>;
}

/// Counts in a per-CPU array.
impl<V> Counts for &'static PerCpuArray<V> {
    type Value = V;
    #[inline(always)]
    fn at(&self, index: u32) -> Option<*mut V> {
        self.get_ptr_mut(index)
    }
}

/// Counts in one array, a region of `slots` for each CPU (value `cpu * slots + slot`): a
/// count is found without first loading the slot's pointer to its per-CPU values, which the
/// socket hooks, running where the caches are cold, feel.
pub struct CpuRegions<V: 'static> {
    pub array: &'static Array<V>,
    pub slots: u32,
}

impl<V> Counts for CpuRegions<V> {
    type Value = V;
    #[inline(always)]
    fn at(&self, index: u32) -> Option<*mut V> {
        // SAFETY: a helper without arguments.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        self.array.get_ptr_mut(cpu * self.slots + index)
    }
}

/// A table: its slots, and each CPU's counts of them.
pub struct Table<C> {
    pub slots: Slots,
    pub counts: C,
}

impl<C: Counts> Table<C> {
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
    ) -> Option<&mut C::Value> {
        let index = self.slots.find(id, extra, extra2, meta)?;
        let counts = self.counts.at(index)?;
        // SAFETY: this CPU's counts; one program per hook, which does not nest on a CPU.
        Some(unsafe { &mut *counts })
    }
}

impl Slots {
    /// The slots of `table`, whose tags are `tags`, at the size the agent gave it.
    #[inline(always)]
    pub fn of(table: &SlotTableSpec, tags: &'static Array<SlotTag>) -> Self {
        let number = table.number;
        // SAFETY: a read of a static the loader initialised (see `kernel::constant`); the
        // number is the table's place in an array of one mask a table.
        let mask = unsafe {
            core::ptr::read_volatile(
                (&raw const SLOT_MASKS.masks)
                    .cast::<u32>()
                    .add(number as usize),
            )
        };
        Self { tags, mask, number }
    }

    /// Whether slot `index` counts for the identity (`id`, `extra`, `extra2`).
    #[cfg(not(feature = "bounded-walk"))]
    #[inline(always)]
    pub fn holds(&self, index: u32, id: u64, extra: u64, extra2: u64) -> bool {
        self.tags
            .get_ptr_mut(index)
            .is_some_and(|tag| holds(tag, id, extra, extra2))
    }

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

    /// The slow path: the identity sits further along (its first slot was taken when it
    /// came), or it is new and takes the first free slot on the way. One pass: slots are
    /// claimed in probe order, so an identity is found before the first free slot, except
    /// where the agent freed a slot in front of it since; then it claims that one too, and
    /// the agent sums the slots an identity holds. The walk is a `bpf_loop`, which the
    /// verifier checks once however many slots it may visit. A function of its own (a BPF
    /// subprogram): inlined, it made every packet's path spill registers to the stack.
    #[cfg(not(feature = "bounded-walk"))]
    #[inline(never)]
    fn find_or_claim(&self, start: u32, identity: &Identity, meta: impl FnOnce(u32) -> u64) -> u32 {
        let mut walk = Walk {
            tags: self.tags,
            start,
            mask: self.mask,
            identity: *identity,
            found: NO_SLOT,
            claimed: false,
        };
        // A table smaller than the probes is looked at once.
        let probes = SLOT_PROBES.min(self.mask.wrapping_add(1).max(1));
        // SAFETY: `step` is a BPF function of the loop's signature, and `walk` outlives the
        // loop.
        unsafe {
            bpf_loop(
                probes,
                step as *mut c_void,
                (&raw mut walk).cast::<c_void>(),
                0,
            );
        }
        self.complete(walk.found, walk.claimed, &walk.identity, meta)
    }

    /// The slow path without `bpf_loop`: the same walk in a bounded loop, which is a global
    /// function of its own (see [`netmon_slot_walk`]).
    #[cfg(feature = "bounded-walk")]
    #[inline(never)]
    fn find_or_claim(&self, start: u32, identity: &Identity, meta: impl FnOnce(u32) -> u64) -> u32 {
        let Identity { id, extra, extra2 } = *identity;
        let table_mask = (u64::from(self.number) << 32) | u64::from(self.mask);
        // SAFETY: a BPF function of this object, which takes and returns numbers.
        let walked = unsafe { netmon_slot_walk(table_mask, start, id, extra, extra2) };
        self.complete(walked as u32, walked >> 32 != 0, identity, meta)
    }

    /// The end of the slow path: counts a table found full, or completes the tag of a slot
    /// just claimed (its `id` is written).
    #[inline(always)]
    fn complete(
        &self,
        index: u32,
        claimed: bool,
        identity: &Identity,
        meta: impl FnOnce(u32) -> u64,
    ) -> u32 {
        if index == NO_SLOT {
            count(map_full(self.number));
            return NO_SLOT;
        }
        if claimed && let Some(tag) = self.tags.get_ptr_mut(index) {
            let meta = meta(index);
            let Identity { extra, extra2, .. } = *identity;
            // SAFETY: the slot is this program's from the successful claim on. The last word
            // goes last: until it is written, no other program matches the slot.
            unsafe {
                core::ptr::write_volatile(&raw mut (*tag).meta, meta);
                core::ptr::write_volatile(&raw mut (*tag).extra, extra);
                core::ptr::write_volatile(&raw mut (*tag).extra2, extra2);
            }
        }
        index
    }
}

/// What the slow path's loop looks at, and what it found.
#[cfg(not(feature = "bounded-walk"))]
#[repr(C)]
struct Walk {
    tags: &'static Array<SlotTag>,
    start: u32,
    mask: u32,
    identity: Identity,
    /// The slot found or claimed; [`NO_SLOT`] while none is.
    found: u32,
    /// Whether the slot was claimed by this walk (its tag is still to be completed).
    claimed: bool,
}

/// One step of the slow path's loop: the `i`-th slot from the identity's start. Returns 1 to
/// stop (the slot is the identity's, or was just claimed for it), 0 to go on.
#[cfg(not(feature = "bounded-walk"))]
fn step(i: u64, walk: *mut c_void) -> i64 {
    // SAFETY: the loop's context, a `Walk` on the caller's stack.
    let walk = unsafe { &mut *walk.cast::<Walk>() };
    let index = walk.start.wrapping_add(i as u32) & walk.mask;
    let Some(tag) = walk.tags.get_ptr_mut(index) else {
        return 0;
    };
    match look_at(tag, &walk.identity, || claim(tag, 0, walk.identity.id)) {
        Found::Elsewhere => 0,
        found => {
            walk.found = index;
            walk.claimed = found == Found::Claimed;
            1
        }
    }
}

/// What a walk finds at a slot.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Found {
    /// The slot counts for another identity.
    Elsewhere,
    /// The slot counts for the identity.
    Held,
    /// The slot was free and is now claimed for the identity (its `id` written).
    Claimed,
}

/// One step of a walk, at the slot `tag`: whether it counts for `identity`, or was free and
/// `claim` took it (writing its `id`; it fails where another program was first), or is
/// another's. Both walks' step.
#[inline(always)]
pub fn look_at(tag: *mut SlotTag, identity: &Identity, claim: impl FnOnce() -> bool) -> Found {
    let Identity { id, extra, extra2 } = *identity;
    if holds(tag, id, extra, extra2) {
        return Found::Held;
    }
    // SAFETY: a map value, read before trying the claim.
    let free = unsafe { core::ptr::read_volatile(&raw const (*tag).id) } == 0;
    if free && claim() {
        return Found::Claimed;
    }
    // Another CPU claimed it first, maybe for the same identity.
    if holds(tag, id, extra, extra2) {
        return Found::Held;
    }
    Found::Elsewhere
}

/// The three words that identify what a slot counts, passed to the slow path by reference (a
/// BPF function takes at most five arguments).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Identity {
    pub id: u64,
    pub extra: u64,
    pub extra2: u64,
}

/// What the slow path answers when no slot could be had (tables have fewer slots).
pub const NO_SLOT: u32 = u32::MAX;

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
#[cfg(not(feature = "bounded-walk"))]
#[inline(always)]
fn claim(tag: *mut SlotTag, current: u64, new: u64) -> bool {
    // The BPF target offers no `AtomicU64::compare_exchange`; the intrinsic is BPF's
    // `BPF_CMPXCHG` instruction.
    // SAFETY: an aligned u64 in a map value, shared with other CPUs only through atomics.
    unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(&raw mut (*tag).id, current, new) }.1
}
