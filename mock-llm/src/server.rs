//! Worker threads: each runs its own monoio runtime and, for every
//! instance, an accept loop on its own `SO_REUSEPORT` socket. An instance
//! that is told to refuse connections closes its sockets in every worker
//! and re-binds the same port when the refusal ends.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::api::{dispatch, After};
use crate::http::{response, Conn, ReadError};
use crate::state::Shared;

/// How often accept loops look at the listening flag.
const POLL: Duration = Duration::from_millis(20);

pub fn bind(addr: SocketAddr) -> std::io::Result<StdListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Runs one worker until `stop` is set.
pub fn run_worker(
    instances: Vec<(Arc<Shared>, SocketAddr, Option<StdListener>)>,
    stop: Arc<AtomicBool>,
) {
    let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(4096)
        .build();
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mock-llm: cannot start a runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        for (sh, addr, listener) in instances {
            monoio::spawn(instance_loop(sh, addr, listener, stop.clone()));
        }
        while !stop.load(Ordering::Acquire) {
            monoio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

async fn instance_loop(
    sh: Arc<Shared>,
    addr: SocketAddr,
    mut first: Option<StdListener>,
    stop: Arc<AtomicBool>,
) {
    loop {
        while !sh.should_listen() {
            if stop.load(Ordering::Acquire) {
                return;
            }
            monoio::time::sleep(POLL).await;
        }
        let std_listener = match first.take() {
            Some(l) => l,
            None => match bind(addr) {
                Ok(l) => l,
                Err(_) => {
                    monoio::time::sleep(POLL).await;
                    continue;
                }
            },
        };
        let Ok(listener) = TcpListener::from_std(std_listener) else {
            return;
        };
        sh.open_listeners.fetch_add(1, Ordering::AcqRel);
        let _open = OpenGuard(&sh);
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if !sh.should_listen() {
                break; // dropping the listener refuses new connections
            }
            let accepted = {
                let mut accept = std::pin::pin!(listener.accept());
                loop {
                    monoio::select! {
                        r = &mut accept => break Some(r),
                        _ = monoio::time::sleep(POLL) => {
                            if stop.load(Ordering::Acquire) || !sh.should_listen() {
                                break None;
                            }
                        }
                    }
                }
            };
            match accepted {
                Some(Ok((tcp, _))) => {
                    let _ = tcp.set_nodelay(true);
                    sh.connections.fetch_add(1, Ordering::Relaxed);
                    monoio::spawn(serve(sh.clone(), Conn::new(tcp)));
                }
                Some(Err(_)) => monoio::time::sleep(POLL).await,
                None => {}
            }
        }
    }
}

/// Counts a listening socket until it is dropped.
struct OpenGuard<'a>(&'a Shared);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open_listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve(sh: Arc<Shared>, mut conn: Conn) {
    loop {
        let slow = sh.faults().slow_read_bps;
        let req = match conn.read_request(slow).await {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(msg)) => {
                let body = serde_json::json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": null}});
                let _ = conn
                    .write(response(
                        400,
                        "application/json",
                        body.to_string().as_bytes(),
                        false,
                        &[],
                    ))
                    .await;
                return;
            }
        };
        match dispatch(&sh, &mut conn, req).await {
            After::KeepAlive => {}
            After::Close | After::Gone => return,
            After::Reset => {
                conn.reset();
                return;
            }
        }
    }
}
