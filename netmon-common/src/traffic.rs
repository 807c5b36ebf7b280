//! The traffic table: packets and bytes by (namespace, interface), counted at transmit and
//! receive.
use crate::slots::{CLAIMED, CountsKept, SlotKey, SlotTableSpec, SlotTag};

/// Capacity of the per-interface traffic table. One slot per (namespace, interface).
pub const MAX_INTERFACES: u32 = 4096;

/// The table's maps: tags, per-CPU counts, and the claims of the bounded-walk build.
pub const TAGS: &str = "TRAFFIC_TAGS";
pub const COUNTS: &str = "TRAFFIC";
pub const CLAIMS: &str = "TRAFFIC_CLAIMS";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 0,
    label: "traffic",
    slots: MAX_INTERFACES,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::PerCpu,
    maps: &[TAGS, COUNTS, CLAIMS],
};

/// Identity of a device in a slot table: its `struct net_device` as a number (an address,
/// or a distance from one fixed address; only equality matters), its namespace's cookie and
/// its index. A namespace made just after another died may get the dead one's address, its
/// inode, and devices at the same addresses with the same indexes; its cookie is new: the
/// kernel never gives one twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `struct net_device *`, or the `struct net *` of a socket for packets with no device,
    /// or 1 when neither is known. Never 0.
    pub device: u64,
    /// `net->net_cookie`, the slot's `extra` word, which the agent reads to tell a namespace
    /// from an earlier one with the same inode; 0 when unknown.
    pub cookie: u64,
    pub ifindex: u32,
}

impl DeviceIdentity {
    /// The third word of a traffic slot.
    #[inline(always)]
    pub fn traffic_extra2(&self) -> u64 {
        CLAIMED | (self.ifindex as u64 & 0x7fff_ffff)
    }
}

/// Key of the per-interface traffic map and part of the drop key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceKey {
    /// Inode number of the interface's network namespace, as `/proc/<pid>/ns/net` shows it.
    pub netns: u32,
    /// Interface index inside that namespace; 0 when the packet had no device.
    pub ifindex: u32,
}

impl InterfaceKey {
    /// The key as a slot's `meta` word.
    #[inline(always)]
    pub fn to_meta(&self) -> u64 {
        ((self.netns as u64) << 32) | self.ifindex as u64
    }

    pub fn from_meta(meta: u64) -> Self {
        Self {
            netns: (meta >> 32) as u32,
            ifindex: meta as u32,
        }
    }
}

/// Value of the per-interface traffic map (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceTraffic {
    pub rx_packets: u64,
    /// Bytes as `skb->len` at `netif_receive_skb`: the link-layer header is already pulled.
    pub rx_bytes: u64,
    pub tx_packets: u64,
    /// Bytes as `skb->len` at `net_dev_xmit`: link-layer header included.
    pub tx_bytes: u64,
    /// Transmits the driver did not accept (`net_dev_xmit` with a non-zero return code).
    pub tx_failed: u64,
}

/// A traffic slot counts the interface its `meta` word names, once its claim is complete.
impl SlotKey for InterfaceKey {
    const TABLE: &'static SlotTableSpec = &TABLE;
    type Value = InterfaceTraffic;
    fn from_tag(tag: &SlotTag) -> Option<Self> {
        tag.is_complete().then(|| Self::from_meta(tag.meta))
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for InterfaceKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for InterfaceTraffic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_slots_name_their_interface_and_are_never_free() {
        let interface = InterfaceKey {
            netns: 4_026_531_840,
            ifindex: 0x7fff_fffe,
        };
        let device = DeviceIdentity {
            device: 1,
            cookie: 0,
            ifindex: 0,
        };
        assert_ne!(device.traffic_extra2(), 0);
        let tag = SlotTag {
            id: 1,
            extra: 7,
            extra2: device.traffic_extra2(),
            meta: interface.to_meta(),
        };
        assert_eq!(InterfaceKey::from_tag(&tag), Some(interface));
    }
}
