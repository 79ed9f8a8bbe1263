//! Connections and commands. A [`Target`] names a Redis server (or the
//! seed nodes of a cluster) with its credentials, database and timeout;
//! [`query`] sends a pipeline of commands and returns one reply each.
//!
//! Idle connections live in a thread-local pool per worker: a call takes
//! one (or dials), uses it alone, and gives it back only if it finished
//! cleanly, so a timeout or a protocol error never leaves a half-read
//! reply on a reused connection.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use super::resp::{self, Reply};

/// Where counters live.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` of the server, or the cluster's seed nodes.
    pub nodes: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `SELECT`ed after connecting (standalone only).
    pub database: u32,
    /// Bounds a whole call: connect, AUTH, the commands and the replies.
    pub timeout: Duration,
    /// An idle connection older than this is closed, not reused
    /// (`redis_keepalive_timeout`).
    pub keepalive_timeout: Duration,
    /// Most idle connections kept per server on each worker
    /// (`redis_keepalive_pool`).
    pub keepalive_pool: usize,
    pub cluster: bool,
    /// TLS to every node (`redis_ssl` / `redis_cluster_ssl`).
    pub tls: Option<RedisTls>,
    /// Find the server through Redis Sentinel (`policy: redis-sentinel`);
    /// `nodes` is then empty.
    pub sentinel: Option<Sentinel>,
    /// The configured nodes' addresses and whether the deployment answers
    /// ([`Target::prepared`] fills it in).
    pub state: Arc<TargetState>,
}

/// What every worker shares about a [`Target`].
#[derive(Debug, Default)]
pub struct TargetState {
    /// The configured nodes and sentinels, resolved off the workers.
    pub(super) endpoints: Vec<(String, Arc<crate::upstream::endpoint::Endpoint>)>,
    pub(super) health: super::health::Health,
}

impl Target {
    /// The target with its configured nodes resolved (blocking: call when
    /// compiling a configuration, never on a worker) and a fresh health.
    pub fn prepared(mut self) -> Target {
        self.state = Arc::new(TargetState {
            endpoints: super::address::resolve_configured(&self),
            health: Default::default(),
        });
        self
    }

    /// The deployment, for logs: its nodes or sentinels.
    pub fn describe(&self) -> String {
        match &self.sentinel {
            Some(s) => format!("master {} via sentinels {}", s.master, s.nodes.join(",")),
            None => self.nodes.join(","),
        }
    }

    /// A standalone target for tests.
    #[cfg(test)]
    pub fn for_test(nodes: Vec<String>) -> Target {
        Target {
            nodes,
            username: None,
            password: None,
            database: 0,
            timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(10),
            keepalive_pool: 1,
            cluster: false,
            tls: None,
            sentinel: None,
            state: Arc::default(),
        }
    }
}

/// The sentinels watching a master, and how to log in to them.
#[derive(Debug, Clone)]
pub struct Sentinel {
    /// The master name and the sentinels, as one key: where the address
    /// learned from them is kept (two sentinel groups may each watch a
    /// master of the same name).
    pub id: String,
    /// `host:port` of each sentinel, asked in turn.
    pub nodes: Vec<String>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `host:port`, with an IPv6 address in brackets.
pub fn node(host: &str, port: impl fmt::Display) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// TLS settings for Redis connections.
#[derive(Debug, Clone)]
pub struct RedisTls {
    pub clients: crate::upstream::tls::TlsClients,
    /// Check the server's certificate (against the web roots and
    /// `gateway.ssl_trusted_certificate`) and name.
    pub verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    Timeout,
    /// The deployment was found unreachable and no probe has reached it
    /// since: not tried.
    Down,
    Io(String),
    Protocol(String),
    /// An error reply to AUTH/SELECT or a command.
    Server(String),
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Timeout => f.write_str("redis timed out"),
            RedisError::Down => {
                f.write_str("redis is down (not tried until a background probe reaches it)")
            }
            RedisError::Io(e) => write!(f, "redis connection failed: {e}"),
            RedisError::Protocol(e) => write!(f, "redis protocol error: {e}"),
            RedisError::Server(e) => write!(f, "redis error: {e}"),
        }
    }
}

struct Conn {
    stream: crate::net::Io,
    buf: bytes::BytesMut,
    /// When it was last put back idle.
    idle_since: std::time::Instant,
}
/// Cluster redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

thread_local! {
    /// Idle connections by [`pool_key`]: the node and the login and
    /// database the connection was set up with.
    static IDLE: RefCell<AHashMap<String, Vec<Conn>>> = RefCell::new(AHashMap::new());
    /// Cluster slot owners learned from `MOVED` replies.
    static SLOTS: RefCell<AHashMap<u16, String>> = RefCell::new(AHashMap::new());
    /// Masters learned from sentinels, by [`Sentinel::id`].
    static MASTERS: RefCell<AHashMap<String, String>> = RefCell::new(AHashMap::new());
}

/// Sends `cmds` as one pipeline to the node that owns `key` and returns
/// their replies in order. Error replies to individual commands are
/// returned as [`Reply::Error`]; the call fails only when the server
/// cannot be reached, times out or speaks garbage.
pub async fn query(
    target: &Target,
    key: &[u8],
    cmds: &[&[&[u8]]],
) -> Result<Vec<Reply>, RedisError> {
    if target.state.health.is_down() {
        return Err(RedisError::Down);
    }
    let r = bounded(target, key, cmds).await;
    super::health::observe(target, &r);
    r
}

/// `PING`, whatever the deployment's health (the background probe).
pub async fn ping(target: &Target) -> Result<Vec<Reply>, RedisError> {
    bounded(target, b"", &[&[b"PING"]]).await
}

async fn bounded(target: &Target, key: &[u8], cmds: &[&[&[u8]]]) -> Result<Vec<Reply>, RedisError> {
    match crate::timer::timeout(target.timeout, query_inner(target, key, cmds)).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::Timeout),
    }
}

async fn query_inner(
    target: &Target,
    key: &[u8],
    cmds: &[&[&[u8]]],
) -> Result<Vec<Reply>, RedisError> {
    if let Some(s) = &target.sentinel {
        return via_sentinel(target, s, cmds).await;
    }
    let slot = resp::slot(key);
    let mut node = if target.cluster {
        SLOTS.with(|s| s.borrow().get(&slot).cloned())
    } else {
        None
    }
    .unwrap_or_else(|| target.nodes[0].clone());
    let mut asking = false;
    let mut last_err = None;
    for _ in 0..=MAX_REDIRECTS {
        let replies = match round_trip(target, &node, asking, cmds).await {
            Ok(r) => r,
            Err(e) if target.cluster && target.nodes.len() > 1 => {
                // Try the next seed node; forget what we knew of this slot.
                SLOTS.with(|s| s.borrow_mut().remove(&slot));
                let i = target
                    .nodes
                    .iter()
                    .position(|n| *n == node)
                    .map_or(0, |i| i + 1);
                node = target.nodes[i % target.nodes.len()].clone();
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        asking = false;
        let redirect = replies.iter().find_map(|r| match r {
            Reply::Error(e) if target.cluster => redirect(e),
            _ => None,
        });
        match redirect {
            None => return Ok(replies),
            Some((moved, to)) => {
                if moved {
                    SLOTS.with(|s| s.borrow_mut().insert(slot, to.clone()));
                } else {
                    asking = true;
                }
                node = to;
            }
        }
    }
    Err(last_err.unwrap_or_else(|| RedisError::Protocol("too many cluster redirects".into())))
}

/// Sends `cmds` to the master the sentinels name. The master's address is
/// kept per worker; when it stops answering, or answers as a replica
/// (`READONLY`: a failover happened), the sentinels are asked again and
/// the commands go once more to the master they name now.
async fn via_sentinel(
    target: &Target,
    s: &Sentinel,
    cmds: &[&[&[u8]]],
) -> Result<Vec<Reply>, RedisError> {
    let known = MASTERS.with(|m| m.borrow().get(&s.id).cloned());
    let fresh = known.is_none();
    let master = match known {
        Some(m) => m,
        None => ask_sentinels(target, s).await?,
    };
    match round_trip(target, &master, false, cmds).await {
        Ok(replies) if fresh || !is_readonly(&replies) => return Ok(replies),
        Err(e) if fresh => return Err(e),
        // A kept master that failed, or that is a replica now: ask again.
        _ => {}
    }
    MASTERS.with(|m| m.borrow_mut().remove(&s.id));
    IDLE.with(|p| p.borrow_mut().remove(&pool_key(target, &master)));
    let master = ask_sentinels(target, s).await?;
    round_trip(target, &master, false, cmds).await
}

fn is_readonly(replies: &[Reply]) -> bool {
    replies
        .iter()
        .any(|r| matches!(r, Reply::Error(e) if e.starts_with("READONLY")))
}

/// Asks each sentinel in turn for the master's address; remembers it.
async fn ask_sentinels(target: &Target, s: &Sentinel) -> Result<String, RedisError> {
    let mut last = RedisError::Protocol("no sentinels".into());
    for node in &s.nodes {
        match ask_sentinel(target, s, node).await {
            Ok(master) => {
                MASTERS.with(|m| m.borrow_mut().insert(s.id.clone(), master.clone()));
                return Ok(master);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn ask_sentinel(target: &Target, s: &Sentinel, node: &str) -> Result<String, RedisError> {
    // The sentinel's own login; the master's timeout and TLS.
    let login = Target {
        username: s.username.clone(),
        password: s.password.clone(),
        database: 0,
        sentinel: None,
        ..target.clone()
    };
    let mut conn = dial(&login, node).await?;
    let mut out = Vec::new();
    resp::encode(
        &mut out,
        &[b"SENTINEL", b"get-master-addr-by-name", s.master.as_bytes()],
    );
    match exchange(&mut conn, out, 1).await?.pop() {
        Some(Reply::Array(Some(parts))) if parts.len() == 2 => {
            let text = |r: &Reply| match r {
                Reply::Bulk(Some(b)) => String::from_utf8(b.clone()).ok(),
                _ => None,
            };
            match (text(&parts[0]), text(&parts[1])) {
                (Some(host), Some(port)) => Ok(self::node(&host, port)),
                _ => Err(RedisError::Protocol(format!(
                    "{node}: unexpected master address"
                ))),
            }
        }
        Some(Reply::Array(None)) | Some(Reply::Bulk(None)) => Err(RedisError::Server(format!(
            "sentinel {node} does not know master `{}`",
            s.master
        ))),
        Some(Reply::Error(e)) => Err(RedisError::Server(format!("sentinel {node}: {e}"))),
        other => Err(RedisError::Protocol(format!(
            "{node}: unexpected reply {other:?}"
        ))),
    }
}

/// `MOVED 3999 127.0.0.1:6381` → (true, addr); `ASK …` → (false, addr).
fn redirect(e: &str) -> Option<(bool, String)> {
    let mut parts = e.split_ascii_whitespace();
    let moved = match parts.next()? {
        "MOVED" => true,
        "ASK" => false,
        _ => return None,
    };
    let _slot = parts.next()?;
    Some((moved, parts.next()?.to_owned()))
}

async fn round_trip(
    target: &Target,
    node: &str,
    asking: bool,
    cmds: &[&[&[u8]]],
) -> Result<Vec<Reply>, RedisError> {
    let pool = pool_key(target, node);
    // The most recently used first; older ones past the keepalive are
    // closed (dropped).
    let idle = IDLE.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(&pool)?;
        while let Some(c) = list.pop() {
            if c.idle_since.elapsed() < target.keepalive_timeout {
                return Some(c);
            }
        }
        None
    });
    let mut conn = match idle {
        Some(c) => c,
        None => dial(target, node).await?,
    };
    let mut out = Vec::with_capacity(128);
    if asking {
        resp::encode(&mut out, &[b"ASKING"]);
    }
    for c in cmds {
        resp::encode(&mut out, c);
    }
    let expect = cmds.len() + usize::from(asking);
    let mut replies = exchange(&mut conn, out, expect).await?;
    if asking {
        replies.remove(0);
    }
    IDLE.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.entry(pool).or_default();
        if list.len() < target.keepalive_pool {
            conn.idle_since = std::time::Instant::now();
            list.push(conn);
        }
    });
    Ok(replies)
}

/// Where a connection to `node` for `target` is pooled: connections are
/// logged in (`AUTH`) and have a database `SELECT`ed, so two budgets on
/// one server with other logins or databases must not share them.
fn pool_key(target: &Target, node: &str) -> String {
    format!(
        "{node}\0{}\0{}\0{}\0{}",
        target.database,
        target.username.as_deref().unwrap_or(""),
        target.password.as_deref().unwrap_or(""),
        target.tls.is_some()
    )
}

async fn dial(target: &Target, node: &str) -> Result<Conn, RedisError> {
    let addr = super::address::of(target, node)?;
    let sni = target
        .tls
        .as_ref()
        .map(|tls| crate::upstream::connect::TlsTarget {
            sni: std::sync::Arc::from(node.rsplit_once(':').map_or(node, |(h, _)| h)),
            verify: tls.verify,
        });
    let tls = sni.as_ref().zip(target.tls.as_ref().map(|t| &t.clients));
    let stream = crate::upstream::connect::open(addr, tls, target.timeout)
        .await
        .map_err(|e| {
            // The error names the address; the node too when it is a name.
            RedisError::Io(if node == addr.to_string() {
                e.to_string()
            } else {
                format!("{node}: {e}")
            })
        })?;
    let mut conn = Conn {
        stream,
        buf: bytes::BytesMut::with_capacity(512),
        idle_since: std::time::Instant::now(),
    };
    let mut out = Vec::new();
    let mut n = 0;
    if let Some(pw) = &target.password {
        match &target.username {
            Some(u) => resp::encode(&mut out, &[b"AUTH", u.as_bytes(), pw.as_bytes()]),
            None => resp::encode(&mut out, &[b"AUTH", pw.as_bytes()]),
        }
        n += 1;
    }
    if target.database != 0 && !target.cluster {
        resp::encode(
            &mut out,
            &[b"SELECT", target.database.to_string().as_bytes()],
        );
        n += 1;
    }
    if n > 0 {
        for r in exchange(&mut conn, out, n).await? {
            if let Reply::Error(e) = r {
                return Err(RedisError::Server(e));
            }
        }
    }
    Ok(conn)
}

async fn exchange(conn: &mut Conn, out: Vec<u8>, expect: usize) -> Result<Vec<Reply>, RedisError> {
    let (r, _) = crate::net::write_all(&mut conn.stream, out).await;
    r.map_err(|e| RedisError::Io(e.to_string()))?;
    let mut replies = Vec::with_capacity(expect);
    let mut pos = 0;
    while replies.len() < expect {
        match resp::parse(&conn.buf[pos..]).map_err(RedisError::Protocol)? {
            Some((reply, used)) => {
                replies.push(reply);
                pos += used;
            }
            None => {
                let chunk = std::mem::take(&mut conn.buf);
                let (r, back) = crate::net::read_more(&mut conn.stream, chunk).await;
                conn.buf = back;
                match r {
                    Ok(0) => return Err(RedisError::Io("connection closed by redis".into())),
                    Ok(_) => {}
                    Err(e) => return Err(RedisError::Io(e.to_string())),
                }
            }
        }
    }
    let _ = conn.buf.split_to(pos);
    Ok(replies)
}
