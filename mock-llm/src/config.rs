//! Instance configuration: timing (fixed or seeded distributions), content
//! size, expected API key, health status, and fault settings.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A delay: fixed, or drawn from a seeded distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dist {
    Fixed {
        ms: f64,
    },
    /// Uniform between `min_ms` and `max_ms`.
    Uniform {
        min_ms: f64,
        max_ms: f64,
    },
    /// Log-normal with the given median and shape.
    Lognormal {
        median_ms: f64,
        sigma: f64,
    },
}

impl Default for Dist {
    fn default() -> Self {
        Dist::Fixed { ms: 0.0 }
    }
}

impl Dist {
    pub fn fixed(d: Duration) -> Dist {
        Dist::Fixed {
            ms: d.as_secs_f64() * 1000.0,
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Dist::Fixed { ms } if *ms <= 0.0)
    }

    /// A sample, using `rng` for the random ones.
    pub fn sample(&self, rng: &mut crate::state::Rng) -> Duration {
        let ms = match *self {
            Dist::Fixed { ms } => ms,
            Dist::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * rng.next_f64(),
            Dist::Lognormal { median_ms, sigma } => median_ms * (sigma * rng.next_normal()).exp(),
        };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

/// Faults, set per instance (flags or `POST /_control`) or per request
/// (`x-mock-*` headers). `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer with this status (429 gets `Retry-After`).
    pub status: Option<u16>,
    /// Probability (0..1) that a request gets `status` (default 500).
    pub fail_rate: Option<f64>,
    /// Seconds sent in `Retry-After` on 429 (default 1).
    pub retry_after: Option<u64>,
    /// Reset the connection before any response byte.
    pub reset_before_response: Option<bool>,
    /// Reset the connection after this many SSE chunks.
    pub reset_after_chunks: Option<u32>,
    /// Stall this long mid-stream …
    pub stall_ms: Option<u64>,
    /// … after this many chunks (default 1).
    pub stall_after_chunks: Option<u32>,
    /// Read the request body at this many bytes per second.
    pub slow_read_bps: Option<u64>,
    /// Stop listening for this many seconds (connections refused).
    pub refuse_for_secs: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub itl_ms: Option<u64>,
    pub tokens: Option<u32>,
    /// Status of the health path.
    pub health_status: Option<u16>,
    /// End chat streams without `data: [DONE]` (the body still ends
    /// cleanly), as some OpenAI-compatible servers do.
    pub omit_done: Option<bool>,
    /// Spell answers and stream events' JSON this way (Python's
    /// `json.dumps` spacing, or pretty-printed), as other
    /// OpenAI-compatible servers do.
    pub json_style: Option<crate::spacing::JsonStyle>,
}

impl Faults {
    /// `other`'s set fields over `self`'s.
    pub fn overlay(&self, other: &Faults) -> Faults {
        Faults {
            status: other.status.or(self.status),
            fail_rate: other.fail_rate.or(self.fail_rate),
            retry_after: other.retry_after.or(self.retry_after),
            reset_before_response: other.reset_before_response.or(self.reset_before_response),
            reset_after_chunks: other.reset_after_chunks.or(self.reset_after_chunks),
            stall_ms: other.stall_ms.or(self.stall_ms),
            stall_after_chunks: other.stall_after_chunks.or(self.stall_after_chunks),
            slow_read_bps: other.slow_read_bps.or(self.slow_read_bps),
            refuse_for_secs: other.refuse_for_secs.or(self.refuse_for_secs),
            ttft_ms: other.ttft_ms.or(self.ttft_ms),
            itl_ms: other.itl_ms.or(self.itl_ms),
            tokens: other.tokens.or(self.tokens),
            health_status: other.health_status.or(self.health_status),
            omit_done: other.omit_done.or(self.omit_done),
            json_style: other.json_style.or(self.json_style),
        }
    }
}

/// One named mock instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub ttft: Dist,
    pub itl: Dist,
    /// Completion tokens per answer (capped by the request's max_tokens).
    pub tokens: u32,
    /// Prompt tokens reported as read from a prompt cache (OpenAI's
    /// `prompt_tokens_details.cached_tokens`, part of `prompt_tokens`;
    /// Anthropic's `cache_read_input_tokens`, on top of `input_tokens` as
    /// Anthropic counts them); 0 reports no cache fields.
    pub cached_tokens: u64,
    /// Prompt tokens reported as written to the prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, on top of `input_tokens`); 0
    /// reports none.
    pub cache_creation_tokens: u64,
    /// Expected API key (`Authorization: Bearer`, `api-key`, `x-api-key`).
    pub api_key: Option<String>,
    pub health_status: u16,
    pub seed: u64,
    /// Requests kept for `GET /_requests`.
    pub max_recorded: usize,
    /// `expires_in` of `POST /oauth2/token` answers.
    pub token_expires_in: u64,
    /// Faults active from the start.
    pub faults: Faults,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            name: "mock-0".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ttft: Dist::default(),
            itl: Dist::default(),
            tokens: 16,
            cached_tokens: 0,
            cache_creation_tokens: 0,
            api_key: None,
            health_status: 200,
            seed: 42,
            max_recorded: 1000,
            token_expires_in: 3600,
            faults: Faults::default(),
        }
    }
}

impl InstanceConfig {
    pub fn new(name: &str) -> InstanceConfig {
        InstanceConfig {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    pub fn ttft(mut self, d: Duration) -> Self {
        self.ttft = Dist::fixed(d);
        self
    }

    pub fn itl(mut self, d: Duration) -> Self {
        self.itl = Dist::fixed(d);
        self
    }

    pub fn ttft_dist(mut self, d: Dist) -> Self {
        self.ttft = d;
        self
    }

    pub fn itl_dist(mut self, d: Dist) -> Self {
        self.itl = d;
        self
    }

    pub fn cached_tokens(mut self, n: u64) -> Self {
        self.cached_tokens = n;
        self
    }

    pub fn cache_creation_tokens(mut self, n: u64) -> Self {
        self.cache_creation_tokens = n;
        self
    }

    pub fn tokens(mut self, n: u32) -> Self {
        self.tokens = n;
        self
    }

    pub fn api_key(mut self, k: &str) -> Self {
        self.api_key = Some(k.to_owned());
        self
    }

    pub fn health_status(mut self, s: u16) -> Self {
        self.health_status = s;
        self
    }

    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }

    pub fn faults(mut self, f: Faults) -> Self {
        self.faults = f;
        self
    }
}
