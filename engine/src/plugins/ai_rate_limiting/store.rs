//! The Redis side of the budgets (`policy: redis` / `redis-cluster`):
//! reading a window's usage and charging it with one atomic script, or,
//! for leased budgets, claiming tokens ([`super::lease`]).

use super::lease::{Claimed, CLAIM_SCRIPT};
use super::window::Usage;
use super::{warn_throttled, AiRateLimiting};
use crate::observe::metrics;
use crate::redis::{self, RedisError, Reply};

/// Adds the cost and opens the window (its expiry) with the first charge.
const CHARGE_SCRIPT: &str = "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return v";

impl AiRateLimiting {
    /// Adds `cost` to the window at `key`, logging (throttled) and counting
    /// a failure: the answer has gone out, so nothing else can be done.
    pub(super) async fn redis_charge(&self, instance: &str, key: &[u8], cost: u64, window_ms: u64) {
        let Some(target) = &self.redis else { return };
        let cost = cost.to_string();
        let window = window_ms.to_string();
        let cmd: &[&[u8]] = &[
            b"EVAL",
            CHARGE_SCRIPT.as_bytes(),
            b"1",
            key,
            cost.as_bytes(),
            window.as_bytes(),
        ];
        let err = match redis::query(target, key, &[cmd]).await {
            Ok(replies) => match replies.first() {
                Some(Reply::Error(e)) => Some(RedisError::Server(e.clone())),
                _ => None,
            },
            Err(e) => Some(e),
        };
        if let Some(e) = err {
            metrics::RATE_LIMIT_STORE_ERRORS.inc();
            metrics::RATE_LIMIT_CHARGE_FAILURES.inc();
            warn_throttled(|| {
                tracing::warn!(
                    instance,
                    cost,
                    "ai-rate-limiting could not charge tokens: {e}"
                )
            });
        }
    }

    /// Claims up to `want` tokens for this process, paying `owed`.
    pub(super) async fn redis_claim(
        &self,
        key: &[u8],
        owed: u64,
        want: u64,
        limit: u64,
        window_ms: u64,
    ) -> Result<Claimed, RedisError> {
        let Some(target) = &self.redis else {
            return Err(RedisError::Protocol("no redis target".into()));
        };
        let args = [owed, want, limit, window_ms].map(|n| n.to_string());
        let cmd: &[&[u8]] = &[
            b"EVAL",
            CLAIM_SCRIPT.as_bytes(),
            b"1",
            key,
            args[0].as_bytes(),
            args[1].as_bytes(),
            args[2].as_bytes(),
            args[3].as_bytes(),
        ];
        let replies = redis::query(target, key, &[cmd]).await?;
        let reply = match replies.first() {
            Some(Reply::Error(e)) => return Err(RedisError::Server(e.clone())),
            Some(r) => r,
            None => return Err(RedisError::Protocol("missing reply".into())),
        };
        let ints: Option<Vec<i64>> = match reply {
            Reply::Array(Some(items)) => items.iter().map(Reply::as_int).collect(),
            _ => None,
        };
        match ints.as_deref() {
            Some(&[granted, total, ttl_ms]) => Ok(Claimed {
                granted: granted.max(0) as u64,
                total: total.max(0) as u64,
                ttl_ms: ttl_ms.max(0) as u64,
            }),
            _ => Err(RedisError::Protocol(format!(
                "unexpected reply to a claim: {reply:?}"
            ))),
        }
    }

    pub(super) async fn redis_usage(
        &self,
        key: &[u8],
        window_ms: u64,
    ) -> Result<Usage, RedisError> {
        let Some(target) = &self.redis else {
            return Err(RedisError::Protocol("no redis target".into()));
        };
        let get: &[&[u8]] = &[b"GET", key];
        let ttl: &[&[u8]] = &[b"PTTL", key];
        let replies = redis::query(target, key, &[get, ttl]).await?;
        let int = |r: Option<&Reply>| match r {
            Some(Reply::Error(e)) => Err(RedisError::Server(e.clone())),
            Some(r) => r
                .as_int()
                .ok_or_else(|| RedisError::Protocol(format!("unexpected reply {r:?}"))),
            None => Err(RedisError::Protocol("missing reply".into())),
        };
        let used = int(replies.first())?.max(0) as u64;
        let pttl = int(replies.get(1))?;
        Ok(Usage {
            used,
            reset_ms: if pttl > 0 { pttl as u64 } else { window_ms },
        })
    }
}
