//! A DNS server of the test's own for the tests that show when ringway
//! resolves names: on port 53 of a loopback address the test picks (one
//! per test, as they run at once; binding needs root), used by a gateway run in a
//! mount namespace whose `/etc/resolv.conf` names it, so no query leaves
//! the machine.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A DNS server on port 53 answering `A` queries for `*.slow.test`
/// with 127.0.0.1 (and `AAAA` with nothing), unless told to hold its
/// answers; it counts the queries it sees.
pub struct SlowDns {
    pub hold: Arc<AtomicBool>,
    pub queries: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

impl SlowDns {
    /// A server on `ip`:53 (a 127.x.y.z address of the test's choosing).
    pub fn start(ip: &str) -> SlowDns {
        let sock = UdpSocket::bind((ip, 53)).expect("bind port 53 (root)");
        let hold = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (h, q) = (hold.clone(), queries.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                q.fetch_add(1, Ordering::SeqCst);
                while h.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if let Some(answer) = dns_answer(&buf[..n]) {
                    let _ = sock.send_to(&answer, from);
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("resolv.conf"),
            format!("nameserver {ip}\noptions timeout:30 attempts:1\n"),
        )
        .unwrap();
        SlowDns { hold, queries, dir }
    }

    /// Runs the gateway in a mount namespace whose /etc/resolv.conf names
    /// this server.
    pub fn wrapper(&self) -> Vec<String> {
        let conf = self.dir.path().join("resolv.conf");
        vec![
            "unshare".into(),
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
                conf.display()
            ),
        ]
    }
}

/// The answer to a query: the question echoed, one A record of 127.0.0.1
/// for an A query, none for others.
fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + usize::from(q[i]);
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let question_end = i + 5;
    let mut out = q.get(..question_end)?.to_vec();
    out[2] = 0x81; // response, recursion desired
    out[3] = 0x80; // recursion available, NOERROR
    let a = qtype == 1;
    out[6..8].copy_from_slice(&u16::from(a).to_be_bytes());
    out[8..12].fill(0);
    if a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
