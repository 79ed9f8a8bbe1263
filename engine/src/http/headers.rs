//! Header classification shared by the request and response paths: the
//! hop-by-hop set of RFC 9110 §7.6.1, comma-separated list iteration,
//! `Connection` tokens (and whether they keep the connection open) and
//! case-insensitive token matching.

use super::Version;

/// Headers that describe one connection and are never forwarded.
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
];

/// True for the fixed hop-by-hop headers (the ones named in `Connection`
/// are checked separately by [`ConnectionTokens`]).
#[inline]
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Splits a comma-separated header value into trimmed, non-empty items.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|s| !s.is_empty())
}

/// Trims optional whitespace (SP / HTAB) from both ends.
#[inline]
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// What a `Connection` header says, plus the extra header names it marks as
/// hop-by-hop (kept as spans by the caller; here only counted and flagged).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Whether any other token was listed: those headers must be stripped.
    pub has_extra: bool,
}

impl ConnectionTokens {
    pub fn add(&mut self, value: &[u8]) {
        for item in list_items(value) {
            if item.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if item.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if item.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.has_extra = true;
            }
        }
    }

    /// Whether the connection stays open after this message: HTTP/1.1
    /// unless `close`, HTTP/1.0 only with `keep-alive` (and no `close`).
    #[inline]
    pub fn keeps_alive(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        }
    }
}

/// True when header `name` is listed as a token in any of the `Connection`
/// header values (and must therefore not be forwarded).
pub fn listed_in_connection<'a>(
    name: &[u8],
    mut connection_values: impl Iterator<Item = &'a [u8]>,
) -> bool {
    connection_values.any(|v| list_items(v).any(|t| t.eq_ignore_ascii_case(name)))
}

/// Parses a decimal Content-Length value (digits only, no sign, no spaces
/// inside), accepting a comma list of identical values as RFC 9110 allows.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for item in value.split(|&b| b == b',').map(trim) {
        if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = item
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_is_case_insensitive() {
        assert!(is_hop_by_hop(b"Connection"));
        assert!(is_hop_by_hop(b"TRANSFER-ENCODING"));
        assert!(!is_hop_by_hop(b"content-length"));
    }

    #[test]
    fn connection_tokens() {
        let mut t = ConnectionTokens::default();
        t.add(b"keep-alive, X-Foo");
        assert!(t.keep_alive && t.has_extra && !t.close);
        assert!(listed_in_connection(
            b"x-foo",
            [&b"keep-alive, X-Foo"[..]].into_iter()
        ));
        assert!(!listed_in_connection(
            b"x-bar",
            [&b"keep-alive, X-Foo"[..]].into_iter()
        ));
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b"42, 42"), Some(42));
        assert_eq!(parse_content_length(b"42, 43"), None);
        assert_eq!(parse_content_length(b"+42"), None);
        assert_eq!(parse_content_length(b"4 2"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }
}
