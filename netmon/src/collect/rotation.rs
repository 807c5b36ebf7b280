//! The other namespaces' pressure from poll to poll: each namespace is read in its turn,
//! those never read or read longest ago first, as many as the namespace thread's budget
//! allows a poll; the last reading of each is shown, with its age, until the next.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Instant,
};

use crate::model::pressure::NamespacePressure;

#[derive(Default)]
pub struct PressureRotation {
    /// The last reading of each namespace found, and when it was read.
    kept: HashMap<u32, (NamespacePressure, Instant)>,
}

impl PressureRotation {
    /// The namespaces of `found` in the order to read their pressure.
    pub fn order(&self, found: &BTreeMap<u32, PathBuf>) -> Vec<u32> {
        let mut order: Vec<(Option<Instant>, u32)> = found
            .keys()
            .map(|netns| (self.kept.get(netns).map(|(_, at)| *at), *netns))
            .collect();
        // `None`, never read, sorts first.
        order.sort();
        order.into_iter().map(|(_, netns)| netns).collect()
    }

    /// Keeps the readings of this poll (`read` at `now`) and forgets the namespaces no longer
    /// `found`; returns every reading kept, with its age, by namespace.
    pub fn keep(
        &mut self,
        read: &[NamespacePressure],
        found: &BTreeMap<u32, PathBuf>,
        now: Instant,
    ) -> Vec<NamespacePressure> {
        for pressure in read {
            self.kept.insert(pressure.netns, (pressure.clone(), now));
        }
        self.kept.retain(|netns, _| found.contains_key(netns));
        let mut kept: Vec<NamespacePressure> = self
            .kept
            .values()
            .map(|(pressure, at)| NamespacePressure {
                read_ms_ago: now.duration_since(*at).as_millis() as u64,
                ..pressure.clone()
            })
            .collect();
        kept.sort_by_key(|pressure| pressure.netns);
        kept
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn found(namespaces: &[u32]) -> BTreeMap<u32, PathBuf> {
        namespaces.iter().map(|n| (*n, PathBuf::new())).collect()
    }

    fn reading(netns: u32) -> NamespacePressure {
        NamespacePressure {
            netns,
            ..NamespacePressure::default()
        }
    }

    #[test]
    fn reads_the_namespaces_in_turn_and_shows_each_last_reading() {
        let mut rotation = PressureRotation::default();
        let start = Instant::now();
        let all = found(&[1, 2, 3]);
        assert_eq!(rotation.order(&all), [1, 2, 3]);
        // The budget allowed two.
        let shown = rotation.keep(&[reading(1), reading(2)], &all, start);
        assert_eq!(shown.iter().map(|p| p.netns).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rotation.order(&all), [3, 1, 2]);
        let later = start + Duration::from_secs(1);
        let shown = rotation.keep(&[reading(3)], &all, later);
        assert_eq!(shown.len(), 3);
        assert_eq!(shown[0].read_ms_ago, 1000);
        assert_eq!(shown[2].read_ms_ago, 0);
        // A namespace no longer found is forgotten.
        let shown = rotation.keep(&[], &found(&[2, 3]), later);
        assert_eq!(shown.iter().map(|p| p.netns).collect::<Vec<_>>(), [2, 3]);
    }
}
