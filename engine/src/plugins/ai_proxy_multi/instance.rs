//! One LLM instance of an `ai-proxy-multi` config: provider, weight and
//! priority, auth to inject, `options` to merge, the resolved endpoint per
//! API (chat, embeddings) and the shared health/cooldown state.

use std::sync::Arc;

use serde_json::Value;

use super::config::{string_map, InstanceFile, Transport};
use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::health::{ActiveCheck, InstanceState};
use crate::providers::gcp::GcpAuth;
use crate::providers::{self, Api, EndpointUrl, Provider, ProviderConf, Wire};
use crate::upstream::{Endpoint, Scheme, TlsTarget};
use crate::wire::ModelOptions;

/// Where requests of one API go.
#[derive(Debug)]
pub struct Target {
    pub url: EndpointUrl,
    pub endpoint: Arc<Endpoint>,
    pub tls: Option<TlsTarget>,
    pub host_header: String,
    /// Path and query with `auth.query` parameters appended.
    pub request_target: String,
}

#[derive(Debug)]
pub struct Instance {
    pub name: Arc<str>,
    /// The name's tag in the stored-state table (`affinity`).
    pub affinity_tag: u64,
    pub provider: &'static Provider,
    pub priority: i64,
    pub weight: u32,
    /// `auth.header` pairs.
    pub auth_headers: Box<[(String, String)]>,
    /// `auth.gcp`: OAuth tokens from a service account.
    pub gcp: Option<Arc<GcpAuth>>,
    /// `options`, merged into every request body (overriding the client).
    pub options: ModelOptions,
    /// `options.model`, if set.
    pub model: Option<Arc<str>>,
    /// Chat and embeddings targets; `Err` says why this instance cannot
    /// serve that API.
    chat: Result<Target, String>,
    embeddings: Result<Target, String>,
    /// The Responses API endpoint, when the instance serves that API
    /// itself; otherwise its Responses requests are converted to chat.
    responses: Option<Target>,
    pub checks: Option<ActiveCheck>,
    pub state: Arc<InstanceState>,
    /// No endpoint for any API: the provider has no default and the
    /// instance no `override.endpoint` (loaded as APISIX loads it; its
    /// requests fail).
    pub no_endpoint: bool,
}

impl Instance {
    pub(super) fn compile(
        value: &Value,
        at: &FieldPath,
        transport: &Transport,
        state: impl FnOnce(&Arc<str>) -> Arc<InstanceState>,
    ) -> Result<Instance, ConfigError> {
        let f: InstanceFile = from_value(value, at)?;
        if f.name.is_empty() || f.name.len() > 100 {
            return Err(at.field("name").error("must be 1 to 100 characters"));
        }
        let provider = providers::lookup(&f.provider).ok_or_else(|| {
            at.field("provider").error(format!(
                "`{}` is not a supported provider (one of {})",
                f.provider,
                providers::registry::names()
            ))
        })?;
        let weight = bounds::int(f.weight, 0, bounds::MAX_WEIGHT, &at.field("weight"))?;
        let auth_at = at.field("auth");
        let auth_headers = match &f.auth.header {
            Some(h) => string_map(h, &auth_at.field("header"), "header")?,
            None => Vec::new(),
        };
        let auth_query = match &f.auth.query {
            Some(q) => string_map(q, &auth_at.field("query"), "query parameter")?,
            None => Vec::new(),
        };
        let gcp = match &f.auth.gcp {
            Some(v) => Some(Arc::new(GcpAuth::compile(
                v,
                &auth_at.field("gcp"),
                transport.ssl_verify,
            )?)),
            None => None,
        };
        let conf = ProviderConf {
            project_id: f.provider_conf.as_ref().and_then(|c| c.project_id.clone()),
            region: f.provider_conf.as_ref().and_then(|c| c.region.clone()),
        };
        if f.provider_conf.is_some() && provider.name != "vertex-ai" {
            return Err(at
                .field("provider_conf")
                .error("only used by provider `vertex-ai`"));
        }
        let endpoint_override = f.override_.as_ref().and_then(|o| o.endpoint.clone());
        let target_for = |api: Api| -> Result<Result<Target, String>, ConfigError> {
            let url = match &endpoint_override {
                Some(e) => EndpointUrl::parse(e)
                    .map_err(|r| at.field("override").field("endpoint").error(r))?,
                None => match provider.default_endpoint(api, &conf) {
                    Ok(u) => {
                        EndpointUrl::parse(&u).map_err(|r| at.field("provider_conf").error(r))?
                    }
                    Err(why) => return Ok(Err(why)),
                },
            };
            Ok(Ok(build_target(url, &auth_query, transport)))
        };
        let chat = target_for(Api::Chat)?;
        // Every provider serves chat, so a chat target is missing only
        // when the instance has no endpoint at all.
        let no_endpoint = chat.is_err();
        if let Err(why) = &chat {
            if provider.endpoint_required {
                return Err(at.error(why.clone()));
            }
            tracing::warn!(instance = %f.name, "the instance has no endpoint ({why}): requests to it fail");
        }
        let embeddings = target_for(Api::Embeddings)?;
        // Served as it is by providers that have the API, unless the
        // instance's endpoint is a chat-completions one (a Responses body
        // there would be refused): then, as for every other provider, the
        // request is converted to chat.
        let responses = match provider.responses {
            true => target_for(Api::Responses)?
                .ok()
                .filter(|t| !t.url.path().ends_with("/chat/completions")),
            false => None,
        };
        let checks = match &f.checks {
            Some(c) => Some(ActiveCheck::compile_checks(c, &at.field("checks"))?),
            None => None,
        };
        let options = f.options.unwrap_or_default();
        let model = match options.get("model") {
            None => None,
            Some(Value::String(m)) => Some(Arc::from(m.as_str())),
            Some(_) => return Err(at.field("options").field("model").error("must be a string")),
        };
        let name: Arc<str> = Arc::from(f.name);
        Ok(Instance {
            state: state(&name),
            affinity_tag: super::affinity::instance_tag(&name),
            name,
            provider,
            priority: f.priority.unwrap_or(0),
            weight,
            auth_headers: auth_headers.into_boxed_slice(),
            gcp,
            options: ModelOptions::new(options),
            model,
            chat,
            embeddings,
            responses,
            checks,
            no_endpoint,
        })
    }

    /// Where a request for `api` goes, or why this instance cannot serve it.
    /// A failed attempt (connect error, timeout, 5xx, mid-stream failure):
    /// feeds passive ejection, and logs and counts an ejection.
    pub fn failed(&self, policy: &crate::health::PassivePolicy) {
        if let Some(d) = self.state.record_failure(policy) {
            crate::observe::metrics::PASSIVE_EJECTIONS.inc();
            tracing::warn!(
                instance = %self.name,
                "instance ejected for {d:?} after {} consecutive failures (passive health)",
                policy.failures
            );
        }
    }

    pub fn target(&self, api: Api) -> Result<&Target, &str> {
        match api {
            Api::Chat => self.chat.as_ref().map_err(String::as_str),
            Api::Embeddings => self.embeddings.as_ref().map_err(String::as_str),
            Api::Responses => match &self.responses {
                Some(t) => Ok(t),
                None => self.chat.as_ref().map_err(String::as_str),
            },
        }
    }

    /// The format this instance speaks for `api`.
    pub fn wire(&self, api: Api) -> Wire {
        match api {
            Api::Responses if self.responses.is_some() => Wire::Responses,
            Api::Chat | Api::Embeddings | Api::Responses => self.provider.wire,
        }
    }
}

fn build_target(
    url: EndpointUrl,
    auth_query: &[(String, String)],
    transport: &Transport,
) -> Target {
    let mut request_target = url.target.clone();
    for (k, v) in auth_query {
        request_target.push(if request_target.contains('?') {
            '&'
        } else {
            '?'
        });
        request_target.push_str(&percent_encode(k));
        request_target.push('=');
        request_target.push_str(&percent_encode(v));
    }
    let endpoint = Endpoint::resolve(&url.host, url.port);
    let tls = match url.scheme {
        Scheme::Https => Some(TlsTarget {
            sni: Arc::from(url.host.as_str()),
            verify: transport.ssl_verify,
        }),
        Scheme::Http => None,
    };
    Target {
        host_header: url.authority(),
        request_target,
        endpoint,
        tls,
        url,
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Result<Instance, ConfigError> {
        let t = Transport {
            timeout: std::time::Duration::from_secs(30),
            keepalive: Default::default(),
            ssl_verify: true,
            max_stream_duration: None,
            max_response_bytes: u64::MAX,
        };
        Instance::compile(
            &v,
            &FieldPath::root().field("instances").index(0),
            &t,
            |_| Arc::default(),
        )
    }

    #[test]
    fn defaults_and_auth_query() {
        let i = compile(json!({"name": "a", "provider": "openai", "weight": 8, "auth": {"header": {"Authorization": "Bearer k"}, "query": {"key": "a b"}}, "options": {"model": "gpt-4"}})).unwrap();
        let t = i.target(Api::Chat).unwrap();
        assert_eq!(t.url.host, "api.openai.com");
        assert_eq!(t.request_target, "/v1/chat/completions?key=a%20b");
        assert!(t.tls.as_ref().unwrap().verify);
        assert_eq!(i.model.as_deref(), Some("gpt-4"));
        assert_eq!(i.priority, 0);
        assert!(i.target(Api::Embeddings).is_ok());
    }

    #[test]
    fn errors_carry_paths() {
        let e = compile(json!({"name": "a", "provider": "openai", "weight": -1, "auth": {}}))
            .unwrap_err();
        assert_eq!(e.path, "instances[0].weight");
        let e = compile(json!({"name": "a", "provider": "bedrockish", "weight": 1, "auth": {}}))
            .unwrap_err();
        assert_eq!(e.path, "instances[0].provider");
        // As in APISIX: an openai-compatible instance without an endpoint
        // loads (and cannot serve); vertex-ai without one is refused.
        let i =
            compile(json!({"name": "a", "provider": "openai-compatible", "weight": 1, "auth": {}}))
                .unwrap();
        assert!(i.no_endpoint);
        let why = i.target(Api::Chat).unwrap_err();
        assert!(why.contains("override.endpoint"), "{why}");
        let e = compile(json!({"name": "a", "provider": "vertex-ai", "weight": 1, "auth": {}}))
            .unwrap_err();
        assert!(e.reason.contains("provider_conf.project_id"), "{e}");
        let e = compile(json!({"name": "a", "provider": "openai", "weight": 1})).unwrap_err();
        assert!(e.reason.contains("missing field `auth`"), "{e}");
        let e = compile(json!({"name": "a", "provider": "openai", "weight": 1, "auth": {"header": {"bad name": "x"}}})).unwrap_err();
        assert_eq!(e.path, "instances[0].auth.header.bad name");
        let e = compile(json!({"name": "a", "provider": "openai", "weight": 1, "auth": {}, "override": {"endpoint": "localhost:80"}})).unwrap_err();
        assert_eq!(e.path, "instances[0].override.endpoint");
        let e = compile(
            json!({"name": "a", "provider": "openai", "weight": 1, "auth": {}, "bogus": 1}),
        )
        .unwrap_err();
        assert_eq!(e.path, "instances[0].bogus");
    }

    #[test]
    fn override_serves_both_apis_and_deepseek_has_no_embeddings() {
        let i = compile(json!({"name": "a", "provider": "openai-compatible", "weight": 1, "auth": {}, "override": {"endpoint": "http://127.0.0.1:18001/v1/chat/completions"}})).unwrap();
        assert_eq!(
            i.target(Api::Embeddings).unwrap().request_target,
            "/v1/chat/completions"
        );
        let d =
            compile(json!({"name": "d", "provider": "deepseek", "weight": 1, "auth": {}})).unwrap();
        assert!(d.target(Api::Embeddings).is_err());
    }
}
