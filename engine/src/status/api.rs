//! The Status API, as APISIX serves it on `apisix.status` (here
//! `gateway.status.listen`, default `127.0.0.1:7085`): `/status` answers
//! 200 `{"status":"ok"}` while the process runs (liveness), with the
//! details of readiness beside it; `/status/ready` answers 200
//! `{"status":"ok"}` when ready, else 503 `{"status":"error","error":…}`
//! ([`super::ready`] judges). Any method, as APISIX's `location` blocks;
//! `HEAD` gets the headers alone. Anything else is a JSON 404.
//!
//! Its own thread and runtime, like the metrics endpoint: a probe never
//! touches a worker, and it keeps answering through the drain (503 on
//! `/status/ready`) until the process exits.

use std::cell::Cell;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::{TcpListener, TcpStream};

use super::ready::{Facts, Serving, SourceFacts};
use crate::exchange::reply;
use crate::http::find_head_end;
use crate::http::request::{BodyFraming, HeadLimits, RequestHead};
use crate::net;
use crate::observe::metrics;
use crate::snapshot::SnapshotCell;
use crate::supervise::signal::Shutdown;
use crate::supervise::{self, fault, Component};

/// A request must arrive (and an idle connection is closed) within this.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept (a probe
/// endpoint needs few).
const MAX_CONNECTIONS: usize = 64;

/// Where the Status API reads its facts.
pub struct StatusApi {
    pub cell: Arc<SnapshotCell>,
    pub shutdown: Arc<Shutdown>,
    pub serving: Arc<Serving>,
    pub stale_after: Duration,
    /// The configuration comes from etcd (which may go stale).
    pub etcd: bool,
}

impl StatusApi {
    /// The facts now.
    pub fn facts(&self) -> Facts {
        Facts {
            workers: self.serving.workers(),
            not_serving: self.serving.not_serving(),
            draining: self.shutdown.is_triggered(),
            generation: self.cell.generation(),
            source: self.etcd.then(|| SourceFacts {
                up: metrics::CONFIG_SOURCE_UP.get() == 1,
                stale_for: metrics::config_source_stale_for(),
                revision: metrics::CONFIG_REVISION.get(),
            }),
            stale_after: self.stale_after,
        }
    }
}

/// Serves the Status API on `listener` from its own supervised thread.
pub fn start(
    listener: StdListener,
    api: StatusApi,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let api = Arc::new(api);
    crate::timer::background_thread("ringway-status", Component::Status, move || {
        let api = api.clone();
        let listener = listener.try_clone();
        async move {
            fault(Component::Status);
            let listener = match listener.and_then(TcpListener::from_std) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("status listener failed: {e}");
                    return;
                }
            };
            let open = Rc::new(Cell::new(0usize));
            // No shutdown here: through the drain, `/status/ready` says 503.
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    crate::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if open.get() >= MAX_CONNECTIONS {
                    continue;
                }
                open.set(open.get() + 1);
                let (api, open) = (api.clone(), open.clone());
                monoio::spawn(async move {
                    supervise::contain(Component::StatusRequest, async {
                        fault(Component::StatusRequest);
                        serve(tcp, &api).await
                    })
                    .await;
                    open.set(open.get() - 1);
                });
            }
        }
    })
}

/// Answers requests on one connection until it closes, idles past
/// [`TIMEOUT`], sends something malformed or asks to close.
async fn serve(tcp: TcpStream, api: &StatusApi) {
    let mut io = net::Io::Tcp(tcp);
    let mut buf = BytesMut::with_capacity(1024);
    let limits = HeadLimits::default();
    loop {
        let head = loop {
            if let Some(end) = find_head_end(&buf, 0) {
                break RequestHead::parse(buf.split_to(end).freeze(), &limits, Vec::new());
            }
            if buf.len() > limits.max_head_bytes {
                return;
            }
            match monoio::time::timeout(TIMEOUT, net::read_more(&mut io, buf)).await {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                _ => return,
            }
        };
        let mut out = Vec::with_capacity(512);
        let keep_alive = match &head {
            Ok(h) => {
                // A body is not read: the connection closes after the answer.
                let keep_alive =
                    h.keep_alive && matches!(h.framing, BodyFraming::None | BodyFraming::Length(0));
                answer(&mut out, h, api, keep_alive);
                keep_alive
            }
            Err(_) => {
                reply::error(&mut out, 400, "malformed request", false);
                false
            }
        };
        let written = monoio::time::timeout(TIMEOUT, net::write_all(&mut io, out)).await;
        if !keep_alive || !matches!(written, Ok((Ok(()), _))) {
            return;
        }
    }
}

/// The response to one request.
fn answer(out: &mut Vec<u8>, head: &RequestHead, api: &StatusApi, keep_alive: bool) {
    let (status, body) = match head.path() {
        b"/status" | b"/status/" => (200, api.facts().status_answer()),
        b"/status/ready" | b"/status/ready/" => api.facts().ready_answer(),
        _ => (
            404,
            serde_json::json!({"error_msg": "404 Not Found (try /status or /status/ready)"}),
        ),
    };
    let body = body.to_string();
    reply::json(out, status, body.as_bytes(), keep_alive, &[]);
    if head.method == http::Method::HEAD {
        out.truncate(out.len() - body.len());
    }
}
