//! Watching a client for going away while no read is outstanding on it.
//!
//! While the gateway waits for an upstream (an LLM's first token can take
//! seconds) or relays a slow stream, nothing reads from the client socket,
//! so a disconnect would go unnoticed until the next write. A [`PeerWatch`]
//! holds a duplicate of the client's descriptor and waits for readability
//! on it; when the socket turns readable, a non-consuming peek tells a
//! close (EOF or error) from a pipelined next request (data). Under TLS a
//! client that leaves may say so first with a `close_notify` alert, which
//! is data to TCP: a lone alert record (TLS 1.2's plain alert type, or TLS
//! 1.3's encrypted record too short to hold any HTTP request), or data
//! followed by the peer's FIN, counts as leaving. Created lazily, once
//! per connection, and only for requests that wait.

use std::net::TcpStream as StdTcpStream;
use std::os::fd::{FromRawFd, RawFd};

use monoio::net::TcpStream;

/// How long work may run before the client is watched for leaving. Fast
/// exchanges finish first and pay nothing; slow ones (an LLM thinking, a
/// stream) get a [`PeerWatch`] so a departed client cancels the upstream
/// work at once instead of at the next write.
pub const WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// Runs `work` to completion, or stops it (the caller drops it, which
/// cancels its I/O) and returns `None` when the client goes away. The
/// watch on `fd` is created on first need and kept in `watch` for the
/// connection's life.
///
/// `work` is pinned by the caller (`std::pin::pin!`) and lent: an `async
/// fn` taking it by value would hold it twice, as its argument and as the
/// pinned local it polls, for as long as a stream stays open.
pub async fn unless_client_leaves<T, F: std::future::Future<Output = T> + ?Sized>(
    mut work: std::pin::Pin<&mut F>,
    watch: &mut Option<PeerWatch>,
    fd: RawFd,
    tls: bool,
) -> Option<T> {
    let early = monoio::select! {
        r = &mut work => Some(r),
        _ = crate::timer::sleep(WATCH_AFTER) => None,
    };
    if let Some(r) = early {
        return Some(r);
    }
    if watch.is_none() {
        *watch = PeerWatch::new(fd, tls);
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
    /// The connection speaks TLS (see the module doc).
    tls: bool,
}

impl PeerWatch {
    /// Duplicates `fd` (the client's TCP socket; `tls` when TLS runs on it).
    pub fn new(fd: RawFd, tls: bool) -> Option<PeerWatch> {
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
        TcpStream::from_std(std)
            .ok()
            .map(|dup| PeerWatch { dup, tls })
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
            let p = peek(&self.dup, self.tls);
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

/// A TLS record header of an alert: TLS 1.2's plain `alert` type, or TLS
/// 1.3's `application_data` record too short for anything but one.
fn is_alert_record(head: &[u8]) -> bool {
    match head {
        [0x15, ..] => true,
        [0x17, 0x03, _, hi, lo] => u16::from_be_bytes([*hi, *lo]) <= MAX_ALERT_RECORD,
        _ => false,
    }
}

/// Whether the peer has shut its side down (FIN received), data pending or not.
fn peer_shut_down(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll on one valid, initialised pollfd with a zero timeout.
    #[allow(unsafe_code)]
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

enum PeekResult {
    Closed,
    Data,
    Nothing,
}

/// An encrypted TLS 1.3 record this short holds an alert (2 bytes), its
/// content type and a 16-byte tag, never an HTTP request.
const MAX_ALERT_RECORD: u16 = 32;

fn peek(s: &TcpStream, tls: bool) -> PeekResult {
    use std::os::fd::AsRawFd;
    let mut head = [0u8; 5];
    let want = if tls { head.len() } else { 1 };
    // SAFETY: recv into a valid stack buffer of at least `want` bytes on a
    // live descriptor; MSG_PEEK leaves the data in the socket,
    // MSG_DONTWAIT never blocks.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            head.as_mut_ptr().cast(),
            want,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => PeekResult::Closed,
        n if n > 0 && tls && (is_alert_record(&head[..n as usize]) || peer_shut_down(s)) => {
            PeekResult::Closed
        }
        n if n > 0 => PeekResult::Data,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => PeekResult::Nothing,
            _ => PeekResult::Closed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_records_are_told_from_requests() {
        assert!(is_alert_record(&[0x15, 0x03, 0x03, 0x00, 0x1a]));
        // TLS 1.3 close_notify: 2 + 1 + 16 bytes.
        assert!(is_alert_record(&[0x17, 0x03, 0x03, 0x00, 19]));
        // The shortest request line is longer than that.
        assert!(!is_alert_record(&[0x17, 0x03, 0x03, 0x00, 51]));
        assert!(!is_alert_record(&[0x17, 0x03]));
        assert!(!is_alert_record(b"GET /"));
    }
}
