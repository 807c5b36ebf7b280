//! What `/proc/<pid>` says of a process: whether it is still the process the kernel counted
//! (its start time), who runs it, and its command line.
use std::{collections::HashMap, fs};

use crate::model::processes::ProcessId;

/// Nanoseconds of one clock tick of `/proc/<pid>/stat`'s start time.
fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / u64::try_from(ticks).unwrap_or(100).max(1)
}

/// The start time of process `pid` in clock ticks since boot (field 22 of its `stat`).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `id` has exited: `/proc` has no such process, or one that started at
/// another time (the id was given again). The kernel counts start times in ns, `/proc` in
/// clock ticks of the same clock.
pub fn has_exited(id: ProcessId) -> bool {
    start_ticks(id.pid) != Some(id.start_ns / tick_ns())
}

/// The user names of `/etc/passwd`, by uid.
pub struct Users(HashMap<u32, String>);

impl Users {
    pub fn read() -> Self {
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        Self(
            passwd
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split(':');
                    let name = fields.next()?;
                    let uid = fields.nth(1)?.parse().ok()?;
                    Some((uid, name.to_string()))
                })
                .collect(),
        )
    }

    /// Who runs `pid` (its real uid): the user's name, or the uid where it has none.
    pub fn of(&self, pid: u32) -> Option<String> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let uid: u32 = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string()))
    }
}

/// The command line of `pid`, its arguments separated by spaces.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let line = raw
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_restarted_one_is_not() {
        let pid = std::process::id();
        let ticks = start_ticks(pid).unwrap();
        let id = ProcessId {
            pid,
            start_ns: ticks * tick_ns() + 1,
        };
        assert!(!has_exited(id));
        assert!(has_exited(ProcessId {
            start_ns: id.start_ns + tick_ns(),
            ..id
        }));
        assert!(command_line(pid).is_some());
    }
}
