//! Attaching one hook's program by one method, and what that needs to know of the hook.
use anyhow::anyhow;
use aya::{
    Ebpf,
    programs::{BtfTracePoint, KProbe, RawTracePoint, TracePoint},
};

use crate::model::probes::{AttachMethod, Hook};

/// What attaching needs to know of a hook (an inherent impl beside the code that uses it;
/// the type itself is the model's).
impl Hook {
    pub(super) fn category(self) -> &'static str {
        match self {
            Self::NetDevXmit | Self::NetifReceiveSkb => "net",
            Self::KfreeSkb => "skb",
            Self::InetSockSetState => "sock",
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
        }
    }

    /// Name of this hook's program for `method`, if it has one.
    pub(super) fn program(self, method: AttachMethod) -> Option<String> {
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
    pub(super) fn reads_structs(self, method: AttachMethod) -> bool {
        match self {
            Self::NetDevXmit | Self::NetifReceiveSkb | Self::KfreeSkb => true,
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
    fn only_the_state_and_drop_hooks_have_kprobes() {
        let with_kprobe: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| h.program(AttachMethod::Kprobe).is_some())
            .collect();
        assert_eq!(with_kprobe, vec![Hook::KfreeSkb, Hook::InetSockSetState]);
    }
}
