//! `auth.gcp`: Google service-account credentials exchanged for OAuth
//! access tokens (the JWT-bearer grant), as APISIX's vertex-ai driver does.
//!
//! A signed JWT (RS256; `iss` the client email, `scope` cloud-platform,
//! `aud` the token URI) is posted to the token URI; the access token is
//! cached for every worker (lock-free reads) until `expires_in` (capped by
//! `max_ttl`) minus `expire_early_secs`. One worker refreshes at a time;
//! the others wait for it. The service account comes from
//! `service_account_json` or the `GCP_SERVICE_ACCOUNT` environment variable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::Value;

use super::url::EndpointUrl;
use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::exchange::ProxyError;
use crate::upstream::oneshot::{request, OneShot};
use crate::upstream::{Endpoint, Scheme, TlsClients, TlsTarget};

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The longest a token is kept (`max_ttl`, the answer's `expires_in`) and
/// the most `expire_early_secs`: a day (Google's tokens last an hour).
const MAX_TTL_SECS: i64 = bounds::MAX_SECONDS as i64;
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcpFile {
    service_account_json: Option<String>,
    max_ttl: Option<i64>,
    expire_early_secs: Option<i64>,
}

#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

struct Token {
    authorization: Arc<str>,
    expires: Instant,
}

pub struct GcpAuth {
    email: String,
    key: RsaKeyPair,
    token_uri: EndpointUrl,
    endpoint: Arc<Endpoint>,
    ssl_verify: bool,
    max_ttl: Option<Duration>,
    expire_early: Duration,
    cache: ArcSwapOption<Token>,
    refreshing: AtomicBool,
}

impl std::fmt::Debug for GcpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpAuth")
            .field("email", &self.email)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl GcpAuth {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        ssl_verify: bool,
    ) -> Result<GcpAuth, ConfigError> {
        let f: GcpFile = from_value(value, at)?;
        let json = match f.service_account_json {
            Some(j) => j,
            None => std::env::var("GCP_SERVICE_ACCOUNT").map_err(|_| {
                at.field("service_account_json")
                    .error("not set, and the GCP_SERVICE_ACCOUNT environment variable is empty")
            })?,
        };
        let sa: ServiceAccount = serde_json::from_str(&json).map_err(|e| {
            at.field("service_account_json")
                .error(format!("not a service-account JSON: {e}"))
        })?;
        let der = rustls_pemfile::private_key(&mut sa.private_key.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| {
                at.field("service_account_json")
                    .error("private_key is not a PEM private key")
            })?;
        let key = RsaKeyPair::from_pkcs8(der.secret_der()).map_err(|e| {
            at.field("service_account_json")
                .error(format!("private_key is not an RSA PKCS#8 key: {e}"))
        })?;
        let token_uri = EndpointUrl::parse(sa.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI))
            .map_err(|e| {
                at.field("service_account_json")
                    .error(format!("token_uri: {e}"))
            })?;
        let max_ttl = match f.max_ttl {
            None => None,
            Some(t) => Some(bounds::whole_seconds(
                t,
                1,
                MAX_TTL_SECS,
                &at.field("max_ttl"),
            )?),
        };
        let expire_early = match f.expire_early_secs {
            None => Duration::from_secs(60),
            Some(t) => bounds::whole_seconds(t, 0, MAX_TTL_SECS, &at.field("expire_early_secs"))?,
        };
        Ok(GcpAuth {
            endpoint: Endpoint::resolve(&token_uri.host, token_uri.port),
            email: sa.client_email,
            key,
            token_uri,
            ssl_verify,
            max_ttl,
            expire_early,
            cache: ArcSwapOption::empty(),
            refreshing: AtomicBool::new(false),
        })
    }

    /// `Bearer <access token>`, from the cache or a fresh exchange.
    pub async fn authorization(
        &self,
        tls: &TlsClients,
        timeout: Duration,
    ) -> Result<Arc<str>, ProxyError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.cache.load().as_ref() {
                if t.expires > Instant::now() {
                    return Ok(t.authorization.clone());
                }
            }
            if !self.refreshing.swap(true, Ordering::AcqRel) {
                let r = self.refresh(tls, timeout).await;
                self.refreshing.store(false, Ordering::Release);
                return r;
            }
            if Instant::now() >= deadline {
                return Err(ProxyError::UpstreamTimeout);
            }
            crate::timer::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn refresh(&self, tls: &TlsClients, timeout: Duration) -> Result<Arc<str>, ProxyError> {
        let jwt = self
            .assertion()
            .map_err(|_| ProxyError::BadResponse("cannot sign the service-account assertion"))?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
        );
        let addr = self.endpoint.addr().ok_or(ProxyError::BadResponse(
            "cannot resolve the GCP token endpoint",
        ))?;
        let target = match self.token_uri.scheme {
            Scheme::Https => Some(TlsTarget {
                sni: Arc::from(self.token_uri.host.as_str()),
                verify: self.ssl_verify,
            }),
            Scheme::Http => None,
        };
        let host = self.token_uri.authority();
        let answer = request(
            &OneShot {
                addr,
                tls: target.as_ref(),
                method: "POST",
                host: &host,
                target: &self.token_uri.target,
                headers: &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Accept", "application/json"),
                ],
                body: form.as_bytes(),
                timeout,
            },
            tls,
        )
        .await?;
        if answer.status != 200 {
            tracing::warn!(status = answer.status, body = %String::from_utf8_lossy(&answer.body), "GCP token exchange failed");
            return Err(ProxyError::BadResponse(
                "the GCP token endpoint refused the service account",
            ));
        }
        let (token, keep) = token_answer(&answer.body, self.max_ttl, self.expire_early)
            .map_err(ProxyError::BadResponse)?;
        let authorization: Arc<str> = Arc::from(format!("Bearer {token}"));
        self.cache.store(Some(Arc::new(Token {
            authorization: authorization.clone(),
            expires: Instant::now() + keep,
        })));
        Ok(authorization)
    }

    /// The signed JWT-bearer assertion.
    fn assertion(&self) -> Result<String, ring::error::Unspecified> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.email, "scope": SCOPE, "aud": self.token_uri.to_string(), "iat": now, "exp": now + 3600,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// The access token in a token endpoint's JSON answer and how long to keep
/// it: `expires_in` (default an hour; at most `max_ttl`, and never past
/// [`MAX_TTL_SECS`] whatever the endpoint says) less `expire_early`.
/// Sans-IO and fuzzed: the answer comes from the network.
#[doc(hidden)]
pub fn token_answer(
    body: &[u8],
    max_ttl: Option<Duration>,
    expire_early: Duration,
) -> Result<(String, Duration), &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the GCP token answer is not JSON")?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or("the GCP token answer has no access_token")?;
    // It goes into an Authorization header as it is.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the GCP token answer's access_token is not a token");
    }
    let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
    let mut ttl = Duration::from_secs(expires_in.min(MAX_TTL_SECS as u64));
    if let Some(max) = max_ttl {
        ttl = ttl.min(max);
    }
    Ok((token.to_owned(), ttl.saturating_sub(expire_early)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_bounded_and_checked() {
        let early = Duration::from_secs(60);
        let (t, keep) = token_answer(
            br#"{"access_token":"ya29.x","expires_in":3599}"#,
            None,
            early,
        )
        .unwrap();
        assert_eq!((t.as_str(), keep), ("ya29.x", Duration::from_secs(3539)));
        // An absurd lifetime is a day at most (an Instant + u64::MAX s
        // panicked in the worker).
        let (_, keep) = token_answer(
            br#"{"access_token":"a","expires_in":18446744073709551615}"#,
            None,
            early,
        )
        .unwrap();
        assert_eq!(keep, Duration::from_secs(86_400 - 60));
        let (_, keep) = token_answer(
            br#"{"access_token":"a","expires_in":600}"#,
            Some(Duration::from_secs(120)),
            early,
        )
        .unwrap();
        assert_eq!(keep, Duration::from_secs(60));
        for bad in [
            &br#"{"access_token":"a\r\nX-Evil: 1"}"#[..],
            br#"{"access_token":""}"#,
            br#"{"access_token":7}"#,
            br#"{}"#,
            b"nope",
        ] {
            assert!(token_answer(bad, None, early).is_err(), "{bad:?}");
        }
    }
}
