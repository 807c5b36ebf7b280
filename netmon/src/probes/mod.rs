//! Loading netmon's kernel programs, attaching each hook by the best method the running kernel
//! offers, and reading their maps.
pub mod btf;
mod slots;
pub mod tracefs;

use std::{collections::BTreeMap, fmt, str::FromStr};

use anyhow::anyhow;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray},
    programs::{BtfTracePoint, KProbe, RawTracePoint, TracePoint},
};
use netmon_common::{
    DROP_REASON_UNKNOWN, DropKey, DropProbeArgs, EVENT_SLOTS, Event, HANDSHAKE_ACTIVE,
    HANDSHAKE_BUCKETS, HandshakeHistogram as KernelHistogram, HandshakeKey, InterfaceKey,
    InterfaceTraffic, KernelOffsets, MAX_DROP_KEYS, MAX_HANDSHAKE_KEYS, MAX_TRANSITION_KEYS,
    NormalFreeReasons, SlotMasks, TracepointFields, TransitionKey,
};
use serde::{Deserialize, Serialize};

use crate::{
    model::{DropCount, HandshakeHistogram, KernelCounters, TcpTransition, TrafficCount},
    names,
};
use btf::Btf;
use slots::Tags;
use tracefs::TracepointFormat;

/// The compiled kernel programs, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmon"));

/// How a program is attached to its hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMethod {
    /// BTF-typed tracepoint (`tp_btf`).
    TpBtf,
    /// Raw tracepoint (`raw_tp`).
    RawTp,
    /// Classic tracepoint, fields read at offsets from its tracefs format.
    Tracepoint,
    /// kprobe on the kernel function behind the hook; a fallback for two hooks.
    Kprobe,
}

impl AttachMethod {
    pub const ALL: [AttachMethod; 4] = [Self::TpBtf, Self::RawTp, Self::Tracepoint, Self::Kprobe];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TpBtf => "tp_btf",
            Self::RawTp => "raw_tp",
            Self::Tracepoint => "tracepoint",
            Self::Kprobe => "kprobe",
        }
    }
}

impl fmt::Display for AttachMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttachMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown attach method {s:?} (expected tp_btf, raw_tp, tracepoint or kprobe)"
                )
            })
    }
}

/// A kernel hook netmon counts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    NetDevXmit,
    NetifReceiveSkb,
    KfreeSkb,
    InetSockSetState,
    TcpRetransmitSkb,
    TcpSendReset,
    TcpReceiveReset,
}

impl Hook {
    pub const ALL: [Hook; 7] = [
        Self::NetDevXmit,
        Self::NetifReceiveSkb,
        Self::KfreeSkb,
        Self::InetSockSetState,
        Self::TcpRetransmitSkb,
        Self::TcpSendReset,
        Self::TcpReceiveReset,
    ];

    /// The tracepoint's name, also the `probe` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetDevXmit => "net_dev_xmit",
            Self::NetifReceiveSkb => "netif_receive_skb",
            Self::KfreeSkb => "kfree_skb",
            Self::InetSockSetState => "inet_sock_set_state",
            Self::TcpRetransmitSkb => "tcp_retransmit_skb",
            Self::TcpSendReset => "tcp_send_reset",
            Self::TcpReceiveReset => "tcp_receive_reset",
        }
    }

    fn category(self) -> &'static str {
        match self {
            Self::NetDevXmit | Self::NetifReceiveSkb => "net",
            Self::KfreeSkb => "skb",
            Self::InetSockSetState => "sock",
            Self::TcpRetransmitSkb | Self::TcpSendReset | Self::TcpReceiveReset => "tcp",
        }
    }

    /// The classic tracepoint the `tracepoint` method attaches to: the hook's own, except for
    /// transmits, whose classic record has no device pointer (see `netmon-ebpf/src/xmit.rs`).
    fn classic_tracepoint(self) -> &'static str {
        match self {
            Self::NetDevXmit => "net_dev_start_xmit",
            other => other.as_str(),
        }
    }

    fn program_prefix(self) -> &'static str {
        match self {
            Self::NetDevXmit => "nm_xmit",
            Self::NetifReceiveSkb => "nm_recv",
            Self::KfreeSkb => "nm_drop",
            Self::InetSockSetState => "nm_state",
            Self::TcpRetransmitSkb => "nm_retrans",
            Self::TcpSendReset => "nm_rst_tx",
            Self::TcpReceiveReset => "nm_rst_rx",
        }
    }

    /// Name of this hook's program for `method`, if it has one.
    fn program(self, method: AttachMethod) -> Option<String> {
        let suffix = match method {
            AttachMethod::TpBtf => "btf",
            AttachMethod::RawTp => "raw",
            AttachMethod::Tracepoint => "tp",
            AttachMethod::Kprobe => match self {
                Self::KfreeSkb | Self::InetSockSetState => "kprobe",
                _ => return None,
            },
        };
        Some(format!("{}_{suffix}", self.program_prefix()))
    }

    /// Whether the hook's program for `method` follows kernel struct pointers, and so needs
    /// offsets from BTF. The classic state tracepoint has all it needs in its record (only the
    /// namespace is then unknown, reported as 0).
    fn reads_structs(self, method: AttachMethod) -> bool {
        match self {
            Self::NetDevXmit | Self::NetifReceiveSkb | Self::KfreeSkb => true,
            Self::InetSockSetState => method != AttachMethod::Tracepoint,
            _ => false,
        }
    }
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| format!("unknown probe {s:?}"))
    }
}

/// What became of one hook: the method it got, or why every method failed.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeStatus {
    pub probe: Hook,
    pub method: Option<AttachMethod>,
    /// Methods tried before the one that worked (or all of them), with the reason each failed.
    pub failures: Vec<MethodFailure>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MethodFailure {
    pub method: AttachMethod,
    pub error: String,
}

/// Names of `enum skb_drop_reason` values, read from the running kernel's BTF.
#[derive(Clone, Debug, Default)]
pub struct DropReasonNames {
    names: BTreeMap<u32, String>,
}

impl DropReasonNames {
    pub fn from_btf(btf: &Btf) -> Self {
        let names = btf
            .enum_values("skb_drop_reason")
            .unwrap_or_default()
            .iter()
            .filter_map(|(name, value)| {
                let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
                Some((u32::try_from(*value).ok()?, short.to_string()))
            })
            .collect();
        Self { names }
    }

    /// The kernel's name without its `SKB_DROP_REASON_` prefix, the number if the kernel has no
    /// name for it, or `unknown` when the hook gave no reason.
    pub fn name(&self, reason: u32) -> String {
        if reason == DROP_REASON_UNKNOWN {
            return names::DROP_REASON_UNKNOWN.to_string();
        }
        self.names
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| reason.to_string())
    }

    fn value(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(v, _)| *v)
    }
}

/// Offsets of the kernel struct members the programs read, from BTF.
fn kernel_offsets(btf: &Btf) -> anyhow::Result<KernelOffsets> {
    let protocol = btf.member_offset("sock", "sk_protocol")?;
    Ok(KernelOffsets {
        skb_dev: btf.byte_offset("sk_buff", "dev")?,
        skb_len: btf.byte_offset("sk_buff", "len")?,
        skb_protocol: btf.byte_offset("sk_buff", "protocol")?,
        skb_sk: btf.byte_offset("sk_buff", "sk")?,
        netdev_ifindex: btf.byte_offset("net_device", "ifindex")?,
        netdev_nd_net: btf.byte_offset("net_device", "nd_net.net")?,
        net_inum: btf.byte_offset("net", "ns.inum")?,
        sk_family: btf.byte_offset("sock", "__sk_common.skc_family")?,
        sk_state: btf.byte_offset("sock", "__sk_common.skc_state")?,
        sk_net: btf.byte_offset("sock", "__sk_common.skc_net.net")?,
        sk_protocol: protocol.byte_offset,
        tcp_srtt_us: btf.byte_offset("tcp_sock", "srtt_us")?,
        sk_protocol_readable: u32::from(!protocol.is_bitfield),
    })
}

/// Field offsets of the classic tracepoints; a tracepoint whose format cannot be read keeps
/// zeros, and its classic program is then refused at attach time. tracefs is mounted only
/// when classic tracepoints are likely to be used (`may_mount`).
fn tracepoint_fields(may_mount: bool) -> (TracepointFields, BTreeMap<Hook, String>) {
    let mut fields = TracepointFields::default();
    let mut missing = BTreeMap::new();
    let mounted = if may_mount {
        tracefs::ensure_mounted()
    } else {
        tracefs::is_mounted()
    };
    if !mounted {
        for hook in Hook::ALL {
            missing.insert(hook, "tracefs is not mounted and cannot be".to_string());
        }
        return (fields, missing);
    }
    let mut read = |hook: Hook, f: &mut dyn FnMut(&TracepointFormat) -> anyhow::Result<()>| {
        let result = TracepointFormat::read(hook.category(), hook.classic_tracepoint())
            .and_then(|format| f(&format));
        if let Err(err) = result {
            missing.insert(hook, format!("{err:#}"));
        }
    };
    read(Hook::NetDevXmit, &mut |f| {
        fields.xmit_skb = f.require("skbaddr")?;
        fields.xmit_len = f.require("len")?;
        Ok(())
    });
    read(Hook::NetifReceiveSkb, &mut |f| {
        fields.recv_skb = f.require("skbaddr")?;
        fields.recv_len = f.require("len")?;
        Ok(())
    });
    read(Hook::KfreeSkb, &mut |f| {
        fields.drop_skb = f.require("skbaddr")?;
        fields.drop_protocol = f.require("protocol")?;
        if let Some(reason) = f.offset("reason") {
            fields.drop_reason = reason;
            fields.drop_reason_present = 1;
        }
        Ok(())
    });
    read(Hook::InetSockSetState, &mut |f| {
        fields.state_sk = f.require("skaddr")?;
        fields.state_old = f.require("oldstate")?;
        fields.state_new = f.require("newstate")?;
        fields.state_family = f.require("family")?;
        fields.state_protocol = f.require("protocol")?;
        Ok(())
    });
    (fields, missing)
}

/// The kernel function behind the drop hook on this kernel, and where its arguments are.
fn drop_kprobe_target() -> Option<(&'static str, DropProbeArgs)> {
    let symbols = std::fs::read_to_string("/proc/kallsyms").ok()?;
    let has = |name: &str| {
        symbols
            .lines()
            .any(|line| line.split_whitespace().nth(2) == Some(name))
    };
    let candidates = [
        (
            "sk_skb_reason_drop",
            DropProbeArgs {
                skb_arg: 1,
                reason_arg: 2,
                reason_present: 1,
            },
        ),
        (
            "kfree_skb_reason",
            DropProbeArgs {
                skb_arg: 0,
                reason_arg: 1,
                reason_present: 1,
            },
        ),
        (
            "kfree_skb",
            DropProbeArgs {
                skb_arg: 0,
                reason_arg: 0,
                reason_present: 0,
            },
        ),
    ];
    candidates.into_iter().find(|(name, _)| has(name))
}

/// What the operator can choose about the probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Pins a hook to one attach method instead of the best available.
    pub forced: BTreeMap<Hook, AttachMethod>,
    /// Capacity of the per-interface traffic map (interfaces over all namespaces).
    pub max_tracked_interfaces: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            forced: BTreeMap::new(),
            max_tracked_interfaces: netmon_common::MAX_INTERFACES,
        }
    }
}

/// Slots of each table, as loaded (powers of two).
#[derive(Clone, Copy, Debug)]
struct TableSizes {
    traffic: u32,
    drops: u32,
    transitions: u32,
    handshakes: u32,
}

impl TableSizes {
    fn new(settings: &ProbeSettings) -> Self {
        Self {
            traffic: settings.max_tracked_interfaces.max(1).next_power_of_two(),
            drops: MAX_DROP_KEYS,
            transitions: MAX_TRANSITION_KEYS,
            handshakes: MAX_HANDSHAKE_KEYS,
        }
    }

    fn masks(self) -> SlotMasks {
        SlotMasks {
            traffic: self.traffic - 1,
            drops: self.drops - 1,
            transitions: self.transitions - 1,
            handshakes: self.handshakes - 1,
        }
    }
}

/// The tag arrays of the tables the agent reads, memory-mapped.
struct TableTags {
    traffic: Tags,
    drops: Tags,
    transitions: Tags,
    handshakes: Tags,
}

impl TableTags {
    fn map(ebpf: &Ebpf, sizes: TableSizes) -> anyhow::Result<Self> {
        Ok(Self {
            traffic: Tags::map(ebpf, "TRAFFIC_TAGS", sizes.traffic)?,
            drops: Tags::map(ebpf, "DROP_TAGS", sizes.drops)?,
            transitions: Tags::map(ebpf, "TRANSITION_TAGS", sizes.transitions)?,
            handshakes: Tags::map(ebpf, "HANDSHAKE_TAGS", sizes.handshakes)?,
        })
    }
}

/// Loaded programs and their maps. Dropping it detaches and unloads everything.
pub struct Probes {
    ebpf: Option<(Ebpf, TableTags)>,
    status: Vec<ProbeStatus>,
    reasons: DropReasonNames,
    /// Why the object could not be loaded at all, if it could not.
    load_error: Option<String>,
}

impl Probes {
    /// Loads the embedded object and attaches every hook, each on its own. Never fails: what
    /// did not work is in [`Probes::status`].
    pub fn start(settings: &ProbeSettings) -> Self {
        let forced = &settings.forced;
        let btf = Btf::from_sys_fs();
        let reasons = btf
            .as_ref()
            .map(DropReasonNames::from_btf)
            .unwrap_or_default();
        let offsets = btf.as_ref().map_err(|e| format!("{e:#}")).and_then(|btf| {
            kernel_offsets(btf).map_err(|e| format!("kernel struct layout from BTF: {e:#}"))
        });
        // Classic tracepoints are the way on kernels without BTF, or when asked for.
        let classic_likely =
            btf.is_err() || forced.values().any(|m| *m == AttachMethod::Tracepoint);
        let (fields, tracepoint_errors) = tracepoint_fields(classic_likely);
        // Older kernels lack one or both names; a value no reason takes then matches nothing.
        let no_such_reason = DROP_REASON_UNKNOWN - 1;
        let normal = NormalFreeReasons {
            not_dropped_yet: reasons
                .value("SKB_NOT_DROPPED_YET")
                .unwrap_or(no_such_reason),
            consumed: reasons.value("SKB_CONSUMED").unwrap_or(no_such_reason),
        };
        let drop_target = drop_kprobe_target();
        let aya_btf = aya::Btf::from_sys_fs().ok();

        let object_offsets = offsets.clone().unwrap_or_default();
        let drop_args = drop_target.map(|(_, args)| args).unwrap_or_default();
        let sizes = TableSizes::new(settings);
        let loaded = EbpfLoader::new()
            .btf(aya_btf.as_ref())
            .override_global("OFFSETS", &object_offsets, true)
            .override_global("TP_FIELDS", &fields, true)
            .override_global("DROP_PROBE_ARGS", &drop_args, true)
            .override_global("NORMAL_FREE", &normal, true)
            .override_global("SLOT_MASKS", &sizes.masks(), true)
            .map_max_entries("TRAFFIC_TAGS", sizes.traffic)
            .map_max_entries("TRAFFIC", sizes.traffic)
            .load(OBJECT)
            .map_err(anyhow::Error::from)
            .and_then(|ebpf| {
                let tags = TableTags::map(&ebpf, sizes)?;
                Ok((ebpf, tags))
            });
        let (mut ebpf, tags) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => {
                let error = format!(
                    "loading eBPF object: {err:#} (netmon needs root, or CAP_BPF and CAP_PERFMON)"
                );
                tracing::error!("{error}; serving host statistics only");
                let status = Hook::ALL
                    .into_iter()
                    .map(|probe| ProbeStatus {
                        probe,
                        method: None,
                        failures: vec![],
                    })
                    .collect();
                return Self {
                    ebpf: None,
                    status,
                    reasons,
                    load_error: Some(error),
                };
            }
        };

        let mut status = Vec::new();
        for hook in Hook::ALL {
            let methods: Vec<AttachMethod> = match forced.get(&hook) {
                Some(method) => vec![*method],
                None => AttachMethod::ALL.to_vec(),
            };
            let mut failures = Vec::new();
            let mut attached = None;
            for method in methods {
                let precondition = match method {
                    AttachMethod::TpBtf if aya_btf.is_none() => {
                        Err("the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_string())
                    }
                    AttachMethod::Tracepoint => match tracepoint_errors.get(&hook) {
                        Some(err) => Err(err.clone()),
                        None => Ok(()),
                    },
                    _ => Ok(()),
                }
                .and_then(|()| {
                    if hook.reads_structs(method) {
                        offsets.as_ref().map(|_| ()).map_err(Clone::clone)
                    } else {
                        Ok(())
                    }
                });
                let kprobe_fn = match hook {
                    Hook::KfreeSkb => drop_target.map(|(name, _)| name),
                    _ => Some("tcp_set_state"),
                };
                let result = precondition.and_then(|()| {
                    attach(&mut ebpf, hook, method, aya_btf.as_ref(), kprobe_fn)
                        .map_err(|e| format!("{e:#}"))
                });
                match result {
                    Ok(()) => {
                        attached = Some(method);
                        break;
                    }
                    Err(error) => failures.push(MethodFailure { method, error }),
                }
            }
            match attached {
                Some(method) => tracing::info!(probe = hook.as_str(), %method, "attached"),
                None => tracing::warn!(
                    probe = hook.as_str(),
                    failures = ?failures,
                    "not attached; its counts are missing"
                ),
            }
            status.push(ProbeStatus {
                probe: hook,
                method: attached,
                failures,
            });
        }
        Self {
            ebpf: Some((ebpf, tags)),
            status,
            reasons,
            load_error: None,
        }
    }

    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    pub fn load_error(&self) -> Option<&str> {
        self.load_error.as_deref()
    }

    pub fn drop_reasons(&self) -> &DropReasonNames {
        &self.reasons
    }

    /// Reads every table, summing the per-CPU values (and the slots an identity may hold
    /// more than one of).
    pub fn read(&self) -> anyhow::Result<KernelCounters> {
        let Some((ebpf, tags)) = &self.ebpf else {
            return Ok(KernelCounters::default());
        };
        let mut counters = KernelCounters::default();

        let mut traffic: BTreeMap<InterfaceKey, InterfaceTraffic> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<InterfaceTraffic>(ebpf, &tags.traffic, "TRAFFIC")? {
            // A claim not yet complete counts nothing so far.
            if !tag.is_complete() {
                continue;
            }
            let sum = traffic
                .entry(InterfaceKey::from_meta(tag.meta))
                .or_default();
            for value in per_cpu.iter() {
                sum.rx_packets += value.rx_packets;
                sum.rx_bytes += value.rx_bytes;
                sum.tx_packets += value.tx_packets;
                sum.tx_bytes += value.tx_bytes;
                sum.tx_failed += value.tx_failed;
            }
        }
        counters.traffic = traffic
            .into_iter()
            .map(|(key, sum)| TrafficCount {
                netns: key.netns,
                ifindex: key.ifindex,
                interface: String::new(),
                rx_packets: sum.rx_packets,
                rx_bytes: sum.rx_bytes,
                tx_packets: sum.tx_packets,
                tx_bytes: sum.tx_bytes,
                tx_failed: sum.tx_failed,
            })
            .collect();

        let mut drops: BTreeMap<DropKey, u64> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<u64>(ebpf, &tags.drops, "DROPS")? {
            if tag.is_complete() {
                *drops.entry(DropKey::from_slot(&tag)).or_default() += per_cpu.iter().sum::<u64>();
            }
        }
        counters.drops = drops
            .into_iter()
            .map(|(key, count)| DropCount {
                key,
                netns: key.interface.netns,
                ifindex: key.interface.ifindex,
                interface: String::new(),
                protocol: names::ethertype_name(key.protocol),
                reason: self.reasons.name(key.reason),
                count,
            })
            .collect();

        let mut transitions: BTreeMap<TransitionKey, u64> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<u64>(ebpf, &tags.transitions, "TCP_TRANSITIONS")? {
            *transitions
                .entry(TransitionKey::from_slot_id(tag.id))
                .or_default() += per_cpu.iter().sum::<u64>();
        }
        counters.transitions = transitions
            .into_iter()
            .map(|(key, count)| TcpTransition {
                netns: key.netns,
                family: family_name(key.family),
                from: names::tcp_state_name(key.old_state.into()),
                to: names::tcp_state_name(key.new_state.into()),
                count,
            })
            .collect();
        counters.transitions.sort_by(|a, b| {
            (a.netns, a.family, &a.from, &a.to).cmp(&(b.netns, b.family, &b.from, &b.to))
        });

        let mut handshakes: BTreeMap<(u32, u32), HandshakeHistogram> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<KernelHistogram>(ebpf, &tags.handshakes, "HANDSHAKES")?
        {
            let key = HandshakeKey::from_slot_id(tag.id);
            let histogram =
                handshakes
                    .entry((key.netns, key.open))
                    .or_insert_with(|| HandshakeHistogram {
                        netns: key.netns,
                        open: if key.open == HANDSHAKE_ACTIVE {
                            "active"
                        } else {
                            "passive"
                        },
                        buckets: vec![0; HANDSHAKE_BUCKETS],
                        sum_ns: 0,
                    });
            for value in per_cpu.iter() {
                for (total, count) in histogram.buckets.iter_mut().zip(value.buckets) {
                    *total += count;
                }
                histogram.sum_ns += value.sum_ns;
            }
        }
        counters.handshakes = handshakes.into_values().collect();

        let events: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map(ebpf, "EVENTS")?)?;
        let mut totals = [0u64; EVENT_SLOTS as usize];
        for (slot, total) in totals.iter_mut().enumerate() {
            *total = events.get(&(slot as u32), 0)?.iter().sum();
        }
        counters.tcp_retransmits = totals[Event::TcpRetransmit as usize];
        counters.tcp_resets_sent = totals[Event::TcpResetSent as usize];
        counters.tcp_resets_received = totals[Event::TcpResetReceived as usize];
        counters.traffic_map_full = totals[Event::TrafficMapFull as usize];
        counters.drop_map_full = totals[Event::DropMapFull as usize];
        counters.handshake_map_full = totals[Event::HandshakeMapFull as usize];
        counters.transition_map_full = totals[Event::TransitionMapFull as usize];
        counters.read_failures = totals[Event::ReadFailed as usize];
        Ok(counters)
    }

    /// Frees the slots of interfaces and namespaces that no longer exist, in one pass over
    /// each table's tags; returns how many went, and how many slots each table uses
    /// afterwards.
    pub fn forget(
        &mut self,
        interface_gone: &dyn Fn(&InterfaceKey) -> bool,
        netns_gone: &dyn Fn(u32) -> bool,
    ) -> anyhow::Result<(usize, Vec<(&'static str, usize)>)> {
        let Some((ebpf, tags)) = &mut self.ebpf else {
            return Ok((0, Vec::new()));
        };
        let passes = [
            (
                "traffic",
                slots::free_where::<InterfaceTraffic>(ebpf, &tags.traffic, "TRAFFIC", &|tag| {
                    interface_gone(&InterfaceKey::from_meta(tag.meta))
                })?,
            ),
            (
                "drops",
                slots::free_where::<u64>(ebpf, &tags.drops, "DROPS", &|tag| {
                    interface_gone(&InterfaceKey::from_meta(tag.meta))
                })?,
            ),
            (
                "transitions",
                slots::free_where::<u64>(ebpf, &tags.transitions, "TCP_TRANSITIONS", &|tag| {
                    netns_gone(TransitionKey::from_slot_id(tag.id).netns)
                })?,
            ),
            (
                "handshakes",
                slots::free_where::<KernelHistogram>(
                    ebpf,
                    &tags.handshakes,
                    "HANDSHAKES",
                    &|tag| netns_gone(HandshakeKey::from_slot_id(tag.id).netns),
                )?,
            ),
        ];
        let removed = passes.iter().map(|(_, (removed, _))| removed).sum();
        let entries = passes
            .iter()
            .map(|(map, (_, left))| (*map, *left))
            .collect();
        Ok((removed, entries))
    }
}

fn family_name(family: u8) -> &'static str {
    if family == libc::AF_INET6 as u8 {
        names::FAMILY_INET6
    } else {
        names::FAMILY_INET
    }
}

fn map<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Map> {
    ebpf.map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the object"))
}

fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    method: AttachMethod,
    btf: Option<&aya::Btf>,
    kprobe_fn: Option<&str>,
) -> anyhow::Result<()> {
    let name = hook
        .program(method)
        .ok_or_else(|| anyhow!("{method} is not a method of this probe"))?;
    let program = ebpf
        .program_mut(&name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
    match method {
        AttachMethod::TpBtf => {
            let program: &mut BtfTracePoint = program.try_into()?;
            let btf = btf.ok_or_else(|| anyhow!("no BTF"))?;
            program.load(hook.as_str(), btf)?;
            if let Err(err) = program.attach() {
                let _ = program.unload();
                return Err(err.into());
            }
        }
        AttachMethod::RawTp => {
            let program: &mut RawTracePoint = program.try_into()?;
            program.load()?;
            if let Err(err) = program.attach(hook.as_str()) {
                let _ = program.unload();
                return Err(err.into());
            }
        }
        AttachMethod::Tracepoint => {
            let program: &mut TracePoint = program.try_into()?;
            program.load()?;
            if let Err(err) = program.attach(hook.category(), hook.classic_tracepoint()) {
                let _ = program.unload();
                return Err(err.into());
            }
        }
        AttachMethod::Kprobe => {
            let function =
                kprobe_fn.ok_or_else(|| anyhow!("no kernel function to probe for {hook:?}"))?;
            let program: &mut KProbe = program.try_into()?;
            program.load()?;
            if let Err(err) = program.attach(function, 0) {
                let _ = program.unload();
                return Err(anyhow::Error::new(err)
                    .context(format!("kprobe on {function} (is CONFIG_KPROBES set?)")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_and_hook_names_round_trip() {
        for method in AttachMethod::ALL {
            assert_eq!(method.as_str().parse::<AttachMethod>().unwrap(), method);
        }
        for hook in Hook::ALL {
            assert_eq!(hook.as_str().parse::<Hook>().unwrap(), hook);
        }
        assert!("fentry".parse::<AttachMethod>().is_err());
        assert!("nope".parse::<Hook>().is_err());
    }

    #[test]
    fn only_the_state_and_drop_hooks_have_kprobes() {
        let with_kprobe: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| h.program(AttachMethod::Kprobe).is_some())
            .collect();
        assert_eq!(with_kprobe, vec![Hook::KfreeSkb, Hook::InetSockSetState]);
    }

    #[test]
    fn drop_reasons_fall_back_to_numbers() {
        let mut reasons = DropReasonNames::default();
        reasons.names.insert(3, "NO_SOCKET".to_string());
        assert_eq!(reasons.name(3), "NO_SOCKET");
        assert_eq!(reasons.name(999), "999");
        assert_eq!(reasons.name(DROP_REASON_UNKNOWN), "unknown");
    }
}
