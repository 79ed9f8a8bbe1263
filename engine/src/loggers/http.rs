//! Batches of log entries POSTed to an HTTP(S) endpoint (`http-logger`):
//! a JSON array, or one entry per line (`concat_method: new_line`), with
//! the configured `Authorization` header. Each batch is one request
//! ([`crate::upstream::oneshot`], the control-traffic client also used for
//! OAuth and health checks) on a connection kept open between batches
//! while the endpoint allows, run on the logger thread's own small
//! runtime; any status other than 2xx is a failure.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use crate::observe::redact::configured_url;
use crate::providers::url::EndpointUrl;
use crate::upstream::connect::TlsTarget;
use crate::upstream::endpoint::Endpoint;
use crate::upstream::oneshot::{request_kept, KeptConn, OneShot};
use crate::upstream::tls::TlsClients;
use crate::upstream::Scheme;

/// How entries are joined into a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concat {
    /// `[entry,entry]`, `Content-Type: application/json`.
    Json,
    /// One entry per line.
    NewLine,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpTargetConfig {
    pub url: String,
    pub auth_header: Option<String>,
    pub timeout: Duration,
    pub concat: Concat,
    pub ssl_verify: bool,
}

pub struct HttpPoster {
    cfg: HttpTargetConfig,
    url: EndpointUrl,
    endpoint: Arc<Endpoint>,
    tls: TlsClients,
}

// The logger's thread (one per sink) runs its posts on its own runtime,
// and keeps the connection of the last batch for the next one: both
// belong to that thread, so they live here rather than in the poster,
// which is built elsewhere and moved in.
thread_local! {
    static RUNTIME: RefCell<Option<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>>> =
        const { RefCell::new(None) };
    static KEPT: RefCell<Option<KeptConn>> = const { RefCell::new(None) };
}

impl HttpPoster {
    /// `url` is `cfg.url`, parsed by the plugin's compile. Resolves the
    /// host (kept fresh by [`Endpoint`]); called only when a sink starts.
    pub fn new(cfg: HttpTargetConfig, url: EndpointUrl, tls: TlsClients) -> HttpPoster {
        let endpoint = Endpoint::resolve(&url.host, url.port);
        HttpPoster {
            cfg,
            url,
            endpoint,
            tls,
        }
    }

    /// POSTs all of `entries` as one body; on success they are removed.
    pub fn send(&mut self, entries: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let body = self.body(entries);
        let content_type = match self.cfg.concat {
            Concat::Json => "application/json",
            Concat::NewLine => "text/plain",
        };
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(a) = &self.cfg.auth_header {
            headers.push(("Authorization", a.as_str()));
        }
        let status = self.post(&body, &headers)?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "{} answered {status}",
                configured_url(&self.cfg.url)
            ));
        }
        entries.clear();
        Ok(())
    }

    /// POSTs `body` with `headers` on this thread's runtime (the sink
    /// thread's), on the connection kept from the last post if it is still
    /// open; the answer's status. Errors name the endpoint, never a header
    /// value (those may be credentials).
    pub fn post(&self, body: &[u8], headers: &[(&str, &str)]) -> Result<u16, String> {
        let mut kept = KEPT.with(|k| k.borrow_mut().take());
        let status = RUNTIME.with(|rt| {
            let mut rt = rt.borrow_mut();
            if rt.is_none() {
                *rt = Some(
                    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map_err(|e| format!("cannot start a runtime: {e}"))?,
                );
            }
            let rt = rt.as_mut().expect("built");
            rt.block_on(self.post_kept(body, headers, &mut kept))
        });
        KEPT.with(|k| *k.borrow_mut() = kept);
        status
    }

    fn body(&self, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        match self.cfg.concat {
            Concat::Json => {
                body.push(b'[');
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(e);
                }
                body.push(b']');
            }
            Concat::NewLine => {
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        body.push(b'\n');
                    }
                    body.extend_from_slice(e);
                }
            }
        }
        body
    }

    async fn post_kept(
        &self,
        body: &[u8],
        headers: &[(&str, &str)],
        kept: &mut Option<KeptConn>,
    ) -> Result<u16, String> {
        let addr = self
            .endpoint
            .addr()
            .ok_or_else(|| format!("cannot resolve {}", self.url.host))?;
        let tls = match self.url.scheme {
            Scheme::Https => Some(TlsTarget {
                sni: Arc::from(self.url.host.as_str()),
                verify: self.cfg.ssl_verify,
            }),
            Scheme::Http => None,
        };
        let host = self.url.authority();
        let answer = request_kept(
            &OneShot {
                addr,
                tls: tls.as_ref(),
                method: "POST",
                host: &host,
                target: &self.url.target,
                headers,
                body,
                timeout: self.cfg.timeout,
            },
            &self.tls,
            kept,
        )
        .await
        .map_err(|e| format!("{}: {e}", configured_url(&self.cfg.url)))?;
        Ok(answer.status)
    }
}
