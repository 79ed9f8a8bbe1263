//! Route matching: `uris` exact or `/*`-style prefix, `methods`, `hosts`,
//! and `vars` (conditions on the request's variables, APISIX's
//! lua-resty-expr: [`crate::http::expr`]).
//!
//! Compiled once per snapshot into an exact-path hash map and a list of
//! prefixes ordered longest first, each bucket ordered by route `priority`
//! (highest first), so a lookup is one hash probe plus a short prefix scan.
//! Precedence follows APISIX's radixtree: exact paths before prefixes,
//! longer prefixes before shorter ones, then priority.

use std::sync::Arc;

use ahash::AHashMap;
use http::Method;

use crate::config::{ConfigError, FieldPath};
use crate::http::expr::Expr;

/// A set of HTTP methods as a bitmask; empty means "any".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

impl MethodSet {
    pub fn parse(list: &[String], at: &FieldPath) -> Result<MethodSet, ConfigError> {
        let mut bits = 0u16;
        for (i, m) in list.iter().enumerate() {
            let idx = METHODS.iter().position(|x| x == m).ok_or_else(|| {
                at.index(i).error(format!(
                    "unknown method `{m}`, expected one of {}",
                    METHODS.join(", ")
                ))
            })?;
            bits |= 1 << idx;
        }
        Ok(MethodSet(bits))
    }

    #[inline]
    pub fn contains(&self, m: &Method) -> bool {
        if self.0 == 0 {
            return true;
        }
        let idx = match *m {
            Method::GET => 0,
            Method::POST => 1,
            Method::PUT => 2,
            Method::DELETE => 3,
            Method::PATCH => 4,
            Method::HEAD => 5,
            Method::OPTIONS => 6,
            Method::CONNECT => 7,
            Method::TRACE => 8,
            _ if m.as_str() == "PURGE" => 9,
            _ => return false,
        };
        self.0 & (1 << idx) != 0
    }
}

/// Host patterns: exact names or `*.suffix` wildcards; empty means "any".
#[derive(Debug, Clone, Default)]
pub struct HostSet {
    exact: Vec<Box<[u8]>>,
    /// Stored with the leading `*` removed, e.g. `.example.com`.
    suffixes: Vec<Box<[u8]>>,
}

impl HostSet {
    pub fn parse(list: &[String], at: &FieldPath) -> Result<HostSet, ConfigError> {
        let mut set = HostSet::default();
        for (i, h) in list.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains(' ') {
                return Err(at.index(i).error(format!("`{h}` is not a host name")));
            }
            if let Some(rest) = h.strip_prefix('*') {
                if !rest.starts_with('.') || rest.contains('*') {
                    return Err(at
                        .index(i)
                        .error("wildcards must look like `*.example.com`"));
                }
                set.suffixes.push(rest.as_bytes().into());
            } else if h.contains('*') {
                return Err(at
                    .index(i)
                    .error("wildcards must look like `*.example.com`"));
            } else {
                set.exact.push(h.as_bytes().into());
            }
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    #[inline]
    pub fn matches(&self, host: Option<&[u8]>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(host) = host else { return false };
        self.exact.iter().any(|e| e.eq_ignore_ascii_case(host))
            || self.suffixes.iter().any(|s| {
                host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            })
    }
}

/// What a route matches on; `route` indexes the snapshot's route table.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route: usize,
    pub priority: i64,
    pub methods: MethodSet,
    pub hosts: HostSet,
    /// `vars`: conditions on the request's variables.
    pub vars: Option<Arc<Expr>>,
}

/// A URI pattern from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPattern {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
}

impl UriPattern {
    pub fn parse(uri: &str, at: &FieldPath) -> Result<UriPattern, ConfigError> {
        if !uri.starts_with('/') {
            return Err(at.error(format!("`{uri}` must start with `/`")));
        }
        if uri.contains(':') || uri.contains('{') {
            return Err(at.error(format!(
                "`{uri}`: parameterised paths are not supported; use an exact path or a `/*` prefix"
            )));
        }
        match uri.find('*') {
            None => Ok(UriPattern::Exact(uri.as_bytes().into())),
            Some(i) if i == uri.len() - 1 => Ok(UriPattern::Prefix(uri.as_bytes()[..i].into())),
            Some(_) => Err(at.error(format!("`{uri}`: `*` is only allowed at the end"))),
        }
    }
}

#[derive(Debug, Default)]
pub struct Router {
    exact: AHashMap<Box<[u8]>, Vec<RouteMatch>>,
    /// Longest prefix first.
    prefixes: Vec<(Box<[u8]>, Vec<RouteMatch>)>,
}

impl Router {
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }

    /// Finds the route for a request, or `None` (404). `holds` tells
    /// whether a route's `vars` hold for the request (asked only of routes
    /// that have them).
    #[inline]
    pub fn find(
        &self,
        method: &Method,
        path: &[u8],
        host: Option<&[u8]>,
        holds: &dyn Fn(&Expr) -> bool,
    ) -> Option<usize> {
        let pick = |bucket: &[RouteMatch]| {
            bucket
                .iter()
                .find(|m| {
                    m.methods.contains(method)
                        && m.hosts.matches(host)
                        && m.vars.as_deref().is_none_or(holds)
                })
                .map(|m| m.route)
        };
        if let Some(bucket) = self.exact.get(path) {
            if let Some(r) = pick(bucket) {
                return Some(r);
            }
        }
        self.prefixes
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .find_map(|(_, bucket)| pick(bucket))
    }
}

#[derive(Debug, Default)]
pub struct RouterBuilder {
    exact: AHashMap<Box<[u8]>, Vec<RouteMatch>>,
    prefixes: AHashMap<Box<[u8]>, Vec<RouteMatch>>,
}

impl RouterBuilder {
    pub fn add(&mut self, pattern: UriPattern, m: RouteMatch) {
        match pattern {
            UriPattern::Exact(p) => self.exact.entry(p).or_default().push(m),
            UriPattern::Prefix(p) => self.prefixes.entry(p).or_default().push(m),
        }
    }

    pub fn build(self) -> Router {
        let order = |v: &mut Vec<RouteMatch>| {
            v.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.route.cmp(&b.route)))
        };
        let mut exact = self.exact;
        exact.values_mut().for_each(order);
        let mut prefixes: Vec<_> = self.prefixes.into_iter().collect();
        prefixes.iter_mut().for_each(|(_, v)| order(v));
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Router { exact, prefixes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(route: usize, priority: i64, methods: &[&str], hosts: &[&str]) -> RouteMatch {
        let at = FieldPath::root();
        RouteMatch {
            route,
            priority,
            methods: MethodSet::parse(
                &methods.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &at,
            )
            .unwrap(),
            hosts: HostSet::parse(
                &hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &at,
            )
            .unwrap(),
            vars: None,
        }
    }

    fn pat(s: &str) -> UriPattern {
        UriPattern::parse(s, &FieldPath::root()).unwrap()
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_wins() {
        let mut b = Router::builder();
        b.add(pat("/*"), m(0, 0, &[], &[]));
        b.add(pat("/v1/*"), m(1, 0, &[], &[]));
        b.add(pat("/v1/chat/completions"), m(2, 0, &["POST"], &[]));
        let r = b.build();
        assert_eq!(
            r.find(&Method::POST, b"/v1/chat/completions", None, &|_| true),
            Some(2)
        );
        assert_eq!(
            r.find(&Method::GET, b"/v1/chat/completions", None, &|_| true),
            Some(1)
        );
        assert_eq!(
            r.find(&Method::GET, b"/v1/models", None, &|_| true),
            Some(1)
        );
        assert_eq!(r.find(&Method::GET, b"/other", None, &|_| true), Some(0));
    }

    #[test]
    fn priority_and_hosts() {
        let mut b = Router::builder();
        b.add(pat("/a"), m(0, 0, &[], &[]));
        b.add(pat("/a"), m(1, 10, &[], &["*.example.com"]));
        let r = b.build();
        assert_eq!(
            r.find(&Method::GET, b"/a", Some(b"api.example.com"), &|_| true),
            Some(1)
        );
        assert_eq!(
            r.find(&Method::GET, b"/a", Some(b"API.EXAMPLE.COM"), &|_| true),
            Some(1)
        );
        assert_eq!(
            r.find(&Method::GET, b"/a", Some(b"example.com"), &|_| true),
            Some(0)
        );
        assert_eq!(r.find(&Method::GET, b"/b", None, &|_| true), None);
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let at = FieldPath::root();
        assert!(UriPattern::parse("v1", &at).is_err());
        assert!(UriPattern::parse("/a/*/b", &at).is_err());
        assert!(UriPattern::parse("/users/:id", &at).is_err());
        assert!(MethodSet::parse(&["FETCH".into()], &at).is_err());
        assert!(HostSet::parse(&["a.*.com".into()], &at).is_err());
    }
}
