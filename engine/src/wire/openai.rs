//! The OpenAI format: request summaries, option splicing, usage in
//! answers and stream chunks.

use serde::Deserialize;
use serde_json::Value;

use super::{RequestSummary, Usage, Wire, WireError};
use crate::wire::body::{splice, TopLevel};

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
/// (The three formats name `model` and `stream` alike; the token cap is
/// the Responses API's `max_output_tokens`, else chat's or Anthropic's.)
pub fn summarize(wire: Wire, body: &[u8], top: &TopLevel) -> Result<RequestSummary, WireError> {
    let so: Option<StreamOptions> = field(body, top, "stream_options")?;
    Ok(RequestSummary {
        model: field(body, top, "model")?,
        stream: field(body, top, "stream")?.unwrap_or(false),
        include_usage: so.and_then(|s| s.include_usage).unwrap_or(false),
        max_tokens: match wire {
            Wire::Responses => field(body, top, "max_output_tokens")?,
            Wire::OpenAi | Wire::Anthropic => match field(body, top, "max_completion_tokens")? {
                Some(n) => Some(n),
                None => field(body, top, "max_tokens")?,
            },
        },
    })
}

/// Writes `options` into the body's top level and, for streams when
/// `force_usage`, `stream_options.include_usage: true` — by splicing.
pub fn splice_options(
    body: &[u8],
    top: &TopLevel,
    options: &[(String, Vec<u8>)],
    stream_option: Option<&Value>,
    force_usage: bool,
) -> Result<Vec<u8>, WireError> {
    let mut set: Vec<(&str, &[u8])> = Vec::with_capacity(options.len() + 1);
    set.extend(options.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let streaming = match stream_option {
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
        set.retain(|(k, _)| *k != "stream_options");
        let mut out = Vec::new();
        set.push(("stream_options", &so));
        splice(body, top, &set, &mut out);
        return Ok(out);
    }
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
            .unwrap_or(p.saturating_add(c)),
        cached_tokens: u
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// The `usage` object an OpenAI client reads (`prompt_tokens_details`
/// only when some prompt tokens were cached).
pub fn usage_json(u: &Usage) -> Value {
    let mut v = serde_json::json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens});
    if u.cached_tokens > 0 {
        v["prompt_tokens_details"] = serde_json::json!({"cached_tokens": u.cached_tokens});
    }
    v
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

/// What the gateway reads from one OpenAI stream chunk, borrowed from the
/// chunk's bytes: the model, whether it carries content, its usage. Unlike
/// a `serde_json::Value` it builds no tree of maps and, unless the model
/// name has escapes, allocates nothing (the relay parses every chunk up to
/// the first token, and the usage chunk).
#[derive(Deserialize)]
pub struct ChunkView<'a> {
    #[serde(borrow, default)]
    model: Option<Text<'a>>,
    #[serde(default)]
    choices: Option<Choices>,
    #[serde(default)]
    usage: Option<UsageFields>,
}

/// A string borrowed from the chunk when it has no escapes. (serde borrows
/// a bare `Cow<str>` field, but not one inside an `Option`.)
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Str<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Str(std::marker::PhantomData))
    }
}

/// The `choices` array, summarised while it is read (no `Vec`).
struct Choices {
    len: usize,
    content: bool,
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> serde::de::Visitor<'de> for Seq {
            type Value = Choices;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Choices, A::Error> {
                let mut c = Choices {
                    len: 0,
                    content: false,
                };
                while let Some(choice) = seq.next_element::<ChoiceView>()? {
                    c.len += 1;
                    c.content |= choice.delta.is_some_and(|d| d.has_content());
                }
                Ok(c)
            }
        }
        d.deserialize_seq(Seq)
    }
}

#[derive(Deserialize)]
struct ChoiceView {
    #[serde(default)]
    delta: Option<DeltaView>,
}

#[derive(Deserialize)]
struct DeltaView {
    #[serde(default)]
    content: Option<Filled>,
    #[serde(default)]
    refusal: Option<Filled>,
    #[serde(default)]
    tool_calls: Option<Vec<serde::de::IgnoredAny>>,
}

impl DeltaView {
    fn has_content(&self) -> bool {
        self.content.as_ref().is_some_and(|f| f.0)
            || self.refusal.as_ref().is_some_and(|f| f.0)
            || self.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// A JSON string read only for whether it is empty: nothing is copied.
struct Filled(bool);

impl<'de> Deserialize<'de> for Filled {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl serde::de::Visitor<'_> for Str {
            type Value = Filled;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Filled, E> {
                Ok(Filled(!v.is_empty()))
            }
        }
        d.deserialize_str(Str)
    }
}

impl<'a> ChunkView<'a> {
    /// `None` when the chunk is not JSON of the expected shape (the caller
    /// then falls back to a `Value`).
    pub fn parse(data: &'a [u8]) -> Option<ChunkView<'a>> {
        serde_json::from_slice(data).ok()
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_ref().map(|t| &*t.0)
    }

    /// As [`chunk_has_content`].
    pub fn has_content(&self) -> bool {
        self.choices.as_ref().is_some_and(|c| c.content)
    }

    /// As [`usage`].
    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(UsageFields::to_usage)
    }

    /// A usage-only chunk: `choices` is an empty array.
    pub fn usage_only(&self) -> bool {
        self.choices.as_ref().is_some_and(|c| c.len == 0)
    }
}

/// What the stream relay needs from one OpenAI chunk.
pub struct ChunkFacts {
    /// Only when asked for (it is kept once, from the first chunk).
    pub model: Option<String>,
    pub has_content: bool,
    pub usage: Option<Usage>,
    /// `choices` is an empty array (OpenAI's usage-only chunk).
    pub usage_only: bool,
}

impl ChunkFacts {
    /// Reads a chunk through [`ChunkView`]; a shape the view refuses (a
    /// number where a string was expected, …) gets the lenient `Value`
    /// reading, as any JSON. `None` when the chunk is not JSON at all.
    pub fn read(data: &[u8], want_model: bool) -> Option<ChunkFacts> {
        if let Some(c) = ChunkView::parse(data) {
            return Some(ChunkFacts {
                model: c.model().filter(|_| want_model).map(str::to_owned),
                has_content: c.has_content(),
                usage: c.usage(),
                usage_only: c.usage_only(),
            });
        }
        let v: Value = serde_json::from_slice(data).ok()?;
        Some(ChunkFacts {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .filter(|_| want_model)
                .map(str::to_owned),
            has_content: chunk_has_content(&v),
            usage: usage(&v),
            usage_only: v
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty),
        })
    }
}

#[derive(Deserialize)]
struct UsageFields {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// `usage` from its raw JSON slice (`None` for null or malformed).
pub fn usage_slice(raw: &[u8]) -> Option<Usage> {
    let u: UsageFields = serde_json::from_slice(raw).ok()?;
    Some(u.to_usage())
}

impl UsageFields {
    fn to_usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(self.prompt_tokens.saturating_add(self.completion_tokens)),
            cached_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}
