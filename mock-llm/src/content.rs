//! Deterministic content and token counting.
//!
//! Completion token `i` is `WORDS[i % 32]` followed by a space, one SSE
//! chunk per token. Prompt tokens follow one documented rule: every
//! whitespace-separated word of text content counts 1, and every message
//! adds 4 (role and framing), as does the system prompt when present.
//! Embedding inputs count 1 per word (or 1 per element of a token array).

use serde_json::Value;

pub const WORDS: [&str; 32] = [
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "a",
    "mock",
    "model",
    "streams",
    "tokens",
    "through",
    "the",
    "gateway",
    "at",
    "a",
    "steady",
    "and",
    "predictable",
    "pace",
    "so",
    "every",
    "test",
    "can",
    "count",
    "them",
    "exactly",
    "again",
];

/// The word of completion token `i` (its text is the word and a space).
fn word(i: u32) -> &'static str {
    WORDS[(i % 32) as usize]
}

/// The text of completion token `i`.
pub fn token(i: u32) -> String {
    format!("{} ", word(i))
}

/// Stands in for the token text when a token event is rendered once as a
/// template for [`TokenStamp`].
pub const TOKEN_MARK: &str = "\u{1}token\u{1}";

/// A token event rendered once with [`TOKEN_MARK`] in place of the token
/// text, then stamped per token: the bytes serde_json would produce for each
/// token, without building a JSON value per token (the streaming hot path).
pub struct TokenStamp {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl TokenStamp {
    /// `rendered` must hold [`TOKEN_MARK`] as a JSON string exactly once.
    pub fn new(rendered: &[u8]) -> TokenStamp {
        let mark = serde_json::to_string(TOKEN_MARK).expect("a string serialises");
        let at = memchr::memmem::find(rendered, mark.as_bytes())
            .expect("the template holds the token mark");
        TokenStamp {
            prefix: rendered[..at].to_vec(),
            suffix: rendered[at + mark.len()..].to_vec(),
        }
    }

    /// The event for completion token `i` (the words need no JSON escaping).
    pub fn render(&self, i: u32) -> Vec<u8> {
        let word = word(i).as_bytes();
        let mut out = Vec::with_capacity(self.prefix.len() + word.len() + 3 + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        out.push(b'"');
        out.extend_from_slice(word);
        out.extend_from_slice(b" \"");
        out.extend_from_slice(&self.suffix);
        out
    }
}

/// The whole completion of `n` tokens.
pub fn completion(n: u32) -> String {
    let mut s = String::with_capacity(8 * n as usize);
    for i in 0..n {
        s.push_str(word(i));
        s.push(' ');
    }
    s
}

pub fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words of a `content` value: a string, or parts with `text`.
pub fn content_words(v: &Value) -> u64 {
    match v {
        Value::String(s) => words(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => words(s),
                _ => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map(words)
                    .unwrap_or(0),
            })
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of an OpenAI chat body.
pub fn openai_prompt_tokens(body: &Value) -> u64 {
    body.get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| 4 + m.get("content").map(content_words).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Prompt tokens of an Anthropic Messages body.
pub fn anthropic_prompt_tokens(body: &Value) -> u64 {
    let system = body
        .get("system")
        .map(|s| 4 + content_words(s))
        .unwrap_or(0);
    system
        + body
            .get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| 4 + m.get("content").map(content_words).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
}

/// Tokens of an embeddings `input`.
pub fn embedding_input_tokens(input: &Value) -> u64 {
    match input {
        Value::String(s) => words(s),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => words(s),
                Value::Number(_) => 1,
                Value::Array(t) => t.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// A deterministic unit-ish vector for `text`.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = crate::state::Rng::new(h);
    let v: Vec<f32> = (0..dims)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / norm).collect()
}

/// Standard base64 of the little-endian f32s (OpenAI's `encoding_format: base64`).
pub fn base64_f32(v: &[f32]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stamped_token_is_what_serde_json_renders() {
        use super::{token, TokenStamp, TOKEN_MARK, WORDS};
        let render = |text: &str| {
            serde_json::json!({"choices": [{"delta": {"content": text}, "index": 0}], "id": "x"})
                .to_string()
        };
        let stamp = TokenStamp::new(render(TOKEN_MARK).as_bytes());
        for i in 0..40 {
            assert_eq!(stamp.render(i), render(&token(i)).into_bytes(), "token {i}");
        }
        for w in WORDS {
            assert_eq!(
                serde_json::to_string(w).unwrap(),
                format!("\"{w}\""),
                "{w} needs no escaping"
            );
        }
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn token_rule() {
        let body = json!({"messages": [{"role": "system", "content": "You are a mathematician"}, {"role": "user", "content": [{"type": "text", "text": "What is 1+1?"}]}]});
        assert_eq!(openai_prompt_tokens(&body), 4 + 4 + 4 + 3);
        let a =
            json!({"system": "Be brief", "messages": [{"role": "user", "content": "hi there"}]});
        assert_eq!(anthropic_prompt_tokens(&a), 4 + 2 + 4 + 2);
        assert_eq!(completion(3), "The quick brown ");
        assert_eq!(embedding_input_tokens(&json!(["a b", [1, 2, 3]])), 5);
    }

    #[test]
    fn base64_matches_reference() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(embedding("x", 8).len(), 8);
        assert_eq!(embedding("x", 8), embedding("x", 8));
    }
}
