//! The Admin API's HTTP server: one thread, one runtime, keep-alive
//! connections, guarded against clients that would hold it down.
//!
//! - The key (`X-API-KEY`, or `?api_key=`) is checked in constant time as
//!   soon as a request's head is in, before a byte of its body is read: a
//!   wrong or missing key is answered 401 and the connection closed,
//!   however large a body was announced. So is a `Content-Length` over
//!   [`MAX_BODY`] (413), and `Expect: 100-continue` is answered only
//!   after both checks.
//! - At most `gateway.admin.max_connections` connections are served at
//!   once; one past that is answered 503 and closed.
//! - Every request must arrive whole — head and body, from when the
//!   server starts waiting for it — within `gateway.admin.request_timeout`
//!   (else 408, or a silent close for a connection that sent nothing), so
//!   a slow client cannot keep a connection for ever.
//!
//! A refusal closes the connection after a bounded linger (the client's
//! unread bytes read and dropped), so the answer is not lost to a reset.

use std::cell::{Cell, RefCell};
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::AsyncWriteRent;
use monoio::net::{TcpListener, TcpStream};

use super::api;
use super::store::Store;
use crate::config::gateway::AdminSettings;
use crate::config::GatewaySettings;
use crate::exchange::reply;
use crate::http::body::BodyDecoder;
use crate::http::{find_head_end, BodyFraming, HeadLimits, RequestHead};
use crate::net::{self, Io};
use crate::plugins::key_auth::{constant_time_eq, query_param};
use crate::supervise::signal::Shutdown;
use crate::supervise::{self, fault, Component};

/// Largest Admin API body accepted.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long a refusal may take to write (a 503 to a connection past the
/// cap, whose client may not read).
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
/// After a refusal, how long and how much of the client's unsent request
/// is read and dropped before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Starts the Admin API thread on `listener` (supervised: a panic starts
/// a new run on the same socket, whose state is rebuilt from the current
/// snapshot).
pub fn start(
    listener: StdListener,
    key: String,
    source: Arc<crate::source::ConfigSource>,
    gateway: Arc<GatewaySettings>,
    shutdown: Arc<Shutdown>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (max_connections, timeout) = match &gateway.admin {
        Some(a) => (a.max_connections, a.request_timeout),
        None => (
            AdminSettings::DEFAULT_MAX_CONNECTIONS,
            AdminSettings::DEFAULT_REQUEST_TIMEOUT,
        ),
    };
    crate::timer::background_thread("ringway-admin", Component::Admin, move || {
        let (source, shutdown, key) = (source.clone(), shutdown.clone(), key.clone());
        let listener = listener.try_clone();
        async move {
            fault(Component::Admin);
            let listener = match listener.and_then(TcpListener::from_std) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("admin API listener failed: {e}");
                    return;
                }
            };
            let store = Rc::new(RefCell::new(Store::over(source)));
            let key: Rc<[u8]> = Rc::from(key.into_bytes());
            let live = Rc::new(Cell::new(0usize));
            loop {
                let Some(accepted) = crate::net::accept_until(&listener, &shutdown).await else {
                    return;
                };
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                if live.get() >= max_connections {
                    monoio::spawn(refuse_connection(tcp));
                    continue;
                }
                let slot = Slot::take(&live);
                let (store, key) = (store.clone(), key.clone());
                monoio::spawn(async move {
                    let work = async {
                        fault(Component::AdminRequest);
                        serve(tcp, store, key, timeout).await
                    };
                    supervise::contain(Component::AdminRequest, work).await;
                    drop(slot);
                });
            }
        }
    })
}

/// One of the `max_connections`, given back when dropped.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(live: &Rc<Cell<usize>>) -> Slot {
        live.set(live.get() + 1);
        Slot(live.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

async fn refuse_connection(tcp: TcpStream) {
    let mut io = Io::Tcp(tcp);
    let mut out = Vec::new();
    reply::error(&mut out, 503, "too many Admin API connections", false);
    let _ = monoio::time::timeout(REFUSAL_WRITE, net::write_all(&mut io, out)).await;
    let _ = io.shutdown().await;
}

/// Why a request is answered without being handled.
struct Refusal {
    status: u16,
    message: &'static str,
}

const TOO_SLOW: Refusal = Refusal {
    status: 408,
    message: "request not received in time",
};

/// What waiting for a request's bytes came to.
enum Wait {
    /// The connection ended or failed (nothing to answer).
    Gone,
    /// Answer this and close.
    Refuse(Refusal),
}

/// Reads more into `buf` until `deadline`.
async fn read_by(io: &mut Io, buf: &mut BytesMut, deadline: Instant) -> Result<(), Wait> {
    let left = deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, net::read_more(io, std::mem::take(buf))).await {
        Ok((Ok(n), b)) if n > 0 => {
            *buf = b;
            Ok(())
        }
        Ok(_) => Err(Wait::Gone),
        Err(_) => Err(Wait::Refuse(TOO_SLOW)),
    }
}

async fn serve(tcp: TcpStream, store: Rc<RefCell<Store>>, key: Rc<[u8]>, timeout: Duration) {
    let mut io = Io::Tcp(tcp);
    let mut buf = BytesMut::with_capacity(4 * 1024);
    loop {
        let deadline = Instant::now() + timeout;
        let answer = match request(&mut io, &mut buf, &key, deadline).await {
            Ok((head, body)) => {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let path = text(head.path());
                let query = head.query().map(text);
                let headers: Vec<(String, String)> = head
                    .header_pairs()
                    .map(|(n, v)| (text(n), text(v)))
                    .collect();
                let req = api::Request {
                    method: &head.method,
                    path: &path,
                    query: query.as_deref(),
                    headers: &headers,
                    body: &body,
                };
                let r = api::serve(&mut store.borrow_mut(), &req);
                let out = render(&r, head.keep_alive, head.method == http::Method::HEAD);
                let written = monoio::time::timeout(timeout, net::write_all(&mut io, out)).await;
                if matches!(written, Ok((Ok(()), _))) && head.keep_alive {
                    continue;
                }
                return;
            }
            Err(Wait::Gone) => return,
            Err(Wait::Refuse(r)) => r,
        };
        let mut out = Vec::new();
        reply::error(&mut out, answer.status, answer.message, false);
        let _ = monoio::time::timeout(REFUSAL_WRITE, net::write_all(&mut io, out)).await;
        linger(&mut io, buf).await;
        return;
    }
}

/// A reply's bytes: its JSON (or raw) body, its headers; none of the
/// body for `HEAD`, no body nor length for `204`.
fn render(r: &api::Reply, keep_alive: bool, head: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if r.status == 204 {
        out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
        out.extend_from_slice(&reply::header_lines(&headers));
        out.extend_from_slice(b"Server: ringway\r\n");
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        return out;
    }
    let (content_type, body) = match &r.raw {
        Some((t, b)) => (*t, b.clone()),
        None => ("application/json", r.body.to_string().into_bytes()),
    };
    let body = if head { Vec::new() } else { body };
    reply::typed(
        &mut out,
        r.status,
        content_type,
        &body,
        keep_alive,
        &reply::header_lines(&headers),
    );
    out
}

/// Reads one request: its head, then — only with the right key and a
/// body within [`MAX_BODY`] — its body, all by `deadline`.
async fn request(
    io: &mut Io,
    buf: &mut BytesMut,
    key: &[u8],
    deadline: Instant,
) -> Result<(RequestHead, Vec<u8>), Wait> {
    let limits = HeadLimits::default();
    let head = loop {
        if let Some(end) = find_head_end(buf, 0) {
            break RequestHead::parse(buf.split_to(end).freeze(), &limits, Vec::new());
        }
        if buf.len() > limits.max_head_bytes {
            return Err(Wait::Refuse(Refusal {
                status: 431,
                message: "request head too large",
            }));
        }
        match read_by(io, buf, deadline).await {
            // Nothing of a request yet: an idle connection just ends.
            Err(Wait::Refuse(_)) if buf.is_empty() => return Err(Wait::Gone),
            r => r?,
        }
    };
    let head = head.map_err(|_| {
        Wait::Refuse(Refusal {
            status: 400,
            message: "malformed request",
        })
    })?;
    let presented = head
        .header("x-api-key")
        .or_else(|| head.query().and_then(|q| query_param(q, b"api_key")));
    if !presented.is_some_and(|k| constant_time_eq(k, key)) {
        return Err(Wait::Refuse(Refusal {
            status: 401,
            message: "failed to check token",
        }));
    }
    if matches!(head.framing, BodyFraming::Length(n) if n > MAX_BODY as u64) {
        return Err(Wait::Refuse(too_large()));
    }
    if head.expect_continue && buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let sent = net::write_all(io, &b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
        match monoio::time::timeout(left, sent).await {
            Ok((Ok(()), _)) => {}
            Ok(_) => return Err(Wait::Gone),
            Err(_) => return Err(Wait::Refuse(TOO_SLOW)),
        }
    }
    let mut body = Vec::new();
    let mut dec = BodyDecoder::for_request(head.framing);
    loop {
        match dec.decode(buf, |d| body.extend_from_slice(d)) {
            Ok(true) => return Ok((head, body)),
            Ok(false) => {}
            Err(_) => {
                return Err(Wait::Refuse(Refusal {
                    status: 400,
                    message: "malformed request body",
                }))
            }
        }
        if body.len() > MAX_BODY {
            return Err(Wait::Refuse(too_large()));
        }
        read_by(io, buf, deadline).await?;
    }
}

fn too_large() -> Refusal {
    Refusal {
        status: 413,
        message: "request body too large",
    }
}

/// Closes after a refusal: our side is shut, then what the client still
/// sends (the body we did not read) is read and dropped until it closes
/// too, for at most [`LINGER`] and [`LINGER_BYTES`] — closing with unread
/// bytes would reset the connection, and the client could lose the answer.
async fn linger(io: &mut Io, mut buf: BytesMut) {
    let _ = io.shutdown().await;
    let until = Instant::now() + LINGER;
    let mut seen = 0;
    while seen < LINGER_BYTES {
        buf.clear();
        let left = until.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, net::read_more(io, buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                seen += n;
                buf = b;
            }
            _ => return,
        }
    }
}
