//! The drop table: packets the kernel freed as dropped, by (namespace, interface, reason,
//! protocol).
use crate::{
    slots::{CountsKept, SlotKey, SlotTableSpec, SlotTag},
    traffic::{DeviceIdentity, InterfaceKey},
};

/// Capacity of the drop table. One slot per (namespace, interface, reason, protocol).
pub const MAX_DROP_KEYS: u32 = 4096;

/// Reason recorded by hooks that do not tell why a packet was dropped.
pub const DROP_REASON_UNKNOWN: u32 = u32::MAX;

/// The table's maps: tags, per-CPU counts, and the claims of the bounded-walk build.
pub const TAGS: &str = "DROP_TAGS";
pub const COUNTS: &str = "DROPS";
pub const CLAIMS: &str = "DROP_CLAIMS";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 1,
    label: "drops",
    slots: MAX_DROP_KEYS,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::PerCpu,
    maps: &[TAGS, COUNTS, CLAIMS],
};

impl DeviceIdentity {
    /// The third word of a drop slot: index, reason (16 bits; [`DROP_REASON_UNKNOWN`] as
    /// `0xffff`) and protocol.
    #[inline(always)]
    pub fn drop_extra2(&self, reason: u32, protocol: u16) -> u64 {
        let reason = if reason > 0xfffe {
            0xffff
        } else {
            reason as u64
        };
        self.traffic_extra2() | (reason << 32) | ((protocol as u64) << 48)
    }
}

/// Key of the drop map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    pub interface: InterfaceKey,
    /// `enum skb_drop_reason` value; [`DROP_REASON_UNKNOWN`] when the hook has no reason.
    pub reason: u32,
    /// `skb->protocol` in host byte order (an ethertype such as 0x0800).
    pub protocol: u16,
    pub _pad: u16,
}

/// A drop slot counts the drop its words name, once its claim is complete.
/// (see [`DeviceIdentity::drop_extra2`]).
impl SlotKey for DropKey {
    const TABLE: &'static SlotTableSpec = &TABLE;
    type Value = u64;
    fn from_tag(tag: &SlotTag) -> Option<Self> {
        if !tag.is_complete() {
            return None;
        }
        let reason = ((tag.extra2 >> 32) & 0xffff) as u32;
        Some(Self {
            interface: InterfaceKey::from_meta(tag.meta),
            reason: if reason == 0xffff {
                DROP_REASON_UNKNOWN
            } else {
                reason
            },
            protocol: (tag.extra2 >> 48) as u16,
            _pad: 0,
        })
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::slot_hash;

    #[test]
    fn drops_of_one_device_by_different_reasons_start_at_different_slots() {
        let device = DeviceIdentity {
            device: 0xffff_8881_0a3c_6000,
            cookie: 4097,
            ifindex: 2,
        };
        let mask = MAX_DROP_KEYS - 1;
        let mut starts = [0u32; 16];
        for (start, reason) in starts.iter_mut().zip(1..) {
            let extra2 = device.drop_extra2(reason, 0x0800);
            *start = slot_hash(device.device, device.cookie, extra2) & mask;
        }
        starts.sort_unstable();
        assert!(starts.windows(2).all(|w| w[0] != w[1]), "{starts:?}");
    }

    #[test]
    fn drop_slots_name_their_interface_reason_and_protocol() {
        let interface = InterfaceKey {
            netns: 4_026_531_840,
            ifindex: 0x7fff_fffe,
        };
        let device = DeviceIdentity {
            device: 1,
            cookie: 0,
            ifindex: 0,
        };
        for (reason, protocol) in [(DROP_REASON_UNKNOWN, 0x86dd), (2, 0x0800), (0xfffe, 0)] {
            let tag = SlotTag {
                id: 1,
                extra: 0,
                extra2: device.drop_extra2(reason, protocol),
                meta: interface.to_meta(),
            };
            let drop = DropKey::from_tag(&tag).expect("a complete claim");
            assert_eq!(drop.interface, interface);
            assert_eq!((drop.reason, drop.protocol), (reason, protocol));
        }
        let claiming = SlotTag {
            id: 1,
            ..SlotTag::default()
        };
        assert_eq!(DropKey::from_tag(&claiming), None);
    }

    #[test]
    fn device_identities_keep_index_reason_and_protocol_apart() {
        let a = DeviceIdentity {
            device: 5,
            cookie: 9,
            ifindex: 2,
        };
        let b = DeviceIdentity { ifindex: 3, ..a };
        assert_ne!(a.traffic_extra2(), b.traffic_extra2());
        assert_ne!(a.drop_extra2(2, 0x800), a.drop_extra2(3, 0x800));
        assert_ne!(a.drop_extra2(2, 0x800), a.drop_extra2(2, 0x86dd));
    }
}
