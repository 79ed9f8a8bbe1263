//! The Anthropic Messages format: usage in answers and stream events, and
//! the mapping between its stop reasons and OpenAI's finish reasons.

use serde_json::Value;

use super::Usage;

/// `usage` of a Messages answer (`input_tokens` / `output_tokens`).
pub fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let input = u.get("input_tokens").and_then(Value::as_u64)?;
    let output = u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
    Some(Usage::new(input, output))
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
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Anthropic `usage` from its raw JSON slice.
pub fn usage_slice(raw: &[u8]) -> Option<Usage> {
    let u: UsageFields = serde_json::from_slice(raw).ok()?;
    Some(Usage::new(u.input_tokens, u.output_tokens))
}
