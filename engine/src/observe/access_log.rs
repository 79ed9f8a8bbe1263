//! The access log: one JSON object per request, with APISIX's variables
//! (`request_type`, `request_llm_model`, `llm_model`,
//! `llm_time_to_first_token`, `llm_prompt_tokens`, `llm_completion_tokens`,
//! `apisix_upstream_response_time`, …), and the request's `request_id`
//! (`request-id`) and `trace_id` / `span_id` (`opentelemetry`) when set.
//!
//! Workers format lines into a per-worker buffer (no lock, no allocation
//! once warm) and hand whole buffers to one writer thread every 100 ms or
//! 64 KiB; buffers come back for reuse. If the writer falls behind, lines
//! are dropped and counted rather than slowing requests down.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::gateway::AccessLogTarget;
use crate::exchange::ctx::RequestCtx;
use crate::http::RequestHead;
use crate::observe::redact::Redaction;
use crate::supervise::Component;

/// Buffers handed to the writer at once, at most.
const QUEUE: usize = 64;
const SHIP_AT: usize = 64 * 1024;
pub const SHIP_EVERY: Duration = Duration::from_millis(100);

/// The process-wide side: the writer thread's queue.
pub struct AccessLog {
    full: flume::Sender<Vec<u8>>,
    empty: flume::Receiver<Vec<u8>>,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread for `target`. It runs until
    /// [`AccessLog::close`]; join it after that.
    pub fn start(
        target: &AccessLogTarget,
    ) -> std::io::Result<(Arc<AccessLog>, std::thread::JoinHandle<()>)> {
        let mut sink: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (full_tx, full_rx) = flume::bounded::<Vec<u8>>(QUEUE);
        let (empty_tx, empty_rx) = flume::bounded::<Vec<u8>>(QUEUE);
        // Supervised: a panic loses the buffer being written, never the
        // writer (the next run takes the next buffer).
        let writer = crate::supervise::thread("ringway-log", Component::AccessLog, move || {
            for mut buf in full_rx.iter() {
                if buf.capacity() == 0 {
                    // The close marker: everything before it is written.
                    break;
                }
                crate::supervise::fault(Component::AccessLog);
                if let Err(e) = sink.write_all(&buf).and_then(|_| sink.flush()) {
                    tracing::error!("access log write failed: {e}");
                }
                buf.clear();
                let _ = empty_tx.try_send(buf);
            }
        })?;
        Ok((
            Arc::new(AccessLog {
                full: full_tx,
                empty: empty_rx,
                dropped: AtomicU64::new(0),
            }),
            writer,
        ))
    }
}

impl AccessLog {
    /// Asks the writer to finish after what is queued; then join it.
    pub fn close(&self) {
        let _ = self.full.send(Vec::new());
    }
}

/// A worker's side: its line buffer.
pub struct WorkerLog {
    shared: Arc<AccessLog>,
    buf: RefCell<Vec<u8>>,
}

impl WorkerLog {
    pub fn new(shared: Arc<AccessLog>) -> WorkerLog {
        WorkerLog {
            shared,
            buf: RefCell::new(Vec::with_capacity(SHIP_AT * 2)),
        }
    }

    /// Appends the line for one finished request.
    pub fn record(&self, head: &RequestHead, ctx: &RequestCtx, redaction: &Redaction) {
        let mut buf = self.buf.borrow_mut();
        format_line(&mut buf, head, ctx, redaction);
        if buf.len() >= SHIP_AT {
            drop(buf);
            self.ship();
        }
    }

    /// Hands the buffered lines to the writer.
    pub fn ship(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let fresh = self
            .shared
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(SHIP_AT * 2));
        let full = std::mem::replace(&mut *buf, fresh);
        if let Err(e) = self.shared.full.try_send(full) {
            let lost = e.into_inner();
            let lines = lost.iter().filter(|&&b| b == b'\n').count() as u64;
            self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

/// Formats one JSON line (keys in a stable order, numbers in ms), the
/// `uri`'s credentials redacted.
pub fn format_line(out: &mut Vec<u8>, head: &RequestHead, ctx: &RequestCtx, redaction: &Redaction) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(
        out,
        "{{\"time\":{}.{:03}",
        now.as_secs(),
        now.subsec_millis()
    );
    let _ = write!(out, ",\"client_ip\":\"{}\"", ctx.peer.ip());
    str_field(out, "method", head.method.as_str().as_bytes());
    out.extend_from_slice(b",\"uri\":\"");
    redaction.write_target(head.target(), &mut |piece| escape(out, piece));
    out.push(b'"');
    if let Some(h) = head.host() {
        str_field(out, "host", h);
    }
    let _ = write!(
        out,
        ",\"status\":{},\"bytes_sent\":{}",
        ctx.status, ctx.bytes_sent
    );
    ms_field(out, "request_time", Some(ctx.started.elapsed()));
    if let Some(r) = &ctx.route_id {
        str_field(out, "route_id", r.as_bytes());
    }
    if let Some(c) = &ctx.consumer {
        str_field(out, "consumer", c.as_bytes());
    }
    if let Some(a) = ctx.upstream_addr {
        let _ = write!(out, ",\"upstream_addr\":\"{a}\"");
    }
    if let Some(s) = ctx.upstream_status {
        let _ = write!(out, ",\"upstream_status\":{s}");
    }
    ms_field(out, "upstream_response_time", ctx.upstream_response_time);
    ms_field(
        out,
        "apisix_upstream_response_time",
        ctx.upstream_response_time,
    );
    str_field(out, "request_type", ctx.request_type.as_str().as_bytes());
    if let Some(id) = &ctx.request_id {
        str_field(out, "request_id", &id.value);
    }
    if let Some(t) = &ctx.trace {
        out.extend_from_slice(b",\"trace_id\":\"");
        crate::exchange::ids::push_hex(out, &t.trace_id);
        out.extend_from_slice(b"\",\"span_id\":\"");
        crate::exchange::ids::push_hex(out, &t.span_id);
        out.push(b'"');
    }
    if ctx.request_type != crate::exchange::ctx::RequestType::TraditionalHttp {
        write_llm_fields(out, ctx);
    }
    out.extend_from_slice(b"}\n");
}

/// The LLM variables of an AI request, then its `logging` fields.
fn write_llm_fields(out: &mut Vec<u8>, ctx: &RequestCtx) {
    let l = &ctx.llm;
    opt_str(out, "request_llm_model", l.request_model.as_deref());
    opt_str(out, "llm_model", l.model.as_deref());
    ms_field(out, "llm_time_to_first_token", l.ttft);
    ms_field(
        out,
        "llm_time_to_first_token_from_request",
        l.ttft_from_request,
    );
    let _ = write!(
        out,
        ",\"llm_prompt_tokens\":{},\"llm_completion_tokens\":{}",
        l.prompt_tokens, l.completion_tokens
    );
    opt_str(out, "llm_instance", l.instance.as_deref());
    let _ = write!(out, ",\"llm_attempts\":{}", l.attempts);
    // `logging.summaries` / `.payloads`: compact JSON, one line.
    crate::observe::entry::write_llm_logging(out, ctx);
}

fn ms_field(out: &mut Vec<u8>, key: &str, v: Option<Duration>) {
    if let Some(d) = v {
        let _ = write!(out, ",\"{key}\":{:.3}", d.as_secs_f64() * 1000.0);
    }
}

fn opt_str(out: &mut Vec<u8>, key: &str, v: Option<&str>) {
    if let Some(s) = v {
        str_field(out, key, s.as_bytes());
    }
}

fn str_field(out: &mut Vec<u8>, key: &str, v: &[u8]) {
    let _ = write!(out, ",\"{key}\":\"");
    escape(out, v);
    out.push(b'"');
}

/// JSON string escaping; invalid UTF-8 bytes become U+FFFD.
pub(crate) fn escape(out: &mut Vec<u8>, v: &[u8]) {
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::ctx::RequestType;
    use crate::http::HeadLimits;

    #[test]
    fn lines_are_json_with_apisix_variables() {
        let head = RequestHead::parse(
            bytes::Bytes::from_static(
                b"POST /anything?q=\"x\"&apikey=k HTTP/1.1\r\nHost: gw\r\n\r\n",
            ),
            &HeadLimits::default(),
            Vec::new(),
        )
        .unwrap();
        let mut ctx = RequestCtx::new("127.0.0.1:5000".parse().unwrap(), std::time::Instant::now());
        ctx.status = 200;
        ctx.request_type = RequestType::AiChat;
        ctx.llm.request_model = Some("gpt-4".into());
        ctx.llm.model = Some("gpt-4-0613".into());
        ctx.llm.ttft = Some(Duration::from_millis(2858));
        ctx.llm.prompt_tokens = 23;
        ctx.llm.completion_tokens = 8;
        ctx.upstream_response_time = Some(Duration::from_millis(5765));
        let mut out = Vec::new();
        format_line(&mut out, &head, &ctx, &Redaction::new([], []));
        assert!(out.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request_type"], "ai_chat");
        assert_eq!(v["request_llm_model"], "gpt-4");
        assert_eq!(v["llm_model"], "gpt-4-0613");
        assert_eq!(v["llm_time_to_first_token"], 2858.0);
        assert_eq!(v["apisix_upstream_response_time"], 5765.0);
        assert_eq!(v["llm_prompt_tokens"], 23);
        assert_eq!(v["llm_completion_tokens"], 8);
        assert_eq!(v["uri"], "/anything?q=\"x\"&apikey=[REDACTED]");
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    #[test]
    fn close_ends_the_writer_after_queued_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let (log, t) = AccessLog::start(&AccessLogTarget::File(path.clone())).unwrap();
        let w = WorkerLog::new(log.clone());
        w.buf.borrow_mut().extend_from_slice(b"{\"x\":1}\n");
        w.ship();
        log.close();
        t.join().unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "{\"x\":1}\n");
    }
}
