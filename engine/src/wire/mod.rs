//! Wire formats spoken by LLM APIs — OpenAI chat/embeddings, OpenAI's
//! Responses API and Anthropic Messages — and everything the relay needs
//! from them, sans IO (no sockets, no clocks, no configuration):
//! [`summarize`] reads what routing needs from a client body,
//! [`build_request`] produces an instance's body (converting formats and
//! merging `options`), [`convert_response`] / [`convert_error`] map answers
//! back to the client's format with usage extracted, and
//! [`stream::StreamTransform`] does the same for SSE streams, event by
//! event.
//!
//! Same-format requests are edited by splicing bytes ([`body`], on the
//! validating scanner [`json_scan`]);
//! only cross-format conversions go through `serde_json::Value`.
//!
//! `options` follow APISIX: they are written into the top level of the
//! upstream body and override the client's values for the same keys (that
//! is how per-instance `model` and `max_tokens` take effect).

pub mod anthropic;
pub mod body;
pub mod budget;
pub mod json_scan;
pub mod map;
pub mod openai;
pub mod responses;
pub mod responses_chat;
pub mod stream;
pub mod text;

use serde_json::{Map, Value};

pub use stream::{StreamObservations, StreamTransform};

use body::TopLevel;

/// A message format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wire {
    OpenAi,
    Anthropic,
    /// OpenAI's Responses API (`input` / `output[]`, typed SSE events).
    Responses,
}

/// Which API a request is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Api {
    Chat,
    Embeddings,
    /// OpenAI's Responses API (`/v1/responses`).
    Responses,
}

impl Api {
    /// How error messages name the API.
    pub fn label(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Embeddings => "embeddings",
            Api::Responses => "Responses API",
        }
    }
}

/// Token usage, in OpenAI's terms: `prompt_tokens` counts every prompt
/// token, cached ones included. Provider numbers are untrusted: sums
/// saturate.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// The part of `prompt_tokens` read from a prompt cache (OpenAI's
    /// `prompt_tokens_details.cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`).
    pub cached_tokens: u64,
}

impl Usage {
    pub fn new(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            cached_tokens: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct WireError {
    msg: String,
    /// The body is too large or too complex to convert ([`budget`]):
    /// `413` for a request, not `400`.
    pub too_large: bool,
}

impl WireError {
    pub fn new(msg: impl Into<String>) -> WireError {
        WireError {
            msg: msg.into(),
            too_large: false,
        }
    }

    pub fn too_large(msg: impl Into<String>) -> WireError {
        WireError {
            msg: msg.into(),
            too_large: true,
        }
    }
}

/// What routing needs from a client body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSummary {
    pub model: Option<String>,
    pub stream: bool,
    /// `stream_options.include_usage` (OpenAI).
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
}

/// A client body: its bytes, the spans of its top-level members (found by
/// one validating pass) and what routing needs from it.
#[derive(Debug, Clone)]
pub struct ClientBody {
    pub bytes: bytes::Bytes,
    top: TopLevel,
    pub summary: RequestSummary,
}

impl ClientBody {
    /// Validates the body as a JSON object and reads `model`, `stream`
    /// and friends from their top-level slices only.
    pub fn parse(wire: Wire, bytes: bytes::Bytes) -> Result<ClientBody, WireError> {
        let top = TopLevel::scan(&bytes)
            .map_err(|e| WireError::new(format!("invalid JSON in the request body: {e}")))?;
        let summary = openai::summarize(wire, &bytes, &top)?;
        Ok(ClientBody {
            bytes,
            top,
            summary,
        })
    }

    /// A top-level string member (`None` if absent or not a string).
    pub fn top_str(&self, name: &str) -> Option<String> {
        let raw = self.top.get(&self.bytes, name)?;
        serde_json::from_slice::<String>(raw).ok()
    }

    /// A top-level member naming an object: its id, given as a string or
    /// as `{"id": …}` (`conversation`).
    pub fn top_id(&self, name: &str) -> Option<String> {
        id_ref(self.top.get(&self.bytes, name)?)
    }
}

/// Reads `model`, `stream` and friends (see [`ClientBody::parse`]).
pub fn summarize(wire: Wire, body: &[u8]) -> Result<RequestSummary, WireError> {
    ClientBody::parse(wire, bytes::Bytes::copy_from_slice(body)).map(|b| b.summary)
}

/// An instance's `options`, each value serialised once at load time so a
/// request only splices bytes.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    pub map: Map<String, Value>,
    raw: Vec<(String, Vec<u8>)>,
    /// `raw` for the Responses API, whose token cap is `max_output_tokens`:
    /// an instance's `max_tokens` (or `max_completion_tokens`) caps its
    /// Responses requests too instead of being refused by the provider.
    raw_responses: Vec<(String, Vec<u8>)>,
}

impl ModelOptions {
    pub fn new(map: Map<String, Value>) -> ModelOptions {
        let raw = map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec()),
                )
            })
            .collect::<Vec<_>>();
        let mut raw_responses: Vec<(String, Vec<u8>)> = Vec::with_capacity(raw.len());
        for (k, v) in &raw {
            let key = match k.as_str() {
                "max_tokens" | "max_completion_tokens" => "max_output_tokens",
                k => k,
            };
            // The last writer wins, as in the body itself.
            raw_responses.retain(|(kept, _)| kept != key);
            raw_responses.push((key.to_owned(), v.clone()));
        }
        ModelOptions {
            map,
            raw,
            raw_responses,
        }
    }

    /// The options as spliced into a body of `wire`.
    fn raw_for(&self, wire: Wire) -> &[(String, Vec<u8>)] {
        match wire {
            Wire::Responses => &self.raw_responses,
            Wire::OpenAi | Wire::Anthropic => &self.raw,
        }
    }
}

/// The body for an instance speaking `to`, from a client body in `from`.
pub fn build_request(
    from: Wire,
    to: Wire,
    api: Api,
    body: &ClientBody,
    options: &ModelOptions,
    force_usage: bool,
) -> Result<Vec<u8>, WireError> {
    if api == Api::Embeddings && (from != Wire::OpenAi || to != Wire::OpenAi) {
        return Err(WireError::new(
            "embeddings are only available in the OpenAI format",
        ));
    }
    if to == Wire::Responses && from != Wire::Responses {
        return Err(WireError::new(
            "only Responses API requests go to a Responses API endpoint",
        ));
    }
    if from == to {
        return openai::splice_options(
            &body.bytes,
            &body.top,
            options.raw_for(to),
            options.map.get("stream"),
            force_usage && to == Wire::OpenAi,
        );
    }
    budget::check(&body.bytes, "the request body")?;
    let client: Value = serde_json::from_slice(&body.bytes)
        .map_err(|e| WireError::new(format!("invalid JSON: {e}")))?;
    let mut converted = match (from, to) {
        (Wire::OpenAi, Wire::Anthropic) => map::openai_to_anthropic_request(&client)?,
        (Wire::Anthropic, Wire::OpenAi) => map::anthropic_to_openai_request(&client)?,
        (Wire::Responses, Wire::OpenAi) => responses_chat::request_to_chat(&client)?,
        (Wire::Responses, Wire::Anthropic) => {
            map::openai_to_anthropic_request(&responses_chat::request_to_chat(&client)?)?
        }
        _ => client,
    };
    if let Value::Object(o) = &mut converted {
        for (k, v) in &options.map {
            o.insert(k.clone(), v.clone());
        }
        if force_usage
            && to == Wire::OpenAi
            && o.get("stream").and_then(Value::as_bool) == Some(true)
        {
            o.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
    }
    // Sized for the client's body: a large one is written without the
    // buffer doubling (and copying) as it grows.
    let mut out = Vec::with_capacity(body.bytes.len() + 256);
    serde_json::to_writer(&mut out, &converted).map_err(|e| WireError::new(e.to_string()))?;
    Ok(out)
}

/// A non-streaming answer, mapped to the client's format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvertedResponse {
    /// `None`: forward the upstream body unchanged.
    pub body: Option<Vec<u8>>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// The provider's `usage` object as it answered, when asked for (an
    /// `ai-rate-limiting` `cost_expr` prices the request from it).
    pub raw_usage: Option<Value>,
    /// What a passed-through Responses API answer says its instance now
    /// stores (boxed: other answers carry one null pointer).
    pub stored: Option<Box<StoredIds>>,
}

/// The state a Responses API answer says its instance stores: the
/// response, and the conversation it joined (Conversations API).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredIds {
    pub response: Option<String>,
    pub conversation: Option<String>,
}

impl StoredIds {
    /// Both ids, those present.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        [&self.response, &self.conversation]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// An object named by id: a JSON string, or an object's `id`.
pub fn id_ref(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum IdRef {
        Id(String),
        Object { id: String },
    }
    match serde_json::from_slice::<IdRef>(raw).ok()? {
        IdRef::Id(id) | IdRef::Object { id } => Some(id),
    }
}

/// Maps a non-streaming answer to the client's format, reading its usage
/// and model; with `keep_raw_usage` the `usage` object itself is kept too
/// (read from what the conversion parses anyway).
pub fn convert_response(
    from: Wire,
    to: Wire,
    api: Api,
    body: &[u8],
    keep_raw_usage: bool,
) -> Result<ConvertedResponse, WireError> {
    let _ = api;
    if from == to {
        return read_same_format_response(from, body, keep_raw_usage);
    }
    budget::check(body, "the provider's answer")?;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WireError::new(format!("the provider's answer is not JSON: {e}")))?;
    let model = v.get("model").and_then(Value::as_str).map(str::to_owned);
    let raw_usage = v
        .get("usage")
        .filter(|u| keep_raw_usage && u.is_object())
        .cloned();
    let (out, usage) = match (from, to) {
        (Wire::OpenAi, Wire::Responses) => {
            (responses_chat::answer_to_responses(&v)?, openai::usage(&v))
        }
        (Wire::Anthropic, Wire::Responses) => {
            let chat = map::anthropic_to_openai_response(&v)?;
            (
                responses_chat::answer_to_responses(&chat)?,
                anthropic::usage(&v),
            )
        }
        (Wire::Responses, _) => {
            return Err(WireError::new(
                "a Responses API answer goes only to a Responses API client",
            ))
        }
        (Wire::OpenAi, Wire::OpenAi) | (Wire::Anthropic, Wire::Anthropic) => {
            return Ok(ConvertedResponse::default())
        }
        (Wire::Anthropic, Wire::OpenAi) => {
            (map::anthropic_to_openai_response(&v)?, anthropic::usage(&v))
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            (map::openai_to_anthropic_response(&v)?, openai::usage(&v))
        }
    };
    Ok(ConvertedResponse {
        usage,
        body: Some(serde_json::to_vec(&out).map_err(|e| WireError::new(e.to_string()))?),
        model,
        raw_usage,
        stored: None,
    })
}

/// An answer already in the client's format: the body goes out unchanged;
/// only `model`, `usage` (and a Responses answer's stored ids) are read,
/// from their top-level slices (no DOM).
#[inline]
fn read_same_format_response(
    wire: Wire,
    body: &[u8],
    keep_raw_usage: bool,
) -> Result<ConvertedResponse, WireError> {
    let top = TopLevel::scan(body)
        .map_err(|e| WireError::new(format!("the provider's answer is not JSON: {e}")))?;
    let model = match top.get(body, "model") {
        Some(raw) => serde_json::from_slice::<String>(raw).ok(),
        None => None,
    };
    let raw = top.get(body, "usage");
    let usage = raw.and_then(|raw| match wire {
        Wire::OpenAi => openai::usage_slice(raw),
        Wire::Anthropic => anthropic::usage_slice(raw),
        Wire::Responses => responses::usage_slice(raw),
    });
    let raw_usage = raw
        .filter(|_| keep_raw_usage)
        .and_then(|raw| serde_json::from_slice::<Value>(raw).ok())
        .filter(Value::is_object);
    let stored = match wire {
        Wire::Responses => Some(Box::new(StoredIds {
            response: top
                .get(body, "id")
                .and_then(|raw| serde_json::from_slice::<String>(raw).ok()),
            conversation: top.get(body, "conversation").and_then(id_ref),
        })),
        _ => None,
    };
    Ok(ConvertedResponse {
        body: None,
        usage,
        model,
        raw_usage,
        stored,
    })
}

/// An error answer (4xx/5xx) in the client's error shape.
pub fn convert_error(from: Wire, to: Wire, status: u16, body: &[u8]) -> Vec<u8> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let _ = from;
    map::error_body(to, status, &message)
}

#[cfg(test)]
mod tests;
