//! Credential redaction: the one place that decides what of a request
//! may reach a log. Every log output asks it where it writes request
//! data — the access log's `uri`, the loggers' full log (`request.url`,
//! `uri`, `headers`, `querystring`), `log_format` variables (`$http_*`,
//! `$arg_*`, `$cookie_*`, `$request_uri`, `$args`) and `meta_format:
//! origin`'s raw head — so a credential a client sent becomes
//! [`MARKER`] (its name kept, so operators see one was sent) whether the
//! request was served, refused with 401 or matched no route.
//!
//! A [`Redaction`] is compiled once per snapshot: the built-in names
//! ([`HEADERS`], [`QUERY`]), key-auth's configured `header` / `query` of
//! every route, service and global rule, and `gateway.log_redaction`'s
//! own; `enabled: false` gives [`Redaction::off`]. Nothing here runs on
//! the request path proper: only where a log entry is built, and a
//! request without a query and without a listed header costs a scan of
//! its header names.
//!
//! [`configured_url`] is the other half: URLs from the configuration
//! (a logger's `uri`, an instance's endpoint) in error lines, with every
//! query value and any userinfo replaced.

use std::borrow::Cow;
use std::ops::Range;

use crate::http::RequestHead;

/// What a credential is replaced with.
pub const MARKER: &str = "[REDACTED]";

/// Request headers that carry credentials (compared ASCII
/// case-insensitively): HTTP authentication, the API-key headers of
/// key-auth, OpenAI-style gateways, Anthropic, Azure and Gemini, the
/// Admin API's `X-API-KEY`, and cookies (sessions).
pub const HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "apikey",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "cookie",
];

/// Query parameters that carry credentials: key-auth's default, the
/// Admin API's `api_key`, Gemini's `key`, and OAuth's `access_token`
/// (RFC 6750 §2.3).
pub const QUERY: &[&str] = &["apikey", "api_key", "api-key", "key", "access_token"];

/// The credential names of one snapshot (lower-cased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    headers: Vec<Box<[u8]>>,
    query: Vec<Box<[u8]>>,
    /// Bit `n` set: some header name is `n` bytes long (63: 63 or more).
    /// Most of a request's headers are ruled out by this one test.
    header_lens: u64,
}

/// The bit of a name's length in [`Redaction::header_lens`].
#[inline]
fn len_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl Redaction {
    /// Nothing is redacted (`gateway.log_redaction.enabled: false`).
    pub fn off() -> Redaction {
        Redaction::default()
    }

    /// The built-in names plus `headers` and `query`.
    pub fn new<'a>(
        headers: impl IntoIterator<Item = &'a str>,
        query: impl IntoIterator<Item = &'a str>,
    ) -> Redaction {
        let set = |builtin: &[&'a str], more: &mut dyn Iterator<Item = &'a str>| {
            let mut out: Vec<Box<[u8]>> = Vec::new();
            for n in builtin.iter().copied().chain(more) {
                let n = n.to_ascii_lowercase().into_bytes().into_boxed_slice();
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            out
        };
        let headers = set(HEADERS, &mut headers.into_iter());
        Redaction {
            header_lens: headers.iter().fold(0, |bits, h| bits | len_bit(h.len())),
            headers,
            query: set(QUERY, &mut query.into_iter()),
        }
    }

    /// Whether header `name` carries a credential.
    #[inline]
    pub fn header(&self, name: &[u8]) -> bool {
        self.header_lens & len_bit(name.len()) != 0
            && self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether query parameter `name` (raw, perhaps percent-encoded)
    /// carries a credential.
    pub fn param(&self, name: &[u8]) -> bool {
        if self.query.is_empty() {
            return false;
        }
        let name = crate::http::vars::percent_decode(name);
        self.query.iter().any(|q| q.eq_ignore_ascii_case(&name))
    }

    /// What to log of header `name`'s `value`: the marker when the header
    /// carries a credential (an `Authorization`-style header keeps its
    /// scheme: `Bearer [REDACTED]`), else the value.
    pub fn header_value<'v>(&self, name: &[u8], value: &'v [u8]) -> Cow<'v, [u8]> {
        if !self.header(name) {
            return Cow::Borrowed(value);
        }
        Cow::Owned(masked(name, value))
    }

    /// The ranges of `query` holding credential values, found lazily (no
    /// allocation; nothing to find costs one scan).
    fn secret_values<'q>(&'q self, query: &'q [u8]) -> impl Iterator<Item = Range<usize>> + 'q {
        let mut start = 0;
        query
            .split(|&b| b == b'&')
            .take_while(|_| !self.query.is_empty())
            .filter_map(move |pair| {
                let at = start;
                start += pair.len() + 1;
                let eq = memchr::memchr(b'=', pair)?;
                (eq + 1 < pair.len() && self.param(&pair[..eq]))
                    .then(|| at + eq + 1..at + pair.len())
            })
    }

    /// A query string with credential values replaced.
    pub fn query<'q>(&self, query: &'q [u8]) -> Cow<'q, [u8]> {
        splice(query, self.secret_values(query).map(marker))
    }

    /// The credential values of `target`'s query (absolute ranges).
    fn target_secrets<'t>(&'t self, target: &'t [u8]) -> impl Iterator<Item = Range<usize>> + 't {
        let q = memchr::memchr(b'?', target).map_or(target.len(), |i| i + 1);
        self.secret_values(&target[q..])
            .map(move |r| r.start + q..r.end + q)
    }

    /// A request target (`/path?query`, or absolute-form) with credential
    /// values in its query replaced.
    pub fn target<'t>(&self, target: &'t [u8]) -> Cow<'t, [u8]> {
        splice(target, self.target_secrets(target).map(marker))
    }

    /// [`Redaction::target`] as pieces handed to `emit` (for a writer that
    /// escapes as it goes: no allocation).
    pub fn write_target(&self, target: &[u8], emit: &mut dyn FnMut(&[u8])) {
        let mut at = 0;
        for r in self.target_secrets(target) {
            emit(&target[at..r.start]);
            emit(MARKER.as_bytes());
            at = r.end;
        }
        emit(&target[at..]);
    }

    /// The raw head (`meta_format: origin`) with credential values in the
    /// request line's query and in headers replaced; byte for byte the
    /// same otherwise.
    pub fn head<'h>(&self, head: &'h RequestHead) -> Cow<'h, [u8]> {
        let buf = &head.buf[..];
        let mut cuts: Vec<(Range<usize>, Cow<'static, [u8]>)> = Vec::new();
        if let Some(q) = head.query {
            let at = q.start as usize;
            let shifted = self
                .secret_values(head.query().unwrap_or_default())
                .map(|r| r.start + at..r.end + at);
            cuts.extend(shifted.map(marker));
        }
        for h in &head.headers {
            let name = head.header_name(h);
            if self.header(name) {
                let value = head.header_value(h);
                let range = h.value.start as usize..h.value.end as usize;
                cuts.push((range, Cow::Owned(masked(name, value))));
            }
        }
        cuts.sort_by_key(|(r, _)| r.start);
        splice(buf, cuts.into_iter())
    }

    /// Variable `name`'s `value` as a log may show it (`log_format`).
    pub fn variable<'v>(&self, name: &str, value: Cow<'v, [u8]>) -> Cow<'v, [u8]> {
        if self.headers.is_empty() && self.query.is_empty() {
            return value;
        }
        let marker = || Cow::Borrowed(MARKER.as_bytes());
        match name {
            "request_uri" => owned(self.target(&value)).unwrap_or(value),
            "args" | "query_string" => owned(self.query(&value)).unwrap_or(value),
            _ => {
                if let Some(arg) = name.strip_prefix("arg_") {
                    if self.param(arg.as_bytes()) {
                        return marker();
                    }
                } else if let Some(h) = name.strip_prefix("http_") {
                    if let Some(listed) = self.headers.iter().find(|l| same_header(l, h)) {
                        return Cow::Owned(masked(listed, &value));
                    }
                } else if name.starts_with("cookie_") && self.header(b"cookie") {
                    return marker();
                }
                value
            }
        }
    }
}

/// A credential value's range, to be replaced by the marker.
fn marker(r: Range<usize>) -> (Range<usize>, Cow<'static, [u8]>) {
    (r, Cow::Borrowed(MARKER.as_bytes()))
}

/// `Some` when `c` was changed (so it can outlive what it borrowed).
fn owned(c: Cow<'_, [u8]>) -> Option<Cow<'static, [u8]>> {
    match c {
        Cow::Borrowed(_) => None,
        Cow::Owned(v) => Some(Cow::Owned(v)),
    }
}

/// Header `name` (listed) as the variable suffix `var` (`x_api_key` for
/// `X-API-Key`: nginx's `$http_` names use `_` for `-`).
fn same_header(name: &[u8], var: &str) -> bool {
    let var = var.as_bytes();
    name.len() == var.len()
        && name.iter().zip(var).all(|(&a, &b)| {
            let norm = |c: u8| {
                if c == b'-' {
                    b'_'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(a) == norm(b)
        })
}

/// The marker for a credential header's value; `Authorization`-style
/// headers keep an alphabetic scheme (`Bearer [REDACTED]`).
fn masked(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARKER.len() + 16);
    let authz = name.len() >= 13 && name[name.len() - 13..].eq_ignore_ascii_case(b"authorization");
    if authz {
        if let Some(sp) = memchr::memchr(b' ', value) {
            let scheme = &value[..sp];
            if (1..=16).contains(&scheme.len()) && scheme.iter().all(u8::is_ascii_alphabetic) {
                out.extend_from_slice(scheme);
                out.push(b' ');
            }
        }
    }
    out.extend_from_slice(MARKER.as_bytes());
    out
}

/// `bytes` with each range (ascending, disjoint) replaced.
fn splice<'b>(
    bytes: &'b [u8],
    mut cuts: impl Iterator<Item = (Range<usize>, Cow<'static, [u8]>)>,
) -> Cow<'b, [u8]> {
    let Some(first) = cuts.next() else {
        return Cow::Borrowed(bytes);
    };
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut at = 0;
    for (r, with) in std::iter::once(first).chain(cuts) {
        out.extend_from_slice(&bytes[at..r.start]);
        out.extend_from_slice(&with);
        at = r.end;
    }
    out.extend_from_slice(&bytes[at..]);
    Cow::Owned(out)
}

/// A URL from the configuration as error lines show it: any userinfo
/// and every query value replaced (`https://h/p?dd-api-key=[REDACTED]`):
/// whatever a log endpoint or provider takes in its URL may be a key.
pub fn configured_url(url: &str) -> Cow<'_, str> {
    // A scheme is what comes before the first `://`, unless a path, query
    // or fragment has begun by then (`h?tp://x` is all query).
    let after_scheme = url
        .find("://")
        .filter(|&i| !url[..i].contains(['/', '?', '#']))
        .map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| i + after_scheme);
    let userinfo = url[after_scheme..authority_end].rfind('@');
    let query = url[after_scheme..].find('?').map(|q| q + after_scheme);
    if userinfo.is_none() && query.is_none() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 16);
    out.push_str(&url[..after_scheme]);
    let host_from = match userinfo {
        Some(at) => {
            out.push_str(MARKER);
            after_scheme + at
        }
        None => after_scheme,
    };
    match query {
        None => out.push_str(&url[host_from..]),
        Some(q) => {
            out.push_str(&url[host_from..=q]);
            let (query, fragment) = match url[q + 1..].find('#') {
                Some(f) => (&url[q + 1..q + 1 + f], &url[q + 1 + f..]),
                None => (&url[q + 1..], ""),
            };
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((k, _)) => {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(MARKER);
                    }
                    None => out.push_str(pair),
                }
            }
            out.push_str(fragment);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    fn head(raw: &'static [u8]) -> RequestHead {
        RequestHead::parse(
            bytes::Bytes::from_static(raw),
            &HeadLimits::default(),
            Vec::new(),
        )
        .unwrap()
    }

    fn s(c: Cow<'_, [u8]>) -> String {
        String::from_utf8(c.into_owned()).unwrap()
    }

    #[test]
    fn query_values_are_replaced_names_kept() {
        let r = Redaction::new(["x-tenant"], ["tenant_token"]);
        assert_eq!(
            s(r.query(b"a=1&apikey=k&key=g&flag&API_KEY=x&tenant_token=t&api%5Fkey=y&apikey=")),
            "a=1&apikey=[REDACTED]&key=[REDACTED]&flag&API_KEY=[REDACTED]&tenant_token=[REDACTED]&api%5Fkey=[REDACTED]&apikey="
        );
        assert!(matches!(r.query(b"a=1&b=2"), Cow::Borrowed(_)));
        assert_eq!(
            s(r.target(b"/v1/chat?access_token=t&x=1")),
            "/v1/chat?access_token=[REDACTED]&x=1"
        );
        assert_eq!(
            s(r.target(b"http://h/p?key=1")),
            "http://h/p?key=[REDACTED]"
        );
        assert!(matches!(r.target(b"/v1/chat"), Cow::Borrowed(_)));
        let off = Redaction::off();
        assert_eq!(s(off.target(b"/p?apikey=k")), "/p?apikey=k");
    }

    #[test]
    fn header_values_keep_an_authorization_scheme() {
        let r = Redaction::new([], []);
        assert_eq!(
            s(r.header_value(b"Authorization", b"Bearer sk-1")),
            "Bearer [REDACTED]"
        );
        assert_eq!(s(r.header_value(b"authorization", b"sk-1 x")), "[REDACTED]");
        assert_eq!(s(r.header_value(b"authorization", b"sk-1")), "[REDACTED]");
        assert_eq!(
            s(r.header_value(b"Proxy-Authorization", b"Basic a")),
            "Basic [REDACTED]"
        );
        assert_eq!(s(r.header_value(b"X-API-KEY", b"Bearer k")), "[REDACTED]");
        assert_eq!(s(r.header_value(b"user-agent", b"sdk")), "sdk");
        assert!(Redaction::off().header_value(b"apikey", b"k") == Cow::Borrowed(&b"k"[..]));
    }

    #[test]
    fn the_origin_head_changes_only_credentials() {
        let r = Redaction::new(["X-Tenant"], []);
        let h = head(b"POST /v1/chat?apikey=k1&q=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer k2\r\nx-tenant:k3\r\nCookie: a=b\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            s(r.head(&h)),
            "POST /v1/chat?apikey=[REDACTED]&q=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer [REDACTED]\r\nx-tenant:[REDACTED]\r\nCookie: [REDACTED]\r\nAccept: */*\r\n\r\n"
        );
        let plain = head(b"GET /x?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert!(matches!(r.head(&plain), Cow::Borrowed(_)));
        assert!(matches!(Redaction::off().head(&h), Cow::Borrowed(_)));
    }

    #[test]
    fn variables() {
        let r = Redaction::new(["X-Tenant-Token"], ["tenant_token"]);
        let v =
            |name: &str, value: &'static str| s(r.variable(name, Cow::Borrowed(value.as_bytes())));
        assert_eq!(v("http_authorization", "Bearer k"), "Bearer [REDACTED]");
        assert_eq!(v("http_x_api_key", "k"), "[REDACTED]");
        assert_eq!(v("http_x_tenant_token", "k"), "[REDACTED]");
        assert_eq!(v("http_user_agent", "sdk"), "sdk");
        assert_eq!(v("arg_apikey", "k"), "[REDACTED]");
        assert_eq!(v("arg_tenant_token", "k"), "[REDACTED]");
        assert_eq!(v("arg_q", "1"), "1");
        assert_eq!(v("cookie_sid", "s"), "[REDACTED]");
        assert_eq!(v("request_uri", "/p?key=k&q=1"), "/p?key=[REDACTED]&q=1");
        assert_eq!(v("args", "key=k&q=1"), "key=[REDACTED]&q=1");
        assert_eq!(v("uri", "/p"), "/p");
        let off = Redaction::off();
        assert_eq!(s(off.variable("http_apikey", Cow::Borrowed(b"k"))), "k");
    }

    #[test]
    fn configured_urls_lose_query_values_and_userinfo() {
        assert_eq!(configured_url("http://h:1/logs"), "http://h:1/logs");
        assert_eq!(
            configured_url("https://h/v1?dd-api-key=k&src=x&flag#f"),
            "https://h/v1?dd-api-key=[REDACTED]&src=[REDACTED]&flag#f"
        );
        assert_eq!(
            configured_url("https://user:pw@h/p?x=1"),
            "https://[REDACTED]@h/p?x=[REDACTED]"
        );
        assert_eq!(configured_url("nonsense"), "nonsense");
        // Found by cargo fuzz (config_file): a `?` before the `://`.
        assert_eq!(
            configured_url("h?tp://127.0.0.1:1/v1?k=v"),
            "h?tp://127.0.0.1:1/v1?k=[REDACTED]"
        );
        for url in ["?://", "a/b://c?d=e", "://?x=1", "#://@?", "x://@", "@?://"] {
            let _ = configured_url(url);
        }
    }
}
