//! The metrics endpoint: `GET /apisix/prometheus/metrics` (APISIX's
//! export URI) and `GET /metrics` (the same text) in the Prometheus text
//! format on `gateway.metrics.listen`, served by its own thread so
//! scrapes never touch a worker. Anything else gets a JSON 404.

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::{TcpListener, TcpStream};

use crate::exchange::reply;
use crate::http::find_head_end;
use crate::net;
use crate::observe::metrics::{render, WorkerStats};
use crate::snapshot::SnapshotCell;
use crate::supervise::signal::Shutdown;
use crate::supervise::{self, fault, Component};

const TIMEOUT: Duration = Duration::from_secs(10);

pub fn start(
    listener: StdListener,
    workers: Vec<Arc<WorkerStats>>,
    cell: Arc<SnapshotCell>,
    shutdown: Arc<Shutdown>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let workers: Arc<[Arc<WorkerStats>]> = workers.into();
    crate::timer::background_thread("ringway-metrics", Component::Metrics, move || {
        let (workers, cell, shutdown) = (workers.clone(), cell.clone(), shutdown.clone());
        let listener = listener.try_clone();
        async move {
            fault(Component::Metrics);
            let listener = match listener.and_then(TcpListener::from_std) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("metrics listener failed: {e}");
                    return;
                }
            };
            while let Some(accepted) = crate::net::accept_until(&listener, &shutdown).await {
                if let Ok((tcp, _)) = accepted {
                    let (workers, cell) = (workers.clone(), cell.clone());
                    monoio::spawn(supervise::contain(Component::MetricsRequest, async move {
                        fault(Component::MetricsRequest);
                        serve(tcp, workers, cell).await
                    }));
                }
            }
        }
    })
}

async fn serve(tcp: TcpStream, workers: Arc<[Arc<WorkerStats>]>, cell: Arc<SnapshotCell>) {
    let mut io = crate::net::Io::Tcp(tcp);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(end) = find_head_end(&buf, 0) {
                break end;
            }
            if buf.len() > 16 * 1024 {
                return;
            }
            let r = monoio::time::timeout(TIMEOUT, net::read_more(&mut io, buf)).await;
            match r {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                _ => return,
            }
        };
        let head = buf.split_to(head_end);
        let line = head[..].split(|&b| b == b'\n').next().unwrap_or_default();
        let mut parts = line.split(|&b| b == b' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        let mut out = Vec::new();
        if method == b"GET" && (path == b"/apisix/prometheus/metrics" || path == b"/metrics") {
            let mut text = String::with_capacity(64 * 1024);
            render(&mut text, &workers);
            super::metrics::render_state(&mut text, &cell.load());
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                    text.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(text.as_bytes());
        } else {
            reply::error(
                &mut out,
                404,
                "404 Not Found (try GET /apisix/prometheus/metrics)",
                true,
            );
        }
        let (r, _) = net::write_all(&mut io, out).await;
        if r.is_err() {
            return;
        }
    }
}
