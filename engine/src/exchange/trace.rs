//! What a request carries for correlation: its request id (set by the
//! `request-id` plugin) and its W3C trace context (`traceparent`,
//! `tracestate`; set by the `opentelemetry` plugin), kept in the request's
//! context, and the header lines that carry them on: to the upstream (a
//! provider gets the request id and a `traceparent` naming the attempt's
//! span; a plain upstream the generated id and ringway's span) and back to
//! the client (the request id, on every answer, ringway's own included).
//!
//! `traceparent` is read as W3C Trace Context level 1 says (§3.2): version
//! `00` is exactly 55 characters of lowercase hex and dashes, the trace
//! and parent ids not all zero; a later version is read by its first four
//! fields; `ff` is invalid, and so are several `traceparent` headers. An
//! invalid one is ignored (with `tracestate`, which means nothing without
//! it): the AI path does not forward it and tracing starts a new trace.
//!
//! This module knows no plugin: what it holds is filled by plugins'
//! rewrite phases and read by the head writers, the log and the tracer.

use std::sync::Arc;

use bytes::Bytes;

use super::ctx::RequestCtx;
use super::ids;
use crate::http::write::push_header;
use crate::http::RequestHead;

/// The request's id, as the `request-id` plugin settled it.
#[derive(Debug, Clone)]
pub struct RequestId {
    /// The configured header name (`X-Request-Id`).
    pub header: Arc<str>,
    /// The client's own value (a slice of the request head), or one made.
    pub value: Bytes,
    /// Made by ringway (the client sent none): then it is added upstream.
    pub generated: bool,
    /// `include_in_response`.
    pub in_response: bool,
}

impl RequestId {
    /// Whether `var` (a log variable without `$`) is `http_<header>`:
    /// nginx's name for the header, lowercase, `-` as `_`.
    pub fn is_var(&self, var: &str) -> bool {
        let Some(h) = var.strip_prefix("http_") else {
            return false;
        };
        h.len() == self.header.len()
            && h.bytes().zip(self.header.bytes()).all(|(v, c)| {
                let c = c.to_ascii_lowercase();
                v == c || (v == b'_' && c == b'-')
            })
    }
}

/// A valid `traceparent`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` value; `None` when it is not valid.
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        let v = trim(v);
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = lower_hex::<1>(&v[0..2])?;
        match version[0] {
            0xff => return None,
            0 if v.len() != 55 => return None,
            _ if v.len() > 55 && v[55] != b'-' => return None,
            _ => {}
        }
        let trace_id = lower_hex::<16>(&v[3..35])?;
        let span_id = lower_hex::<8>(&v[36..52])?;
        let flags = lower_hex::<1>(&v[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The request's `traceparent`, when it has exactly one and it is
    /// valid.
    pub fn of(head: &RequestHead) -> Option<TraceParent> {
        let mut all = head.header_all("traceparent");
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        TraceParent::parse(first)
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Lowercase hex only (the spec's `HEXDIGLC`).
fn lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    ids::parse_hex::<N>(s)
}

/// Appends `traceparent: 00-{trace}-{span}-{flags}\r\n`.
pub fn push_traceparent(out: &mut Vec<u8>, trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) {
    out.extend_from_slice(b"traceparent: 00-");
    ids::push_hex(out, trace_id);
    out.push(b'-');
    ids::push_hex(out, span_id);
    out.push(b'-');
    ids::push_hex(out, &[flags]);
    out.extend_from_slice(b"\r\n");
}

/// The request's trace, as the `opentelemetry` plugin started it.
#[derive(Debug)]
pub struct TraceCtx {
    pub trace_id: [u8; 16],
    /// ringway's span for the request (kind server).
    pub span_id: [u8; 8],
    /// The caller's span, from a valid `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// The sampler's decision (the `sampled` flag sent on).
    pub sampled: bool,
    /// `tracestate` as received (with a valid `traceparent` only).
    pub state: Option<Bytes>,
    /// `set_ngx_var`: the `opentelemetry_*` log variables are set.
    pub vars: bool,
    /// What a sampled request records for its spans; `None` unsampled
    /// (then nothing is allocated).
    pub record: Option<Box<Recording>>,
    /// Which plugin config started it (an address): that one exports it.
    pub by: usize,
}

impl TraceCtx {
    pub fn flags(&self) -> u8 {
        u8::from(self.sampled)
    }

    /// The `traceparent` value naming the request's span.
    pub fn traceparent(&self) -> String {
        let mut out = Vec::with_capacity(72);
        push_traceparent(&mut out, &self.trace_id, &self.span_id, self.flags());
        let s = String::from_utf8(out).expect("ASCII");
        s["traceparent: ".len()..s.len() - 2].to_owned()
    }
}

/// A sampled request's spans in the making.
#[derive(Debug, Default)]
pub struct Recording {
    /// Unix time in nanoseconds when the request's span started.
    pub start_ns: u64,
    /// The matched route's name.
    pub route_name: Option<Arc<str>>,
    /// One per upstream attempt at an LLM instance, in order.
    pub attempts: Vec<AttemptSpan>,
}

/// One attempt at an LLM instance (a span of kind client).
#[derive(Debug, Clone)]
pub struct AttemptSpan {
    pub span_id: [u8; 8],
    pub instance: Arc<str>,
    /// The provider's name (`openai`, `anthropic`, …).
    pub provider: &'static str,
    /// The model the instance is configured with, if any.
    pub model: Option<Arc<str>>,
    /// `host:port` of the endpoint.
    pub server: String,
    pub start_ns: u64,
    /// 0 for the attempt that answered: it ends with the request.
    pub end_ns: u64,
    pub status: Option<u16>,
    /// Why it failed or was fallen back from.
    pub error: Option<String>,
}

/// Unix time in nanoseconds.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// === impl RequestCtx ===

impl RequestCtx {
    /// The request id's header line for the answer, when it goes there.
    #[inline]
    pub fn push_response_ids(&self, out: &mut Vec<u8>) {
        if let Some((name, value)) = self.response_id() {
            push_header(out, name, value);
        }
    }

    /// The request id's header for the answer, when it goes there.
    #[inline]
    pub fn response_id(&self) -> Option<(&[u8], &[u8])> {
        match &self.request_id {
            Some(id) if id.in_response => Some((id.header.as_bytes(), &id.value)),
            _ => None,
        }
    }

    /// A span id for the next upstream attempt, when the request is traced.
    #[inline]
    pub fn attempt_span(&self) -> Option<[u8; 8]> {
        self.trace.as_ref().map(|_| ids::nonzero())
    }

    /// The header lines an LLM request carries besides the provider's:
    /// the request id and the trace context. Traced, `traceparent` names
    /// `attempt` (else ringway's span); untraced, the client's valid
    /// `traceparent` and `tracestate` pass on as they came.
    pub fn push_upstream_ids(
        &self,
        out: &mut Vec<u8>,
        client: &RequestHead,
        attempt: Option<&[u8; 8]>,
    ) {
        if let Some(id) = &self.request_id {
            push_header(out, id.header.as_bytes(), &id.value);
        }
        match &self.trace {
            Some(t) => {
                push_traceparent(out, &t.trace_id, attempt.unwrap_or(&t.span_id), t.flags());
                if let Some(s) = &t.state {
                    push_header(out, b"tracestate", s);
                }
            }
            None => {
                let Some(tp) = client.header("traceparent") else {
                    return;
                };
                if TraceParent::of(client).is_some() {
                    push_header(out, b"traceparent", trim(tp));
                    for s in client.header_all("tracestate") {
                        push_header(out, b"tracestate", s);
                    }
                }
            }
        }
    }

    /// Records an attempt's span, when the request is sampled.
    pub fn record_attempt(&mut self, span: impl FnOnce() -> AttemptSpan) {
        if let Some(r) = self.trace.as_mut().and_then(|t| t.record.as_mut()) {
            r.attempts.push(span());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let t = TraceParent::parse(TP).unwrap();
        assert_eq!(ids::hex(&t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ids::hex(&t.span_id), "00f067aa0ba902b7");
        assert!(t.sampled());
        assert!(!TraceParent::parse(&TP.replace_last(b"00"))
            .unwrap()
            .sampled());
        // Whitespace around it is allowed (OWS).
        assert!(
            TraceParent::parse(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ")
                .is_some()
        );
        // A later version: its first fields, more after a dash.
        assert!(TraceParent::parse(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"
        )
        .is_some());
    }

    trait ReplaceLast {
        fn replace_last(&self, with: &[u8]) -> Vec<u8>;
    }
    impl ReplaceLast for &[u8] {
        fn replace_last(&self, with: &[u8]) -> Vec<u8> {
            let mut v = self[..self.len() - with.len()].to_vec();
            v.extend_from_slice(with);
            v
        }
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            &b""[..],
            b"garbage",
            // Zero ids.
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Uppercase hex, version ff, a 00 with extra fields.
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            // Wrong separators or lengths, not hex.
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011",
            b"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(
                TraceParent::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn proptest_never_panics_on_any_bytes() {
        use proptest::prelude::*;
        proptest!(|(v in proptest::collection::vec(any::<u8>(), 0..80))| {
            let _ = TraceParent::parse(&v);
        });
        // And what it writes, it reads back.
        proptest!(|(t in any::<[u8; 16]>(), s in any::<[u8; 8]>(), f in any::<u8>())| {
            prop_assume!(t != [0; 16] && s != [0; 8]);
            let mut out = Vec::new();
            push_traceparent(&mut out, &t, &s, f);
            let v = &out[b"traceparent: ".len()..out.len() - 2];
            prop_assert_eq!(TraceParent::parse(v), Some(TraceParent { trace_id: t, span_id: s, flags: f }));
        });
    }

    #[test]
    fn the_request_id_is_its_header_variable() {
        let id = RequestId {
            header: Arc::from("X-Request-Id"),
            value: Bytes::from_static(b"abc"),
            generated: true,
            in_response: true,
        };
        assert!(id.is_var("http_x_request_id"));
        assert!(!id.is_var("http_x_request_ids"));
        assert!(!id.is_var("x_request_id"));
        assert!(!id.is_var("http_x_request"));
    }
}
