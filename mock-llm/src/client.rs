//! A small blocking HTTP/1.1 test client over `std::net::TcpStream`: sends
//! raw bytes and parses responses (Content-Length, chunked, or until
//! close), so tests control every byte on the wire. Used by mock-llm's and
//! the gateway's integration tests; panics on protocol surprises.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// Sends a simple GET and reads the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Sends a body-less request with any method (`DELETE`, `GET`, a
    /// `POST` without a body) and reads the response.
    pub fn request(&mut self, method: &str, path: &str) -> Response {
        self.send(
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        self.read_response()
    }

    /// Sends a POST with a JSON body and reads the response.
    pub fn post_json(&mut self, path: &str, body: &str) -> Response {
        self.post_json_with(path, body, &[])
    }

    /// Like [`Conn::post_json`] with extra request headers.
    pub fn post_json_with(&mut self, path: &str, body: &str, headers: &[(&str, &str)]) -> Response {
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        self.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        self.read_response()
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) => panic!(
                "read failed: {e}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads until at least `n` buffered bytes or EOF.
    fn need(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            if self.fill() == 0 {
                return false;
            }
        }
        true
    }

    /// Reads just the response head.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                let mut hs = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut hs);
                r.parse(&head).expect("parse head");
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return (r.code.unwrap_or(0), headers);
            }
            if self.fill() == 0 {
                panic!(
                    "connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads one complete response (skipping `100 Continue`).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    pub fn read_response_to(&mut self, head_request: bool) -> Response {
        loop {
            let (status, headers) = self.read_head();
            if status == 100 {
                continue;
            }
            let get = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            let chunked =
                get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            let body = if head_request || status == 204 || status == 304 {
                Vec::new()
            } else if chunked {
                self.read_chunked()
            } else if let Some(cl) = get("content-length") {
                let n: usize = cl.trim().parse().expect("content-length");
                assert!(self.need(n), "connection closed mid-body");
                self.buf.drain(..n).collect()
            } else {
                while self.fill() > 0 {}
                std::mem::take(&mut self.buf)
            };
            return Response {
                status,
                headers,
                body,
                chunked,
            };
        }
    }

    /// Reads the next chunk of a chunked body: `Some(data)` or `None` at the
    /// last chunk. Panics on malformed framing.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line_end) = find(&self.buf, b"\r\n") {
                let size_line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                if size == 0 {
                    // last chunk + (no) trailers + CRLF
                    assert!(self.need(line_end + 4), "truncated last chunk");
                    let end = find(&self.buf[line_end + 2..], b"\r\n").expect("trailer end")
                        + line_end
                        + 4;
                    self.buf.drain(..end);
                    return None;
                }
                assert!(
                    self.need(line_end + 2 + size + 2),
                    "connection closed mid-chunk"
                );
                let data = self.buf[line_end + 2..line_end + 2 + size].to_vec();
                self.buf.drain(..line_end + 2 + size + 2);
                return Some(data);
            }
            if self.fill() == 0 {
                panic!("connection closed mid chunked body");
            }
        }
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(c) = self.read_chunk() {
            body.extend_from_slice(&c);
        }
        body
    }

    /// True when the server has closed the connection (EOF within the
    /// read timeout, or a reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => {
                self.buf.push(b[0]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }

    /// Bytes received but not consumed by a parse yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    Conn::connect(addr).get(path)
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> (Response, Conn) {
    let mut c = Conn::connect(addr);
    c.send(bytes);
    let r = c.read_response();
    (r, c)
}

/// The Python with the official SDKs: `$RINGWAY_PYTHON`, else the repo's
/// `.venv`. Panics with the fix when missing (tests must not pass silently).
pub fn sdk_python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("RINGWAY_PYTHON") {
        return p.into();
    }
    let root = repo_root();
    let p = root.join(".venv/bin/python");
    if !p.exists() {
        panic!("the Python SDK venv is missing: run scripts/setup-test-deps.sh (or set RINGWAY_PYTHON)");
    }
    p
}

/// The workspace root (where `tests/sdk/check.py` lives).
pub fn repo_root() -> std::path::PathBuf {
    let here = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or(here)
}

/// Runs `tests/sdk/check.py SCENARIO BASE ARGS…` with the official SDKs and
/// returns what it observed; panics with its message when it fails.
pub fn sdk_check(scenario: &str, base: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(sdk_python())
        .arg(repo_root().join("tests/sdk/check.py"))
        .arg(scenario)
        .arg(base)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{scenario}: no JSON from check.py (exit {:?}): {stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if !out.status.success() {
        panic!("{scenario} against {base} failed: {}", v["error"]);
    }
    v
}
