//! `key-auth`: identifies the consumer from an API key in a header or query
//! parameter, as APISIX does (`apikey` by default), and answers 401 with
//! APISIX's bodies and `WWW-Authenticate: Key realm="…"` when the key is
//! missing or unknown — or, with `anonymous_consumer`, lets the request
//! through as that consumer (its own plugins, such as a smaller budget,
//! apply). A plain upstream gets the consumer's name in
//! `X-Consumer-Username`.
//!
//! Keys are found through a hash map keyed by a per-process random hash (so
//! lookup time does not depend on how much of a key matches) and then
//! compared in constant time. The consumer's name goes into the request
//! context for logs, limits and `chash` `hash_on: consumer`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{AccessCx, Flow};
use crate::config::{from_value, ConfigError, FieldPath};
use crate::http::vars::percent_decode;
use crate::observe::throttle::Throttle;

pub const NAME: &str = "key-auth";
pub const PRIORITY: i32 = 2500;

/// The registry's entry: an auth check on a route, service or global
/// rule; on a consumer a credential, indexed by [`super::consumers`]
/// (checked here, adding nothing to the consumer's chain).
pub fn compile(
    value: &Value,
    at: &FieldPath,
    scope: super::Scope,
    _meta: &super::meta::Meta,
    _cx: &mut super::CompileCx<'_, '_>,
) -> Result<Option<KeyAuth>, ConfigError> {
    match scope {
        super::Scope::Consumer => Credential::compile(value, at).map(|_| None),
        _ => KeyAuth::compile(value, at).map(Some),
    }
}

/// APISIX runs auth in the rewrite phase: before the body is read.
impl super::phase::Phases for KeyAuth {
    type Request<'a> = ();

    fn rewrite(&self, cx: &mut AccessCx<'_, '_, '_>) -> Flow {
        self.authenticate(cx)
    }
}

/// The route-side config.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub header: Arc<str>,
    pub query: Arc<str>,
    pub hide_credentials: bool,
    /// The consumer a request without a valid key is taken for.
    pub anonymous_consumer: Option<Arc<str>>,
    /// `WWW-Authenticate: Key realm="…"` for the 401s, as a header line.
    challenge: Arc<str>,
    /// Paces the warning that `anonymous_consumer` names no consumer
    /// (it would come with every keyless request).
    missing_anonymous: Arc<Throttle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyAuthFile {
    #[serde(default = "default_name")]
    header: String,
    #[serde(default = "default_name")]
    query: String,
    #[serde(default)]
    hide_credentials: bool,
    anonymous_consumer: Option<String>,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default, rename = "_meta")]
    _meta: Option<Value>,
}

fn default_name() -> String {
    "apikey".to_owned()
}

fn default_realm() -> String {
    "key".to_owned()
}

impl KeyAuth {
    pub fn compile(value: &Value, at: &FieldPath) -> Result<KeyAuth, ConfigError> {
        let f: KeyAuthFile = from_value(value, at)?;
        if f.header.is_empty()
            || !f
                .header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(at.field("header").error("must be a header name"));
        }
        if f.query.is_empty() {
            return Err(at.field("query").error("must not be empty"));
        }
        if f.realm
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b.is_ascii_control())
        {
            return Err(at
                .field("realm")
                .error("must not contain quotes, backslashes or control characters"));
        }
        if f.anonymous_consumer.as_deref() == Some("") {
            return Err(at.field("anonymous_consumer").error("must not be empty"));
        }
        Ok(KeyAuth {
            header: Arc::from(f.header),
            query: Arc::from(f.query),
            hide_credentials: f.hide_credentials,
            anonymous_consumer: f.anonymous_consumer.map(Arc::from),
            missing_anonymous: Arc::new(Throttle::new()),
            challenge: Arc::from(format!("WWW-Authenticate: Key realm=\"{}\"\r\n", f.realm)),
        })
    }

    /// Finds the consumer the request's key belongs to, or refuses it.
    pub fn authenticate(&self, cx: &mut AccessCx<'_, '_, '_>) -> Flow {
        let from_header = cx.head.header(&self.header);
        let key = match from_header {
            Some(k) => Some(k),
            None => cx
                .head
                .query()
                .and_then(|q| query_param(q, self.query.as_bytes())),
        };
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return self.refuse(cx, "Missing API key in request");
        };
        let key = percent_decode(key);
        match cx.consumers.by_key(&key) {
            Some((consumer, credential)) => {
                cx.ctx.consumer = Some(consumer.username.clone());
                cx.consumer = Some(consumer);
                cx.ctx.credential = credential.cloned();
                if self.hide_credentials {
                    if from_header.is_some() {
                        cx.ctx.hide_header = Some(self.header.clone());
                    } else {
                        cx.ctx.hide_query = Some(self.query.clone());
                    }
                }
                Flow::Continue
            }
            None => self.refuse(cx, "Invalid API key in request"),
        }
    }

    /// No valid key: the anonymous consumer if there is one, else 401.
    fn refuse(&self, cx: &mut AccessCx<'_, '_, '_>, message: &str) -> Flow {
        let message = match &self.anonymous_consumer {
            None => message,
            Some(name) => match cx.consumers.by_name(name) {
                Some(consumer) => {
                    cx.ctx.consumer = Some(consumer.username.clone());
                    cx.consumer = Some(consumer);
                    return Flow::Continue;
                }
                // As APISIX: configured, but no such consumer (now).
                None => {
                    if self.missing_anonymous.ready() {
                        tracing::warn!("key-auth: anonymous consumer `{name}` does not exist");
                    }
                    "Invalid user authorization"
                }
            },
        };
        Flow::Respond {
            status: 401,
            content_type: "application/json",
            body: serde_json::json!({ "message": message }).to_string(),
            headers: Some(self.challenge.clone()),
        }
    }
}

/// A consumer's credential: `{key}`.
#[derive(Debug, Clone)]
pub struct Credential {
    pub key: Box<[u8]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    key: String,
    #[serde(default, rename = "_meta")]
    _meta: Option<Value>,
}

impl Credential {
    pub fn compile(value: &Value, at: &FieldPath) -> Result<Credential, ConfigError> {
        let f: CredentialFile = from_value(value, at)?;
        if f.key.is_empty() {
            return Err(at.field("key").error("must not be empty"));
        }
        Ok(Credential {
            key: f.key.into_bytes().into_boxed_slice(),
        })
    }
}

/// The value of query parameter `name` (raw, still percent-encoded).
pub fn query_param<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (k == name).then_some(v)
    })
}

/// Equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_and_decoding() {
        assert_eq!(
            query_param(b"a=1&apikey=k%2By&b", b"apikey"),
            Some(&b"k%2By"[..])
        );
        assert_eq!(query_param(b"apikey", b"apikey"), Some(&b""[..]));
        assert_eq!(query_param(b"x=apikey", b"apikey"), None);
        assert_eq!(&*percent_decode(b"k%2By"), b"k+y");
        assert_eq!(&*percent_decode(b"a+b"), b"a b");
        assert_eq!(&*percent_decode(b"bad%2"), b"bad%2");
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"john-key", b"john-key"));
        assert!(!constant_time_eq(b"john-key", b"john-kex"));
        assert!(!constant_time_eq(b"john", b"john-key"));
    }

    #[test]
    fn config_defaults_and_errors() {
        let k = KeyAuth::compile(&serde_json::json!({}), &FieldPath::root()).unwrap();
        assert_eq!(&*k.header, "apikey");
        assert_eq!(&*k.query, "apikey");
        assert!(!k.hide_credentials);
        let e = KeyAuth::compile(
            &serde_json::json!({"hedaer": "x"}),
            &FieldPath::root().field("key-auth"),
        )
        .unwrap_err();
        assert_eq!(e.path, "key-auth.hedaer");
        let e = Credential::compile(&serde_json::json!({}), &FieldPath::root()).unwrap_err();
        assert!(e.reason.contains("missing field `key`"));
    }
}
