//! Attaching one hook's program by one method, and what that needs to know of the hook.
use anyhow::anyhow;
use aya::{
    Ebpf,
    programs::{BtfTracePoint, FExit, KProbe, RawTracePoint, TracePoint},
};

use crate::model::probes::{AttachMethod, Hook};

/// What attaching needs to know of a hook (an inherent impl beside the code that uses it;
/// the type itself is the model's).
impl Hook {
    pub(super) fn category(self) -> &'static str {
        match self {
            Self::NetDevXmit | Self::NetifReceiveSkb => "net",
            Self::KfreeSkb => "skb",
            Self::InetSockSetState | Self::SockSendLength | Self::SockRecvLength => "sock",
            Self::TcpRetransmitSkb | Self::TcpSendReset | Self::TcpReceiveReset => "tcp",
        }
    }

    /// The classic tracepoint the `tracepoint` method attaches to: the hook's own, except for
    /// transmits, whose classic record has no device pointer (see `netmon-ebpf/src/xmit.rs`).
    pub(super) fn classic_tracepoint(self) -> &'static str {
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
            Self::SockSendLength => "nm_send",
            Self::SockRecvLength => "nm_sockrecv",
        }
    }

    /// The kernel function the fallback methods (kprobe, fexit) probe, where it does not
    /// depend on the kernel (the drop hook's does: see `layout::drop_kprobe_target`).
    pub(super) fn function(self) -> Option<&'static str> {
        match self {
            Self::InetSockSetState => Some("tcp_set_state"),
            Self::SockSendLength => Some("inet_sendmsg"),
            Self::SockRecvLength => Some("inet_recvmsg"),
            _ => None,
        }
    }

    /// The first Linux release with the hook's tracepoint, where it is younger than the
    /// kernels netmon otherwise runs on (BTF came in 5.2).
    pub(super) fn tracepoint_since(self) -> Option<&'static str> {
        match self {
            Self::SockSendLength | Self::SockRecvLength => Some("6.3"),
            Self::InetSockSetState => Some("4.16"),
            Self::TcpRetransmitSkb | Self::TcpSendReset | Self::TcpReceiveReset => Some("4.15"),
            Self::NetDevXmit | Self::NetifReceiveSkb | Self::KfreeSkb => None,
        }
    }

    /// The IPv6 twin of the fexit method's function, probed by a program of its own (the
    /// first's name with a 6).
    fn ipv6_function(self) -> Option<&'static str> {
        match self {
            Self::SockSendLength => Some("inet6_sendmsg"),
            Self::SockRecvLength => Some("inet6_recvmsg"),
            _ => None,
        }
    }

    /// Name of this hook's program for `method`, if it has one.
    pub fn program(self, method: AttachMethod) -> Option<String> {
        if !self.offers(method) {
            return None;
        }
        let suffix = match method {
            AttachMethod::TpBtf => "btf",
            AttachMethod::RawTp => "raw",
            AttachMethod::Tracepoint => "tp",
            AttachMethod::Kprobe => "kprobe",
            AttachMethod::Fexit => "fexit",
        };
        Some(format!("{}_{suffix}", self.program_prefix()))
    }

    /// Whether the hook's program for `method` follows kernel struct pointers, and so needs
    /// offsets from BTF. The classic state tracepoint has all it needs in its record (only the
    /// namespace is then unknown, reported as 0).
    pub(super) fn reads_structs(self, method: AttachMethod) -> bool {
        match self {
            Self::NetDevXmit
            | Self::NetifReceiveSkb
            | Self::KfreeSkb
            | Self::SockSendLength
            | Self::SockRecvLength => true,
            Self::InetSockSetState => method != AttachMethod::Tracepoint,
            _ => false,
        }
    }
}

pub(super) fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    method: AttachMethod,
    btf: Option<&aya::Btf>,
    function: Option<&str>,
) -> anyhow::Result<()> {
    let name = hook
        .program(method)
        .ok_or_else(|| anyhow!("{method} is not a method of this probe"))?;
    let program = ebpf
        .program_mut(&name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
    match method {
        AttachMethod::TpBtf => {
            let btf = btf.ok_or_else(|| anyhow!("no BTF"))?;
            attach_tp_btf(program.try_into()?, hook.as_str(), btf)?;
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
        AttachMethod::Fexit => {
            let function =
                function.ok_or_else(|| anyhow!("no kernel function to probe for {hook:?}"))?;
            let btf = btf.ok_or_else(|| anyhow!("no BTF"))?;
            attach_fexit(program.try_into()?, function, btf)?;
            if let Some(function) = hook.ipv6_function() {
                let twin = format!("{name}6");
                let result = ebpf
                    .program_mut(&twin)
                    .ok_or_else(|| anyhow!("program {twin} missing from the object"))
                    .and_then(|program| attach_fexit(program.try_into()?, function, btf));
                if let Err(err) = result {
                    if let Some(first) = ebpf.program_mut(&name) {
                        let _ = <&mut FExit>::try_from(first).map(|p| p.unload());
                    }
                    return Err(err);
                }
            }
        }
        AttachMethod::Kprobe => {
            let function =
                function.ok_or_else(|| anyhow!("no kernel function to probe for {hook:?}"))?;
            attach_kprobe(program.try_into()?, function)?;
        }
    }
    Ok(())
}

/// Loads `program` and attaches it to `function`, unloading it again if it cannot attach.
pub(super) fn attach_kprobe(program: &mut KProbe, function: &str) -> anyhow::Result<()> {
    program.load()?;
    if let Err(err) = program.attach(function, 0) {
        let _ = program.unload();
        return Err(anyhow::Error::new(err)
            .context(format!("kprobe on {function} (is CONFIG_KPROBES set?)")));
    }
    Ok(())
}

/// Loads `program` for `tracepoint` and attaches it, unloading it again if it cannot attach.
pub(super) fn attach_tp_btf(
    program: &mut BtfTracePoint,
    tracepoint: &str,
    btf: &aya::Btf,
) -> anyhow::Result<()> {
    program.load(tracepoint, btf)?;
    if let Err(err) = program.attach() {
        let _ = program.unload();
        return Err(err.into());
    }
    Ok(())
}

/// Loads `program` for `function` and attaches it, unloading it again if it cannot attach.
fn attach_fexit(program: &mut FExit, function: &str, btf: &aya::Btf) -> anyhow::Result<()> {
    program.load(function, btf)?;
    if let Err(err) = program.attach() {
        let _ = program.unload();
        return Err(anyhow::Error::new(err).context(format!("fexit on {function}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_socket_hooks_have_fexit_programs() {
        let with_fexit: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| h.program(AttachMethod::Fexit).is_some())
            .collect();
        assert_eq!(with_fexit, vec![Hook::SockSendLength, Hook::SockRecvLength]);
        assert_eq!(Hook::SockSendLength.program(AttachMethod::RawTp), None);
    }

    #[test]
    fn only_the_state_and_drop_hooks_have_kprobes() {
        let with_kprobe: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| h.program(AttachMethod::Kprobe).is_some())
            .collect();
        assert_eq!(with_kprobe, vec![Hook::KfreeSkb, Hook::InetSockSetState]);
    }
}
