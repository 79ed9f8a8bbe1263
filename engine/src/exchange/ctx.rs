//! The per-request context threaded through routing, plugins, the handler
//! and the log phase: who asked, what was matched, what the upstream did,
//! and what the client got. Access-log variables are read from here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// APISIX's `request_type` log variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    TraditionalHttp,
    AiChat,
    AiStream,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::TraditionalHttp => "traditional_http",
            RequestType::AiChat => "ai_chat",
            RequestType::AiStream => "ai_stream",
        }
    }
}

#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    pub peer: SocketAddr,
    /// The client connection is TLS (`$scheme`).
    pub tls: bool,
    pub route_id: Option<Arc<str>>,
    /// The matched route's index in the snapshot served (metrics).
    pub route_index: Option<u32>,
    /// The `apisix_llm_active_connections` slot this request raised, to
    /// lower when it ends.
    pub llm_active: Option<u32>,
    /// The consumer's name, set by an auth plugin (its compiled plugins
    /// stay with the snapshot: [`crate::plugins::AccessCx::consumer`]).
    pub consumer: Option<Arc<str>>,
    /// The id of the credential that identified it.
    pub credential: Option<Arc<str>>,
    /// `hide_credentials`: a header / query parameter not to forward.
    pub hide_header: Option<Arc<str>>,
    pub hide_query: Option<Arc<str>>,
    pub request_type: RequestType,
    /// Status sent to the client (0 until a head was written).
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes_sent: u64,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    /// From sending the upstream request to its last response byte.
    pub upstream_response_time: Option<Duration>,
    /// The matched route, when it has a logger plugin.
    pub log_route: Option<usize>,
    /// A logger wants the request body (`include_req_body`).
    pub keep_request_body: bool,
    /// A logger wants the response body (`include_resp_body`).
    pub response_body: Option<Box<ResponseBody>>,
    /// LLM facts, for AI requests.
    pub llm: LlmLog,
    /// The request id (`request-id`), forwarded and answered.
    pub request_id: Option<super::trace::RequestId>,
    /// The trace context (`opentelemetry`).
    pub trace: Option<super::trace::TraceCtx>,
}

/// What the access log records about an LLM request (APISIX's variables).
#[derive(Debug, Default, Clone)]
pub struct LlmLog {
    /// `request_llm_model`: the model the client asked for.
    pub request_model: Option<String>,
    /// `llm_model`: the model that answered (response, else instance option).
    pub model: Option<String>,
    /// The instance that answered.
    pub instance: Option<Arc<str>>,
    /// Instances tried, including the one that answered.
    pub attempts: u32,
    /// `llm_time_to_first_token`, from the start of the answering attempt.
    pub ttft: Option<Duration>,
    /// Time to first token from the client request (gateway time included).
    pub ttft_from_request: Option<Duration>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// ai-proxy-multi's `logging.summaries` (`payloads` is [`Self::payloads`]).
    pub summaries: bool,
    /// `logging.payloads`: what the client was answered.
    pub payloads: Option<Box<Payloads>>,
    /// The client's request body (a validated JSON object), kept for
    /// `logging.payloads` and loggers' `include_req_body`.
    pub request_body: Option<bytes::Bytes>,
    /// The provider's usage object as it answered (Anthropic's merged
    /// across a stream's events), kept when an `ai-rate-limiting`
    /// `cost_expr` prices the request from it.
    pub raw_usage: Option<serde_json::Value>,
}

/// Loggers' `include_resp_body`: the body the client received, without
/// its transfer framing, up to `limit` bytes — whoever wrote it (the
/// upstream, ringway converting an answer, or a refusal of ringway's own).
#[derive(Debug)]
pub struct ResponseBody {
    limit: usize,
    pub bytes: Vec<u8>,
    /// For a chunked body relayed as received: its framing's state.
    dechunk: crate::http::chunked::ChunkedDecoder,
}

impl ResponseBody {
    pub fn new(limit: usize) -> Box<ResponseBody> {
        Box::new(ResponseBody {
            limit,
            bytes: Vec::new(),
            dechunk: crate::http::chunked::ChunkedDecoder::new(),
        })
    }

    /// Keeps `data`, the next body bytes the client received.
    pub fn keep(&mut self, data: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Keeps the payload of `framed`, the next bytes of a chunked body.
    pub fn keep_chunked(&mut self, framed: &[u8]) {
        let mut rest = framed;
        while !rest.is_empty() && self.bytes.len() < self.limit {
            let Ok(d) = self.dechunk.decode(rest) else {
                return; // the relay refuses a malformed body itself
            };
            if let Some(r) = d.data {
                self.keep(&rest[r]);
            }
            if d.consumed == 0 || d.done {
                return;
            }
            rest = &rest[d.consumed..];
        }
    }

    /// Starts capturing for `limit` bytes (the most any logger wants).
    pub fn want(slot: &mut Option<Box<ResponseBody>>, limit: Option<usize>) {
        if let Some(limit) = limit {
            match slot {
                Some(b) => b.limit = b.limit.max(limit),
                None => *slot = Some(ResponseBody::new(limit)),
            }
        }
    }
}

/// What `logging.payloads` keeps of the answer.
#[derive(Debug, Clone)]
pub struct Payloads {
    /// A JSON answer as the client received it, when it is at most
    /// [`Payloads::LIMIT`] bytes (a larger one's text is read at once; a
    /// stream's is collected as it passes).
    pub response: Vec<u8>,
    /// The format the client speaks.
    pub wire: crate::wire::Wire,
    /// `llm_response_text`: a stream's, or read from `response` once the
    /// request is done ([`Payloads::settle`]), for every log that writes it.
    pub text: Option<String>,
}

impl Payloads {
    /// Most answer bytes kept for the log, the same as the most text kept.
    pub const LIMIT: usize = crate::wire::text::STREAM_TEXT_LIMIT;

    /// Reads the answer's text from what was kept, once, and lets the
    /// kept bytes go.
    pub fn settle(&mut self) {
        if !self.response.is_empty() {
            self.text = crate::wire::text::answer_text(self.wire, &self.response);
            self.response = Vec::new();
        }
    }

    /// Keeps the JSON answer the client received, for its text to be
    /// read when the request is done ([`Payloads::settle`]). A larger one
    /// is read now and its text kept up to the limit a stream's has (cut,
    /// it would no longer parse).
    pub fn keep_answer(&mut self, body: &[u8]) {
        use crate::wire::text;
        if body.len() <= Self::LIMIT {
            self.response.clear();
            self.response.extend_from_slice(body);
        } else {
            self.response = Vec::new();
            self.text = text::answer_text(self.wire, body).map(|mut t| {
                text::clip(&mut t, text::STREAM_TEXT_LIMIT);
                t
            });
        }
    }
}

impl RequestCtx {
    /// Keeps `body`, the next body bytes the client received, for loggers
    /// that log response bodies.
    pub fn keep_response(&mut self, body: &[u8]) {
        if let Some(b) = &mut self.response_body {
            b.keep(body);
        }
    }

    /// Records an answer the gateway wrote whole (a refusal or an error):
    /// its status, its size for `bytes_sent`, its body for loggers.
    pub fn answered(&mut self, status: u16, body: &[u8]) {
        self.status = status;
        self.bytes_sent = body.len() as u64;
        self.keep_response(body);
    }

    pub fn new(peer: SocketAddr, started: Instant) -> RequestCtx {
        RequestCtx {
            started,
            peer,
            tls: false,
            route_id: None,
            route_index: None,
            llm_active: None,
            consumer: None,
            credential: None,
            hide_header: None,
            hide_query: None,
            request_type: RequestType::TraditionalHttp,
            status: 0,
            bytes_sent: 0,
            upstream_addr: None,
            upstream_status: None,
            upstream_response_time: None,
            log_route: None,
            keep_request_body: false,
            response_body: None,
            llm: LlmLog::default(),
            request_id: None,
            trace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_kept_without_framing_at_any_split_and_up_to_the_limit() {
        let framed = b"6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
        for step in 1..framed.len() {
            let mut b = ResponseBody::new(1 << 20);
            for piece in framed.chunks(step) {
                b.keep_chunked(piece);
            }
            assert_eq!(b.bytes, b"hello world", "step {step}");
        }
        let mut b = ResponseBody::new(8);
        b.keep_chunked(framed);
        assert_eq!(b.bytes, b"hello wo");
        b.keep(b"more");
        assert_eq!(b.bytes, b"hello wo");
        // The most any logger wants.
        let mut slot = None;
        ResponseBody::want(&mut slot, Some(4));
        ResponseBody::want(&mut slot, Some(2));
        ResponseBody::want(&mut slot, None);
        let b = slot.as_mut().unwrap();
        b.keep(b"abcdef");
        assert_eq!(b.bytes, b"abcd");
    }

    #[test]
    fn an_answer_over_the_limit_still_has_its_text_cut_to_the_limit() {
        use crate::wire::{text::STREAM_TEXT_LIMIT, Wire};
        let answer = |content: &str| {
            serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
                .to_string()
        };
        let mut p = Payloads {
            response: Vec::new(),
            wire: Wire::OpenAi,
            text: None,
        };
        p.keep_answer(answer("small").as_bytes());
        p.settle();
        assert_eq!(p.text.as_deref(), Some("small"));
        // 1.5 MiB of text, with a two-byte character across the cut.
        let big = format!(
            "{}é{}",
            "x".repeat(STREAM_TEXT_LIMIT - 1),
            "y".repeat(1 << 19)
        );
        let mut p = Payloads {
            response: Vec::new(),
            wire: Wire::OpenAi,
            text: None,
        };
        p.keep_answer(answer(&big).as_bytes());
        assert!(p.response.is_empty(), "not kept whole");
        p.settle();
        let t = p.text.expect("the text of a large answer");
        assert_eq!(t.len(), STREAM_TEXT_LIMIT - 1, "cut before the é");
        assert!(t.bytes().all(|b| b == b'x'));
    }
}
