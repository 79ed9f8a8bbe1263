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
        simdutf8::basic::from_utf8(&doc[r]).ok().map(Cow::Borrowed)
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
    /// has escapes. One pass finds the end, escapes, control characters
    /// and whether any byte is not ASCII; only a string with such bytes is
    /// read again, to check it is UTF-8 (JSON text is, RFC 8259; outside
    /// strings a byte that is not ASCII is already a syntax error, so
    /// checking strings covers the whole document).
    pub(super) fn string(&mut self) -> Result<(Range<usize>, bool), BodyError> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        let mut wide = false;
        loop {
            let (found, not_ascii) = find_special(&self.b[self.i..]);
            wide |= not_ascii;
            let Some(off) = found else {
                return Err(self.err("unterminated string"));
            };
            self.i += off;
            match self.b[self.i] {
                b'"' => {
                    let r = start..self.i;
                    self.i += 1;
                    // SIMD validation; the standard library's only to say
                    // where an invalid body goes wrong.
                    if wide && simdutf8::basic::from_utf8(&self.b[r.clone()]).is_err() {
                        let at = std::str::from_utf8(&self.b[r.clone()])
                            .err()
                            .map_or(0, |e| e.valid_up_to());
                        return Err(BodyError {
                            at: r.start + at,
                            what: "invalid UTF-8",
                        });
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

/// Where the first byte a string scan must stop at is in `b` (`"`, `\\`
/// or a control character), and whether a byte that is not ASCII may come
/// before it (it may also be one just after: the caller only validates
/// the string's own bytes, so that costs a check, never a wrong answer).
///
/// Sixteen bytes at a time with vector compares (`wide`: SSE2 on x86-64,
/// NEON on ARM) and a byte mask: one pass for strings of any length, where
/// `memchr3` to find the end and then a check of the bytes took two, and a
/// call per escape (`options_merge/splice/agent-32KiB`: 31.3 → 15.2 µs;
/// a plain byte loop here, left to auto-vectorise, was slower than both).
#[inline]
fn find_special(b: &[u8]) -> (Option<usize>, bool) {
    use wide::u8x16;
    let (quote, backslash, control) = (u8x16::splat(b'"'), u8x16::splat(b'\\'), u8x16::splat(0x1f));
    let mut high = 0u32;
    let mut at = 0;
    while let Some(block) = b.get(at..at + 16) {
        let v = u8x16::new(block.try_into().unwrap_or_default());
        high |= v.to_bitmask();
        // `min(v, 0x1f) == v`: v is below 0x20.
        let stops = v.simd_eq(quote) | v.simd_eq(backslash) | v.min(control).simd_eq(v);
        let mask = stops.to_bitmask();
        if mask != 0 {
            return (Some(at + mask.trailing_zeros() as usize), high != 0);
        }
        at += 16;
    }
    let mut wide = high != 0;
    for (k, &c) in b[at..].iter().enumerate() {
        wide |= c >= 0x80;
        if c == b'"' || c == b'\\' || c < 0x20 {
            return (Some(at + k), wide);
        }
    }
    (None, wide)
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

    /// What the scanner says of `{"k":"<inner>"}`: the string's end and
    /// escapes, or the error and where it is.
    fn scan_string(inner: &[u8]) -> Result<(Range<usize>, bool), BodyError> {
        let mut doc = br#"{"k":""#.to_vec();
        doc.extend_from_slice(inner);
        doc.extend_from_slice(br#""}"#);
        let mut s = Scanner { b: &doc, i: 5 };
        s.string()
    }

    /// Every kind of byte the string scan stops at or must notice, at
    /// every offset across the first blocks (the scan reads sixteen bytes
    /// at a time, then the rest one by one): accepted exactly when
    /// `serde_json` accepts the string, with its end, escapes and error
    /// position.
    #[test]
    fn string_scan_at_every_offset() {
        let cases: [(&[u8], Option<&str>); 7] = [
            (b"\\\"", None),
            (b"\\n", None),
            (b"\\u00e9", None),
            ("\u{e9}".as_bytes(), None),
            ("\u{1F680}".as_bytes(), None),
            (b"\x01", Some("control character in a string")),
            (b"\xff", Some("invalid UTF-8")),
        ];
        for len in 0..40 {
            for at in 0..=len {
                for (piece, refused) in cases {
                    let mut inner = vec![b'a'; len];
                    inner.splice(at..at, piece.iter().copied());
                    let quoted = [&b"\""[..], &inner, b"\""].concat();
                    let serde = serde_json::from_slice::<String>(&quoted);
                    let scanned = scan_string(&inner);
                    match refused {
                        None => {
                            let (r, escaped) = scanned.unwrap_or_else(|e| {
                                panic!("{e} in {:?}", String::from_utf8_lossy(&inner))
                            });
                            assert!(serde.is_ok());
                            assert_eq!(r, 6..6 + inner.len());
                            assert_eq!(escaped, piece[0] == b'\\');
                        }
                        Some(what) => {
                            let e = scanned.expect_err(what);
                            assert!(serde.is_err());
                            assert_eq!((e.what, e.at), (what, 6 + at), "{inner:?}");
                        }
                    }
                }
            }
        }
        // Not ASCII far from the first block, then the end: still checked.
        let mut inner = vec![b'a'; 100];
        inner[70] = 0xc3;
        assert_eq!(
            scan_string(&inner).map_err(|e| e.what),
            Err("invalid UTF-8")
        );
        for unterminated in [&b"\"no end"[..], b"\"a longer string without its end"] {
            let mut s = Scanner {
                b: unterminated,
                i: 0,
            };
            assert_eq!(s.string().map_err(|e| e.what), Err("unterminated string"));
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
