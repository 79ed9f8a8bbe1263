//! Endpoint URLs (`https://host[:port]/path?query`) as instances use them:
//! parsed once at load time into scheme, host, port and the request target.

use std::fmt;

use crate::upstream::Scheme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    pub scheme: Scheme,
    /// Host as written (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub target: String,
}

impl EndpointUrl {
    /// Parses `s`; an error shows it without userinfo or query values
    /// (they may be keys).
    pub fn parse(s: &str) -> Result<EndpointUrl, String> {
        let shown = crate::observe::redact::configured_url(s);
        EndpointUrl::parse_shown(s, &shown)
    }

    fn parse_shown(s: &str, shown: &str) -> Result<EndpointUrl, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(format!("`{shown}` must start with http:// or https://"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "`{shown}`: credentials in the URL are not supported; use `auth`"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("`{shown}`: unterminated IPv6 address"))?;
            let host = &authority[..end + 2];
            match &v6[end + 1..] {
                "" => (host, scheme.default_port()),
                p => (host, parse_port(p.strip_prefix(':').unwrap_or("x"), shown)?),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, parse_port(p, shown)?),
                None => (authority, scheme.default_port()),
            }
        };
        if host.is_empty() || host.contains(' ') {
            return Err(format!("`{shown}` has no host"));
        }
        let target = if target.is_empty() {
            "/".to_owned()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };
        if target.contains(' ') {
            return Err(format!("`{shown}`: spaces must be percent-encoded"));
        }
        Ok(EndpointUrl {
            scheme,
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }
}

/// Appends the query of an upstream request target being written into
/// `out`: the instance's own (`own`: Azure's `api-version`, `auth.query`
/// keys), then the client's parameters — except those the instance sets
/// itself, which keep the instance's value (names compared
/// percent-decoded and ASCII case-insensitively, as servers may), and
/// `hidden` (key-auth's `hide_credentials` parameter).
pub fn append_query(
    out: &mut Vec<u8>,
    own: Option<&str>,
    client: Option<&[u8]>,
    hidden: Option<&str>,
) {
    fn name(pair: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        let end = memchr::memchr(b'=', pair).unwrap_or(pair.len());
        crate::http::vars::percent_decode(&pair[..end])
    }
    fn params(q: &[u8]) -> Vec<&[u8]> {
        q.split(|&b| b == b'&').filter(|p| !p.is_empty()).collect()
    }
    let own = params(own.unwrap_or_default().as_bytes());
    let taken = |pair: &[u8]| {
        let n = name(pair);
        own.iter().any(|o| name(o).eq_ignore_ascii_case(&n))
            || hidden.is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(&n))
    };
    let client = params(client.unwrap_or_default());
    let mut sep = b'?';
    for pair in own.iter().chain(client.iter().filter(|p| !taken(p))) {
        out.push(sep);
        out.extend_from_slice(pair);
        sep = b'&';
    }
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("`{whole}`: invalid port"))
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instances_query_comes_first_and_wins() {
        let q = |own, client: &str, hidden| {
            let mut out = b"/p".to_vec();
            append_query(&mut out, own, Some(client.as_bytes()), hidden);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            q(
                Some("api-version=1&key=k"),
                "api-version=evil&API-Version=x&k%65y=y&include=a&&after=b",
                None
            ),
            "/p?api-version=1&key=k&include=a&after=b"
        );
        assert_eq!(q(None, "a=1&apikey=s&b", Some("apikey")), "/p?a=1&b");
        assert_eq!(q(Some("v=1"), "", None), "/p?v=1");
        assert_eq!(q(None, "", None), "/p");
    }

    #[test]
    fn parses_endpoints() {
        let u = EndpointUrl::parse("https://api.openai.com/v1/chat/completions").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.target.as_str()),
            (Scheme::Https, "api.openai.com", 443, "/v1/chat/completions")
        );
        let u = EndpointUrl::parse(
            "http://127.0.0.1:18001/openai/deployments/d/embeddings?api-version=2023-05-15",
        )
        .unwrap();
        assert_eq!(u.port, 18001);
        assert_eq!(u.path(), "/openai/deployments/d/embeddings");
        assert_eq!(u.authority(), "127.0.0.1:18001");
        assert_eq!(
            EndpointUrl::parse("http://[::1]:8/x").unwrap().host,
            "[::1]"
        );
        assert_eq!(EndpointUrl::parse("http://h").unwrap().target, "/");
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:18001/openai/deployments/d/embeddings?api-version=2023-05-15"
        );
        for bad in [
            "ftp://x",
            "https://",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "api.openai.com/v1",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
