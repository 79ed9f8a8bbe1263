//! nginx-style request variables (`remote_addr`, `uri`, `arg_x`,
//! `http_x`, `cookie_x`, …) as APISIX exposes them, for consistent-hash keys
//! (`hash_on: vars`, `vars_combinations`) and logs.

use std::borrow::Cow;
use std::net::SocketAddr;

use super::RequestHead;

/// What variables are resolved against.
pub struct VarSource<'a> {
    pub head: &'a RequestHead,
    pub peer: SocketAddr,
    pub consumer: Option<&'a str>,
    pub tls: bool,
}

impl VarSource<'_> {
    /// The value of variable `name` (without `$`), if set.
    pub fn get(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        let h = self.head;
        let v: Cow<'_, [u8]> = match name {
            "remote_addr" => Cow::Owned(self.peer.ip().to_string().into_bytes()),
            "remote_port" => Cow::Owned(self.peer.port().to_string().into_bytes()),
            "uri" => Cow::Borrowed(h.path()),
            "request_uri" => Cow::Borrowed(h.target()),
            "args" | "query_string" => Cow::Borrowed(h.query()?),
            "host" => Cow::Borrowed(h.host()?),
            "request_method" => Cow::Borrowed(h.method.as_str().as_bytes()),
            "scheme" => Cow::Borrowed(if self.tls { b"https" } else { b"http" }),
            "consumer_name" => Cow::Borrowed(self.consumer?.as_bytes()),
            _ => {
                if let Some(arg) = name.strip_prefix("arg_") {
                    return query_arg(h.query()?, arg.as_bytes()).map(Cow::Borrowed);
                }
                if let Some(hdr) = name.strip_prefix("http_") {
                    let hdr = hdr.replace('_', "-");
                    return h.header(&hdr).map(Cow::Borrowed);
                }
                if let Some(c) = name.strip_prefix("cookie_") {
                    return self.cookie(c).map(Cow::Borrowed);
                }
                return None;
            }
        };
        Some(v)
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.head.header_all("cookie").find_map(|v| {
            v.split(|&b| b == b';').find_map(|pair| {
                let pair = super::headers::trim(pair);
                let eq = memchr::memchr(b'=', pair)?;
                (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
            })
        })
    }

    /// Expands `$name` and `${name}` references; unset variables expand to
    /// nothing. `None` when every referenced variable was unset.
    pub fn expand(&self, template: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut any = false;
        let b = template.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let (name, next) = if b.get(i + 1) == Some(&b'{') {
                match template[i + 2..].find('}') {
                    Some(end) => (&template[i + 2..i + 2 + end], i + 3 + end),
                    None => (&template[i + 2..], b.len()),
                }
            } else {
                let len = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (&template[i + 1..i + 1 + len], i + 1 + len)
            };
            if let Some(v) = self.get(name) {
                out.extend_from_slice(&v);
                any = true;
            }
            i = next;
        }
        any.then_some(out)
    }
}

/// Decodes `%XX` escapes and `+` (form encoding) when present.
pub fn percent_decode(v: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !v.iter().any(|&b| b == b'%' || b == b'+') {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' if i + 2 < v.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(v[i + 1]), hex(v[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

fn query_arg<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let eq = memchr::memchr(b'=', pair).unwrap_or(pair.len());
        (&pair[..eq] == name).then(|| pair.get(eq + 1..).unwrap_or(&[]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    fn head(raw: &str) -> RequestHead {
        RequestHead::parse(
            bytes::Bytes::copy_from_slice(raw.as_bytes()),
            &HeadLimits::default(),
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn resolves_common_variables() {
        let h = head("GET /a/b?user=42&x HTTP/1.1\r\nHost: gw.test:9080\r\nX-Session-Id: s1\r\nCookie: a=1; sid=abc\r\n\r\n");
        let v = VarSource {
            head: &h,
            peer: "10.0.0.7:5555".parse().unwrap(),
            consumer: Some("johndoe"),
            tls: false,
        };
        assert_eq!(&*v.get("remote_addr").unwrap(), b"10.0.0.7");
        assert_eq!(&*v.get("uri").unwrap(), b"/a/b");
        assert_eq!(&*v.get("request_uri").unwrap(), b"/a/b?user=42&x");
        assert_eq!(&*v.get("arg_user").unwrap(), b"42");
        assert_eq!(&*v.get("arg_x").unwrap(), b"");
        assert!(v.get("arg_none").is_none());
        assert_eq!(&*v.get("http_x_session_id").unwrap(), b"s1");
        assert_eq!(&*v.get("cookie_sid").unwrap(), b"abc");
        assert_eq!(&*v.get("host").unwrap(), b"gw.test");
        assert_eq!(&*v.get("consumer_name").unwrap(), b"johndoe");
        assert_eq!(
            v.expand("$remote_addr-${arg_user}").unwrap(),
            b"10.0.0.7-42"
        );
        assert_eq!(v.expand("$arg_missing"), None);
    }
}
