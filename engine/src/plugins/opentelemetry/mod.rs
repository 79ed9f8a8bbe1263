//! `opentelemetry`: traces requests as APISIX's plugin does, with
//! ringway's LLM attempts as child spans. In the rewrite phase (priority
//! 12009, after `request-id`) a request's trace starts: a valid incoming
//! `traceparent` is continued (its trace id, its span as our parent, its
//! `tracestate` passed on), else a new trace id is made ([`settings`]'s
//! `trace_id_source`); the [`sampler`] decides; ringway's server span gets
//! an id. Upstream requests carry `traceparent` naming that span (plain
//! upstreams) or each attempt's own span (LLM instances, so a fallback
//! shows as two attempts), sampled or not.
//!
//! A request that is not sampled costs three random numbers and no
//! allocation, and its log phase returns at once. A sampled one records
//! its attempts as they go ([`crate::exchange::trace::Recording`]); its
//! log phase builds the spans ([`spans`]), encodes them and queues them
//! for the exporter thread ([`crate::loggers::otlp`]), which batches them
//! to the collector (`plugin_metadata.opentelemetry`, [`settings`]) over
//! OTLP/HTTP protobuf. Nothing waits for the collector: a full queue
//! drops spans (`ringway_trace_spans_dropped_total`).
//!
//! Config (route, service or global rule; first one wins for a request):
//! `sampler` {`name`, `options` {`fraction`, `root`}},
//! `additional_attributes` (variables, as `log_format` names them), and
//! `additional_header_prefix_attributes` (request headers; `x-*` takes
//! every header starting with `x-`).

pub mod sampler;
pub mod settings;
pub mod spans;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{AccessCx, CompileCx, Flow};
use crate::config::{from_value, ConfigError, FieldPath};
use crate::exchange::ctx::RequestCtx;
use crate::exchange::ids;
use crate::exchange::trace::{unix_ns, Recording, TraceCtx, TraceParent};
use crate::http::RequestHead;
use crate::loggers::otlp::{OtlpPoster, SPAN_STATS};
use crate::loggers::{Sink, WorkerQueue};
use crate::observe::redact::Redaction;
use sampler::Sampler;
use settings::{Settings, TraceIdSource};

pub const NAME: &str = "opentelemetry";
pub const PRIORITY: i32 = 12009;

/// The registry's entry (not on a consumer: the trace starts before the
/// consumer is known).
pub fn compile(
    value: &Value,
    at: &FieldPath,
    scope: super::Scope,
    _meta: &super::meta::Meta,
    cx: &mut CompileCx<'_, '_>,
) -> Result<Option<Opentelemetry>, ConfigError> {
    if scope == super::Scope::Consumer {
        return Err(at.error("opentelemetry can not be configured on a consumer"));
    }
    Opentelemetry::compile(value, at, cx).map(Some)
}

/// A compiled `opentelemetry` config and the exporter it sends to.
#[derive(Debug)]
pub struct Opentelemetry {
    pub sampler: Sampler,
    pub attributes: spans::Extra,
    exporter: Arc<Sink>,
    trace_id_source: TraceIdSource,
    set_vars: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sampler: Option<Value>,
    additional_attributes: Option<Vec<String>>,
    additional_header_prefix_attributes: Option<Vec<String>>,
    #[serde(default, rename = "_meta")]
    _meta: Option<Value>,
}

impl Opentelemetry {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        cx: &mut CompileCx<'_, '_>,
    ) -> Result<Opentelemetry, ConfigError> {
        let f: File = from_value(value, at)?;
        let sampler = Sampler::compile(f.sampler.as_ref(), &at.field("sampler"))?;
        let attributes = spans::Extra::compile(
            f.additional_attributes.unwrap_or_default(),
            f.additional_header_prefix_attributes.unwrap_or_default(),
            at,
        )?;
        let settings = cx.metadata.opentelemetry();
        let tls = cx
            .carry
            .tls
            .clone()
            .ok_or_else(|| at.error("TLS settings unavailable"))?;
        let exporter = cx.carry.tracer(settings.key(), || start(&settings, tls));
        Ok(Opentelemetry {
            sampler,
            attributes,
            exporter,
            trace_id_source: settings.trace_id_source,
            set_vars: settings.set_ngx_var,
        })
    }

    /// This config's tag in the traces it starts (its address, stable
    /// while a snapshot holds it).
    fn tag(&self) -> usize {
        self as *const Opentelemetry as usize
    }

    /// A new trace's id.
    fn new_trace_id(&self, head: &RequestHead, ctx: &RequestCtx) -> [u8; 16] {
        if self.trace_id_source == TraceIdSource::XRequestId {
            let id = match &ctx.request_id {
                Some(id) => Some(&id.value[..]),
                None => head.header("x-request-id"),
            };
            if let Some(t) = id.and_then(trace_id_of) {
                return t;
            }
        }
        ids::nonzero()
    }
}

/// A request id as a trace id: 32 hex digits once dashes are removed
/// (a UUID), not all zero.
fn trace_id_of(id: &[u8]) -> Option<[u8; 16]> {
    let mut digits = [0u8; 32];
    let mut n = 0;
    for &b in id.iter().filter(|&&b| b != b'-') {
        *digits.get_mut(n)? = b;
        n += 1;
    }
    ids::parse_hex::<16>(&digits[..n]).filter(|t| *t != [0; 16])
}

/// Starts the exporter thread for `settings`.
fn start(settings: &Settings, tls: crate::upstream::tls::TlsClients) -> Arc<Sink> {
    use crate::loggers::http::{Concat, HttpPoster, HttpTargetConfig};
    let target = HttpTargetConfig {
        url: settings.url.clone(),
        auth_header: None,
        timeout: settings.timeout,
        concat: Concat::Json,
        ssl_verify: true,
    };
    let http = HttpPoster::new(target, settings.endpoint.clone(), tls);
    let poster = OtlpPoster::new(
        http,
        settings.url.clone(),
        settings.headers.clone(),
        &settings.resource,
    );
    Sink::otlp(
        "opentelemetry exporter".into(),
        poster,
        settings.batch.clone(),
        SPAN_STATS.clone(),
    )
}

impl super::phase::Phases for Opentelemetry {
    type Request<'a> = ();
    const LOGS: bool = true;

    fn rewrite(&self, cx: &mut AccessCx<'_, '_, '_>) -> Flow {
        if cx.ctx.trace.is_some() {
            return Flow::Continue;
        }
        let parent = TraceParent::of(cx.head);
        let trace_id = match &parent {
            Some(p) => p.trace_id,
            None => self.new_trace_id(cx.head, cx.ctx),
        };
        let sampled = self.sampler.sample(&trace_id, parent.as_ref());
        let state = match parent {
            Some(_) => cx
                .head
                .header("tracestate")
                .map(|s| cx.head.buf.slice_ref(s)),
            None => None,
        };
        let record = sampled.then(|| {
            Box::new(Recording {
                start_ns: unix_ns(),
                route_name: cx.route_name.cloned(),
                attempts: Vec::new(),
            })
        });
        cx.ctx.trace = Some(TraceCtx {
            trace_id,
            span_id: ids::nonzero(),
            parent: parent.map(|p| p.span_id),
            sampled,
            state,
            vars: self.set_vars,
            record,
            by: self.tag(),
        });
        Flow::Continue
    }

    fn log(&self, head: &RequestHead, ctx: &RequestCtx, queue: &WorkerQueue, r: &Redaction) {
        let Some(t) = &ctx.trace else { return };
        let Some(rec) = t.record.as_ref().filter(|_| t.by == self.tag()) else {
            return;
        };
        for span in spans::build(head, ctx, t, rec, &self.attributes, r) {
            queue.push(&self.exporter, prost::Message::encode_to_vec(&span));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_that_are_trace_ids() {
        let t = trace_id_of(b"4bf92f35-77b3-4da6-a3ce-929d0e0e4736").unwrap();
        assert_eq!(ids::hex(&t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(trace_id_of(b"4bf92f3577b34da6a3ce929d0e0e4736").is_some());
        assert!(trace_id_of(b"not-a-trace").is_none());
        assert!(trace_id_of(b"4bf92f3577b34da6a3ce929d0e0e473611").is_none());
        assert!(trace_id_of(&[b'0'; 32]).is_none());
    }
}
