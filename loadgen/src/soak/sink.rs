//! The soak's log sink: a tiny HTTP/1.1 server on loopback that ringway's
//! `http-logger` posts its batches to. It answers `200` to every POST and
//! counts the batches and entries it got; it can be taken down (listener
//! closed, open connections shut) and brought back on the same port, as
//! a log collector that restarts.
//!
//! One thread accepts while the sink is up; one thread serves each
//! connection. Only `Content-Length` bodies are read (what ringway
//! sends); anything else is answered `400` and counted as malformed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the sink received.
#[derive(Debug, Default)]
struct Counts {
    batches: AtomicU64,
    entries: AtomicU64,
    /// Entries received since the sink last came up.
    entries_since_up: AtomicU64,
    /// Requests it could not read (no `Content-Length`, body not JSON).
    malformed: AtomicU64,
}

/// A log collector that can go down and come back on the same port.
pub struct LogSink {
    addr: SocketAddr,
    counts: Arc<Counts>,
    /// Connections open now, to shut when going down.
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// The accept thread while up, and its stop flag.
    accepting: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl LogSink {
    /// Starts on a free loopback port.
    pub fn start() -> Result<LogSink, String> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("log sink: {e}"))?;
        let addr = l.local_addr().map_err(|e| format!("log sink: {e}"))?;
        let mut s = LogSink {
            addr,
            counts: Arc::new(Counts::default()),
            conns: Arc::new(Mutex::new(Vec::new())),
            accepting: None,
        };
        s.serve(l)?;
        Ok(s)
    }

    /// `http://127.0.0.1:PORT/logs`.
    pub fn url(&self) -> String {
        format!("http://{}/logs", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn is_up(&self) -> bool {
        self.accepting.is_some()
    }

    /// Closes the listener and every open connection.
    pub fn down(&mut self) {
        if let Some((stop, t)) = self.accepting.take() {
            stop.store(true, Ordering::Release);
            let _ = t.join();
        }
        if let Ok(mut conns) = self.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Listens again on the same port (retrying while the port is still
    /// held for a moment).
    pub fn up(&mut self) -> Result<(), String> {
        if self.is_up() {
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..100 {
            match TcpListener::bind(self.addr) {
                Ok(l) => {
                    self.counts.entries_since_up.store(0, Ordering::Release);
                    return self.serve(l);
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "log sink: cannot listen on {} again: {last}",
            self.addr
        ))
    }

    pub fn batches(&self) -> u64 {
        self.counts.batches.load(Ordering::Acquire)
    }

    pub fn entries(&self) -> u64 {
        self.counts.entries.load(Ordering::Acquire)
    }

    pub fn entries_since_up(&self) -> u64 {
        self.counts.entries_since_up.load(Ordering::Acquire)
    }

    pub fn malformed(&self) -> u64 {
        self.counts.malformed.load(Ordering::Acquire)
    }

    fn serve(&mut self, l: TcpListener) -> Result<(), String> {
        l.set_nonblocking(true)
            .map_err(|e| format!("log sink: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, counts, conns) = (stop.clone(), self.counts.clone(), self.conns.clone());
        let t = std::thread::Builder::new()
            .name("soak-log-sink".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let _ = c.set_nonblocking(false);
                            if let (Ok(mut all), Ok(kept)) = (conns.lock(), c.try_clone()) {
                                all.retain(|x| x.peer_addr().is_ok());
                                all.push(kept);
                            }
                            let counts = counts.clone();
                            let _ = std::thread::Builder::new()
                                .name("soak-log-conn".into())
                                .spawn(move || serve_conn(c, &counts));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .map_err(|e| format!("log sink: {e}"))?;
        self.accepting = Some((stop, t));
        Ok(())
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.down();
    }
}

/// Serves POSTs on one connection until it closes.
fn serve_conn(mut c: TcpStream, counts: &Counts) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let Some(length) = length else {
            counts.malformed.fetch_add(1, Ordering::AcqRel);
            let _ = c.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        };
        while buf.len() < head_end + length {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + length).skip(head_end).collect();
        match entries_in(&body) {
            Some(n) => {
                counts.batches.fetch_add(1, Ordering::AcqRel);
                counts.entries.fetch_add(n, Ordering::AcqRel);
                counts.entries_since_up.fetch_add(n, Ordering::AcqRel);
            }
            None => {
                counts.malformed.fetch_add(1, Ordering::AcqRel);
            }
        }
        if c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Entries in a batch: a JSON array's elements (`concat_method: json`).
fn entries_in(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body)
        .ok()
        .map(|v| v.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(addr: SocketAddr, body: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        write!(
            c,
            "POST /logs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut got = [0u8; 64];
        let n = c.read(&mut got).unwrap();
        String::from_utf8_lossy(&got[..n]).into_owned()
    }

    #[test]
    fn counts_batches_and_comes_back_on_the_same_port() {
        let mut s = LogSink::start().unwrap();
        let addr = s.addr;
        assert!(post(addr, r#"[{"a":1},{"b":2}]"#).starts_with("HTTP/1.1 200"));
        assert_eq!((s.batches(), s.entries()), (1, 2));
        // A connection kept open is shut when the sink goes down.
        let mut kept = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.down();
        assert!(TcpStream::connect(addr).is_err());
        let mut b = [0u8; 1];
        assert!(matches!(kept.read(&mut b), Ok(0) | Err(_)));
        s.up().unwrap();
        assert_eq!(s.entries_since_up(), 0);
        assert!(post(addr, "[{}]").starts_with("HTTP/1.1 200"));
        assert_eq!((s.entries(), s.entries_since_up()), (3, 1));
        assert!(post(addr, "not json").starts_with("HTTP/1.1 200"));
        assert_eq!(s.malformed(), 1);
    }
}
