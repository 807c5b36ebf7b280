//! The kernel's own view of a TCP socket of the test (`getsockopt(TCP_INFO)`, what `ss -ti`
//! reads), to compare netmon's counts with.
use std::{
    net::TcpStream,
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

/// The kernel's `tcp_info` of a socket, and its state.
pub fn tcp_info(socket: &TcpStream) -> libc::tcp_info {
    // SAFETY: all-zero bytes are a valid `tcp_info`, which the kernel fills up to `len`.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid descriptor, and a buffer of `len` bytes.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
    info
}

/// The `tcp_info` of a socket once the kernel has closed it (both ends shut down and
/// acknowledged), as its descriptor still holds it; waits at most `limit`.
pub fn closed_info(socket: &TcpStream, limit: Duration) -> libc::tcp_info {
    const TCP_CLOSE: u8 = 7;
    let deadline = Instant::now() + limit;
    loop {
        let info = tcp_info(socket);
        if info.tcpi_state == TCP_CLOSE {
            return info;
        }
        assert!(Instant::now() < deadline, "state {}", info.tcpi_state);
        thread::sleep(Duration::from_millis(20));
    }
}
