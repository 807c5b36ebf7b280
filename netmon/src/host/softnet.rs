//! The network stack's per-CPU counters (`/proc/net/softnet_stat`, host-wide): packets
//! processed, dropped because the CPU's backlog was full, and the times the receive
//! processing ran out of its budget (`time_squeeze`); and the backlog now.
use anyhow::Context as _;

use crate::model::pressure::SoftnetCpu;

/// Every CPU's row.
pub fn softnet() -> anyhow::Result<Vec<SoftnetCpu>> {
    let path = "/proc/net/softnet_stat";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .enumerate()
        .map(|(row, line)| parse_row(row, line).with_context(|| format!("{path}: {line:?}")))
        .collect()
}

/// A row: hexadecimal columns, the first three processed, dropped and time_squeeze; from
/// Linux 5.10 on the twelfth is the backlog and the thirteenth the CPU (rows of offline CPUs
/// are left out, so the row's place is the CPU only before).
fn parse_row(row: usize, line: &str) -> anyhow::Result<SoftnetCpu> {
    let columns = line
        .split_whitespace()
        .map(|c| u64::from_str_radix(c, 16))
        .collect::<Result<Vec<u64>, _>>()?;
    let column = |i: usize| columns.get(i).copied();
    let (Some(processed), Some(dropped), Some(times_squeezed)) = (column(0), column(1), column(2))
    else {
        anyhow::bail!("fewer than three columns");
    };
    Ok(SoftnetCpu {
        cpu: column(12).map_or(row as u32, |cpu| cpu as u32),
        processed,
        dropped,
        times_squeezed,
        backlog_packets: column(11).filter(|_| columns.len() >= 13),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_old_and_new_rows() {
        let new = "24da397b 00000002 00000022 00000000 00000000 00000000 00000000 00000000 \
                   00000000 00000000 00000000 00000005 00000003 00000005 00000000";
        let row = parse_row(1, new).unwrap();
        assert_eq!(
            row,
            SoftnetCpu {
                cpu: 3,
                processed: 0x24da397b,
                dropped: 2,
                times_squeezed: 0x22,
                backlog_packets: Some(5),
            }
        );
        let old = "00000010 00000000 00000001 00000000 00000000 00000000 00000000 00000000 \
                   00000000 00000000 00000000";
        assert_eq!(parse_row(4, old).unwrap().cpu, 4);
        assert_eq!(parse_row(4, old).unwrap().backlog_packets, None);
        assert!(parse_row(0, "zz").is_err());
    }

    #[test]
    fn a_row_for_each_online_cpu() {
        let rows = softnet().unwrap();
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        assert_eq!(rows.len() as i64, online);
    }
}
