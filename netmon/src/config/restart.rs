//! What a reload cannot change: the server's socket (bound once, before privileges are
//! dropped) and the kernel programs (loaded and attached once). These are whole groups of
//! `Config`: a reload keeps the running groups and reports which of their keys changed.
use super::{Config, ServerSettings};
use crate::probes::ProbeSettings;

/// A group of settings that only a restart applies.
trait RestartOnly {
    /// The file's keys of the settings that differ in `new`, in the file's order.
    fn changed_keys(&self, new: &Self) -> Vec<&'static str>;
}

/// The keys whose settings changed.
fn changed<const N: usize>(keys: [(&'static str, bool); N]) -> Vec<&'static str> {
    keys.into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

// Each group is taken apart whole: a setting added to it does not compile until it is named
// here.
impl RestartOnly for ServerSettings {
    fn changed_keys(&self, new: &Self) -> Vec<&'static str> {
        let Self { listen, web_config } = self;
        changed([
            ("listen", *listen != new.listen),
            ("web_config", *web_config != new.web_config),
        ])
    }
}

impl RestartOnly for ProbeSettings {
    fn changed_keys(&self, new: &Self) -> Vec<&'static str> {
        let Self {
            forced,
            disabled,
            max_tracked_interfaces,
            variant,
        } = self;
        changed([
            ("probe_methods", *forced != new.forced),
            ("disabled_probes", *disabled != new.disabled),
            (
                "max_tracked_interfaces",
                *max_tracked_interfaces != new.max_tracked_interfaces,
            ),
            ("program_variant", *variant != new.variant),
        ])
    }
}

impl Config {
    /// Settings that only a restart applies, by their keys in the file, which differ between
    /// two configurations.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = self.server.changed_keys(&new.server);
        changed.extend(self.probes.changed_keys(&new.probes));
        changed
    }

    /// Keeps this configuration's restart-only groups in `new`, so that a reload changes only
    /// what it can apply.
    pub fn carry_restart_only(&self, new: &mut Config) {
        new.server = self.server.clone();
        new.probes = self.probes.clone();
    }
}
