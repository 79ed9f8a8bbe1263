//! What a cross-format conversion may cost. Converting goes through
//! `serde_json::Value` trees (the client's and the converted one), whose
//! size depends on the body's shape more than its length: a 64 MiB body of
//! tiny objects (`{"type":"text","text":""},` repeated) took 5.4 GB to
//! convert, one 64 MiB string 330 MB (measured, `results/hardening.md`).
//! [`check`] estimates a body's trees from a byte scan (objects, arrays
//! and values counted outside strings) before any tree is built, and
//! refuses one that would need more than [`MAX_CONVERSION_MEMORY`]
//! (measured within 5% of the estimate on both shapes). Conversions run on
//! the worker's thread, one at a time, so a core holds at most one of them
//! beyond the bodies in flight.

use super::WireError;

/// The most memory one conversion may take (estimated).
pub const MAX_CONVERSION_MEMORY: u64 = 256 << 20;

/// Bodies this small are never checked: their trees cannot reach the
/// limit whatever their shape (two trees are at most ~85 times the text).
const ALWAYS_FINE: usize = (MAX_CONVERSION_MEMORY / 128) as usize;

/// Estimated bytes of one tree (`serde_json::Value`) of `json`: a value is
/// 32 bytes, an object's map ~600 bytes however few keys it holds (one
/// B-tree node), an entry's key another 48, and the text itself.
pub fn tree_estimate(json: &[u8]) -> u64 {
    let (mut objects, mut arrays, mut separators) = (0u64, 0u64, 0u64);
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => objects += 1,
            b'[' => arrays += 1,
            b',' | b':' => separators += 1,
            _ => {}
        }
    }
    let values = objects + arrays + separators + 1;
    json.len() as u64 + values * 32 + objects * 600 + separators * 48
}

/// Refuses a conversion of `json` (`what` says whose) that would take
/// more than [`MAX_CONVERSION_MEMORY`]: the source tree, the converted one
/// (strings copied) and the text written from it.
pub fn check(json: &[u8], what: &str) -> Result<(), WireError> {
    if json.len() <= ALWAYS_FINE {
        return Ok(());
    }
    let need = 2 * tree_estimate(json) + 2 * json.len() as u64;
    if need > MAX_CONVERSION_MEMORY {
        return Err(WireError::too_large(format!(
            "{what} is too large or too complex to convert between API formats (about {} MiB to convert, at most {} MiB): send it in the instance's own format, or split it",
            need >> 20,
            MAX_CONVERSION_MEMORY >> 20
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_the_shape_not_the_length() {
        let parts = format!("[{}{{}}]", r#"{"type":"text","text":""},"#.repeat(1000));
        let string = format!("[\"{}\"]", "a".repeat(parts.len()));
        let parts_cost = tree_estimate(parts.as_bytes());
        let string_cost = tree_estimate(string.as_bytes());
        assert!(parts_cost > 25 * parts.len() as u64, "{parts_cost}");
        assert!(string_cost < 2 * string.len() as u64, "{string_cost}");
        // Structure inside strings (escaped quotes included) is text.
        let quoted = r#"["{\"a\":[1,2,3]}", "x"]"#;
        // Three values (the array, two strings), one separator.
        assert_eq!(
            tree_estimate(quoted.as_bytes()),
            quoted.len() as u64 + 3 * 32 + 48
        );
    }

    #[test]
    fn a_large_tiny_object_body_is_refused_and_a_large_string_is_not() {
        let parts = format!(
            "{{\"messages\":[{{\"role\":\"user\",\"content\":[{}{{}}]}}]}}",
            r#"{"type":"text","text":""},"#.repeat(400_000)
        );
        let e = check(parts.as_bytes(), "the request").unwrap_err();
        assert!(e.too_large);
        assert!(e.to_string().contains("too complex"), "{e}");
        let string = format!(
            "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
            "a".repeat(48 << 20)
        );
        assert!(check(string.as_bytes(), "the request").is_ok());
    }
}
