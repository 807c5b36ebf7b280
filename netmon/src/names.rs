//! Names that outputs, rules and dashboards rely on, defined once.

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`), with the names the
/// `netmon_network_connections` contract uses. Index 0 and 12 (`NEW_SYN_RECV`, a request
/// socket) are not states a full socket is in.
pub const TCP_STATES: [(u8, &str); 11] = [
    (1, "ESTABLISHED"),
    (2, "SYN_SENT"),
    (3, "SYN_RECV"),
    (4, "FIN_WAIT1"),
    (5, "FIN_WAIT2"),
    (6, "TIME_WAIT"),
    (7, "CLOSE"),
    (8, "CLOSE_WAIT"),
    (9, "LAST_ACK"),
    (10, "LISTEN"),
    (11, "CLOSING"),
];

/// Name of a kernel TCP state number; numbers outside the table are shown as numbers.
pub fn tcp_state_name(state: u32) -> String {
    match state {
        12 => "NEW_SYN_RECV".to_string(),
        _ => TCP_STATES
            .iter()
            .find(|(n, _)| u32::from(*n) == state)
            .map(|(_, name)| name.to_string())
            .unwrap_or_else(|| state.to_string()),
    }
}

/// Address family names used in labels and JSON.
pub const FAMILY_INET: &str = "inet";
pub const FAMILY_INET6: &str = "inet6";

/// Reason label of drops whose hook does not tell a reason.
pub const DROP_REASON_UNKNOWN: &str = "unknown";

/// Label value of an ethertype (`skb->protocol`).
pub fn ethertype_name(ethertype: u16) -> String {
    match ethertype {
        0x0800 => "ipv4".to_string(),
        0x86dd => "ipv6".to_string(),
        0x0806 => "arp".to_string(),
        0 => "none".to_string(),
        other => format!("0x{other:04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tcp_states() {
        assert_eq!(tcp_state_name(1), "ESTABLISHED");
        assert_eq!(tcp_state_name(10), "LISTEN");
        assert_eq!(tcp_state_name(12), "NEW_SYN_RECV");
        assert_eq!(tcp_state_name(42), "42");
        assert_eq!(ethertype_name(0x0800), "ipv4");
        assert_eq!(ethertype_name(0x88cc), "0x88cc");
    }
}
