//! Request-body editing without re-serialising: a validating scanner finds
//! the members of the top-level JSON object (key and value byte ranges,
//! nested values skipped, not built), and [`splice`] writes the original
//! bytes with chosen top-level values replaced or appended. Merging an
//! instance's `options` into a chat body this way touches only the bytes
//! that change (see `benches/benches/json_merge.rs` for the comparison with
//! a `serde_json::Value` round trip).

use std::ops::Range;

pub use super::json_scan::BodyError;
use super::json_scan::Scanner;

#[derive(Debug, Clone)]
struct Member {
    /// The key's raw bytes between the quotes.
    key: Range<usize>,
    key_escaped: bool,
    value: Range<usize>,
}

/// The members of a top-level JSON object.
#[derive(Debug, Clone)]
pub struct TopLevel {
    members: Vec<Member>,
    /// Index of the closing `}`.
    close: usize,
}

impl TopLevel {
    pub fn scan(body: &[u8]) -> Result<TopLevel, BodyError> {
        let mut s = Scanner { b: body, i: 0 };
        s.ws();
        s.expect(b'{', "expected a JSON object")?;
        // A chat request has a handful of members (model, messages,
        // stream, options): one allocation, not one per doubling.
        let mut members = Vec::with_capacity(8);
        s.ws();
        if s.peek() == Some(b'}') {
            let close = s.i;
            s.i += 1;
            s.end()?;
            return Ok(TopLevel { members, close });
        }
        loop {
            s.ws();
            if s.peek() != Some(b'"') {
                return Err(s.err("expected a string key"));
            }
            let (key, key_escaped) = s.string()?;
            s.ws();
            s.expect(b':', "expected `:` after a key")?;
            s.ws();
            let start = s.i;
            s.value(0)?;
            members.push(Member {
                key,
                key_escaped,
                value: start..s.i,
            });
            s.ws();
            match s.peek() {
                Some(b',') => s.i += 1,
                Some(b'}') => {
                    let close = s.i;
                    s.i += 1;
                    s.end()?;
                    return Ok(TopLevel { members, close });
                }
                _ => return Err(s.err("expected `,` or `}`")),
            }
        }
    }

    /// The raw value of top-level `key` (the last one, as JSON parsers do).
    pub fn get<'a>(&self, body: &'a [u8], key: &str) -> Option<&'a [u8]> {
        self.members
            .iter()
            .rev()
            .find(|m| key_matches(body, m, key))
            .map(|m| &body[m.value.clone()])
    }
}

fn key_matches(body: &[u8], m: &Member, key: &str) -> bool {
    let raw = &body[m.key.clone()];
    if !m.key_escaped {
        return raw == key.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == key)
}

/// Writes `body` with the top-level keys in `set` given new raw JSON
/// values: existing members are replaced in place, missing ones appended.
pub fn splice(body: &[u8], top: &TopLevel, set: &[(&str, &[u8])], out: &mut Vec<u8>) {
    out.reserve(
        body.len()
            + set
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>(),
    );
    let mut pos = 0;
    let mut found = vec![false; set.len()];
    for m in &top.members {
        if let Some(i) = set.iter().position(|(k, _)| key_matches(body, m, k)) {
            out.extend_from_slice(&body[pos..m.value.start]);
            out.extend_from_slice(set[i].1);
            pos = m.value.end;
            found[i] = true;
        }
    }
    out.extend_from_slice(&body[pos..top.close]);
    let mut first = top.members.is_empty();
    for (i, (k, v)) in set.iter().enumerate() {
        if found[i] {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&body[top.close..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn merged(body: &str, set: &[(&str, Value)]) -> Value {
        let top = TopLevel::scan(body.as_bytes()).unwrap();
        let raws: Vec<(String, Vec<u8>)> = set
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::to_vec(v).unwrap()))
            .collect();
        let pairs: Vec<(&str, &[u8])> = raws
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let mut out = Vec::new();
        splice(body.as_bytes(), &top, &pairs, &mut out);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn replaces_and_appends() {
        let v = merged(
            r#" { "model" : "x", "messages": [{"role":"user","content":"a\"b"}], "max_tokens": 5 } "#,
            &[
                ("model", json!("gpt-4")),
                ("max_tokens", json!(50)),
                ("stream_options", json!({"include_usage": true})),
            ],
        );
        assert_eq!(
            v,
            json!({"model": "gpt-4", "messages": [{"role": "user", "content": "a\"b"}], "max_tokens": 50, "stream_options": {"include_usage": true}})
        );
        assert_eq!(merged("{}", &[("a", json!(1))]), json!({"a": 1}));
        assert_eq!(
            merged(r#"{"mo\u0064el": "x"}"#, &[("model", json!("y"))]),
            json!({"model": "y"})
        );
    }

    #[test]
    fn bodies_that_are_not_utf8_are_refused() {
        let e = TopLevel::scan(b"{\"a\":\"caf\xe9\"}").unwrap_err();
        assert_eq!((e.at, e.what), (9, "invalid UTF-8"));
        assert!(TopLevel::scan("{\"a\":\"café\"}".as_bytes()).is_ok());
    }

    #[test]
    fn numbers_json_allows_pass_through_as_written() {
        // Beyond f64 (serde_json refuses it), but valid JSON: kept verbatim.
        let body = br#"{"x":1e400,"model":"a"}"#;
        let top = TopLevel::scan(body).unwrap();
        assert_eq!(top.get(body, "x"), Some(&b"1e400"[..]));
        let mut out = Vec::new();
        splice(body, &top, &[("model", br#""b""#)], &mut out);
        assert_eq!(out, br#"{"x":1e400,"model":"b"}"#);
    }

    #[test]
    fn get_and_errors() {
        let b = br#"{"model":"gpt-4","stream":true,"n":{"a":[1,2,{"b":null}]}}"#;
        let t = TopLevel::scan(b).unwrap();
        assert_eq!(t.get(b, "stream"), Some(&b"true"[..]));
        assert_eq!(t.get(b, "n"), Some(&br#"{"a":[1,2,{"b":null}]}"#[..]));
        assert_eq!(t.get(b, "none"), None);
        for bad in [
            &b"[]"[..],
            b"{",
            b"{\"a\":}",
            b"{\"a\":1} x",
            b"{\"a\":01}",
            b"{\"a\":\"\n\"}",
            b"{a:1}",
            b"{\"a\":tru}",
            b"{\"a\":1,}",
        ] {
            assert!(
                TopLevel::scan(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest! {
        #[test]
        fn splice_matches_a_value_merge(
            keys in proptest::collection::vec("[a-z]{1,6}", 0..6),
            vals in proptest::collection::vec(any::<i32>(), 6),
            set_keys in proptest::collection::vec("[a-z]{1,6}", 0..4),
        ) {
            let mut obj = serde_json::Map::new();
            for (k, v) in keys.iter().zip(&vals) {
                obj.insert(k.clone(), json!({"v": v, "s": format!("x{v}")}));
            }
            let body = serde_json::to_string_pretty(&Value::Object(obj.clone())).unwrap();
            let set: Vec<(&str, Value)> = set_keys.iter().map(|k| (k.as_str(), json!([k]))).collect();
            let mut expected = obj;
            for (k, v) in &set {
                expected.insert(k.to_string(), v.clone());
            }
            prop_assert_eq!(merged(&body, &set), Value::Object(expected));
        }
    }
}
