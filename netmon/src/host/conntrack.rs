//! Connection tracking of the calling thread's namespace: its entries and their limit
//! (`/proc/sys/net/netfilter/nf_conntrack_{count,max}`), and the failures of its per-CPU
//! statistics (`/proc/net/stat/nf_conntrack`): inserts that failed, packets dropped for want
//! of an entry, entries dropped early to make room.
use anyhow::{Context as _, anyhow};

use crate::model::pressure::Conntrack;

/// The events shown, as the statistics' header names them.
pub const EVENTS: [&str; 3] = ["insert_failed", "drop", "early_drop"];

/// The namespace's connection tracking; an error in words an operator can act on where the
/// kernel does not track connections.
pub fn conntrack() -> anyhow::Result<Conntrack> {
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|err| {
            anyhow!(
                "{path}: {err}: connection tracking is not loaded (the nf_conntrack module \
                 loads with the first stateful firewall rule)"
            )
        })
    };
    let number = |name: &str| -> anyhow::Result<u64> {
        let path = format!("/proc/sys/net/netfilter/{name}");
        let text = read(&path)?;
        text.trim()
            .parse()
            .with_context(|| format!("{path}: {text:?}"))
    };
    let entries = number("nf_conntrack_count")?;
    let limit = number("nf_conntrack_max")?;
    let stats = read("/proc/thread-self/net/stat/nf_conntrack")?;
    let [insert_failed, drop, early_drop] = sum_columns(&stats, EVENTS)?;
    Ok(Conntrack {
        entries,
        limit,
        insert_failed,
        drop,
        early_drop,
    })
}

/// The sums over the CPUs' rows of the columns `names` of a statistics file: a header of
/// names, then a row of hexadecimal counts for each CPU.
fn sum_columns<const N: usize>(text: &str, names: [&str; N]) -> anyhow::Result<[u64; N]> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let mut sums = [0; N];
    for (sum, name) in sums.iter_mut().zip(names) {
        let column = header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow!("no column {name} in {header:?}"))?;
        for line in lines.clone() {
            let value = line.split_whitespace().nth(column).unwrap_or("0");
            *sum += u64::from_str_radix(value, 16).with_context(|| format!("{line:?}"))?;
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_rows_of_each_cpu() {
        let text = "entries insert insert_failed drop early_drop\n\
                    00000003 00000001 00000002 0000000a 00000000\n\
                    00000003 00000001 00000001 00000001 00000004\n";
        assert_eq!(sum_columns(text, EVENTS).unwrap(), [3, 11, 4]);
        assert!(sum_columns("entries\n1\n", EVENTS).is_err());
    }
}
