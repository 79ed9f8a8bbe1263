//! What a failed attempt came to, classified once: the kinds the route's
//! `fallback_strategy` names decide whether the next instance is tried
//! ([`Failure::falls_back`]), and each attempt is kept as data
//! ([`Tried`]) until the 502 body or the log renders it.

use std::sync::Arc;

use super::config::Fallback;
use super::Instance;
use crate::exchange::ProxyError;
use crate::health::FallbackReason;

/// Why an attempt did not give the client its answer.
#[derive(Debug)]
pub enum Failure {
    /// No access token for the instance's GCP service account.
    Token(String),
    /// Connecting, sending or reading the head failed, or timed out.
    Transport(ProxyError),
    /// The provider answered 429.
    RateLimited,
    /// The provider answered 5xx.
    ServerError(u16),
    /// The instance does not hold the stored response or conversation the
    /// request names (it answered this status).
    NotHeld(u16),
    /// The answer (this status) could not be read or converted before
    /// anything reached the client.
    NotSent(u16, ProxyError),
}

impl Failure {
    /// Whether the route's `fallback_strategy` moves on to the next
    /// instance after this (`http_5xx` covers transport failures and
    /// missing tokens; an instance without the state is passed over
    /// always).
    pub fn falls_back(&self, f: &Fallback) -> bool {
        match self {
            Failure::RateLimited => f.http_429,
            Failure::Token(_)
            | Failure::Transport(_)
            | Failure::ServerError(_)
            | Failure::NotSent(..) => f.http_5xx,
            Failure::NotHeld(_) => true,
        }
    }

    /// The reason the metrics give for falling back after this.
    pub fn reason(&self) -> FallbackReason {
        use crate::exchange::error::ConnectError;
        match self {
            Failure::Token(_) => FallbackReason::Token,
            Failure::RateLimited => FallbackReason::Http429,
            Failure::ServerError(_) => FallbackReason::Http5xx,
            Failure::NotHeld(_) => FallbackReason::NotHeld,
            Failure::NotSent(..) => FallbackReason::BadResponse,
            Failure::Transport(e) => match e {
                ProxyError::ConnectTimeout
                | ProxyError::UpstreamTimeout
                | ProxyError::Connect(ConnectError::Timeout(_)) => FallbackReason::Timeout,
                ProxyError::Connect(_) => FallbackReason::ConnectError,
                ProxyError::BadResponse(_) | ProxyError::LimitExceeded(_) => {
                    FallbackReason::BadResponse
                }
                _ => FallbackReason::UpstreamError,
            },
        }
    }

    /// The status the instance answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Token(_) | Failure::Transport(_) => None,
            Failure::RateLimited => Some(429),
            Failure::ServerError(s) | Failure::NotHeld(s) | Failure::NotSent(s, _) => Some(*s),
        }
    }

    /// The status the client gets when this ends the request.
    pub fn client_status(&self) -> u16 {
        match self {
            Failure::Transport(e) => e.status(),
            _ => 502,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Token(e) => write!(f, "GCP access token unavailable: {e}"),
            Failure::Transport(e) | Failure::NotSent(_, e) => e.fmt(f),
            Failure::RateLimited => f.write_str("rate limited by the provider"),
            Failure::ServerError(s) => write!(f, "upstream answered {s}"),
            Failure::NotHeld(_) => f.write_str("does not hold the stored state the request names"),
        }
    }
}

/// One failed attempt: which instance, and how.
#[derive(Debug)]
pub struct Tried {
    pub instance: Arc<str>,
    pub failure: Failure,
}

impl Tried {
    pub fn new(inst: &Instance, failure: Failure) -> Tried {
        Tried {
            instance: inst.name.clone(),
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_falls_back_on_the_strategy_that_names_it() {
        let none = Fallback::default();
        let on_429 = Fallback {
            http_429: true,
            ..Fallback::default()
        };
        let on_5xx = Fallback {
            http_5xx: true,
            ..Fallback::default()
        };
        let cases = [
            (Failure::RateLimited, false, true, false),
            (Failure::ServerError(503), false, false, true),
            (Failure::Token("x".into()), false, false, true),
            (
                Failure::Transport(ProxyError::UpstreamTimeout),
                false,
                false,
                true,
            ),
            (
                Failure::NotSent(200, ProxyError::UpstreamClosed),
                false,
                false,
                true,
            ),
            (Failure::NotHeld(404), true, true, true),
        ];
        for (failure, with_none, with_429, with_5xx) in cases {
            assert_eq!(failure.falls_back(&none), with_none, "{failure:?}");
            assert_eq!(failure.falls_back(&on_429), with_429, "{failure:?}");
            assert_eq!(failure.falls_back(&on_5xx), with_5xx, "{failure:?}");
        }
        assert_eq!(
            Failure::Transport(ProxyError::UpstreamTimeout).client_status(),
            504
        );
        assert_eq!(Failure::ServerError(500).client_status(), 502);
        assert_eq!(Failure::RateLimited.status(), Some(429));
        assert_eq!(Failure::Token("x".into()).status(), None);
    }
}
