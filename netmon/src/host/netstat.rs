//! The TCP and UDP counters of the calling thread's namespace that show a queue or a table
//! filling up (`/proc/net/netstat` and `/proc/net/snmp`, which the kernel keeps for each
//! namespace): a fixed list, named as the kernel spells them.
use anyhow::Context as _;

/// The counters shown: (file, table, counter).
pub const COUNTERS: [(&str, &str, &str); 10] = [
    ("netstat", "TcpExt", "ListenOverflows"),
    ("netstat", "TcpExt", "ListenDrops"),
    ("netstat", "TcpExt", "TCPBacklogDrop"),
    ("netstat", "TcpExt", "TCPReqQFullDrop"),
    ("netstat", "TcpExt", "SyncookiesSent"),
    ("netstat", "TcpExt", "TCPTimeouts"),
    ("netstat", "TcpExt", "TCPRcvQDrop"),
    ("snmp", "Udp", "RcvbufErrors"),
    ("snmp", "Udp", "SndbufErrors"),
    ("snmp", "Udp", "InErrors"),
];

/// Each counter of [`COUNTERS`] as `<table>_<counter>` with its value; one the kernel does
/// not have (an older release) is left out.
pub fn counters() -> anyhow::Result<Vec<(String, u64)>> {
    let mut found = Vec::with_capacity(COUNTERS.len());
    for file in ["netstat", "snmp"] {
        let path = format!("/proc/thread-self/net/{file}");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let tables = tables(&text);
        for (_, table, counter) in COUNTERS.iter().filter(|(f, _, _)| *f == file) {
            let value = tables
                .iter()
                .find(|(name, _)| name == table)
                .and_then(|(_, values)| values.iter().find(|(n, _)| n == counter));
            if let Some((_, value)) = value {
                found.push((format!("{table}_{counter}"), *value));
            }
        }
    }
    Ok(found)
}

/// The tables of a `netstat` or `snmp` file: each is a line of names and a line of values,
/// both led by `<table>:`.
fn tables(text: &str) -> Vec<(&str, Vec<(&str, u64)>)> {
    let mut tables = Vec::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((table, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        // Values are counters, but a few are signed (`Tcp: MaxConn -1`): those read as 0.
        let values = values.split_whitespace().map(|v| v.parse().unwrap_or(0));
        tables.push((table, names.split_whitespace().zip(values).collect()));
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_named_values_of_each_table() {
        let text = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 17\n\
                    Tcp: RtoAlgorithm MaxConn\nTcp: 1 -1\n";
        let tables = tables(text);
        assert_eq!(
            tables[0],
            (
                "TcpExt",
                vec![("SyncookiesSent", 3), ("ListenOverflows", 17)]
            )
        );
        assert_eq!(tables[1].1[1], ("MaxConn", 0));
    }

    #[test]
    fn every_counter_of_this_kernel_is_found() {
        let found = counters().unwrap();
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        for name in ["TcpExt_ListenOverflows", "Udp_RcvbufErrors", "Udp_InErrors"] {
            assert!(names.contains(&name), "{names:?}");
        }
    }
}
