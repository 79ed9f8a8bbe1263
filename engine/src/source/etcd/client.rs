//! A small blocking client of etcd's v3 JSON gateway (what APISIX itself
//! speaks): `kv/range`, `kv/put`, `kv/txn` (compare-and-swap),
//! `kv/deleterange`, `watch`, and `auth/authenticate` for a token. Keys
//! and values travel base64-encoded inside JSON over HTTP/1.1 (plain or
//! TLS, optionally with a client certificate). It runs on the etcd thread
//! and the Admin API's, never on a worker: blocking sockets with the
//! configured `timeout` are the simplest correct thing there.
//!
//! Endpoints are tried in turn: a call that cannot connect moves on to the
//! next `host` (another member after a leader change or a member going
//! down).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::BytesMut;
use serde_json::{json, Value};

use crate::config::deployment::{EtcdHost, EtcdSettings};
use crate::http::body::BodyDecoder;
use crate::http::response::ResponseHead;

/// A key and its value as etcd holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// One change a watch reports: `value` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub key: String,
    pub kv: Option<Kv>,
}

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot reach etcd ({0})")]
    Unreachable(String),
    #[error("etcd answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("etcd sent something unreadable: {0}")]
    Protocol(String),
    /// The watch's start revision was compacted away: read everything again.
    #[error("etcd compacted revision {0}")]
    Compacted(i64),
}

/// A client for `settings`' endpoints.
pub struct EtcdClient {
    settings: EtcdSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The endpoint that answered last (tried first).
    current: usize,
    token: Option<String>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn set_read_timeout(&self, t: Duration) {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        };
        let _ = tcp.set_read_timeout(Some(t));
    }
}

impl EtcdClient {
    pub fn new(settings: EtcdSettings, tls: Option<Arc<rustls::ClientConfig>>) -> EtcdClient {
        EtcdClient {
            settings,
            tls,
            current: 0,
            token: None,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    /// Every key under the prefix, and the revision they are as of.
    pub fn range_prefix(&mut self) -> Result<(i64, Vec<Kv>), EtcdError> {
        let (key, end) = prefix_range(&self.settings.prefix);
        let v = self.call(
            "/v3/kv/range",
            &json!({"key": b64(&key), "range_end": b64(&end)}),
        )?;
        let revision = header_revision(&v)?;
        let kvs = v["kvs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        Ok((revision, kvs.iter().map(kv_of).collect::<Result<_, _>>()?))
    }

    /// One key, if present.
    pub fn get(&mut self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        match v["kvs"].as_array().and_then(|a| a.first()) {
            Some(kv) => Ok(Some(kv_of(kv)?)),
            None => Ok(None),
        }
    }

    /// Writes `key` if its `mod_revision` is still `expected` (0: it must
    /// not exist; `None`: whatever it is). `Ok(None)` when the comparison
    /// failed (someone else wrote it first); else the write's revision.
    pub fn put(
        &mut self,
        key: &str,
        value: &[u8],
        expected: Option<i64>,
    ) -> Result<Option<i64>, EtcdError> {
        let put = json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}});
        let compare = match expected {
            None => vec![],
            Some(rev) => vec![json!({
                "key": b64(key.as_bytes()),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": rev.to_string(),
            })],
        };
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": [put], "failure": []}),
        )?;
        if v["succeeded"].as_bool() != Some(true) {
            return Ok(None);
        }
        header_revision(&v).map(Some)
    }

    /// Deletes `key` (and, with `children`, every key under `key/`); the
    /// revision after it.
    pub fn delete(&mut self, key: &str, children: bool) -> Result<i64, EtcdError> {
        let mut rev = self.delete_range(json!({"key": b64(key.as_bytes())}))?;
        if children {
            let (k, end) = prefix_range(&format!("{key}/"));
            rev = self.delete_range(json!({"key": b64(&k), "range_end": b64(&end)}))?;
        }
        Ok(rev)
    }

    fn delete_range(&mut self, req: Value) -> Result<i64, EtcdError> {
        let v = self.call("/v3/kv/deleterange", &req)?;
        header_revision(&v)
    }

    /// Opens a watch on the prefix from `start_revision`.
    pub fn watch(&mut self, start_revision: i64) -> Result<Watch, EtcdError> {
        let (key, end) = prefix_range(&self.settings.prefix);
        let body = json!({"create_request": {
            "key": b64(&key), "range_end": b64(&end), "start_revision": start_revision.to_string(),
        }});
        let (mut stream, head, rest) = self.send("/v3/watch", &body)?;
        if head.status != 200 {
            let mut body = Vec::new();
            let _ = read_body(&mut stream, &head, rest, &mut body);
            return Err(refused(head.status, &body));
        }
        stream.set_read_timeout(Duration::from_millis(500));
        Ok(Watch {
            stream,
            dec: BodyDecoder::new(head.framing),
            buf: rest,
            lines: Vec::new(),
        })
    }

    /// A unary call: POST `path` with `body`, the JSON answer. An expired
    /// auth token is renewed once.
    fn call(&mut self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        for attempt in 0..2 {
            let (mut stream, head, rest) = self.send(path, body)?;
            let mut out = Vec::new();
            read_body(&mut stream, &head, rest, &mut out)?;
            if head.status == 401 && attempt == 0 && self.settings.user.is_some() {
                self.token = None;
                continue;
            }
            if head.status != 200 {
                return Err(refused(head.status, &out));
            }
            return serde_json::from_slice(&out).map_err(|e| EtcdError::Protocol(e.to_string()));
        }
        Err(EtcdError::Refused {
            status: 401,
            message: "authentication failed".into(),
        })
    }

    /// Sends a request on a new connection to the first endpoint that
    /// takes it; the response head and what was read past it.
    fn send(
        &mut self,
        path: &str,
        body: &Value,
    ) -> Result<(Stream, ResponseHead, BytesMut), EtcdError> {
        if self.token.is_none() && self.settings.user.is_some() && path != "/v3/auth/authenticate" {
            self.token = Some(self.authenticate()?);
        }
        let body = body.to_string();
        let n = self.settings.hosts.len();
        let mut last = String::new();
        for i in 0..n {
            let idx = (self.current + i) % n;
            let host = self.settings.hosts[idx].clone();
            match self.exchange(&host, path, &body) {
                Ok(r) => {
                    self.current = idx;
                    return Ok(r);
                }
                Err(e) => last = format!("{host}: {e}"),
            }
        }
        Err(EtcdError::Unreachable(last))
    }

    fn exchange(
        &self,
        host: &EtcdHost,
        path: &str,
        body: &str,
    ) -> std::io::Result<(Stream, ResponseHead, BytesMut)> {
        let timeout = self.settings.timeout;
        let addr = (host.host.as_str(), host.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the name has no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let _ = tcp.set_nodelay(true);
        let mut stream = match (&self.tls, host.tls) {
            (Some(cfg), true) => {
                let sni = self.settings.tls.as_ref().and_then(|t| t.sni.clone());
                let name =
                    rustls::pki_types::ServerName::try_from(sni.unwrap_or(host.host.clone()))
                        .map_err(std::io::Error::other)?;
                let conn = rustls::ClientConnection::new(cfg.clone(), name)
                    .map_err(std::io::Error::other)?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
            _ => Stream::Plain(tcp),
        };
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            host.host,
            host.port,
            body.len()
        );
        if let Some(t) = &self.token {
            req.push_str("Authorization: ");
            req.push_str(t);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes())?;
        stream.flush()?;
        let (head, rest) = read_head(&mut stream)?;
        Ok((stream, head, rest))
    }

    fn authenticate(&mut self) -> Result<String, EtcdError> {
        let body = json!({"name": self.settings.user, "password": self.settings.password});
        let v = self.call("/v3/auth/authenticate", &body)?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| EtcdError::Protocol("no token in the authentication answer".into()))
    }
}

/// An open watch: batches of events as etcd sends them.
pub struct Watch {
    stream: Stream,
    dec: BodyDecoder,
    buf: BytesMut,
    /// Decoded body bytes not yet split into messages.
    lines: Vec<u8>,
}

/// What one wait on a watch gave.
pub enum WatchStep {
    /// Changes, and the revision they bring the mirror to.
    Events(i64, Vec<Event>),
    /// Nothing within the wait (the connection is fine).
    Quiet,
}

impl Watch {
    /// Waits up to half a second for the next message.
    pub fn wait(&mut self) -> Result<WatchStep, EtcdError> {
        loop {
            if let Some(pos) = self.lines.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.lines.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return message(&line);
            }
            if self.dec.is_done() {
                return Err(EtcdError::Unreachable("the watch ended".into()));
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(EtcdError::Unreachable("the watch connection closed".into())),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    let lines = &mut self.lines;
                    self.dec
                        .decode(&mut self.buf, |d| lines.extend_from_slice(d))
                        .map_err(|e| EtcdError::Protocol(e.to_string()))?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(WatchStep::Quiet)
                }
                Err(e) => return Err(EtcdError::Unreachable(e.to_string())),
            }
        }
    }
}

/// One watch message: its events, or why the watch ended.
fn message(line: &[u8]) -> Result<WatchStep, EtcdError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| EtcdError::Protocol(e.to_string()))?;
    if let Some(err) = v.get("error") {
        return Err(EtcdError::Protocol(err.to_string()));
    }
    let r = &v["result"];
    let compacted = num(&r["compact_revision"]);
    if compacted > 0 {
        return Err(EtcdError::Compacted(compacted));
    }
    if r["canceled"].as_bool() == Some(true) {
        let why = r["cancel_reason"].as_str().unwrap_or("canceled");
        return Err(EtcdError::Unreachable(format!(
            "the watch was canceled: {why}"
        )));
    }
    let revision = num(&r["header"]["revision"]);
    let mut events = Vec::new();
    for e in r["events"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let key = String::from_utf8(unb64(&e["kv"]["key"])?)
            .map_err(|_| EtcdError::Protocol("a key is not UTF-8".into()))?;
        let kv = match e["type"].as_str() {
            Some("DELETE") => None,
            _ => Some(kv_of(&e["kv"])?),
        };
        events.push(Event { key, kv });
    }
    Ok(WatchStep::Events(revision, events))
}

fn read_head(stream: &mut Stream) -> std::io::Result<(ResponseHead, BytesMut)> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = crate::http::find_head_end(&buf, 0) {
            let head = buf.split_to(end).freeze();
            let head = ResponseHead::parse(head, false, 64, Vec::new())
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            return Ok((head, buf));
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed before answering"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Most bytes a unary answer may have (a whole configuration's range).
const MAX_BODY: usize = 256 << 20;

fn read_body(
    stream: &mut Stream,
    head: &ResponseHead,
    mut buf: BytesMut,
    out: &mut Vec<u8>,
) -> Result<(), EtcdError> {
    let mut dec = BodyDecoder::new(head.framing);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let done = dec
            .decode(&mut buf, |d| out.extend_from_slice(d))
            .map_err(|e| EtcdError::Protocol(e.to_string()))?;
        if done {
            return Ok(());
        }
        if out.len() > MAX_BODY {
            return Err(EtcdError::Protocol("answer too large".into()));
        }
        match stream.read(&mut chunk) {
            Ok(0) if dec.eof_is_end() => return Ok(()),
            Ok(0) => return Err(EtcdError::Unreachable("closed mid-answer".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(EtcdError::Unreachable(e.to_string())),
        }
    }
}

fn refused(status: u16, body: &[u8]) -> EtcdError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["message"]
        .as_str()
        .or(v["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    EtcdError::Refused { status, message }
}

/// `[prefix, prefix + 1)`: every key starting with `prefix`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let key = prefix.as_bytes().to_vec();
    let mut end = key.clone();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (key, end);
        }
    }
    (key, vec![0])
}

fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

fn unb64(v: &Value) -> Result<Vec<u8>, EtcdError> {
    B64.decode(v.as_str().unwrap_or(""))
        .map_err(|e| EtcdError::Protocol(format!("bad base64: {e}")))
}

/// etcd's int64s travel as JSON strings.
fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn header_revision(v: &Value) -> Result<i64, EtcdError> {
    match num(&v["header"]["revision"]) {
        0 => Err(EtcdError::Protocol("no revision in the answer".into())),
        r => Ok(r),
    }
}

fn kv_of(v: &Value) -> Result<Kv, EtcdError> {
    Ok(Kv {
        key: String::from_utf8(unb64(&v["key"])?)
            .map_err(|_| EtcdError::Protocol("a key is not UTF-8".into()))?,
        value: unb64(&v["value"])?,
        create_revision: num(&v["create_revision"]),
        mod_revision: num(&v["mod_revision"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_and_watch_messages() {
        assert_eq!(
            prefix_range("/apisix"),
            (b"/apisix".to_vec(), b"/apisiy".to_vec())
        );
        assert_eq!(prefix_range("/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        let line = br#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L2FwaXNpeC9yb3V0ZXMvMQ==","create_revision":"2","mod_revision":"3","version":"2","value":"eyJ1cmkiOiIvYSJ9"}},{"type":"DELETE","kv":{"key":"L2FwaXNpeC9yb3V0ZXMvMQ==","mod_revision":"4"}}]}}"#;
        let WatchStep::Events(rev, events) = message(line).unwrap() else {
            panic!("events")
        };
        assert_eq!(rev, 4);
        assert_eq!(events[0].key, "/apisix/routes/1");
        assert_eq!(events[0].kv.as_ref().unwrap().value, br#"{"uri":"/a"}"#);
        assert!(events[1].kv.is_none());
        let compacted =
            br#"{"result":{"header":{"revision":"9"},"compact_revision":"5","canceled":true}}"#;
        assert!(matches!(message(compacted), Err(EtcdError::Compacted(5))));
    }
}
