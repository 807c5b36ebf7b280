//! Least privilege: Linux capabilities belong to threads, so each thread keeps only what its
//! work needs. The poll thread keeps `CAP_BPF` (map reads), `CAP_SYS_ADMIN` (entering other
//! namespaces to name their interfaces), `CAP_SYS_PTRACE` and `CAP_DAC_READ_SEARCH` (reading
//! other users' `/proc/<pid>/fd`) once its programs are attached; the namespace thread it
//! starts keeps what entering namespaces takes (`host::netns`); every other thread, the HTTP
//! server's among them, holds none.
use std::io;

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// What the poll thread keeps after attaching.
pub const POLL_THREAD_CAPABILITIES: [u32; 4] =
    [CAP_BPF, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn get() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) on the calling thread with a version-3 header and two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

/// Reduces the calling thread's effective, permitted and inheritable sets to `keep` (an
/// intersection: nothing is ever raised). Irreversible for this thread and the threads it
/// starts afterwards.
pub fn keep_only(keep: &[u32]) -> io::Result<()> {
    let mask: u64 = keep.iter().fold(0, |m, c| m | (1u64 << c));
    let mut data = get()?;
    for (word, part) in data.iter_mut().enumerate() {
        let bits = (mask >> (32 * word)) as u32;
        part.effective &= bits;
        part.permitted &= bits;
        part.inheritable = 0;
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset(2) on the calling thread with a version-3 header and two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops every capability of the calling thread; a failure is logged, never fatal.
pub fn drop_all() {
    if let Err(err) = keep_only(&[]) {
        tracing::warn!("cannot drop the capabilities of a thread: {err}");
    }
}

/// A user to run as after start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Looks a user name up in the system's user database.
    pub fn lookup(name: &str) -> anyhow::Result<Self> {
        let c_name = std::ffi::CString::new(name)?;
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buffer = vec![0 as libc::c_char; 16384];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r with a buffer of the size passed; `found` points into `entry`.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            anyhow::bail!("no user named {name:?}");
        }
        Ok(Self {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        })
    }

    /// Makes the calling thread run as this user, keeping only `keep` of its capabilities.
    /// Raw system calls change this thread alone (glibc's wrappers would change every thread,
    /// and fail in those that already dropped CAP_SETUID). A thread that already runs as the
    /// user only drops capabilities.
    pub fn become_on_this_thread(self, keep: &[u32]) -> io::Result<()> {
        // SAFETY: plain credential system calls on the calling thread.
        unsafe {
            if libc::syscall(libc::SYS_getuid) as u32 != self.uid {
                check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) as i64)?;
                check(libc::syscall(
                    libc::SYS_setgroups,
                    0,
                    std::ptr::null::<libc::gid_t>(),
                ))?;
                check(libc::syscall(
                    libc::SYS_setresgid,
                    self.gid,
                    self.gid,
                    self.gid,
                ))?;
                check(libc::syscall(
                    libc::SYS_setresuid,
                    self.uid,
                    self.uid,
                    self.uid,
                ))?;
                check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) as i64)?;
            }
        }
        // The switch cleared the effective set; raise again what is kept and permitted.
        let mask: u64 = keep.iter().fold(0, |m, c| m | (1u64 << c));
        let mut data = get()?;
        for (word, part) in data.iter_mut().enumerate() {
            let bits = (mask >> (32 * word)) as u32;
            part.permitted &= bits;
            part.effective = part.permitted;
            part.inheritable = 0;
        }
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset(2) on the calling thread with a version-3 header and two data words.
        check(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) })?;
        Ok(())
    }
}

fn check(rc: i64) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Drops the calling thread's capabilities and, when given, switches it to `user`.
pub fn settle_thread(user: Option<RunAs>, keep: &[u32]) {
    let result = match user {
        Some(user) => user.become_on_this_thread(keep),
        None => keep_only(keep),
    };
    if let Err(err) = result {
        tracing::warn!("cannot reduce the privileges of a thread: {err}");
    }
}

/// The calling thread's effective capabilities, as a bit mask.
pub fn effective() -> io::Result<u64> {
    let data = get()?;
    Ok(u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_drop_what_it_holds_and_never_raise() {
        std::thread::spawn(|| {
            let before = effective().unwrap();
            keep_only(&[CAP_BPF]).unwrap();
            let after = effective().unwrap();
            assert_eq!(after, before & (1 << CAP_BPF));
            keep_only(&[CAP_BPF, CAP_SYS_ADMIN]).unwrap();
            assert_eq!(effective().unwrap(), after, "nothing is raised again");
            drop_all();
            assert_eq!(effective().unwrap(), 0);
        })
        .join()
        .unwrap();
    }
}
