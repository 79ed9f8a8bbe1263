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
use crate::config::{from_value, ConfigError, FieldPath};
use crate::proxy::ProxyError;
use crate::upstream::oneshot::{request, OneShot};
use crate::upstream::{Endpoint, Scheme, TlsClients, TlsTarget};

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
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
            Some(t) if t >= 1 => Some(Duration::from_secs(t as u64)),
            Some(_) => return Err(at.field("max_ttl").error("must be >= 1")),
        };
        let expire_early = match f.expire_early_secs {
            None => Duration::from_secs(60),
            Some(t) if t >= 0 => Duration::from_secs(t as u64),
            Some(_) => return Err(at.field("expire_early_secs").error("must be >= 0")),
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
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| ProxyError::BadResponse("the GCP token answer is not JSON"))?;
        let token =
            v.get("access_token")
                .and_then(Value::as_str)
                .ok_or(ProxyError::BadResponse(
                    "the GCP token answer has no access_token",
                ))?;
        let mut ttl =
            Duration::from_secs(v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        if let Some(max) = self.max_ttl {
            ttl = ttl.min(max);
        }
        let authorization: Arc<str> = Arc::from(format!("Bearer {token}"));
        self.cache.store(Some(Arc::new(Token {
            authorization: authorization.clone(),
            expires: Instant::now() + ttl.saturating_sub(self.expire_early),
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
