//! The slot walk of the object for kernels without `bpf_loop` (built with `bounded-walk`):
//! the same walk as `slots`' `bpf_loop`, in a loop the verifier follows step by step to its
//! bound, and a claim that needs no compare-and-swap (Linux 5.12): a program claims a free
//! slot by inserting its index into the table's claims, a hash map whose `BPF_NOEXIST` insert
//! exactly one program wins; the agent, freeing the slot, clears its `id` and then removes
//! the index.
use aya_ebpf::maps::{Array, HashMap};
use netmon_common::slots::{SLOT_PROBES, SlotTag};

use crate::{
    maps::walked_table,
    slots::{Found, Identity, NO_SLOT, look_at},
};

/// The flag of a map update that only inserts.
const BPF_NOEXIST: u64 = 1;

/// Walks the table numbered in the high word of `table_mask` (a table's number), whose mask is
/// its low word, from slot `start` for the identity (`id`, `extra`, `extra2`): returns the
/// slot that holds it or was claimed for it (1 in the high word), or [`NO_SLOT`]. Global,
/// and so checked by the verifier once, with its arguments unknown: inlined or static, it
/// was checked once for every path of its caller, with the slot it found known at each, and
/// a hook with two tables passed the verifier's million instructions.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn netmon_slot_walk(
    table_mask: u64,
    start: u32,
    id: u64,
    extra: u64,
    extra2: u64,
) -> u64 {
    let mask = table_mask as u32;
    let Some((tags, claims)) = walked_table(table_mask >> 32) else {
        return u64::from(NO_SLOT);
    };
    let identity = Identity { id, extra, extra2 };
    // A table smaller than the probes is looked at once.
    let probes = SLOT_PROBES.min(mask.wrapping_add(1).max(1));
    let mut i = 0;
    while i < SLOT_PROBES && i < probes {
        let index = start.wrapping_add(i) & mask;
        match visit(tags, claims, index, &identity) {
            Found::Held => return u64::from(index),
            Found::Claimed => return u64::from(index) | 1 << 32,
            Found::Elsewhere => i += 1,
        }
    }
    u64::from(NO_SLOT)
}

/// One step of the walk, at slot `index` (see `slots::look_at`): a free slot is claimed by
/// inserting its index into the claims; exactly one insert succeeds until the agent, freeing
/// the slot, has cleared its `id` and then removed the index.
#[inline(never)]
fn visit(
    tags: &'static Array<SlotTag>,
    claims: &'static HashMap<u32, u32>,
    index: u32,
    identity: &Identity,
) -> Found {
    let Some(tag) = tags.get_ptr_mut(index) else {
        return Found::Elsewhere;
    };
    look_at(tag, identity, || {
        let won = claims.insert(index, 0, BPF_NOEXIST).is_ok();
        if won {
            // SAFETY: the slot is this program's: no other program writes its `id`.
            unsafe { core::ptr::write_volatile(&raw mut (*tag).id, identity.id) };
        }
        won
    })
}
