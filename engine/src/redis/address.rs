//! Where a Redis node is, without DNS on a worker. The nodes a
//! configuration names (servers, cluster seeds, sentinels) are resolved
//! when it is compiled and kept fresh by the DNS thread
//! ([`crate::upstream::endpoint`]); a node learned at run time (a cluster
//! redirect, a sentinel's answer) is an IP literal in practice, and a name
//! is handed to that thread, the call failing until it is resolved.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use ahash::AHashMap;

use super::client::{RedisError, Target};
use crate::upstream::endpoint::Endpoint;

/// Learned names kept per worker before the table starts over.
const MAX_LEARNED: usize = 256;

thread_local! {
    static LEARNED: RefCell<AHashMap<String, Arc<Endpoint>>> = RefCell::new(AHashMap::new());
}

/// `host:port` split (brackets of an IPv6 host kept).
pub fn split(node: &str) -> Option<(&str, u16)> {
    let (host, port) = node.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// The configured nodes of `target`, resolved now (blocking: call only off
/// the workers, as compiling a configuration is).
pub fn resolve_configured(target: &Target) -> Vec<(String, Arc<Endpoint>)> {
    let sentinels = target.sentinel.iter().flat_map(|s| s.nodes.iter());
    target
        .nodes
        .iter()
        .chain(sentinels)
        .filter_map(|n| split(n).map(|(h, p)| (n.clone(), Endpoint::resolve(h, p))))
        .collect()
}

/// The address to dial for `node`.
pub fn of(target: &Target, node: &str) -> Result<SocketAddr, RedisError> {
    if let Ok(a) = node.parse::<SocketAddr>() {
        return Ok(a);
    }
    let configured = target
        .state
        .endpoints
        .iter()
        .find(|(n, _)| n == node)
        .map(|(_, e)| e.clone());
    let ep = match configured {
        Some(e) => e,
        None => learned(node)?,
    };
    ep.addr()
        .ok_or_else(|| RedisError::Io(format!("{node}: not resolved (yet)")))
}

fn learned(node: &str) -> Result<Arc<Endpoint>, RedisError> {
    let (host, port) =
        split(node).ok_or_else(|| RedisError::Io(format!("{node}: not host:port")))?;
    Ok(LEARNED.with(|l| {
        let mut l = l.borrow_mut();
        if let Some(e) = l.get(node) {
            return e.clone();
        }
        if l.len() >= MAX_LEARNED {
            l.clear();
        }
        let e = Endpoint::resolve_later(host, port);
        l.insert(node.to_owned(), e.clone());
        e
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_split_and_literals_need_no_dns() {
        assert_eq!(split("redis.example:6380"), Some(("redis.example", 6380)));
        assert_eq!(split("[::1]:6379"), Some(("[::1]", 6379)));
        assert_eq!(split("nohost"), None);
        let t = Target::for_test(vec!["127.0.0.1:6379".into()]);
        assert_eq!(
            of(&t, "127.0.0.1:7000").unwrap(),
            "127.0.0.1:7000".parse().unwrap()
        );
        assert_eq!(of(&t, "[::1]:7000").unwrap(), "[::1]:7000".parse().unwrap());
    }
}
