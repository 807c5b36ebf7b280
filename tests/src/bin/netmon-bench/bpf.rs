//! The floors netmon is measured against, empty programs of two instructions loaded with raw
//! bpf(2) calls, and the kernel's run statistics of every program.
use std::{
    collections::BTreeMap,
    io::Read as _,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Instant,
};

use netmon::model::probes::Hook;
use netmon_tests::Netns;

/// An empty raw tracepoint program (`r0 = 0; exit`), loaded and attached with raw bpf(2)
/// calls: the floor every program on the hook pays.
pub(crate) struct EmptyProgram {
    _prog: OwnedFd,
    _link: OwnedFd,
    pub(crate) id: u32,
}

fn bpf(cmd: u32, attr: &mut [u8; 128]) -> std::io::Result<i32> {
    // SAFETY: bpf(2) with a zero-filled attribute buffer of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// Loads a program that returns at once (`r0 = 0; exit`) of type `prog_type`, named `name`,
/// with the attach type and BTF target `attach` where its type needs them; returns its
/// descriptor.
fn load_empty_program(prog_type: u32, name: &[u8; 10], attach: Option<(u32, u32)>) -> i32 {
    const BPF_PROG_LOAD: u32 = 5;
    // mov64 r0, 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..58].copy_from_slice(name);
    if let Some((attach_type, btf_id)) = attach {
        attr[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        attr[108..112].copy_from_slice(&btf_id.to_ne_bytes());
    }
    bpf(BPF_PROG_LOAD, &mut attr)
        .unwrap_or_else(|e| panic!("loading the empty program {}: {e}", name.escape_ascii()))
}

impl EmptyProgram {
    /// An empty program on `hook`'s raw tracepoint.
    pub(crate) fn attach(hook: Hook) -> Self {
        const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
        const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
        const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
        let prog = load_empty_program(BPF_PROG_TYPE_RAW_TRACEPOINT, b"bench_empt", None);
        let name = std::ffi::CString::new(hook.as_str()).unwrap();
        let mut attr = [0u8; 128];
        attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
        attr[8..12].copy_from_slice(&(prog as u32).to_ne_bytes());
        let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).expect("attaching the empty program");
        // struct bpf_prog_info: type (u32), id (u32), ...
        let mut info = [0u8; 256];
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).expect("program info");
        let id = u32::from_ne_bytes(info[4..8].try_into().unwrap());
        // SAFETY: both descriptors were just returned by the kernel and are owned here.
        unsafe {
            Self {
                _prog: OwnedFd::from_raw_fd(prog),
                _link: OwnedFd::from_raw_fd(link),
                id,
            }
        }
    }
}

/// An `iter/tcp` program that returns at once (`r0 = 0; exit`), loaded and linked with raw
/// bpf(2) calls: a walk of it is the kernel's own cost of visiting every TCP socket of a
/// namespace, the floor of netmon's census by state.
pub(crate) struct EmptyTcpIterator {
    _prog: OwnedFd,
    link: OwnedFd,
}

impl EmptyTcpIterator {
    pub(crate) fn load() -> Self {
        const BPF_LINK_CREATE: u32 = 28;
        const BPF_PROG_TYPE_TRACING: u32 = 26;
        const BPF_TRACE_ITER: u32 = 28;
        let btf = aya::Btf::from_sys_fs().expect("the kernel's BTF");
        let target = btf
            .id_by_type_name_kind("bpf_iter_tcp", aya_obj::btf::BtfKind::Func)
            .expect("the kernel's TCP iterator");
        let prog = load_empty_program(
            BPF_PROG_TYPE_TRACING,
            b"bench_walk",
            Some((BPF_TRACE_ITER, target)),
        );
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
        attr[8..12].copy_from_slice(&BPF_TRACE_ITER.to_ne_bytes());
        let link = bpf(BPF_LINK_CREATE, &mut attr).expect("linking the empty TCP iterator");
        // SAFETY: both descriptors were just returned by the kernel and are owned here.
        unsafe {
            Self {
                _prog: OwnedFd::from_raw_fd(prog),
                link: OwnedFd::from_raw_fd(link),
            }
        }
    }

    /// Median milliseconds of `walks` walks over the TCP sockets of `ns`, each on a thread
    /// there (a walk counts the sockets of the namespace of the thread that starts it).
    pub(crate) fn walk_ms(&self, ns: &Netns, walks: usize) -> f64 {
        const BPF_ITER_CREATE: u32 = 33;
        let link = self.link.as_raw_fd() as u32;
        let mut times: Vec<f64> = (0..walks)
            .map(|_| {
                ns.run(move || {
                    let mut attr = [0u8; 128];
                    attr[0..4].copy_from_slice(&link.to_ne_bytes());
                    let begin = Instant::now();
                    let fd = bpf(BPF_ITER_CREATE, &mut attr).expect("starting a walk");
                    // SAFETY: a descriptor just returned by the kernel, owned here.
                    let mut walk = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                    let mut out = Vec::new();
                    walk.read_to_end(&mut out).expect("walking the TCP sockets");
                    begin.elapsed().as_secs_f64() * 1000.0
                })
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }
}

/// (name, run count, run time in ns) of every loaded program, by id.
pub(crate) type Stats = BTreeMap<u32, (String, u64, u64)>;

/// The [`Stats`] of every loaded program now.
pub(crate) fn program_stats() -> Stats {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| {
            (
                p.id(),
                (
                    p.name_as_str().unwrap_or_default().to_string(),
                    p.run_count(),
                    p.run_time().as_nanos() as u64,
                ),
            )
        })
        .collect()
}

/// Runs of program `id` between `before` and `after`, and the ns each took on average; none
/// when it did not run.
pub(crate) fn ns_per_run(before: &Stats, after: &Stats, id: u32) -> Option<(u64, f64)> {
    let (_, c1, t1) = after.get(&id)?;
    let (c0, t0) = before.get(&id).map_or((0, 0), |(_, c, t)| (*c, *t));
    let runs = c1 - c0;
    (runs > 0).then(|| (runs, (t1 - t0) as f64 / runs as f64))
}
