//! Spans exported over OTLP/HTTP (`POST {collector}/v1/traces`,
//! `Content-Type: application/x-protobuf`) by a sink thread, the loggers'
//! machinery ([`super::Sink`]): workers hand encoded spans over through a
//! bounded queue without blocking (a full queue or backlog drops them,
//! counted in [`SPAN_STATS`] as `ringway_trace_spans_dropped_total`), the
//! thread batches them (`max_export_batch_size`, `inactive_timeout`,
//! `batch_timeout`) and POSTs each batch on a kept connection with
//! [`super::http::HttpPoster`]. A batch is one `ExportTraceServiceRequest`
//! framed around the spans as the workers encoded them, so the thread
//! copies bytes and never re-encodes. `collector.request_headers` go on
//! every request and nowhere else: errors name the collector's URL only.

pub mod proto;

use std::sync::{Arc, LazyLock};

use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::http::HttpPoster;
use super::SinkStats;
use crate::observe::redact::configured_url;

/// Spans exported, failed (after retries) and dropped, process-wide: the
/// exporter's counts survive a change of its settings.
pub static SPAN_STATS: LazyLock<Arc<SinkStats>> = LazyLock::new(Arc::default);

/// The instrumentation scope named in every batch.
pub const SCOPE: &str = "ringway";

/// POSTs batches of encoded spans to a collector.
pub struct OtlpPoster {
    http: HttpPoster,
    url: String,
    headers: Vec<(String, String)>,
    /// The `Resource` and `InstrumentationScope` messages, encoded once.
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl OtlpPoster {
    /// `url` is the collector's `/v1/traces` URL (as `http`'s config
    /// says), `headers` `collector.request_headers`.
    pub fn new(
        http: HttpPoster,
        url: String,
        headers: Vec<(String, String)>,
        resource: &proto::Resource,
    ) -> OtlpPoster {
        let scope = proto::InstrumentationScope {
            name: SCOPE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        OtlpPoster {
            http,
            url,
            headers,
            resource: resource.encode_to_vec(),
            scope: scope.encode_to_vec(),
        }
    }

    /// Sends `spans` (each an encoded `Span`) as one request; on success
    /// they are removed.
    pub fn send(&mut self, spans: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let body = export_request(&self.resource, &self.scope, spans);
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/x-protobuf")];
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let status = self.http.post(&body, &headers)?;
        if !(200..300).contains(&status) {
            return Err(format!("{} answered {status}", configured_url(&self.url)));
        }
        spans.clear();
        Ok(())
    }
}

/// An `ExportTraceServiceRequest` with one `ResourceSpans` (`resource`)
/// holding one `ScopeSpans` (`scope`) of `spans`, each already encoded.
pub fn export_request(resource: &[u8], scope: &[u8], spans: &[Vec<u8>]) -> Vec<u8> {
    let mut scope_spans =
        Vec::with_capacity(scope.len() + spans.iter().map(|s| s.len() + 8).sum::<usize>() + 8);
    field(&mut scope_spans, 1, scope);
    for s in spans {
        field(&mut scope_spans, 2, s);
    }
    let mut resource_spans = Vec::with_capacity(resource.len() + scope_spans.len() + 16);
    field(&mut resource_spans, 1, resource);
    field(&mut resource_spans, 2, &scope_spans);
    let mut out = Vec::with_capacity(resource_spans.len() + 8);
    field(&mut out, 1, &resource_spans);
    out
}

/// A length-delimited field: its key, its length, its bytes.
fn field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;

    fn span(name: &str, kind: SpanKind) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![
                KeyValue::str("gen_ai.request.model", "gpt-4"),
                KeyValue::int("gen_ai.usage.input_tokens", 12),
                KeyValue::new("ttft", Value::Double(0.25)),
                KeyValue::new("ok", Value::Bool(true)),
            ],
            events: vec![Event {
                time_unix_nano: 5,
                name: "first".into(),
                attributes: vec![],
            }],
            status: Some(Status {
                message: "upstream answered 502".into(),
                code: StatusCode::Error as i32,
            }),
            flags: 0x301,
            trace_state: "a=b".into(),
        }
    }

    #[test]
    fn a_batch_framed_around_encoded_spans_decodes_as_one_request() {
        let spans = [
            span("POST chat", SpanKind::Server),
            span("chat gpt-4", SpanKind::Client),
        ];
        let resource = Resource {
            attributes: vec![KeyValue::str("service.name", "ringway")],
        };
        let scope = InstrumentationScope {
            name: SCOPE.into(),
            version: "1".into(),
        };
        let encoded: Vec<Vec<u8>> = spans.iter().map(Message::encode_to_vec).collect();
        let body = export_request(&resource.encode_to_vec(), &scope.encode_to_vec(), &encoded);
        let got = ExportTraceServiceRequest::decode(&body[..]).expect("decodes");
        let want = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope),
                    spans: spans.to_vec(),
                }],
            }],
        };
        assert_eq!(got, want);
        // And it is what prost itself writes for the whole request.
        assert_eq!(body, want.encode_to_vec());
    }

    #[test]
    fn field_numbers_are_opentelemetry_protos() {
        // Span.name is field 5 (key 0x2a), kind 6 (0x30), start 7 as
        // fixed64 (0x39), status 15 (0x7a), flags 16 as fixed32 (0x85 0x01).
        let s = Span {
            name: "n".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1,
            status: Some(Status::default()),
            flags: 1,
            ..Default::default()
        };
        let b = s.encode_to_vec();
        assert_eq!(
            b,
            [
                0x2a, 1, b'n', 0x30, 3, 0x39, 1, 0, 0, 0, 0, 0, 0, 0, 0x7a, 0, 0x85, 0x01, 1, 0, 0,
                0
            ]
        );
    }
}
