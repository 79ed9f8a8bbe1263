//! Host names resolved off the request path.
//!
//! An [`Endpoint`] is resolved when the config is compiled (on the loader or
//! Admin API thread, never a worker) and re-resolved every 30 s by one
//! background thread, which publishes new addresses through `ArcSwap`.
//! Workers only ever read the current list. IP literals never touch DNS.
//! A name a worker learns at run time ([`Endpoint::resolve_later`]) is
//! looked up by that thread too, at once.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_utils::atomic::AtomicCell;

use crate::net::dns::dns_enabled;
use crate::supervise::Component;

const REFRESH_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Endpoint {
    pub host: Arc<str>,
    pub port: u16,
    addrs: ArcSwap<Vec<SocketAddr>>,
    /// Rotates through multiple addresses on new connections.
    next: AtomicCell<u32>,
}

impl Endpoint {
    /// Resolves `host:port` now (blocking; call only off the workers) and
    /// registers the endpoint for periodic refresh when it is a name. A
    /// name some configuration already holds an endpoint for is not looked
    /// up again: that endpoint (kept fresh by the refresh thread) is
    /// shared, so a configuration naming one host a thousand times, or an
    /// Admin API change re-compiling every route, waits for DNS at most
    /// once per new name.
    pub fn resolve(host: &str, port: u16) -> Arc<Endpoint> {
        let is_ip = host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok();
        if is_ip {
            return Endpoint::resolve_now(host, port, true);
        }
        let known = registry()
            .pin()
            .get(&(host.to_owned(), port))
            .and_then(Weak::upgrade);
        if let Some(ep) = known {
            return ep;
        }
        let ep = Endpoint::resolve_now(host, port, false);
        let map = registry().pin();
        map.insert((host.to_owned(), port), Arc::downgrade(&ep));
        if map.len() % 256 == 0 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        ep
    }

    fn resolve_now(host: &str, port: u16, is_ip: bool) -> Arc<Endpoint> {
        let addrs = lookup(host, port);
        if addrs.is_empty() {
            tracing::warn!(
                host,
                port,
                "cannot resolve upstream host yet; retrying every 30s"
            );
        }
        let ep = Arc::new(Endpoint {
            host: Arc::from(host),
            port,
            addrs: ArcSwap::from_pointee(addrs),
            next: AtomicCell::new(0),
        });
        if !is_ip && dns_enabled() {
            refresher().register(&ep);
        }
        ep
    }

    /// `host:port` without waiting for DNS (for a worker that learns a name
    /// at run time, such as a Redis node a cluster redirect names): IP
    /// literals are resolved at once, names by the background thread as
    /// soon as it gets to them; until then [`Endpoint::addr`] is `None`.
    pub fn resolve_later(host: &str, port: u16) -> Arc<Endpoint> {
        let h = host.trim_matches(|c| c == '[' || c == ']');
        let ip = h.parse::<IpAddr>().ok();
        let ep = Arc::new(Endpoint {
            host: Arc::from(host),
            port,
            addrs: ArcSwap::from_pointee(
                ip.map(|ip| SocketAddr::new(ip, port)).into_iter().collect(),
            ),
            next: AtomicCell::new(0),
        });
        if ip.is_none() {
            refresher().register(&ep);
        }
        ep
    }

    /// An endpoint with a fixed address (tests, health probes).
    pub fn fixed(addr: SocketAddr) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            host: Arc::from(addr.ip().to_string()),
            port: addr.port(),
            addrs: ArcSwap::from_pointee(vec![addr]),
            next: AtomicCell::new(0),
        })
    }

    /// The address for the next new connection, if resolved.
    pub fn addr(&self) -> Option<SocketAddr> {
        let addrs = self.addrs.load();
        match addrs.len() {
            0 => None,
            1 => Some(addrs[0]),
            n => {
                let i = self.next.fetch_add(1) as usize % n;
                Some(addrs[i])
            }
        }
    }

    /// `host:port` as written in the config, for Host headers and logs.
    pub fn authority(&self, default_port: u16) -> String {
        if self.port == default_port {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn lookup(host: &str, port: u16) -> Vec<SocketAddr> {
    let h = host.trim_matches(|c| c == '[' || c == ']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    if !dns_enabled() {
        return Vec::new();
    }
    (h, port)
        .to_socket_addrs()
        .map(|it| it.collect())
        .unwrap_or_default()
}

/// Endpoints of host names by name and port, for [`Endpoint::resolve`].
fn registry() -> &'static papaya::HashMap<(String, u16), Weak<Endpoint>, ahash::RandomState> {
    static R: OnceLock<papaya::HashMap<(String, u16), Weak<Endpoint>, ahash::RandomState>> =
        OnceLock::new();
    R.get_or_init(Default::default)
}

/// Looks `ep` up again and publishes a changed address list.
fn refresh(ep: &Endpoint) {
    let fresh = lookup(&ep.host, ep.port);
    if !fresh.is_empty() && **ep.addrs.load() != fresh {
        tracing::info!(host = %ep.host, addrs = ?fresh, "addresses changed");
        ep.addrs.store(Arc::new(fresh));
    }
}

/// The background resolver: a list of weak endpoint references, walked
/// every [`REFRESH_EVERY`].
struct Refresher {
    sender: std::sync::mpsc::SyncSender<Weak<Endpoint>>,
}

impl Refresher {
    fn register(&self, ep: &Arc<Endpoint>) {
        // A full queue only delays the first refresh; the endpoint is
        // already resolved.
        let _ = self.sender.try_send(Arc::downgrade(ep));
    }
}

fn refresher() -> &'static Refresher {
    static R: OnceLock<Refresher> = OnceLock::new();
    R.get_or_init(|| {
        let (sender, rx) = std::sync::mpsc::sync_channel::<Weak<Endpoint>>(4096);
        let mut watched: Vec<Weak<Endpoint>> = Vec::new();
        let spawned = crate::supervise::thread("ringway-dns", Component::Dns, move || loop {
            match rx.recv_timeout(REFRESH_EVERY) {
                Ok(ep) => {
                    // One not resolved yet is looked up at once.
                    if let Some(ep) = ep.upgrade().filter(|e| e.addrs.load().is_empty()) {
                        refresh(&ep);
                    }
                    watched.push(ep);
                    crate::supervise::fault(Component::Dns);
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            watched.retain(|w| w.strong_count() > 0);
            for ep in watched.iter().filter_map(Weak::upgrade) {
                refresh(&ep);
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the DNS refresh thread: {e}");
        }
        Refresher { sender }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_resolve_without_dns() {
        let ep = Endpoint::resolve("127.0.0.1", 8080);
        assert_eq!(ep.addr(), Some("127.0.0.1:8080".parse().unwrap()));
        let v6 = Endpoint::resolve("[::1]", 80);
        assert_eq!(v6.addr(), Some("[::1]:80".parse().unwrap()));
        assert_eq!(ep.authority(80), "127.0.0.1:8080");
    }

    #[test]
    fn localhost_resolves() {
        let ep = Endpoint::resolve("localhost", 80);
        assert!(ep.addr().is_some());
    }
}
