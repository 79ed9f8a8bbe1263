//! Loggers' `log_format` (APISIX's `log-util.get_custom_format_log`): an
//! entry of chosen fields instead of the full log. Each value is a literal
//! string, or `$name` for a variable: nginx's request variables as APISIX
//! exposes them (`remote_addr`, `host`, `uri`, `request_uri`, `arg_x`,
//! `http_x`, `cookie_x`, …; strings, as nginx gives them), the response's
//! (`status`, `bytes_sent`, `request_time`, `upstream_addr`,
//! `upstream_status`, `upstream_response_time`), time (`msec`,
//! `time_iso8601`, `time_local`), `route_id`, and the LLM variables
//! (`request_type`, `request_llm_model`, `llm_model`; the token counts and
//! `llm_time_to_first_token` in ms as numbers). A variable that is not set
//! leaves its field out, as in APISIX. `route_id` and the route's
//! `logging` fields are added, as to the full log.

use std::io::Write;

use serde_json::Value;

use super::entry::ms;
use super::redact::Redaction;
use crate::config::{ConfigError, FieldPath};
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::http::vars::VarSource;
use crate::http::RequestHead;

/// A parsed `log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    fields: Vec<(String, Field)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Var(String),
    Literal(String),
}

impl LogFormat {
    /// `value` must be an object of strings; `at` names `log_format`.
    pub fn parse(value: &Value, at: &FieldPath) -> Result<LogFormat, ConfigError> {
        let obj = value
            .as_object()
            .ok_or_else(|| at.error("must be an object of field names and values"))?;
        let mut fields = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            let s = v.as_str().ok_or_else(|| {
                at.field(k)
                    .error("must be a string (a literal, or `$variable`)")
            })?;
            fields.push((
                k.clone(),
                match s.strip_prefix('$') {
                    Some(name) => Field::Var(name.to_owned()),
                    None => Field::Literal(s.to_owned()),
                },
            ));
        }
        Ok(LogFormat { fields })
    }

    /// The entry for one finished request, as one line of JSON, with
    /// credentials in variables redacted as `r` says.
    pub fn entry(&self, head: &RequestHead, ctx: &RequestCtx, r: &Redaction) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        let vars = super::vars::source(head, ctx);
        for (name, field) in &self.fields {
            if name == "route_id" && ctx.route_id.is_some() {
                continue; // written below: APISIX sets the matched route's
            }
            let mark = out.len();
            if out.len() > 1 {
                out.push(b',');
            }
            json_str(&mut out, name.as_bytes());
            out.push(b':');
            let set = match field {
                Field::Literal(s) => {
                    json_str(&mut out, s.as_bytes());
                    true
                }
                Field::Var(v) => write_var(&mut out, v, &vars, ctx, r),
            };
            if !set {
                out.truncate(mark);
            }
        }
        if let Some(r) = &ctx.route_id {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"route_id\":");
            json_str(&mut out, r.as_bytes());
        }
        if out.len() == 1 {
            // `write_llm_logging` writes `,"name":…` members.
            out.extend_from_slice(b"\"request_type\":");
            json_str(&mut out, ctx.request_type.as_str().as_bytes());
        }
        super::entry::write_llm_logging(&mut out, ctx);
        out.push(b'}');
        out
    }
}

/// A JSON string, escaped as the access log escapes its strings.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    super::access_log::escape(out, s);
    out.push(b'"');
}

/// Writes variable `name`'s value; `false` when it is not set. Token
/// counts and the TTFT are JSON numbers, everything else a string.
fn write_var(
    out: &mut Vec<u8>,
    name: &str,
    vars: &VarSource<'_>,
    ctx: &RequestCtx,
    r: &Redaction,
) -> bool {
    let l = &ctx.llm;
    if let "llm_prompt_tokens" | "llm_completion_tokens" | "llm_time_to_first_token" = name {
        if ctx.request_type == RequestType::TraditionalHttp {
            return false;
        }
        let _ = match name {
            "llm_prompt_tokens" => write!(out, "{}", l.prompt_tokens),
            "llm_completion_tokens" => write!(out, "{}", l.completion_tokens),
            _ => match l.ttft {
                Some(t) => write!(out, "{}", ms(t)),
                None => return false,
            },
        };
        return true;
    }
    match super::vars::value(name, vars, ctx) {
        Some(t) => {
            json_str(out, &r.variable(name, t));
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;
    use serde_json::json;

    #[test]
    fn fields_variables_and_unset_ones() {
        let at = FieldPath::root().field("kafka-logger").field("log_format");
        let f = LogFormat::parse(
            &json!({"host": "$host", "client_ip": "$remote_addr", "tag": "ringway", "agent": "$http_user_agent",
                    "q": "$arg_q", "missing": "$http_x_nope", "status": "$status", "route_id": "$host",
                    "tokens": "$llm_prompt_tokens", "model": "$llm_model", "ttft": "$llm_time_to_first_token"}),
            &at,
        )
        .unwrap();
        let head = RequestHead::parse(
            bytes::Bytes::from_static(
                b"POST /v1/chat?q=1 HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: sdk/1\r\n\r\n",
            ),
            &HeadLimits::default(),
            Vec::new(),
        )
        .unwrap();
        let mut ctx = RequestCtx::new("10.1.2.3:5000".parse().unwrap(), std::time::Instant::now());
        ctx.status = 200;
        ctx.route_id = Some("r1".into());
        ctx.request_type = RequestType::AiChat;
        ctx.llm.prompt_tokens = 7;
        ctx.llm.model = Some("gpt-4".into());
        let v: Value = serde_json::from_slice(&f.entry(&head, &ctx, &Redaction::off())).unwrap();
        assert_eq!(
            v,
            json!({"host": "gw.test", "client_ip": "10.1.2.3", "tag": "ringway", "agent": "sdk/1", "q": "1",
                   "status": "200", "tokens": 7, "model": "gpt-4", "route_id": "r1"})
        );
        // A plain request: no LLM variables.
        ctx.request_type = RequestType::TraditionalHttp;
        let v: Value = serde_json::from_slice(&f.entry(&head, &ctx, &Redaction::off())).unwrap();
        assert!(v.get("tokens").is_none() && v.get("model").is_none(), "{v}");

        let e = LogFormat::parse(&json!({"a": 1}), &at).unwrap_err();
        assert!(e.to_string().contains("log_format.a"), "{e}");
        assert!(LogFormat::parse(&json!(["$host"]), &at).is_err());
    }
}
