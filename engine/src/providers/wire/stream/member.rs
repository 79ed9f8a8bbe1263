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

    /// Whether `data` has the member. The compact case costs the key
    /// search and two byte compares, as the old whole-pattern search did.
    #[inline]
    pub(super) fn in_(&self, data: &[u8]) -> bool {
        let n = self.key.needle().len();
        self.key
            .find_iter(data)
            .any(|at| value_first(data, at + n) == Some(self.first))
    }
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
