//! The Admin API's HTTP server: one thread, one runtime, keep-alive
//! connections, `X-API-KEY` (or `?api_key=`) checked in constant time
//! before anything else.

use std::cell::RefCell;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::{TcpListener, TcpStream};

use super::api;
use super::store::Store;
use crate::config::{GatewaySettings, SnapshotCell};
use crate::http::body::BodyDecoder;
use crate::http::{find_head_end, HeadLimits, RequestHead};
use crate::net::{self, Io};
use crate::plugins::key_auth::{constant_time_eq, query_param};
use crate::server::reply;
use crate::server::signal::Shutdown;
use crate::supervise::{self, fault, Component};

/// Largest Admin API body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the Admin API thread on `listener` (supervised: a panic starts
/// a new run on the same socket, whose state is rebuilt from the current
/// snapshot).
pub fn start(
    listener: StdListener,
    key: String,
    cell: Arc<SnapshotCell>,
    gateway: Arc<GatewaySettings>,
    shutdown: Arc<Shutdown>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    supervise::thread("ringway-admin", Component::Admin, move || {
        let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build();
        let mut rt = match rt {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("admin API runtime failed to start: {e}");
                return;
            }
        };
        crate::timer::forget_driver();
        let (cell, gateway, shutdown, key) =
            (cell.clone(), gateway.clone(), shutdown.clone(), key.clone());
        let listener = listener.try_clone();
        rt.block_on(async move {
            fault(Component::Admin);
            let listener = match listener.and_then(TcpListener::from_std) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("admin API listener failed: {e}");
                    return;
                }
            };
            let store = Rc::new(RefCell::new(Store::new(cell, gateway)));
            let key: Rc<[u8]> = Rc::from(key.into_bytes());
            loop {
                // One accept stays pending across shutdown checks (never
                // cancelled mid-flight, so no connection is lost).
                let mut accept = std::pin::pin!(listener.accept());
                let accepted = loop {
                    monoio::select! {
                        r = &mut accept => break r,
                        _ = monoio::time::sleep(Duration::from_millis(200)) => {
                            if shutdown.is_triggered() {
                                return;
                            }
                        }
                    }
                };
                if let Ok((tcp, _)) = accepted {
                    let _ = tcp.set_nodelay(true);
                    let (store, key) = (store.clone(), key.clone());
                    monoio::spawn(supervise::contain(Component::AdminRequest, async move {
                        fault(Component::AdminRequest);
                        serve(tcp, store, key).await
                    }));
                }
            }
        });
    })
}

async fn serve(tcp: TcpStream, store: Rc<RefCell<Store>>, key: Rc<[u8]>) {
    let mut io = Io::Tcp(tcp);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let limits = HeadLimits::default();
    loop {
        let head = loop {
            if let Some(end) = find_head_end(&buf, 0) {
                break RequestHead::parse(buf.split_to(end).freeze(), &limits, Vec::new());
            }
            if buf.len() > limits.max_head_bytes {
                return;
            }
            match monoio::time::timeout(TIMEOUT, net::read_more(&mut io, std::mem::take(&mut buf)))
                .await
            {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                _ => return,
            }
        };
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                let mut out = Vec::new();
                reply::error(&mut out, e.status(), &e.to_string(), false);
                let _ = net::write_all(&mut io, out).await;
                return;
            }
        };
        let mut body = Vec::new();
        let mut dec = BodyDecoder::for_request(head.framing);
        loop {
            match dec.decode(&mut buf, |d| body.extend_from_slice(d)) {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return,
            }
            if body.len() > MAX_BODY {
                let mut out = Vec::new();
                reply::error(&mut out, 413, "request body too large", false);
                let _ = net::write_all(&mut io, out).await;
                return;
            }
            match monoio::time::timeout(TIMEOUT, net::read_more(&mut io, std::mem::take(&mut buf)))
                .await
            {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                _ => return,
            }
        }
        let presented = head
            .header("x-api-key")
            .or_else(|| head.query().and_then(|q| query_param(q, b"api_key")));
        let (status, body_json) = match presented {
            Some(k) if constant_time_eq(k, &key) => {
                let path = String::from_utf8_lossy(head.path()).into_owned();
                let r = api::handle(&mut store.borrow_mut(), &head.method, &path, &body);
                (r.status, r.body)
            }
            _ => (
                401,
                serde_json::json!({"error_msg": "failed to check token"}),
            ),
        };
        let mut out = Vec::with_capacity(512);
        let text = body_json.to_string();
        reply::json(&mut out, status, text.as_bytes(), head.keep_alive, &[]);
        let (res, _) = net::write_all(&mut io, out).await;
        if res.is_err() || !head.keep_alive {
            return;
        }
    }
}
