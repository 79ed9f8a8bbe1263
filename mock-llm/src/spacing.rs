//! Other spellings of the same JSON, as other OpenAI-compatible servers
//! write it: Python's `json.dumps` (`", "` and `": "` between tokens,
//! which FastAPI-style servers send), or pretty-printed over several lines
//! (in an event stream, one `data:` line per line, which SSE joins with
//! `\n`). The mock writes compact JSON (serde_json's); a [`JsonStyle`]
//! re-spaces it on the way out, keeping every value, key order and string
//! as it was.

use serde::{Deserialize, Serialize};

/// How answers and stream events spell their JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonStyle {
    /// No whitespace (serde_json's, and OpenAI's own).
    Compact,
    /// `json.dumps` with its default separators: `", "` and `": "`.
    Python,
    /// Two-space indentation, one member or element per line.
    Pretty,
}

impl std::str::FromStr for JsonStyle {
    type Err = String;

    fn from_str(s: &str) -> Result<JsonStyle, String> {
        match s.trim() {
            "compact" => Ok(JsonStyle::Compact),
            "python" => Ok(JsonStyle::Python),
            "pretty" => Ok(JsonStyle::Pretty),
            o => Err(format!(
                "`{o}` is not a JSON style (compact, python, pretty)"
            )),
        }
    }
}

/// `json` re-spaced in `style` (whitespace outside strings is replaced).
pub fn restyle(json: &[u8], style: JsonStyle) -> Vec<u8> {
    if style == JsonStyle::Compact {
        return json.to_vec();
    }
    let mut out = Vec::with_capacity(json.len() + json.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', 2 * depth));
    };
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match (b, style) {
            (b' ' | b'\t' | b'\n' | b'\r', _) => {}
            (b'"', _) => {
                in_string = true;
                out.push(b);
            }
            (b':', _) => out.extend_from_slice(b": "),
            (b',', JsonStyle::Pretty) => {
                out.push(b',');
                newline(&mut out, depth);
            }
            (b',', _) => out.extend_from_slice(b", "),
            (b'{' | b'[', JsonStyle::Pretty) => {
                out.push(b);
                depth += 1;
                let next = json[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if !matches!(next, Some(b'}' | b']')) {
                    newline(&mut out, depth);
                }
            }
            (b'}' | b']', JsonStyle::Pretty) => {
                depth = depth.saturating_sub(1);
                if !matches!(out.last(), Some(b'{' | b'[')) {
                    newline(&mut out, depth);
                }
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    out
}

/// An SSE event (`event: …\ndata: {…}\n\n`) with its JSON data re-spaced;
/// data spread over several lines goes out as several `data:` lines. Data
/// that is not JSON (`[DONE]`) is left as it is.
pub fn restyle_event(event: &[u8], style: JsonStyle) -> Vec<u8> {
    if style == JsonStyle::Compact {
        return event.to_vec();
    }
    let mut out = Vec::with_capacity(event.len() * 2);
    let text = event.strip_suffix(b"\n\n").unwrap_or(event);
    for line in text.split(|&b| b == b'\n') {
        match line.strip_prefix(b"data: ") {
            Some(data) if data.first() == Some(&b'{') => {
                for part in restyle(data, style).split(|&b| b == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(part);
                    out.push(b'\n');
                }
            }
            _ => {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn same_value_other_spelling() {
        let v = json!({"id": "a, b: \"c\" {[", "choices": [], "n": [1, {"x": null}], "e": {}, "u": {"p": 1}});
        let compact = v.to_string();
        let python = restyle(compact.as_bytes(), JsonStyle::Python);
        assert_eq!(
            String::from_utf8(python.clone()).unwrap(),
            r#"{"choices": [], "e": {}, "id": "a, b: \"c\" {[", "n": [1, {"x": null}], "u": {"p": 1}}"#
        );
        let pretty = restyle(compact.as_bytes(), JsonStyle::Pretty);
        assert_eq!(
            String::from_utf8(pretty.clone()).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
        for spelled in [python, pretty] {
            assert_eq!(serde_json::from_slice::<Value>(&spelled).unwrap(), v);
        }
    }

    #[test]
    fn events_keep_their_names_and_done() {
        let ev = b"event: message_delta\ndata: {\"a\":[1,2]}\n\n";
        assert_eq!(
            restyle_event(ev, JsonStyle::Pretty),
            b"event: message_delta\ndata: {\ndata:   \"a\": [\ndata:     1,\ndata:     2\ndata:   ]\ndata: }\n\n"
        );
        for style in [JsonStyle::Python, JsonStyle::Pretty] {
            assert_eq!(
                restyle_event(b"data: [DONE]\n\n", style),
                b"data: [DONE]\n\n"
            );
        }
    }
}
