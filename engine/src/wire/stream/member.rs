//! Finding a member of a stream chunk by its key without parsing the
//! chunk: the relay's shortcuts (is there a usage report? a finish
//! reason?) must not depend on how the provider spaces its JSON. A key is
//! found by its quoted bytes, then JSON whitespace may come before the
//! `:` and after it (`"usage": {`, as Python's `json.dumps` writes, or a
//! pretty printer's line breaks), then the value's first byte is checked.
//!
//! A quoted key cannot occur inside a JSON string, where quotes are
//! escaped, and a string value is never followed by `:`; so a miss is
//! certain, and a hit is a member (only a key written with escapes, which
//! no provider writes, goes unseen).

use memchr::memmem::Finder;

/// `"key"`, a `:`, and a value opening with `first`, whatever whitespace
/// comes between.
pub(super) struct Member {
    key: Finder<'static>,
    first: u8,
}

impl Member {
    /// `quoted_key` includes its quotes: `b"\"usage\""`.
    pub(super) fn new(quoted_key: &'static [u8], first: u8) -> Member {
        Member {
            key: Finder::new(quoted_key),
            first,
        }
    }

    /// Whether `data` has the member: the key search, a few byte
    /// compares at each key found, the search going on after a key with
    /// another value (a plain loop: `find_iter`'s set-up cost more than
    /// the rest, per call).
    #[inline]
    pub(super) fn in_(&self, data: &[u8]) -> bool {
        let n = self.key.needle().len();
        let mut from = 0;
        while let Some(at) = data.get(from..).and_then(|rest| self.key.find(rest)) {
            let end = from + at + n;
            if value_first(data, end) == Some(self.first) {
                return true;
            }
            from = end;
        }
        false
    }
}

/// Whether a chat chunk carries a usage object (`"usage": {…}`, any
/// spacing). Most chunks carry `"usage": null` (a stream with
/// `include_usage`) or no usage; a usage object holds token counts, keys
/// ending in `_tokens`, so their absence settles it with one search that
/// finds nothing, as the compact-only `"usage":{` search did (searching
/// for the `"usage"` key first would find it in every `"usage": null`
/// chunk and cost a second search). A count is then read backwards to
/// the `"usage" : {` it opens (every provider writes a count first); any
/// other `_tokens` (a `"max_tokens"` finish reason, text) goes to the
/// member search. An empty `"usage": {}` reports nothing and is not seen.
#[inline(always)]
pub(super) fn has_usage(data: &[u8]) -> bool {
    struct Finders {
        counts: Finder<'static>,
        usage: Member,
    }
    static FINDERS: std::sync::LazyLock<Finders> = std::sync::LazyLock::new(|| Finders {
        counts: Finder::new(b"_tokens"),
        usage: Member::new(b"\"usage\"", b'{'),
    });
    let f = &*FINDERS;
    match f.counts.find(data) {
        None => false,
        Some(at) => opens_usage(data, at) || f.usage.in_(data),
    }
}

/// Whether the key holding the count found at `at` is the first member
/// of a usage object: `"usage" : { "<key>`, read backwards. Inside a JSON
/// string every `"` follows a backslash, so the `{` this expects before the
/// key's quote cannot be text.
fn opens_usage(data: &[u8], at: usize) -> bool {
    let mut i = at;
    while i > 0 && (data[i - 1].is_ascii_lowercase() || data[i - 1] == b'_') {
        i -= 1;
    }
    let Some(i) = before(data, i, b'"', false)
        .and_then(|i| before(data, i, b'{', true))
        .and_then(|i| before(data, i, b':', true))
    else {
        return false;
    };
    let i = skip_ws_back(data, i);
    i >= 7 && &data[i - 7..i] == b"\"usage\""
}

/// The position of `want` just before `i` (past JSON whitespace when
/// `ws`).
fn before(data: &[u8], i: usize, want: u8, ws: bool) -> Option<usize> {
    let i = if ws { skip_ws_back(data, i) } else { i };
    (i > 0 && data[i - 1] == want).then(|| i - 1)
}

fn skip_ws_back(data: &[u8], mut i: usize) -> usize {
    while i > 0 && matches!(data[i - 1], b' ' | b'\t' | b'\n' | b'\r') {
        i -= 1;
    }
    i
}

/// The first byte of the value after a key that ends at `i`: past JSON
/// whitespace, a `:`, and JSON whitespace. `None` if no `:` follows.
#[inline]
fn value_first(data: &[u8], mut i: usize) -> Option<u8> {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    while data.get(i).is_some_and(ws) {
        i += 1;
    }
    if data.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while data.get(i).is_some_and(ws) {
        i += 1;
    }
    data.get(i).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_objects_are_found_by_their_counts_and_key() {
        for hit in [
            &b"{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}"[..],
            b"{\"usage\" :\n {\"total_tokens\": 2}}",
        ] {
            assert!(has_usage(hit), "{}", String::from_utf8_lossy(hit));
        }
        // Read backwards from the count, or found by the member search.
        assert!(has_usage(b"{\"usage\":{\"x\":1,\"prompt_tokens\":1}}"));
        assert!(has_usage(
            b"{\"choices\":[{\"finish_reason\":\"max_tokens\"}],\"usage\" :{\"completion_tokens\":1}}"
        ));
        for miss in [
            &b"{\"usage\":null,\"x\":\"prompt_tokens\"}"[..],
            b"{\"choices\":[{\"finish_reason\":\"max_tokens\"}],\"usage\": null}",
            b"{\"usage\":{}}",
            b"{\"text\":\"\\\"usage\\\": {\\\"prompt_tokens\\\": 1}\",\"usage\":null}",
            b"prompt_tokens",
            b"{\"prompt_tokens\":1}",
        ] {
            assert!(!has_usage(miss), "{}", String::from_utf8_lossy(miss));
        }
    }

    #[test]
    fn any_spacing_around_the_colon() {
        let usage = Member::new(b"\"usage\"", b'{');
        for hit in [
            &b"{\"usage\":{\"a\":1}}"[..],
            b"{\"usage\" : {\"a\": 1}}",
            b"{\"usage\":\n\t{}}",
            b"{\"usage\": null, \"x\": {\"usage\": {}}}",
            b"{\"usage\"\r\n:\r\n{",
        ] {
            assert!(usage.in_(hit), "{}", String::from_utf8_lossy(hit));
        }
        for miss in [
            &b"{\"usage\":null}"[..],
            b"{\"usage\": null}",
            b"{\"text\":\"\\\"usage\\\": {\"}",
            b"{\"usage\"",
            b"{\"usage\" ",
            b"{\"usage\":",
            b"{\"x\":\"usage\", \"y\": {}}",
            b"",
        ] {
            assert!(!usage.in_(miss), "{}", String::from_utf8_lossy(miss));
        }
    }
}
