//! The OpenAI format: request summaries, option splicing, usage in
//! answers and stream chunks.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{RequestSummary, Usage, WireError};
use crate::providers::body::{splice, TopLevel};

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Parses the top-level member `key` as `T` (`None` when absent or null).
fn field<T: serde::de::DeserializeOwned>(
    body: &[u8],
    top: &TopLevel,
    key: &str,
) -> Result<Option<T>, WireError> {
    match top.get(body, key) {
        None | Some(b"null") => Ok(None),
        Some(raw) => serde_json::from_slice(raw)
            .map(Some)
            .map_err(|e| WireError::new(format!("invalid `{key}` in the request body: {e}"))),
    }
}

/// The fields routing needs, read from their slices only.
pub fn summarize(body: &[u8], top: &TopLevel) -> Result<RequestSummary, WireError> {
    let so: Option<StreamOptions> = field(body, top, "stream_options")?;
    Ok(RequestSummary {
        model: field(body, top, "model")?,
        stream: field(body, top, "stream")?.unwrap_or(false),
        include_usage: so.and_then(|s| s.include_usage).unwrap_or(false),
        max_tokens: match field(body, top, "max_completion_tokens")? {
            Some(n) => Some(n),
            None => field(body, top, "max_tokens")?,
        },
    })
}

/// Writes `options` into the body's top level and, for streams when
/// `force_usage`, `stream_options.include_usage: true` — by splicing.
pub fn splice_options(
    body: &[u8],
    top: &TopLevel,
    options: &Map<String, Value>,
    force_usage: bool,
) -> Result<Vec<u8>, WireError> {
    let mut values: Vec<(&str, Vec<u8>)> = Vec::with_capacity(options.len() + 1);
    for (k, v) in options {
        values.push((
            k.as_str(),
            serde_json::to_vec(v).map_err(|e| WireError::new(e.to_string()))?,
        ));
    }
    let streaming = match options.get("stream") {
        Some(v) => v.as_bool() == Some(true),
        None => top.get(body, "stream").is_some_and(|v| v == b"true"),
    };
    if force_usage && streaming {
        let so = match top.get(body, "stream_options") {
            Some(raw) => {
                let mut v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
                match v.as_object_mut() {
                    Some(o) => {
                        o.insert("include_usage".into(), Value::Bool(true));
                        serde_json::to_vec(&v).map_err(|e| WireError::new(e.to_string()))?
                    }
                    None => br#"{"include_usage":true}"#.to_vec(),
                }
            }
            None => br#"{"include_usage":true}"#.to_vec(),
        };
        values.retain(|(k, _)| *k != "stream_options");
        values.push(("stream_options", so));
    }
    let set: Vec<(&str, &[u8])> = values.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let mut out = Vec::new();
    splice(body, top, &set, &mut out);
    Ok(out)
}

/// `usage` of a chat answer or stream chunk (`None` when absent or null).
pub fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?.as_object()?;
    let p = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let c = u
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: u
            .get("total_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(p + c),
    })
}

/// Whether a chunk carries generated content (text, refusal or a tool call).
pub fn chunk_has_content(v: &Value) -> bool {
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        return false;
    };
    choices.iter().any(|c| {
        let d = &c["delta"];
        d.get("content")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
            || d.get("refusal")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            || d.get("tool_calls")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty())
    })
}
