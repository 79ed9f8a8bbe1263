//! A validating JSON scanner that finds values' byte ranges without
//! building them: the members of a request body's top-level object
//! ([`super::body`]), and one string by its path in a stream event
//! ([`string_at`]: the text of each token's event for `logging.payloads`,
//! where a typed `serde_json` parse of the whole event cost more than
//! relaying it).

use std::borrow::Cow;
use std::ops::Range;

/// Deepest nesting accepted inside the body.
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {at}: {what}")]
pub struct BodyError {
    pub at: usize,
    pub what: &'static str,
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// The object member with this key (the first one; a key written with
    /// escapes never matches).
    Key(&'static str),
    /// The array's first element.
    First,
}

/// The string at `path` in `doc`, borrowed unless it has escapes. `None`
/// when the path is missing or ends at something else (`null`), or the
/// document is not valid JSON on the way there; what follows the string
/// is not read.
pub fn string_at<'a>(doc: &'a [u8], path: &[Step]) -> Option<Cow<'a, str>> {
    let mut s = Scanner { b: doc, i: 0 };
    s.ws();
    for step in path {
        match *step {
            Step::Key(k) => s.member(k.as_bytes())?,
            Step::First => s.first_element()?,
        }
        s.ws();
    }
    if s.peek() != Some(b'"') {
        return None;
    }
    let (r, escaped) = s.string().ok()?;
    if escaped {
        serde_json::from_slice::<String>(&doc[r.start - 1..r.end + 1])
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(&doc[r]).ok().map(Cow::Borrowed)
    }
}

pub(super) struct Scanner<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl Scanner<'_> {
    pub(super) fn err(&self, what: &'static str) -> BodyError {
        BodyError { at: self.i, what }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(super) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    pub(super) fn expect(&mut self, c: u8, what: &'static str) -> Result<(), BodyError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    pub(super) fn end(&mut self) -> Result<(), BodyError> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters after the object"))
        }
    }

    /// A string starting at `"`; returns its inner range and whether it
    /// has escapes.
    pub(super) fn string(&mut self) -> Result<(Range<usize>, bool), BodyError> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(off) = memchr::memchr3(b'"', b'\\', 0x0a, &self.b[self.i..]) else {
                return Err(self.err("unterminated string"));
            };
            self.i += off;
            match self.b[self.i] {
                b'"' => {
                    let r = start..self.i;
                    self.i += 1;
                    // One pass finds control characters and bytes that are
                    // not ASCII; only a string with either is looked at
                    // again. JSON text is UTF-8 (RFC 8259), and outside
                    // strings a byte that is not ASCII is already a syntax
                    // error, so checking strings covers the whole document.
                    let text = &self.b[r.clone()];
                    if text.iter().any(|c| !(0x20..0x80).contains(c)) {
                        if text.iter().any(|&c| c < 0x20) {
                            return Err(BodyError {
                                at: r.start,
                                what: "control character in a string",
                            });
                        }
                        if let Err(e) = std::str::from_utf8(text) {
                            return Err(BodyError {
                                at: r.start + e.valid_up_to(),
                                what: "invalid UTF-8",
                            });
                        }
                    }
                    return Ok((r, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self
                                .b
                                .get(self.i + 2..self.i + 6)
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(self.err("bad \\u escape"));
                            }
                            self.i += 6;
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                _ => return Err(self.err("control character in a string")),
            }
        }
    }

    pub(super) fn value(&mut self, depth: usize) -> Result<(), BodyError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    self.string()?;
                    self.ws();
                    self.expect(b':', "expected `:` after a key")?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected `,` or `]`")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    pub(super) fn literal(&mut self, lit: &[u8]) -> Result<(), BodyError> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    pub(super) fn number(&mut self) -> Result<(), BodyError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => {
                return Err(BodyError {
                    at: start,
                    what: "invalid number",
                })
            }
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let d = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == d {
                return Err(BodyError {
                    at: start,
                    what: "invalid number",
                });
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let d = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == d {
                return Err(BodyError {
                    at: start,
                    what: "invalid number",
                });
            }
        }
        Ok(())
    }
}

impl Scanner<'_> {
    /// At an object: moves to the value of member `key`.
    fn member(&mut self, key: &[u8]) -> Option<()> {
        self.expect(b'{', "expected an object").ok()?;
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let (k, escaped) = self.string().ok()?;
            self.ws();
            self.expect(b':', "expected `:` after a key").ok()?;
            self.ws();
            if !escaped && &self.b[k] == key {
                return Some(());
            }
            self.value(0).ok()?;
            self.ws();
            if self.peek() != Some(b',') {
                return None;
            }
            self.i += 1;
        }
    }

    /// At an array: moves to its first element.
    fn first_element(&mut self) -> Option<()> {
        self.expect(b'[', "expected an array").ok()?;
        self.ws();
        (self.peek() != Some(b']')).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const DELTA: &[Step] = &[
        Step::Key("choices"),
        Step::First,
        Step::Key("delta"),
        Step::Key("content"),
    ];

    fn by_tree(v: &Value) -> Option<&str> {
        v.get("choices")?
            .get(0)?
            .get("delta")?
            .get("content")?
            .as_str()
    }

    #[test]
    fn finds_the_string_or_nothing() {
        let hit = br#" { "id": "x", "choices" : [ {"logprobs": {"content": [{"t": "no"}]}, "delta": {"role": "a", "content": "Hi \"you\" \u00e9"}} ] } "#;
        assert_eq!(string_at(hit, DELTA).as_deref(), Some("Hi \"you\" é"));
        let plain = br#"{"choices":[{"delta":{"content":"plain"}}]}"#;
        assert!(matches!(
            string_at(plain, DELTA),
            Some(Cow::Borrowed("plain"))
        ));
        for miss in [
            &br#"{"choices":[{"delta":{"content":null}}]}"#[..],
            br#"{"choices":[{"delta":{}}]}"#,
            br#"{"choices":[]}"#,
            br#"{"choices":[{"delta":{"content":7}}]}"#,
            br#"{"choices":{"delta":{"content":"not an array"}}}"#,
            br#"{"text":"\"choices\":[{\"delta\":{\"content\":\"x\"}}]"}"#,
            br#"{"choices":[{"delta":{"content":"unterminated}}]}"#,
            br#"{"choices":[{"delta":{"content":"bad \q escape"}}]}"#,
            b"[DONE]",
            b"",
        ] {
            assert_eq!(
                string_at(miss, DELTA),
                None,
                "{}",
                String::from_utf8_lossy(miss)
            );
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("choices".to_owned()),
            Just("delta".to_owned()),
            Just("content".to_owned()),
            "[a-z\\\"é]{0,4}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// On valid JSON the scanner reads what a full parse reads.
        #[test]
        fn agrees_with_a_full_parse(v in value(), content in any::<String>(), pretty in any::<bool>()) {
            // Half the documents have the path, with the generated value
            // around it.
            let docs = [v.clone(), json!({"x": v.clone(), "choices": [{"delta": {"content": content, "y": v}}]})];
            for doc in docs {
                let text = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap();
                let found = string_at(&text, DELTA);
                prop_assert_eq!(found.as_deref(), by_tree(&doc));
            }
        }
    }
}
