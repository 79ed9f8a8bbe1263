//! `_meta`: the settings APISIX injects into every plugin's config.
//!
//! - `disable: true` leaves the plugin out; on a route it also turns off
//!   the same plugin of the route's service (and on a consumer, the
//!   route's), since the closer scope's config replaces the other's.
//! - `priority` replaces the plugin's place in the run order.
//! - `filter` (APISIX's condition language, [`crate::http::expr`]) runs the
//!   plugin only for requests it holds for. Access-phase plugins and
//!   `ai-rate-limiting` see the request's variables; loggers are filtered
//!   when the request is done, so the response's (`status`,
//!   `upstream_status`, `llm_model`, token counts…) can be used too.
//!   `ai-proxy-multi` with a filter needs an upstream on its route, which
//!   answers the requests the filter does not hold for.
//! - `error_response` replaces the body of the answers the plugin itself
//!   refuses a request with (`key-auth`'s 401, `ai-rate-limiting`'s
//!   `rejected_code`, `ai-proxy-multi`'s own 4xx/5xx); a string is sent as
//!   `text/plain`, an object as JSON.
//!
//! `pre_function` (Lua code) is refused at load, as is any other key.

use serde_json::Value;

use crate::config::{ConfigError, FieldPath};
use crate::exchange::ctx::RequestCtx;
use crate::http::expr::Expr;
use crate::http::RequestHead;

/// A plugin's `_meta`, checked.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub disable: bool,
    pub priority: Option<i32>,
    pub filter: Option<Expr>,
    pub error_response: Option<ErrorResponse>,
}

/// `_meta.error_response`, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub content_type: &'static str,
    pub body: Box<str>,
}

impl Meta {
    /// The `_meta` of the plugin config `plugin` found at `at` (the
    /// plugin's own path).
    pub fn of(plugin: &Value, at: &FieldPath) -> Result<Meta, ConfigError> {
        let Some(meta) = plugin.get("_meta") else {
            return Ok(Meta::default());
        };
        let at = at.field("_meta");
        let obj = meta
            .as_object()
            .ok_or_else(|| at.error("must be an object"))?;
        let mut m = Meta::default();
        for (key, v) in obj {
            let at = at.field(key);
            match key.as_str() {
                "disable" => {
                    m.disable = v
                        .as_bool()
                        .ok_or_else(|| at.error("must be true or false"))?
                }
                "priority" => {
                    let p = v
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| at.error("must be an integer"))?;
                    m.priority = Some(p);
                }
                "filter" => m.filter = Some(Expr::compile(v, &at)?),
                "error_response" => {
                    m.error_response = Some(match v {
                        Value::String(s) => ErrorResponse {
                            content_type: "text/plain; charset=utf-8",
                            body: s.as_str().into(),
                        },
                        Value::Object(_) => ErrorResponse {
                            content_type: "application/json",
                            body: v.to_string().into(),
                        },
                        _ => return Err(at.error("must be a string or an object")),
                    })
                }
                "pre_function" => {
                    return Err(at.error("runs Lua code, which ringway does not embed"))
                }
                _ => return Err(at.error(
                    "is not a `_meta` field (expected disable, priority, filter, error_response)",
                )),
            }
        }
        Ok(m)
    }

    /// Whether the plugin runs for this request (its filter holds, or it
    /// has none), reading the variables as they are now.
    pub fn runs_for(&self, head: &RequestHead, ctx: &RequestCtx) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| crate::observe::vars::holds(f, head, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Result<Meta, String> {
        Meta::of(&v, &FieldPath::root().field("key-auth")).map_err(|e| e.to_string())
    }

    #[test]
    fn fields() {
        let m = meta(json!({"_meta": {"disable": true, "priority": -5,
            "error_response": {"message": "no"}, "filter": [["arg_x", "==", "1"]]}}))
        .unwrap();
        assert!(m.disable);
        assert_eq!(m.priority, Some(-5));
        assert!(m.filter.is_some());
        assert_eq!(
            m.error_response,
            Some(ErrorResponse {
                content_type: "application/json",
                body: r#"{"message":"no"}"#.into()
            })
        );
        let m = meta(json!({"_meta": {"error_response": "go away"}})).unwrap();
        assert_eq!(m.error_response.unwrap().body.as_ref(), "go away");
        let m = meta(json!({"header": "x"})).unwrap();
        assert!(!m.disable && m.priority.is_none() && m.filter.is_none());
    }

    #[test]
    fn bad_meta_is_refused_with_its_path() {
        for (v, want) in [
            (json!({"_meta": 1}), "key-auth._meta: must be an object"),
            (
                json!({"_meta": {"disable": "yes"}}),
                "key-auth._meta.disable: must be true or false",
            ),
            (
                json!({"_meta": {"priority": 1.5}}),
                "key-auth._meta.priority: must be an integer",
            ),
            (
                json!({"_meta": {"error_response": 5}}),
                "key-auth._meta.error_response: must be a string or an object",
            ),
            (
                json!({"_meta": {"filter": [["a", "=", "1"]]}}),
                "key-auth._meta.filter[0][1]: unknown operator",
            ),
            (
                json!({"_meta": {"pre_function": "return"}}),
                "key-auth._meta.pre_function: runs Lua code",
            ),
            (
                json!({"_meta": {"disabled": true}}),
                "key-auth._meta.disabled: is not a `_meta` field",
            ),
        ] {
            let got = meta(v.clone()).unwrap_err();
            assert!(got.contains(want), "{v}: got `{got}`");
        }
    }
}
