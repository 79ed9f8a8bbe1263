//! The Anthropic Messages format: usage in answers and stream events, and
//! the mapping between its stop reasons and OpenAI's finish reasons.
//!
//! Anthropic's `input_tokens` leaves out the prompt tokens written to and
//! read from its prompt cache (`cache_creation_input_tokens`,
//! `cache_read_input_tokens`); the prompt, as OpenAI counts it and as
//! budgets and logs count it, is the sum of the three.

use serde_json::Value;

use super::Usage;

/// Anthropic's usage fields, as a message reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicUsage {
    /// Prompt tokens not written to or read from the cache.
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl AnthropicUsage {
    /// Sets the fields present in `u` (a `usage` object; a stream's
    /// `message_delta` repeats some of `message_start`'s, or only has
    /// `output_tokens`).
    pub fn merge(&mut self, u: &Value) {
        for (name, field) in [
            ("input_tokens", &mut self.input_tokens),
            (
                "cache_creation_input_tokens",
                &mut self.cache_creation_input_tokens,
            ),
            ("cache_read_input_tokens", &mut self.cache_read_input_tokens),
            ("output_tokens", &mut self.output_tokens),
        ] {
            if let Some(n) = u.get(name).and_then(Value::as_u64) {
                *field = n;
            }
        }
    }

    /// In OpenAI's terms: every prompt token, cached ones included.
    pub fn to_usage(self) -> Usage {
        let prompt = self
            .input_tokens
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens);
        Usage {
            cached_tokens: self.cache_read_input_tokens,
            ..Usage::new(prompt, self.output_tokens)
        }
    }

    /// From OpenAI's terms: the cached tokens are cache reads, the rest
    /// of the prompt `input_tokens`.
    pub fn from_usage(u: &Usage) -> AnthropicUsage {
        let cached = u.cached_tokens.min(u.prompt_tokens);
        AnthropicUsage {
            input_tokens: u.prompt_tokens - cached,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
            output_tokens: u.completion_tokens,
        }
    }

    /// The `usage` object an Anthropic client reads (cache fields only
    /// when not zero).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens});
        for (name, n) in [
            (
                "cache_creation_input_tokens",
                self.cache_creation_input_tokens,
            ),
            ("cache_read_input_tokens", self.cache_read_input_tokens),
        ] {
            if n > 0 {
                v[name] = Value::from(n);
            }
        }
        v
    }
}

/// `usage` of a Messages answer (`None` without `input_tokens`).
pub fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    u.get("input_tokens")?.as_u64()?;
    let mut a = AnthropicUsage::default();
    a.merge(u);
    Some(a.to_usage())
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

#[derive(serde::Deserialize)]
struct UsageFields {
    /// Required: a `usage` without it is not Anthropic's.
    input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Anthropic `usage` from its raw JSON slice.
pub fn usage_slice(raw: &[u8]) -> Option<Usage> {
    let u: UsageFields = serde_json::from_slice(raw).ok()?;
    Some(
        AnthropicUsage {
            input_tokens: u.input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            output_tokens: u.output_tokens,
        }
        .to_usage(),
    )
}
