//! The memory of all TCP sockets against its limits (host-wide): pages in use
//! (`/proc/net/sockstat`, `TCP: ... mem`) and `net.ipv4.tcp_mem`, whose second value is
//! where the kernel starts to press sockets to give memory back.
use anyhow::{Context as _, anyhow};

use crate::model::pressure::TcpMemory;

pub fn tcp_memory() -> anyhow::Result<TcpMemory> {
    let path = "/proc/net/sockstat";
    let sockstat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let pages = tcp_pages(&sockstat).ok_or_else(|| anyhow!("{path}: no TCP mem"))?;
    let path = "/proc/sys/net/ipv4/tcp_mem";
    let limits = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let limits: Vec<u64> = limits
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{path}: {limits:?}"))?;
    let [_, pressure_pages, limit_pages] = limits[..] else {
        anyhow::bail!("{path}: {limits:?} is not three values");
    };
    Ok(TcpMemory {
        pages,
        pressure_pages,
        limit_pages,
    })
}

/// The `mem` of the `TCP:` line.
fn tcp_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pages_of_tcp() {
        let text =
            "sockets: used 12\nTCP: inuse 2 orphan 0 tw 10 alloc 3 mem 77\nUDP: inuse 0 mem 44\n";
        assert_eq!(tcp_pages(text), Some(77));
        assert_eq!(tcp_pages("UDP: inuse 0 mem 44\n"), None);
        let memory = tcp_memory().unwrap();
        assert!(memory.pressure_pages <= memory.limit_pages);
    }
}
