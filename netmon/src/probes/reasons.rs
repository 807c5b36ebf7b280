//! The names of the kernel's drop reasons.
use std::collections::BTreeMap;

use netmon_common::drops::DROP_REASON_UNKNOWN;

use crate::{names, probes::btf::Btf};

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

    pub(super) fn value(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(v, _)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_fall_back_to_numbers() {
        let mut reasons = DropReasonNames::default();
        reasons.names.insert(3, "NO_SOCKET".to_string());
        assert_eq!(reasons.name(3), "NO_SOCKET");
        assert_eq!(reasons.name(999), "999");
        assert_eq!(reasons.name(DROP_REASON_UNKNOWN), "unknown");
    }
}
