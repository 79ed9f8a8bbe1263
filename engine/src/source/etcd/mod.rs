//! etcd as the configuration, as APISIX keeps it: a full read of the
//! prefix at start, then a watch from the read's revision; every batch of
//! changes is applied to a mirror of the keys and the whole configuration
//! compiled and published through [`super::ConfigSource`] (a key that
//! fails validation is left out with a log line naming it, the rest stays
//! live). A compacted revision means a full read again; a lost connection
//! (a member down, a leader change) means retrying with a delay doubling
//! from 100 ms to 5 s, serving the last good configuration meanwhile —
//! `ringway_config_source_up` and `ringway_config_source_stale_since_seconds`
//! say so, and the Status API's `/status/ready` past
//! `gateway.status.stale_after` ([`metrics::config_source_lost`]). Each
//! watch is renewed after `watch_timeout`.
//!
//! Every configuration read is kept beside the config file
//! (`<file>.etcd.json`, 0600, written whole): when etcd cannot be read at
//! start, `on_unreachable: last_good` (the default) serves it and keeps
//! trying; `refuse` (or no such file) refuses to start.

pub mod client;
pub mod keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{EtcdClient, EtcdError, Kv, WatchStep};
use serde::{Deserialize, Serialize};

use super::ConfigSource;
use crate::config::deployment::{EtcdSettings, OnUnreachable};
use crate::config::ConfigError;
use crate::observe::metrics;
use crate::supervise::signal::Shutdown;
use crate::supervise::Component;

/// The etcd side of a configuration: the client settings and the revision
/// served, which the Admin API waits for after a write.
pub struct Etcd {
    pub settings: EtcdSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The etcd revision the published configuration is as of.
    applied: AtomicI64,
    /// Where the last configuration read is kept.
    last_good: Option<PathBuf>,
}

/// The last good configuration on disk.
#[derive(Serialize, Deserialize)]
struct LastGood {
    revision: i64,
    /// Key → value (the resource's JSON text).
    keys: BTreeMap<String, String>,
}

impl Etcd {
    /// The settings, with TLS client settings built (errors name the
    /// `deployment.etcd.tls` field).
    /// `extra_ca`: `gateway.ssl_trusted_certificate`, trusted besides
    /// the public roots (an etcd cluster's own CA, typically).
    pub fn new(
        settings: EtcdSettings,
        config_file: Option<&Path>,
        extra_ca: Option<&Path>,
    ) -> Result<Etcd, ConfigError> {
        let default = crate::config::deployment::EtcdTls {
            cert: None,
            key: None,
            verify: true,
            sni: None,
        };
        let tls = match &settings.tls {
            Some(t) => Some(Arc::new(tls_config(t, extra_ca)?)),
            None if settings.hosts.iter().any(|h| h.tls) => {
                Some(Arc::new(tls_config(&default, extra_ca)?))
            }
            None => None,
        };
        let last_good = config_file.map(|f| {
            let mut name = f.file_name().unwrap_or_default().to_os_string();
            name.push(".etcd.json");
            f.with_file_name(name)
        });
        Ok(Etcd {
            settings,
            tls,
            applied: AtomicI64::new(0),
            last_good,
        })
    }

    /// A client for one thread's use.
    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(self.settings.clone(), self.tls.clone())
    }

    /// The revision served.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Waits (up to `timeout`) until the revision served reaches `rev`.
    pub fn wait_applied(&self, rev: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.applied() < rev {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// What the etcd thread keeps: the keys as of a revision.
struct Mirror {
    revision: i64,
    kvs: BTreeMap<String, Kv>,
}

/// Reads the whole configuration and publishes it, before anything is
/// served (`startup_retry` attempts); when etcd cannot be read, the last
/// good configuration kept on disk (if `on_unreachable` allows). Then
/// starts the thread that watches.
pub fn start(
    etcd: Arc<Etcd>,
    source: Arc<ConfigSource>,
    shutdown: Arc<Shutdown>,
) -> Result<(), ConfigError> {
    let mut client = etcd.client();
    let mut last_error = None;
    let mut mirror = None;
    for attempt in 0..etcd.settings.startup_retry {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        match full_read(&mut client) {
            Ok(m) => {
                mirror = Some(m);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let mirror = match mirror {
        Some(m) => {
            publish(&etcd, &source, &m, &client)?;
            metrics::config_source_up();
            m
        }
        None => {
            let e = last_error.map(|e| e.to_string()).unwrap_or_default();
            let kept = match etcd.settings.on_unreachable {
                OnUnreachable::LastGood => etcd.last_good.as_deref().and_then(load_last_good),
                OnUnreachable::Refuse => None,
            };
            let Some(m) = kept else {
                return Err(ConfigError::new(
                    "deployment.etcd",
                    format!(
                        "cannot read the configuration from etcd after {} attempts ({e}) and no last good configuration is kept (on_unreachable: {:?})",
                        etcd.settings.startup_retry, etcd.settings.on_unreachable
                    ),
                ));
            };
            tracing::error!(
                revision = m.revision,
                "etcd is unreachable ({e}); serving the last good configuration kept on disk and retrying"
            );
            publish(&etcd, &source, &m, &client)?;
            metrics::config_source_lost();
            m
        }
    };
    let up = metrics::CONFIG_SOURCE_UP.get() == 1;
    crate::supervise::thread("ringway-etcd", Component::ConfigSource, {
        let mut state = Some((mirror, up));
        move || {
            crate::supervise::fault(Component::ConfigSource);
            // A restart after a panic starts over with a full read.
            let (mirror, up) = state.take().unwrap_or((
                Mirror {
                    revision: 0,
                    kvs: BTreeMap::new(),
                },
                false,
            ));
            follow(&etcd, &source, &shutdown, mirror, up);
        }
    })
    .map_err(|e| ConfigError::new("deployment.etcd", format!("cannot start its thread: {e}")))?;
    Ok(())
}

/// Watches for changes until shutdown, reconnecting and re-reading as
/// needed.
fn follow(
    etcd: &Etcd,
    source: &ConfigSource,
    shutdown: &Shutdown,
    mut mirror: Mirror,
    mut up: bool,
) {
    let mut client = etcd.client();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        if !up {
            match full_read(&mut client) {
                Ok(m) => {
                    mirror = m;
                    if let Err(e) = publish(etcd, source, &mirror, &client) {
                        tracing::error!("the configuration read from etcd does not compile: {e}");
                    }
                    up = true;
                    backoff = Duration::from_millis(100);
                    metrics::config_source_up();
                    tracing::info!(revision = mirror.revision, "etcd read");
                }
                Err(e) => {
                    tracing::warn!("etcd is unreachable, retrying in {backoff:?}: {e}");
                    sleep_unless_shutdown(backoff, shutdown);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        match watch(etcd, source, shutdown, &mut client, &mut mirror) {
            Ok(()) => {} // renewed after watch_timeout, or shutdown
            Err(EtcdError::Compacted(rev)) => {
                tracing::warn!("etcd compacted revision {rev}: reading everything again");
                up = false;
            }
            Err(e) => {
                tracing::warn!("lost etcd: {e}; serving the last good configuration");
                metrics::config_source_lost();
                up = false;
            }
        }
    }
}

/// One watch from the mirror's revision, until `watch_timeout` or shutdown.
fn watch(
    etcd: &Etcd,
    source: &ConfigSource,
    shutdown: &Shutdown,
    client: &mut EtcdClient,
    mirror: &mut Mirror,
) -> Result<(), EtcdError> {
    let mut w = client.watch(mirror.revision + 1)?;
    let opened = Instant::now();
    while !shutdown.is_triggered() && opened.elapsed() < etcd.settings.watch_timeout {
        let WatchStep::Events(revision, events) = w.wait()? else {
            continue;
        };
        if events.is_empty() {
            continue; // the watch's creation, or progress
        }
        metrics::ETCD_EVENTS.add(events.len() as u64);
        for e in events {
            match e.kv {
                Some(kv) => {
                    mirror.kvs.insert(e.key, kv);
                }
                None => {
                    mirror.kvs.remove(&e.key);
                }
            }
        }
        mirror.revision = revision.max(mirror.revision);
        if let Err(e) = publish(etcd, source, mirror, client) {
            tracing::error!(
                "the configuration from etcd does not compile, still serving the previous one: {e}"
            );
        }
    }
    Ok(())
}

fn full_read(client: &mut EtcdClient) -> Result<Mirror, EtcdError> {
    metrics::ETCD_RELOADS.inc();
    let (revision, kvs) = client.range_prefix()?;
    Ok(Mirror {
        revision,
        kvs: kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
    })
}

/// Publishes the mirror's configuration: keys whose resources fail to
/// compile are left out one by one (each logged with its key) until the
/// rest compiles. Then the revision is served and kept on disk.
fn publish(
    etcd: &Etcd,
    source: &ConfigSource,
    mirror: &Mirror,
    client: &EtcdClient,
) -> Result<(), ConfigError> {
    let mut res = keys::resources(client.prefix(), &mirror.kvs);
    loop {
        match source.replace(res.clone()) {
            Ok(generation) => {
                tracing::debug!(
                    generation,
                    revision = mirror.revision,
                    "etcd configuration published"
                );
                break;
            }
            Err(e) => match keys::culprit(&res, &e.path) {
                Some((kind, id)) => {
                    keys::skip(&res.origin(kind, &id), &e);
                    res.remove(kind, &id);
                    res.origins.remove(&(kind, id));
                }
                None => return Err(e),
            },
        }
    }
    etcd.applied.store(mirror.revision, Ordering::Release);
    metrics::CONFIG_REVISION.set(mirror.revision.max(0) as u64);
    if let Some(path) = &etcd.last_good {
        let kept = LastGood {
            revision: mirror.revision,
            keys: mirror
                .kvs
                .iter()
                .map(|(k, kv)| (k.clone(), String::from_utf8_lossy(&kv.value).into_owned()))
                .collect(),
        };
        let text = serde_json::to_vec(&kept).unwrap_or_default();
        if let Err(e) = super::write_private(path, &text) {
            tracing::warn!(
                "cannot keep the last good configuration in {}: {e}",
                path.display()
            );
        }
    }
    Ok(())
}

fn load_last_good(path: &Path) -> Option<Mirror> {
    let text = std::fs::read(path).ok()?;
    let kept: LastGood = match serde_json::from_slice(&text) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{}: unreadable: {e}", path.display());
            return None;
        }
    };
    Some(Mirror {
        revision: kept.revision,
        kvs: kept
            .keys
            .into_iter()
            .map(|(k, v)| {
                let kv = Kv {
                    key: k.clone(),
                    value: v.into_bytes(),
                    create_revision: 0,
                    mod_revision: 0,
                };
                (k, kv)
            })
            .collect(),
    })
}

fn sleep_unless_shutdown(d: Duration, shutdown: &Shutdown) {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline && !shutdown.is_triggered() {
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
}

/// TLS client settings for etcd: the public roots and `extra_ca`'s
/// certificates, or `verify: false` to accept any certificate (test
/// clusters), and a client certificate for mutual TLS.
fn tls_config(
    t: &crate::config::deployment::EtcdTls,
    extra_ca: Option<&Path>,
) -> Result<rustls::ClientConfig, ConfigError> {
    use crate::upstream::tls::{provider, AcceptAnyCert};
    let at = crate::config::FieldPath::root()
        .field("deployment")
        .field("etcd")
        .field("tls");
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| at.error(format!("TLS setup failed: {e}")))?;
    let builder = if t.verify {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let ca_at = crate::config::FieldPath::root()
                .field("gateway")
                .field("ssl_trusted_certificate");
            let pem = std::fs::read(path)
                .map_err(|e| ca_at.error(format!("cannot read `{}`: {e}", path.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ca_at.error(format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_at.error(format!("bad certificate: {e}")))?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
    };
    let mut cfg = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let read = |p: &str, name: &str| {
                std::fs::read(p)
                    .map_err(|e| at.field(name).error(format!("cannot read `{p}`: {e}")))
            };
            let certs = rustls_pemfile::certs(&mut read(cert, "cert")?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| at.field("cert").error(format!("bad PEM: {e}")))?;
            let key = rustls_pemfile::private_key(&mut read(key, "key")?.as_slice())
                .map_err(|e| at.field("key").error(format!("bad PEM: {e}")))?
                .ok_or_else(|| at.field("key").error("no private key found"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| at.error(format!("client certificate refused: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
