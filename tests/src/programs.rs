//! The kernel programs loaded on the machine: what an agent leaves behind when it exits.
use std::{
    thread,
    time::{Duration, Instant},
};

/// Names of the kernel programs currently loaded whose names are netmon's (`nm_` prefix).
pub fn loaded_netmon_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| info.name_as_str().map(str::to_string))
        .filter(|name| name.starts_with("nm_"))
        .collect()
}

/// Waits until no netmon program is loaded; the kernel frees a program's links and the
/// program itself after RCU grace periods, so an exited agent's programs go shortly after.
/// Returns the names still loaded at the deadline.
pub fn wait_for_unload(limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let loaded = loaded_netmon_programs();
        if loaded.is_empty() || Instant::now() > deadline {
            return loaded;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
