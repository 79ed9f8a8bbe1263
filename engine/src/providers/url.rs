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
    pub fn parse(s: &str) -> Result<EndpointUrl, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(format!("`{s}` must start with http:// or https://"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "`{s}`: credentials in the URL are not supported; use `auth`"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("`{s}`: unterminated IPv6 address"))?;
            let host = &authority[..end + 2];
            match &v6[end + 1..] {
                "" => (host, scheme.default_port()),
                p => (host, parse_port(p.strip_prefix(':').unwrap_or("x"), s)?),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, parse_port(p, s)?),
                None => (authority, scheme.default_port()),
            }
        };
        if host.is_empty() || host.contains(' ') {
            return Err(format!("`{s}` has no host"));
        }
        let target = if target.is_empty() {
            "/".to_owned()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };
        if target.contains(' ') {
            return Err(format!("`{s}`: spaces must be percent-encoded"));
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
