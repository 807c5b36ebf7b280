//! cgroup v2 ids and their paths: the kernel counts by id (the inode number of the cgroup's
//! directory), people read paths.
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::Path,
};

/// Where the cgroup v2 hierarchy is mounted: alone, or beside v1 (hybrid set-ups).
const ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
/// The filesystem magic of cgroup v2 (`CGROUP2_SUPER_MAGIC`).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// cgroup id -> path as `/proc/<pid>/cgroup` writes it ("/" for the root), from one walk of
/// the hierarchy, walked again when an id it does not know is asked for.
#[derive(Default)]
pub struct CgroupPaths {
    paths: HashMap<u64, String>,
    /// Ids the last walk did not find: gone cgroups, not looked for again.
    missing: HashSet<u64>,
}

impl CgroupPaths {
    /// Paths from the cgroup v2 hierarchy. Where none is mounted and `/sys/fs/cgroup` is an
    /// empty directory (a new sysfs, as `ip netns exec` gives), it is mounted there, as
    /// perf does with tracefs: nothing is hidden by it, and it is left for other tools.
    pub fn open() -> Self {
        if root().is_none() {
            mount_if_empty();
        }
        Self::default()
    }

    /// Makes sure every id of `ids` that exists has a path: walks the hierarchy again if one
    /// is unknown (a cgroup made since the last walk, or one that is gone).
    pub fn learn(&mut self, ids: impl IntoIterator<Item = u64>) -> anyhow::Result<()> {
        let ids: HashSet<u64> = ids.into_iter().collect();
        if ids
            .iter()
            .all(|id| self.paths.contains_key(id) || self.missing.contains(id))
        {
            return Ok(());
        }
        let root =
            root().ok_or_else(|| anyhow::anyhow!("no cgroup v2 hierarchy under /sys/fs/cgroup"))?;
        let mut paths = HashMap::new();
        walk(root, root, &mut paths);
        self.missing = ids
            .into_iter()
            .filter(|id| !paths.contains_key(id))
            .collect();
        self.paths = paths;
        Ok(())
    }

    /// The path of cgroup `id`; `None` when it was not found in the last walk (it is gone).
    pub fn path(&self, id: u64) -> Option<String> {
        self.paths.get(&id).cloned()
    }
}

/// Where the cgroup v2 hierarchy is mounted, if it is.
fn root() -> Option<&'static Path> {
    ROOTS.iter().map(Path::new).find(|root| is_cgroup2(root))
}

fn mount_if_empty() {
    let empty = fs::read_dir(ROOTS[0]).is_ok_and(|mut entries| entries.next().is_none());
    if !empty {
        return;
    }
    // SAFETY: plain mount(2) with static, NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            c"/sys/fs/cgroup".as_ptr(),
            c"cgroup2".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("mounted the cgroup v2 hierarchy at /sys/fs/cgroup to name cgroups");
    } else {
        tracing::debug!(
            "cannot mount cgroup2: {}; cgroups are not named",
            std::io::Error::last_os_error()
        );
    }
}

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string and a statfs the call fills.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type as i64 == CGROUP2_MAGIC
    }
}

fn walk(root: &Path, dir: &Path, paths: &mut HashMap<u64, String>) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    paths.insert(meta.ino(), format!("/{}", relative.display()));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), paths);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_s_cgroup_has_its_path() {
        let mut cgroups = CgroupPaths::default();
        let Some(root) = root() else {
            eprintln!("skipped: no cgroup v2 hierarchy here");
            return;
        };
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = own
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .unwrap()
            .to_string();
        let id = fs::metadata(root.join(path.trim_start_matches('/')))
            .unwrap()
            .ino();
        cgroups.learn([id]).unwrap();
        assert_eq!(cgroups.path(id).as_deref(), Some(path.as_str()));
        assert_eq!(cgroups.path(u64::MAX), None);
    }
}
