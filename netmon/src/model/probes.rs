//! The kernel hooks, the ways of attaching to them, and what became of each: types the
//! probes produce and the outputs report.
use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

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
    /// fexit on the kernel function behind the hook; the socket hooks' fallback on kernels
    /// without their tracepoints.
    Fexit,
}

impl AttachMethod {
    pub const ALL: [AttachMethod; 5] = [
        Self::TpBtf,
        Self::RawTp,
        Self::Tracepoint,
        Self::Kprobe,
        Self::Fexit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TpBtf => "tp_btf",
            Self::RawTp => "raw_tp",
            Self::Tracepoint => "tracepoint",
            Self::Kprobe => "kprobe",
            Self::Fexit => "fexit",
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
                    "unknown attach method {s:?} (expected tp_btf, raw_tp, tracepoint, kprobe or \
                     fexit)"
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
    SockSendLength,
    SockRecvLength,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Self::NetDevXmit,
        Self::NetifReceiveSkb,
        Self::KfreeSkb,
        Self::InetSockSetState,
        Self::TcpRetransmitSkb,
        Self::TcpSendReset,
        Self::TcpReceiveReset,
        Self::SockSendLength,
        Self::SockRecvLength,
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
            Self::SockSendLength => "sock_send_length",
            Self::SockRecvLength => "sock_recv_length",
        }
    }
}

impl Hook {
    /// What the hook does not see when it runs with `method`, where that is less than the
    /// best method sees.
    pub fn limits(self, method: AttachMethod) -> Option<&'static str> {
        match (self, method) {
            (Self::NetDevXmit, AttachMethod::Tracepoint) => Some(
                "counts at net_dev_start_xmit, before the driver answers: a transmit the \
                 driver refuses is counted as sent, not as a transmit failure",
            ),
            (Self::KfreeSkb, AttachMethod::Kprobe) => Some(
                "drop samples have no kernel location: the probed function is the same for \
                 every drop",
            ),
            (Self::InetSockSetState, AttachMethod::Kprobe) => Some(
                "LISTEN -> SYN_RECV is not counted: the kernel sets that state of a new \
                 passive connection without tcp_set_state (passive handshakes are counted)",
            ),
            _ => None,
        }
    }

    /// Whether the hook has a program for `method`.
    pub fn offers(self, method: AttachMethod) -> bool {
        match (self, method) {
            (Self::SockSendLength | Self::SockRecvLength, method) => {
                matches!(method, AttachMethod::TpBtf | AttachMethod::Fexit)
            }
            (Self::KfreeSkb | Self::InetSockSetState, AttachMethod::Kprobe) => true,
            (_, AttachMethod::Kprobe | AttachMethod::Fexit) => false,
            _ => true,
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

/// Which build of the kernel programs the agent loaded: the one for kernels with `bpf_loop`
/// (Linux 5.17 and later), or the one for older kernels, whose slot walks are bounded loops
/// and whose socket hooks keep no per-CPU memo. Both count the same, exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramVariant {
    BpfLoop,
    BoundedWalk,
}

impl ProgramVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BpfLoop => "bpf_loop",
            Self::BoundedWalk => "bounded_walk",
        }
    }
}

impl fmt::Display for ProgramVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one hook: the method it got, or why every method failed.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeStatus {
    pub probe: Hook,
    pub method: Option<AttachMethod>,
    /// Methods tried before the one that worked (or all of them), with the reason each failed.
    pub failures: Vec<MethodFailure>,
    /// What the hook does not see with its method ([`Hook::limits`]) and on this kernel.
    pub limits: Option<String>,
    /// When no method worked: what the kernel lacks, in words an operator can act on (e.g.
    /// "Linux >= 5.5 for fexit"), from the first failure whose cause is known.
    pub needs: Option<String>,
    /// Turned off by the configuration (`disabled_probes`): nothing was tried.
    pub off: bool,
}

impl ProbeStatus {
    pub fn new(probe: Hook, method: Option<AttachMethod>, failures: Vec<MethodFailure>) -> Self {
        Self {
            probe,
            method,
            needs: method
                .is_none()
                .then(|| failures.iter().find_map(|f| f.needs.clone()))
                .flatten(),
            failures,
            limits: method.and_then(|m| probe.limits(m)).map(str::to_string),
            off: false,
        }
    }

    /// Adds what the running kernel withholds from the hook (e.g. drop reasons before 5.17)
    /// to its limits.
    pub fn limit(&mut self, limit: &str) {
        self.limits = Some(match self.limits.take() {
            Some(limits) => format!("{limits}; {limit}"),
            None => limit.to_string(),
        });
    }

    /// A hook the configuration turned off.
    pub fn off(probe: Hook) -> Self {
        Self {
            off: true,
            ..Self::new(probe, None, Vec::new())
        }
    }

    /// The method as shown to an operator: the one attached, `off`, or `none` when every
    /// method failed.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Some(method) => method.as_str(),
            None if self.off => "off",
            None => "none",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MethodFailure {
    pub method: AttachMethod,
    pub error: String,
    /// What the kernel lacks for this method, where the error says (see [`MethodFailure::new`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
}

impl MethodFailure {
    /// A failure of `method`, with what the kernel lacks read from the loader's or verifier's
    /// `error`, or given by the precondition that refused the method.
    pub fn new(method: AttachMethod, error: String, needs: Option<String>) -> Self {
        let needs = needs.or_else(|| kernel_lacks(method, &error).map(str::to_string));
        Self {
            method,
            error,
            needs,
        }
    }
}

/// What the kernel lacks, read from a load or attach error: the verifier's and loader's words
/// for a helper, instruction or program type it does not know.
fn kernel_lacks(method: AttachMethod, error: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 8] = [
        (
            "number of funcs in func_info doesn't match",
            "Linux >= 5.13 for BPF callbacks (bpf_loop: Linux >= 5.17)",
        ),
        ("bpf_loop", "Linux >= 5.17 for bpf_loop"),
        (
            "bpf_get_current_task_btf",
            "Linux >= 5.11 for bpf_get_current_task_btf",
        ),
        (
            "uses reserved fields",
            "Linux >= 5.12 for BPF atomic compare-and-swap",
        ),
        (
            "CONFIG_KPROBES",
            "a kernel built with kprobes (CONFIG_KPROBES=y)",
        ),
        (
            "no BTF",
            "a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y, /sys/kernel/btf/vmlinux)",
        ),
        (
            "Operation not permitted",
            "root, or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (Linux >= 5.8 for CAP_BPF)",
        ),
        (
            "tracefs",
            "tracefs, mounted or mountable at /sys/kernel/tracing",
        ),
    ];
    if let Some((_, needs)) = KNOWN.iter().find(|(text, _)| error.contains(text)) {
        return Some(needs);
    }
    match method {
        AttachMethod::Fexit if error.contains("Invalid argument") => {
            Some("Linux >= 5.5 for fexit, and BTF")
        }
        _ => None,
    }
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
        assert_eq!(
            "fexit".parse::<AttachMethod>().unwrap(),
            AttachMethod::Fexit
        );
        assert!("nope".parse::<Hook>().is_err());
    }
}
