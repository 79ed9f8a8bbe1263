//! A scripted plain-HTTP upstream for engine tests (framing, keep-alive,
//! streaming, timeouts): std threads, one per connection. The handler sees
//! each parsed request and writes whatever raw response bytes the test
//! needs. LLM behaviour is tested against mock-llm instead.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Recorded, &mut dyn Stream) -> bool + Send + Sync;

pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Serves with `handler`, which writes a response and returns whether
    /// to keep the connection open.
    pub fn start(
        handler: impl Fn(&Recorded, &mut dyn Stream) -> bool + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::start_inner(Arc::new(handler), None)
    }

    pub fn start_tls(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Recorded, &mut dyn Stream) -> bool + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::start_inner(Arc::new(handler), Some(config))
    }

    /// Answers every request with 200 and a JSON echo of what it received.
    pub fn echo() -> Upstream {
        Upstream::start(|req, s| {
            let body = echo_json(req);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                body
            );
            true
        })
    }

    fn start_inner(handler: Arc<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, rec, st) = (accepted.clone(), recorded.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let id = acc.fetch_add(1, Ordering::SeqCst);
                let (h, r, tls) = (handler.clone(), rec.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    match tls {
                        None => serve(stream, id, &*h, &r),
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).expect("tls conn");
                            let s = rustls::StreamOwned::new(conn, stream);
                            serve(s, id, &*h, &r)
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            accepted,
            recorded,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// A node line for YAML configs.
    pub fn node_yaml(&self) -> String {
        format!(
            "{{host: \"127.0.0.1\", port: {}, weight: 1}}",
            self.addr.port()
        )
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

pub fn echo_json(req: &Recorded) -> String {
    serde_json::json!({
        "method": req.method,
        "target": req.target,
        "headers": req.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "body": String::from_utf8_lossy(&req.body),
        "chunked": req.chunked,
        "conn": req.conn,
    })
    .to_string()
}

fn serve<S: Stream>(mut s: S, id: usize, handler: &Handler, rec: &Mutex<Vec<Recorded>>) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf, id) else {
            return;
        };
        rec.lock().unwrap().push(req.clone());
        if !handler(&req, &mut s) {
            let _ = s.flush();
            return;
        }
        let _ = s.flush();
    }
}

fn read_request<S: Read>(s: &mut S, buf: &mut Vec<u8>, id: usize) -> Option<Recorded> {
    let head_end = loop {
        if let Some(i) = super::client::find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(s, buf) {
            return None;
        }
    };
    let head: Vec<u8> = buf.drain(..head_end).collect();
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Request::new(&mut hs);
    r.parse(&head).ok()?;
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = super::client::find(buf, b"\r\n") {
                    break i;
                }
                if !fill(s, buf) {
                    return None;
                }
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&buf[..line_end]).trim(), 16).ok()?;
            while buf.len() < line_end + 2 + size + 2 {
                if !fill(s, buf) {
                    return None;
                }
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(cl) = get("content-length") {
        let n: usize = cl.trim().parse().ok()?;
        while buf.len() < n {
            if !fill(s, buf) {
                return None;
            }
        }
        body = buf.drain(..n).collect();
    }
    Some(Recorded {
        conn: id,
        method: r.method?.to_string(),
        target: r.path?.to_string(),
        headers,
        body,
        chunked,
    })
}

fn fill<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match s.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Blocks until the peer closes `s` (or `within` passes); true if closed.
pub fn wait_closed(s: &mut dyn Stream, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    let mut b = [0u8; 1];
    while std::time::Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => return true,
        }
    }
    false
}
