//! Socket I/O by process and cgroup: the kernel's table read, the slots of exited processes
//! freed (their last counts kept by the ledger), cgroups named, and the processes with
//! series of their own described from `/proc`.
use std::{cell::RefCell, collections::HashMap};

use crate::{
    collect::Poller,
    host::process_details::{self, Users},
    model::processes::{ProcessId, ProcessTraffic},
};

impl Poller {
    /// The poll's socket I/O, and how many slots of the kernel's table are still in use.
    pub(super) fn process_io(&mut self, now: f64) -> anyhow::Result<(ProcessTraffic, usize)> {
        // Each process is looked up in /proc once, however many slots it has.
        let exited = RefCell::new(HashMap::new());
        let reading = self.probes.socket_io(&|id: ProcessId| {
            *exited
                .borrow_mut()
                .entry(id)
                .or_insert_with(|| process_details::has_exited(id))
        })?;
        let in_use = reading.iter().filter(|io| !io.exited).count();
        let cgroups = &mut self.cgroups;
        if let Err(err) = cgroups.learn(reading.iter().map(|io| io.cgroup_id)) {
            tracing::debug!("cgroups are not named: {err:#}");
        }
        let mut traffic = self
            .ledger
            .update(reading, self.host.top_processes, now, &|id| {
                cgroups.path(id)
            });
        let users = Users::read();
        for process in &mut traffic.processes {
            process.user = users.of(process.pid);
            if self.host.command_lines {
                process.command_line = process_details::command_line(process.pid);
            }
        }
        Ok((traffic, in_use))
    }
}
