//! Leased Redis budgets (`redis_lease_tokens`, a ringway extension): the
//! process claims tokens from the shared Redis budget in chunks and
//! admits and charges requests against its claim in local atomics, going
//! to Redis only when the claim is used up, instead of a Redis round trip
//! to check each request and another to charge it (APISIX's way, and
//! ringway's without the field).
//!
//! A claim is one script run: it adds the tokens this process used beyond
//! what it had claimed (so Redis never counts less than was used, up to
//! the last claim) and grants up to `redis_lease_tokens` more while the
//! budget has room. One claim at a time per budget and process: requests
//! that find one on its way go on with what it is claiming instead of
//! making their own ([`Lease::start_claim`]), so a process never holds
//! more than one claim unused and nobody waits for a claim but the
//! request that makes it. The window is Redis's: it opens with the first
//! claim and lasts `time_window`; the process learns its end from the
//! key's expiry and starts over after it.
//!
//! What it costs in exactness: tokens a process claimed and did not use
//! are spent for the others until the window ends (at most
//! `redis_lease_tokens` per process and budget); and since a request's
//! cost is known only when it is done, a process overruns its claim by
//! what it has in flight, which the budget pays at its next claim — or,
//! when the budget has no room left by then, is over it. So a budget is
//! overshot by at most twice the requests each process has in flight (the
//! overrun of its last claim, and what was in flight when the budget ran
//! out), where a per-request check overshoots by what is in flight once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Quota;

/// Claims tokens for a window: `KEYS[1]` the budget, `ARGV` = tokens used
/// beyond the last claim, tokens wanted, limit, window in ms. Returns
/// `{granted, total in Redis, ms until the window ends}`.
pub(super) const CLAIM_SCRIPT: &str = "local v = tonumber(redis.call('GET', KEYS[1]) or '0') \
local owed = tonumber(ARGV[1]) \
local room = tonumber(ARGV[3]) - v - owed \
local grant = 0 \
if room > 0 then grant = math.min(tonumber(ARGV[2]), room) end \
if owed + grant > 0 then v = redis.call('INCRBY', KEYS[1], owed + grant) end \
local ttl = redis.call('PTTL', KEYS[1]) \
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) ttl = tonumber(ARGV[4]) end \
return {grant, v, ttl}";

/// One budget's claim, shared by every worker of the process (and kept
/// across reloads that leave the budget as it was).
#[derive(Debug, Default)]
pub struct Lease {
    /// Tokens this process added to the budget in Redis this window.
    claimed: AtomicU64,
    /// Tokens this process's requests used this window.
    used: AtomicU64,
    /// When this window ends (process clock, ms); 0 before the first
    /// claim and while a new window's first claim is on its way.
    ends_ms: AtomicU64,
    /// The budget's total in Redis after the last claim (for the quota
    /// headers).
    remote_total: AtomicU64,
    /// The last claim found no room: nothing more to claim this window.
    spent: AtomicBool,
    /// A claim is on its way.
    claiming: AtomicBool,
}

/// While a claim is on its way (released when dropped, so a request
/// cancelled mid-claim does not leave the lease claiming for ever).
pub struct ClaimGuard<'a>(&'a Lease);

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        self.0.claiming.store(false, Ordering::Release);
    }
}

/// What a claim returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    pub granted: u64,
    pub total: u64,
    pub ttl_ms: u64,
}

/// Whether a request may go.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed(Quota),
    Exhausted(Quota),
}

impl Lease {
    /// The budget as this process knows it.
    pub fn quota(&self, limit: u64, now_ms: u64) -> Quota {
        let unused = self
            .claimed
            .load(Ordering::Relaxed)
            .saturating_sub(self.used.load(Ordering::Relaxed));
        let ends = self.ends_ms.load(Ordering::Relaxed);
        Quota {
            limit,
            remaining: limit
                .saturating_sub(self.remote_total.load(Ordering::Relaxed))
                .saturating_add(unused)
                .min(limit),
            reset: ends.saturating_sub(now_ms).div_ceil(1000),
        }
    }

    /// Decides from the claim alone when it can: within the window, room
    /// left in the claim admits, and a spent budget refuses. `None`: the
    /// claim is used up (or the window over), ask Redis.
    pub fn check(&self, limit: u64, now_ms: u64) -> Option<Decision> {
        let ends = self.ends_ms.load(Ordering::Relaxed);
        if ends == 0 || now_ms >= ends {
            return None;
        }
        if self.used.load(Ordering::Relaxed) < self.claimed.load(Ordering::Relaxed) {
            Some(Decision::Allowed(self.quota(limit, now_ms)))
        } else if self.spent.load(Ordering::Relaxed) {
            Some(Decision::Exhausted(self.quota(limit, now_ms)))
        } else {
            None
        }
    }

    /// Tokens used beyond the claim, owed to Redis with the next claim. A
    /// window that has ended is forgotten first (by one worker; the
    /// others see `ends_ms` 0 and claim into the new window).
    pub fn owed(&self, now_ms: u64) -> u64 {
        let ends = self.ends_ms.load(Ordering::Relaxed);
        if ends != 0
            && now_ms >= ends
            && self
                .ends_ms
                .compare_exchange(ends, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.claimed.store(0, Ordering::Relaxed);
            self.used.store(0, Ordering::Relaxed);
            self.spent.store(false, Ordering::Relaxed);
        }
        self.used
            .load(Ordering::Relaxed)
            .saturating_sub(self.claimed.load(Ordering::Relaxed))
    }

    /// Records a claim of `owed` tokens plus what Redis granted; the
    /// verdict for the request that asked.
    pub fn claimed(&self, owed: u64, c: Claimed, limit: u64, now_ms: u64) -> Decision {
        // The numbers are Redis's answer: added with saturation.
        self.claimed
            .fetch_add(owed.saturating_add(c.granted), Ordering::Relaxed);
        self.remote_total.store(c.total, Ordering::Relaxed);
        self.spent.store(c.granted == 0, Ordering::Relaxed);
        self.ends_ms
            .store(now_ms.saturating_add(c.ttl_ms.max(1)), Ordering::Relaxed);
        let q = self.quota(limit, now_ms);
        if c.granted > 0 {
            Decision::Allowed(q)
        } else {
            Decision::Exhausted(q)
        }
    }

    /// Makes the caller the one claiming, unless a claim is already on
    /// its way.
    pub fn start_claim(&self) -> Option<ClaimGuard<'_>> {
        self.claiming
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ClaimGuard(self))
    }

    /// Charges a finished request's tokens to the claim.
    pub fn charge(&self, cost: u64) {
        self.used.fetch_add(cost, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(l: &Lease, granted: u64, total: u64, ttl_ms: u64, now: u64) -> Decision {
        let owed = l.owed(now);
        l.claimed(
            owed,
            Claimed {
                granted,
                total,
                ttl_ms,
            },
            1000,
            now,
        )
    }

    #[test]
    fn an_absurd_claim_answer_does_not_overflow() {
        let l = Lease::default();
        l.charge(5);
        let d = claim(&l, u64::MAX, u64::MAX, u64::MAX, 10);
        assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
        assert_eq!(l.check(1000, 20).map(|_| ()), Some(()));
    }

    #[test]
    fn admits_from_the_claim_and_claims_again_when_it_is_used() {
        let l = Lease::default();
        assert_eq!(l.check(1000, 10), None, "nothing claimed yet");
        assert!(matches!(
            claim(&l, 100, 100, 60_000, 10),
            Decision::Allowed(_)
        ));
        l.charge(60);
        let Some(Decision::Allowed(q)) = l.check(1000, 20) else {
            panic!("room left in the claim")
        };
        assert_eq!((q.limit, q.remaining, q.reset), (1000, 940, 60));
        l.charge(60);
        // 120 used of 100 claimed: claim again, paying the 20 owed.
        assert_eq!(l.check(1000, 30), None);
        assert_eq!(l.owed(30), 20);
        assert!(matches!(
            claim(&l, 100, 220, 59_000, 30),
            Decision::Allowed(_)
        ));
        assert!(matches!(l.check(1000, 40), Some(Decision::Allowed(_))));
    }

    #[test]
    fn one_claim_at_a_time_even_when_one_is_abandoned() {
        let l = Lease::default();
        let first = l.start_claim().expect("nobody claiming");
        assert!(l.start_claim().is_none(), "one claim at a time");
        drop(first);
        assert!(l.start_claim().is_some(), "released when dropped");
    }

    #[test]
    fn a_spent_budget_refuses_until_the_window_ends() {
        let l = Lease::default();
        claim(&l, 50, 1000, 10_000, 0);
        l.charge(50);
        let Decision::Exhausted(q) = claim(&l, 0, 1000, 9_000, 1_000) else {
            panic!("no room: exhausted")
        };
        assert_eq!((q.remaining, q.reset), (0, 9));
        // No more round trips while the window lasts.
        assert!(matches!(l.check(1000, 5_000), Some(Decision::Exhausted(_))));
        // The window over, the old window's counts are forgotten.
        assert_eq!(l.check(1000, 10_000), None);
        assert_eq!(l.owed(10_000), 0);
        assert!(matches!(
            claim(&l, 100, 100, 10_000, 10_000),
            Decision::Allowed(_)
        ));
    }
}
