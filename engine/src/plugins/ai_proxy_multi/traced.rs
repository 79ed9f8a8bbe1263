//! Each attempt at an instance as a span of the request's trace: its span
//! id goes upstream in `traceparent` (so a provider's own spans hang
//! under the attempt, and a fallback shows as a second attempt), and a
//! sampled request records how the attempt went (instance, provider,
//! endpoint, status, why it failed) for the `opentelemetry` plugin to
//! export. Untraced, this is a branch on `None`; traced but not sampled,
//! a random span id.

use super::attempt::Ids;
use super::instance::{Instance, Target};
use super::outcome::Failure;
use crate::exchange::ctx::RequestCtx;
use crate::exchange::trace::{unix_ns, AttemptSpan};
use crate::http::RequestHead;

/// The attempt under way.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AttemptClock<'p> {
    span: Option<[u8; 8]>,
    /// Unix nanoseconds at its start, for a sampled request (else 0).
    start_ns: u64,
    target: Option<&'p Target>,
}

impl<'p> AttemptClock<'p> {
    /// Starts an attempt at `target` of the request `ctx` describes.
    #[inline]
    pub(super) fn start(ctx: &RequestCtx, target: &'p Target) -> AttemptClock<'p> {
        let span = ctx.attempt_span();
        let recording = ctx.trace.as_ref().is_some_and(|t| t.record.is_some());
        AttemptClock {
            span,
            start_ns: if recording { unix_ns() } else { 0 },
            target: Some(target),
        }
    }

    /// What the attempt's request carries.
    #[inline]
    pub(super) fn ids<'a>(&self, client: &'a RequestHead, ctx: &'a RequestCtx) -> Ids<'a> {
        Ids {
            client,
            ctx,
            span: self.span,
        }
    }

    /// The attempt failed (or is fallen back from).
    pub(super) fn failed(&self, ctx: &mut RequestCtx, inst: &Instance, f: &Failure) {
        self.record(ctx, inst, unix_ns(), f.status(), Some(f.to_string()));
    }

    /// The attempt answered the client: its span ends with the request.
    pub(super) fn answered(&self, ctx: &mut RequestCtx, inst: &Instance, status: u16) {
        self.record(ctx, inst, 0, Some(status), None);
    }

    fn record(
        &self,
        ctx: &mut RequestCtx,
        inst: &Instance,
        end_ns: u64,
        status: Option<u16>,
        error: Option<String>,
    ) {
        let (Some(span_id), Some(target)) = (self.span, self.target) else {
            return;
        };
        ctx.record_attempt(|| AttemptSpan {
            span_id,
            instance: inst.name.clone(),
            provider: inst.provider.name,
            model: inst.model.clone(),
            server: format!("{}:{}", target.url.host, target.url.port),
            start_ns: self.start_ns,
            end_ns,
            status,
            error,
        });
    }
}
