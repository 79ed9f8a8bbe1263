//! The phases a plugin can run in — APISIX's (`rewrite`, `access`,
//! `header_filter`, `body_filter`, `log`) and, on the AI path, pingora's
//! per-attempt hooks (`before_attempt(instance)`, `on_usage(usage)`) —
//! as one trait, [`Phases`], whose every method has a default that does
//! nothing: a plugin implements the phases it needs and nothing else.
//!
//! When each runs for a request:
//!
//! | phase | when | who runs it |
//! |---|---|---|
//! | `rewrite` | the head is parsed and the route matched, the body unread | `server/conn.rs` through [`super::PluginChain::rewrite`] (auth: `key-auth`) |
//! | `access` | the request is known; on an AI route after its body is read and parsed (APISIX's `ai-proxy-multi` reads it in its own access phase, which runs first) | the route's handler through [`super::InForce::access`] |
//! | `before_attempt` | before each attempt at an instance | the attempt walk ([`super::InForce::before_attempt`]) |
//! | `header_filter` | the answer's head is written | the AI answer's head writer |
//! | `on_usage` | the answer's token usage is known, before its last bytes leave | the AI relay (JSON or stream) |
//! | `after_answer` | the answer is out (remote counters, never delaying it) | the AI relay |
//! | `body_filter` | declared at compile time: how much of the response body the plugin wants (kept while relaying) | `server/conn.rs` sets the capture up |
//! | `log` | the request is finished | `server/conn.rs` through [`super::PluginChain::log`] |
//!
//! `body_filter` is a declaration, not a per-chunk callback: no plugin
//! transforms bodies, and a call per chunk would sit on the hottest loop
//! of a stream. A plugin that must rewrite bodies would add the callback.
//!
//! A plugin's state for one request on the AI path (what `access` and
//! `before_attempt` found, which `header_filter` shows and `on_usage`
//! charges) is its [`Phases::Request`] type, kept by [`super::InForce`].

use std::sync::Arc;

use crate::exchange::ctx::RequestCtx;
use crate::http::vars::VarSource;
use crate::http::RequestHead;
use crate::loggers::WorkerQueue;
use crate::observe::redact::Redaction;

/// The phases of one plugin; see the module's table for when each runs.
///
/// Phase futures need not be `Send`: a request stays on its worker
/// thread (thread per core), so `async fn` in the trait is what we want.
#[allow(async_fn_in_trait)]
pub trait Phases {
    /// What the plugin keeps for one request on the AI path (`()` when
    /// nothing).
    type Request<'a>: Default
    where
        Self: 'a;

    /// Whether the plugin has phases on the AI path (`access` onwards):
    /// then a route's and a consumer's configs of it are resolved into the
    /// request's [`super::InForce`] set.
    const AI_PATH: bool = false;

    /// Before the body is read: authentication (`key-auth`).
    fn rewrite(&self, _cx: &mut AccessCx<'_, '_, '_>) -> Flow {
        Flow::Continue
    }

    /// Whether `access` has work (checked first, so a plugin with none
    /// costs the request no future).
    fn wants_access(&self) -> bool {
        false
    }

    /// The request is known (its variables, the LLM request's model).
    async fn access<'a>(&'a self, _st: &mut Self::Request<'a>, _vars: &VarSource<'_>) -> Gate<'a> {
        Gate::Go
    }

    /// Before an attempt at `instance`.
    async fn before_attempt<'a>(
        &'a self,
        _st: &mut Self::Request<'a>,
        _instance: &str,
    ) -> Gate<'a> {
        Gate::Go
    }

    /// The answer's head: header lines (each ending in CRLF) to add.
    fn header_filter<'a>(&self, _st: &Self::Request<'a>, _instance: &str, _out: &mut Vec<u8>) {}

    /// Whether `on_usage` wants the provider's usage object as it came
    /// (a cost expression reads its fields).
    fn wants_raw_usage(&self) -> bool {
        false
    }

    /// The answer's usage, before its last bytes leave.
    fn on_usage<'a>(&self, _st: &Self::Request<'a>, _instance: &str, _used: &Used<'_>) {}

    /// Whether `after_answer` has work (checked first, so a plugin with
    /// none costs the request no future).
    fn wants_after_answer(&self) -> bool {
        false
    }

    /// The answer is out: work that must not delay it.
    async fn after_answer<'a>(&self, _st: &Self::Request<'a>, _instance: &str, _used: &Used<'_>) {}

    /// `body_filter`: the most response body bytes the plugin wants kept.
    fn response_body_limit(&self) -> Option<usize> {
        None
    }

    /// Whether the plugin's log phase wants the request body.
    fn wants_request_body(&self) -> bool {
        false
    }

    /// Whether the plugin has a log phase.
    const LOGS: bool = false;

    /// The request is finished: queue what it logs.
    fn log(&self, _head: &RequestHead, _ctx: &RequestCtx, _q: &WorkerQueue, _r: &Redaction) {}
}

/// What `rewrite` may read and change.
pub struct AccessCx<'s, 'h, 'c> {
    pub head: &'h RequestHead,
    pub ctx: &'c mut RequestCtx,
    /// The configuration's consumers, for auth plugins to look up.
    pub consumers: &'s super::consumers::Consumers,
    /// The consumer an auth plugin identified (its name is also in
    /// `ctx.consumer`), whose plugins join the request's.
    pub consumer: Option<&'s super::consumers::Consumer>,
    /// The matched route's name (for spans).
    pub route_name: Option<&'s Arc<str>>,
}

/// What `rewrite` decided.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// Answer now with this status and body (and these header lines,
    /// each ending in CRLF, shared with the plugin's config).
    Respond {
        status: u16,
        content_type: &'static str,
        body: String,
        headers: Option<Arc<str>>,
    },
}

impl Flow {
    /// An answer with a JSON body.
    pub fn json(status: u16, body: String) -> Flow {
        Flow::Respond {
            status,
            content_type: "application/json",
            body,
            headers: None,
        }
    }
}

/// What `access` or `before_attempt` decided.
#[derive(Debug)]
pub enum Gate<'a> {
    Go,
    /// A budget is spent: the request (before an attempt: this instance)
    /// is refused with this answer. Before an attempt, a route whose
    /// `fallback_strategy` has `rate_limiting` passes over the instance
    /// instead.
    Spent(Refusal<'a>),
    /// The plugin cannot decide (its store is down and it fails closed):
    /// the request gets a 503 with this message.
    Unavailable(String),
}

/// A plugin's answer in place of the upstream's.
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    pub status: u16,
    pub content_type: &'static str,
    pub body: &'a str,
    /// Header lines, each ending in CRLF.
    pub headers: Vec<u8>,
}

/// What an answer used, as its log record counted it (the argument of
/// `on_usage` and `after_answer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Used<'a> {
    pub prompt: u64,
    pub completion: u64,
    pub raw: Option<&'a serde_json::Value>,
}

impl<'a> Used<'a> {
    pub fn of(llm: &'a crate::exchange::ctx::LlmLog) -> Used<'a> {
        Used {
            prompt: llm.prompt_tokens,
            completion: llm.completion_tokens,
            raw: llm.raw_usage.as_ref(),
        }
    }
}
