use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap},
};
use netmon_common::{
    DropKey, EVENT_SLOTS, Event, HandshakeHistogram, HandshakeKey, InterfaceKey, InterfaceTraffic,
    MAX_DROP_KEYS, MAX_HANDSHAKE_KEYS, MAX_HANDSHAKES, MAX_INTERFACES, MAX_TRANSITION_KEYS,
    TransitionKey,
};

#[map]
pub static TRAFFIC: PerCpuHashMap<InterfaceKey, InterfaceTraffic> =
    PerCpuHashMap::with_max_entries(MAX_INTERFACES, 0);

#[map]
pub static DROPS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(MAX_DROP_KEYS, 0);

#[map]
pub static TCP_TRANSITIONS: PerCpuHashMap<TransitionKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_TRANSITION_KEYS, 0);

#[map]
pub static HANDSHAKES: PerCpuHashMap<HandshakeKey, HandshakeHistogram> =
    PerCpuHashMap::with_max_entries(MAX_HANDSHAKE_KEYS, 0);

/// Socket address -> time its handshake started (ns since boot).
#[map]
pub static HANDSHAKE_START: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_HANDSHAKES, 0);

#[map]
pub static EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_SLOTS, 0);

#[inline(always)]
pub fn count_event(event: Event) {
    if let Some(slot) = EVENTS.get_ptr_mut(event as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe { *slot += 1 };
    }
}

/// Returns this CPU's entry for `key`, creating a zeroed one first if needed; `None` when the
/// map is full (counted as `full`).
#[inline(always)]
pub fn entry<K, V: Default>(map: &PerCpuHashMap<K, V>, key: &K, full: Event) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    // Another CPU may have created it in between: BPF_NOEXIST then fails, and the lookup works.
    let _ = map.insert(key, V::default(), BPF_NOEXIST as u64);
    let value = map.get_ptr_mut(key);
    if value.is_none() {
        count_event(full);
    }
    value
}
