//! Slot mechanics every table shares: the tag that says what a slot counts, where an
//! identity's walk starts, how many slots it looks at, and the typed views of a tag.

// Capacities are powers of two. The per-CPU tables take their size times the CPUs: they are
// sized for a busy host (hundreds of containers) and no more, so that a 128-CPU host pays
// about 32 MiB of kernel memory for all of them (BENCHMARKS.md, table 7).

/// further, and they stop at their own slot; a full table costs each refused event 128.
pub const SLOT_PROBES: u32 = 128;

/// What one slot counts. `id` is 0 while the slot is free; it is claimed with a
/// compare-and-swap, then `meta`, `extra` and last `extra2` are written once. A program uses
/// a slot only when `id`, `extra` and `extra2` all match. `meta` is for the agent: what the
/// identity means (for devices, the namespace inode and interface index, read once at the
/// claim instead of at every packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotTag {
    pub id: u64,
    pub extra: u64,
    pub extra2: u64,
    pub meta: u64,
}

impl SlotTag {
    /// A claim is complete once its last word is written; tables whose identities have a
    /// second and third word keep them non-zero.
    pub fn is_complete(&self) -> bool {
        self.extra2 != 0
    }
}

/// Start slot of the identity (`id`, `extra`, `extra2`) in a table of `mask + 1` slots (a
/// power of two). Every word counts: the drops of one device by different reasons start at
/// different slots instead of queueing behind each other. A slot is `mask` of bits 32 and up
/// of the product, which only the factor's bits 0 to 32 + log2(slots) reach: `extra2` is
/// turned so that its reason and protocol (bits 32 to 63) land there.
#[inline(always)]
pub fn slot_hash(id: u64, extra: u64, extra2: u64) -> u32 {
    ((id ^ extra.rotate_left(29) ^ extra2.rotate_right(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 32) as u32
}

/// Set in every identity so that none is 0, the mark of a free slot.
pub(crate) const CLAIMED: u64 = 1 << 31;

/// A slot table as both sides of the ABI know it: the one description each table's file
/// gives, which the programs, the agent, its metrics and the benchmarks read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotTableSpec {
    /// Its place in [`crate::SLOT_TABLES`]: the index of its mask in [`SlotMasks`], of its
    /// full counter among the programs' events, and of its claims in the bounded walk.
    pub number: u32,
    /// The `map` label of its metrics and benchmark rows.
    pub label: &'static str,
    /// Capacity, a power of two.
    pub slots: u32,
    /// The maps of its tags, counts and (in the bounded-walk build) claims.
    pub tags: &'static str,
    pub counts: &'static str,
    pub claims: &'static str,
    /// How its counts are kept.
    pub kept: CountsKept,
    /// Every map of the table, for its kernel memory.
    pub maps: &'static [&'static str],
}

/// How a table keeps the counts of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountsKept {
    /// A per-CPU array: one value for each CPU, for frequent events.
    PerCpu,
    /// One value added to atomically by all CPUs, for rare events with large values.
    Shared,
    /// One array holding a region of values for each CPU, mapped by the agent.
    CpuRegions,
}

/// Masks of the slot tables (slots - 1, each a power of two) by table number, written by the
/// agent into the programs' read-only data before they load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotMasks {
    pub masks: [u32; crate::SLOT_TABLES.len()],
}

impl SlotMasks {
    /// Every table at its full capacity.
    pub const fn full() -> Self {
        let mut masks = [0; crate::SLOT_TABLES.len()];
        let mut number = 0;
        while number < masks.len() {
            masks[number] = crate::SLOT_TABLES[number].slots - 1;
            number += 1;
        }
        Self { masks }
    }
}

/// The third word of a transition or handshake slot, whose second is the namespace's cookie
/// (as a device's is, see [`DeviceIdentity`]): it only marks the claim complete.
pub const NAMESPACE_SLOT_EXTRA2: u64 = CLAIMED;

/// What a complete slot of a table counts, read from its tag: the one place that knows which
/// of the tag's words holds what for the table.
pub trait SlotKey: Sized {
    /// The table whose slots count keys of this type.
    const TABLE: &'static SlotTableSpec;
    /// What a slot counts (a CPU's share where the counts are per CPU).
    type Value: Copy + Default;
    /// The key of the slot with `tag`; `None` when the slot counts something else (a table
    /// shared by two kinds of keys) or its claim is not complete.
    fn from_tag(tag: &SlotTag) -> Option<Self>;

    /// The cookie of the namespace the slot was counted in: its `extra` where the table
    /// keeps it there, 0 (unknown) where the identity needs every word.
    fn netns_cookie(tag: &SlotTag) -> u64 {
        tag.extra
    }
}

/// A slot of a table counted by namespace: what it counts, and the cookie of the namespace it
/// was counted in (the tag's `extra`), which tells a namespace from an earlier one with the
/// same inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamespacedSlot<K> {
    pub key: K,
    /// `net->net_cookie`; 0 when unknown.
    pub netns_cookie: u64,
}

impl<K: SlotKey> NamespacedSlot<K> {
    pub fn from_tag(tag: &SlotTag) -> Option<Self> {
        K::from_tag(tag).map(|key| Self {
            key,
            netns_cookie: K::netns_cookie(tag),
        })
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SlotTag {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SlotMasks {}
