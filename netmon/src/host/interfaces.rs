//! Interfaces of the agent's namespace and their kernel counters, from sysfs: the same 64-bit
//! counters `ip -s link` and node_exporter read.
use std::{fs, io, path::Path};

use anyhow::Context as _;

use crate::model::{Interface, InterfaceCounters};

const SYS_CLASS_NET: &str = "/sys/class/net";

fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

fn read_u64(path: &Path) -> io::Result<u64> {
    read_trimmed(path)?
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads one interface directory such as `/sys/class/net/eth0`.
pub fn read_interface(dir: &Path) -> anyhow::Result<Interface> {
    let name = dir
        .file_name()
        .context("interface directory without a name")?
        .to_string_lossy()
        .into_owned();
    let stat = |counter: &str| -> anyhow::Result<u64> {
        let path = dir.join("statistics").join(counter);
        read_u64(&path).with_context(|| format!("reading {}", path.display()))
    };
    let counters = InterfaceCounters {
        rx_bytes: stat("rx_bytes")?,
        rx_packets: stat("rx_packets")?,
        rx_errors: stat("rx_errors")?,
        rx_dropped: stat("rx_dropped")?,
        tx_bytes: stat("tx_bytes")?,
        tx_packets: stat("tx_packets")?,
        tx_errors: stat("tx_errors")?,
        tx_dropped: stat("tx_dropped")?,
    };
    let operstate = read_trimmed(&dir.join("operstate")).unwrap_or_else(|_| "unknown".into());
    // `speed` and `duplex` fail to read (EINVAL) on links that are down or virtual, and some
    // drivers report -1 or 0 for unknown: all of them stay unknown.
    let speed_mbps = read_trimmed(&dir.join("speed"))
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|&s| s > 0)
        .map(|s| s as u64);
    let duplex = read_trimmed(&dir.join("duplex"))
        .ok()
        .filter(|d| d == "full" || d == "half");
    Ok(Interface {
        ifindex: read_u64(&dir.join("ifindex"))
            .with_context(|| format!("reading ifindex of {name}"))? as u32,
        up: operstate == "up",
        operstate,
        mtu: read_u64(&dir.join("mtu")).unwrap_or(0) as u32,
        speed_mbps,
        duplex,
        mac: read_trimmed(&dir.join("address")).unwrap_or_default(),
        counters,
        name,
        addresses: Vec::new(),
        capacity_mbps: None,
    })
}

/// Every interface of the agent's namespace, sorted by name. An interface that disappears
/// while it is read is left out.
pub fn read_all() -> anyhow::Result<Vec<Interface>> {
    let mut interfaces = Vec::new();
    for entry in fs::read_dir(SYS_CLASS_NET).with_context(|| format!("listing {SYS_CLASS_NET}"))? {
        let entry = entry?;
        match read_interface(&entry.path()) {
            Ok(interface) => interfaces.push(interface),
            Err(err) if !entry.path().exists() => {
                tracing::debug!("interface vanished while read: {err:#}");
            }
            Err(err) => return Err(err),
        }
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(interfaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loopback_like_the_kernel() {
        let lo = Path::new(SYS_CLASS_NET).join("lo");
        let interface = read_interface(&lo).unwrap();
        assert_eq!(interface.name, "lo");
        assert_eq!(interface.ifindex, 1);
        assert_eq!(interface.mtu, 65536);
        assert_eq!(interface.speed_mbps, None);
        assert!(read_all().unwrap().iter().any(|i| i.name == "lo"));
    }
}
