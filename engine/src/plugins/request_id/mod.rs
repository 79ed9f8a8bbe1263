//! `request-id`: gives every request an id, as APISIX's plugin does. A
//! client's own (the `header_name` header, not empty) is kept; otherwise
//! one is made ([`algorithm`]: `uuid` v4 by default, `nanoid`, `range_id`
//! from `range_id.char_set`, or `ksuid`) with the worker's own generator
//! (no lock, no system call). The id goes upstream (a made one is added
//! to a plain upstream's request; a provider always gets it), back to the
//! client in the same header (`include_in_response`, on every answer,
//! ringway's own errors included, unless a plain upstream's answer has
//! the header already), into the access log (`request_id`) and into
//! loggers' entries (`request.headers`, and `$http_x_request_id` in a
//! `log_format`, as APISIX sets the request header).
//!
//! It runs in the rewrite phase at APISIX's priority (12015: before
//! authentication, so a 401 carries the id too), on a route, a service
//! or a global rule; a second config of it for the same request (a
//! global rule's and a route's) finds the id made and keeps it.

pub mod algorithm;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{AccessCx, Flow};
use crate::config::{from_value, ConfigError, FieldPath};
use crate::exchange::trace::RequestId as Id;
use algorithm::Algorithm;

pub const NAME: &str = "request-id";
pub const PRIORITY: i32 = 12015;

/// The registry's entry (not on a consumer, whose plugins join the
/// request after the rewrite phase has run).
pub fn compile(
    value: &Value,
    at: &FieldPath,
    scope: super::Scope,
    _meta: &super::meta::Meta,
    _cx: &mut super::CompileCx<'_, '_>,
) -> Result<Option<RequestIdPlugin>, ConfigError> {
    if scope == super::Scope::Consumer {
        return Err(at.error("request-id can not be configured on a consumer"));
    }
    RequestIdPlugin::compile(value, at).map(Some)
}

/// A compiled `request-id` config.
#[derive(Debug, Clone)]
pub struct RequestIdPlugin {
    pub header: Arc<str>,
    pub include_in_response: bool,
    pub algorithm: Algorithm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_header")]
    header_name: String,
    #[serde(default = "yes")]
    include_in_response: bool,
    #[serde(default = "default_algorithm")]
    algorithm: String,
    range_id: Option<Value>,
    #[serde(default, rename = "_meta")]
    _meta: Option<Value>,
}

fn default_header() -> String {
    "X-Request-Id".into()
}
fn yes() -> bool {
    true
}
fn default_algorithm() -> String {
    "uuid".into()
}

impl RequestIdPlugin {
    pub fn compile(value: &Value, at: &FieldPath) -> Result<RequestIdPlugin, ConfigError> {
        let f: File = from_value(value, at)?;
        if f.header_name.is_empty()
            || !f
                .header_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(at.field("header_name").error("must be a header name"));
        }
        let algorithm = Algorithm::compile(&f.algorithm, f.range_id.as_ref(), at)?;
        Ok(RequestIdPlugin {
            header: Arc::from(f.header_name),
            include_in_response: f.include_in_response,
            algorithm,
        })
    }
}

/// APISIX sets the id in the rewrite phase; its `header_filter` is the
/// head writers' ([`crate::exchange::trace`]).
impl super::phase::Phases for RequestIdPlugin {
    type Request<'a> = ();

    fn rewrite(&self, cx: &mut AccessCx<'_, '_, '_>) -> Flow {
        if let Some(id) = &mut cx.ctx.request_id {
            // Another config of the plugin ran first (a global rule's).
            id.in_response |= self.include_in_response;
            return Flow::Continue;
        }
        let head = cx.head;
        let (value, generated) = match head.header(&self.header).filter(|v| !v.is_empty()) {
            Some(v) => (head.buf.slice_ref(v), false),
            None => (self.algorithm.make(), true),
        };
        cx.ctx.request_id = Some(Id {
            header: self.header.clone(),
            value,
            generated,
            in_response: self.include_in_response,
        });
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_bad_configs() {
        let p = RequestIdPlugin::compile(&json!({}), &FieldPath::root()).unwrap();
        assert_eq!(&*p.header, "X-Request-Id");
        assert!(p.include_in_response);
        assert!(matches!(p.algorithm, Algorithm::Uuid));
        for (bad, path) in [
            (json!({"header_name": ""}), "header_name"),
            (json!({"header_name": "X Id"}), "header_name"),
            (json!({"algorithm": "snowflake"}), "algorithm"),
            (json!({"headr_name": "x"}), "headr_name"),
            (
                json!({"algorithm": "range_id", "range_id": {"length": 5}}),
                "range_id.length",
            ),
        ] {
            let e = RequestIdPlugin::compile(&bad, &FieldPath::root().field("request-id"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(path), "{bad}: {e}");
        }
    }
}
