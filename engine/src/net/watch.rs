//! Watching a client for going away while no read is outstanding on it.
//!
//! While the gateway waits for an upstream (an LLM's first token can take
//! seconds) or relays a slow stream, nothing reads from the client socket,
//! so a disconnect would go unnoticed until the next write. A [`PeerWatch`]
//! holds a duplicate of the client's descriptor and waits for readability
//! on it; when the socket turns readable, a non-consuming peek tells a
//! close (EOF or error) from a pipelined next request (data). Created
//! lazily, once per connection, and only for requests that wait.

use std::net::TcpStream as StdTcpStream;
use std::os::fd::{FromRawFd, RawFd};

use monoio::net::TcpStream;

/// How long work may run before the client is watched for leaving. Fast
/// exchanges finish first and pay nothing; slow ones (an LLM thinking, a
/// stream) get a [`PeerWatch`] so a departed client cancels the upstream
/// work at once instead of at the next write.
pub const WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// Runs `work` to completion, or stops it (dropping it, which cancels its
/// I/O) and returns `None` when the client goes away. The watch on `fd` is
/// created on first need and kept in `watch` for the connection's life.
pub async fn unless_client_leaves<T>(
    work: impl std::future::Future<Output = T>,
    watch: &mut Option<PeerWatch>,
    fd: RawFd,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    let early = monoio::select! {
        r = &mut work => Some(r),
        _ = crate::timer::sleep(WATCH_AFTER) => None,
    };
    if let Some(r) = early {
        return Some(r);
    }
    if watch.is_none() {
        *watch = PeerWatch::new(fd);
    }
    match watch.as_ref() {
        Some(wt) => monoio::select! {
            r = &mut work => Some(r),
            _ = wt.closed() => None,
        },
        None => Some(work.await),
    }
}

pub struct PeerWatch {
    dup: TcpStream,
}

impl PeerWatch {
    /// Duplicates `fd` (the client's TCP socket, also under TLS).
    pub fn new(fd: RawFd) -> Option<PeerWatch> {
        // SAFETY: `dup` on a descriptor we own (the client socket, alive for
        // the whole connection) returns a new descriptor or -1; the new one
        // is owned by the std stream constructed from it and closed on drop.
        #[allow(unsafe_code)]
        let dup_fd = unsafe { libc::dup(fd) };
        if dup_fd < 0 {
            return None;
        }
        // SAFETY: `dup_fd` is a fresh, valid descriptor that nothing else owns.
        #[allow(unsafe_code)]
        let std = unsafe { StdTcpStream::from_raw_fd(dup_fd) };
        std.set_nonblocking(true).ok()?;
        TcpStream::from_std(std).ok().map(|dup| PeerWatch { dup })
    }

    /// Completes when the peer has closed or reset the connection. If the
    /// peer sends data instead (a pipelined request), it never completes:
    /// the data is left for the connection loop.
    pub async fn closed(&self) {
        loop {
            if let Err(e) = self.dup.readable(false).await {
                tracing::debug!("client watch: readiness wait failed: {e}");
                return;
            }
            let p = peek(&self.dup);
            tracing::debug!(
                closed = matches!(p, PeekResult::Closed),
                data = matches!(p, PeekResult::Data),
                "client watch: readable"
            );
            match p {
                PeekResult::Closed => return,
                PeekResult::Data => std::future::pending::<()>().await,
                PeekResult::Nothing => continue,
            }
        }
    }
}

enum PeekResult {
    Closed,
    Data,
    Nothing,
}

fn peek(s: &TcpStream) -> PeekResult {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    // SAFETY: recv into a valid one-byte stack buffer on a live descriptor;
    // MSG_PEEK leaves the data in the socket, MSG_DONTWAIT never blocks.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => PeekResult::Closed,
        n if n > 0 => PeekResult::Data,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => PeekResult::Nothing,
            _ => PeekResult::Closed,
        },
    }
}
