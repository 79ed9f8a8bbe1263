//! Incremental server-sent-events parsing (sans-IO): bytes in, complete
//! events out, whatever the read boundaries. The AI relay uses it to find
//! the first token and the usage report in LLM streams, and to convert
//! between stream formats.
//!
//! The common case — whole events inside one read, one `data:` line each —
//! is parsed in place without copying; only an event split across reads
//! (kept in a small pending buffer) or with several `data:` lines is
//! copied. Handles `\n`, `\r\n` and `\r` line endings, comments, a leading
//! byte-order mark, and bounds the size of one event.

use std::borrow::Cow;

/// Largest single event accepted (1 MiB).
pub const MAX_EVENT: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, if any.
    pub event: Option<&'a [u8]>,
    /// The `data:` lines joined with `\n`.
    pub data: Cow<'a, [u8]>,
    /// The event's bytes including its terminating blank line.
    pub raw: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("event stream event larger than {MAX_EVENT} bytes")]
    TooLarge,
}

#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    started: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Bytes of an incomplete event held back.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds bytes; calls `f` for every complete event, in order.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut f: impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseError> {
        if !self.started {
            // A byte-order mark may open the stream, split across reads:
            // until it is whole or ruled out, `pending` holds its start.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let have = self.pending.len();
            let take = (BOM.len() - have).min(input.len());
            // (Byte by byte: at most three, no `memcmp` call.)
            if input[..take].iter().zip(&BOM[have..]).all(|(a, b)| a == b) {
                if have + take < BOM.len() {
                    self.pending.extend_from_slice(&input[..take]);
                    return Ok(());
                }
                self.pending.clear();
                input = &input[take..];
            }
            self.started = true;
        }
        if self.pending.is_empty() {
            let used = dispatch_all(input, &mut f);
            let tail = &input[used..];
            if tail.len() > MAX_EVENT {
                return Err(SseError::TooLarge);
            }
            self.pending.extend_from_slice(tail);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        let pending = std::mem::take(&mut self.pending);
        let used = dispatch_all(&pending, &mut f);
        let tail = &pending[used..];
        if tail.len() > MAX_EVENT {
            return Err(SseError::TooLarge);
        }
        self.pending = tail.to_vec();
        Ok(())
    }

    /// The stream ended: an unterminated final event is dispatched too
    /// (a lenient reading of servers that omit the last blank line).
    pub fn finish(&mut self, mut f: impl FnMut(SseEvent<'_>)) {
        if self.pending.is_empty() {
            return;
        }
        let mut p = std::mem::take(&mut self.pending);
        p.extend_from_slice(b"\n\n");
        dispatch_all(&p, &mut f);
    }
}

/// Dispatches every complete event in `buf`; returns the bytes consumed.
fn dispatch_all(buf: &[u8], f: &mut impl FnMut(SseEvent<'_>)) -> usize {
    let mut event_start = 0;
    let mut pos = 0;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', &buf[pos..]) {
        let line_end = pos + i;
        let next = if buf[line_end] == b'\r' {
            match buf.get(line_end + 1) {
                Some(b'\n') => line_end + 2,
                Some(_) => line_end + 1,
                // A trailing CR may be the first half of CRLF: wait.
                None => return event_start,
            }
        } else {
            line_end + 1
        };
        if line_end == pos {
            // Blank line: the event ends here.
            if pos > event_start {
                emit(&buf[event_start..next], &buf[event_start..pos], f);
            }
            event_start = next;
        }
        pos = next;
    }
    event_start
}

/// Parses the lines of one event (`body`, without its blank line).
fn emit(raw: &[u8], body: &[u8], f: &mut impl FnMut(SseEvent<'_>)) {
    let mut event: Option<&[u8]> = None;
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut any_data = false;
    for line in lines(body) {
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                any_data = true;
                data = Some(match data.take() {
                    None => Cow::Borrowed(value),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        Cow::Owned(joined)
                    }
                });
            }
            b"event" => event = Some(value),
            _ => {}
        }
    }
    if any_data || event.is_some() {
        f(SseEvent {
            event,
            data: data.unwrap_or(Cow::Borrowed(b"")),
            raw,
        });
    }
}

/// Lines of an event body (any line ending).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => {
                let l = rest;
                rest = &[];
                Some(l)
            }
            Some(i) => {
                let l = &rest[..i];
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
                Some(l)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push((
                    e.event.map(|n| String::from_utf8_lossy(n).into_owned()),
                    String::from_utf8_lossy(&e.data).into_owned(),
                ))
            })
            .unwrap();
        }
        out
    }

    const STREAM: &[u8] = b"data: {\"a\":1}\n\n: comment\n\nevent: message_delta\ndata: {\"b\":2}\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";

    fn expected() -> Vec<(Option<String>, String)> {
        vec![
            (None, "{\"a\":1}".into()),
            (Some("message_delta".into()), "{\"b\":2}".into()),
            (None, "line1\nline2".into()),
            (None, "[DONE]".into()),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(collect(&[STREAM]), expected());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for cut in 0..STREAM.len() {
            assert_eq!(
                collect(&[&STREAM[..cut], &STREAM[cut..]]),
                expected(),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(collect(&bytes), expected());
    }

    #[test]
    fn crlf_cr_and_bom() {
        let crlf = String::from_utf8_lossy(STREAM).replace('\n', "\r\n");
        assert_eq!(collect(&[crlf.as_bytes()]), expected());
        let cr = String::from_utf8_lossy(STREAM).replace('\n', "\r");
        assert_eq!(collect(&[cr.as_bytes(), b"\r"]), expected());
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(STREAM);
        assert_eq!(collect(&[&bom]), expected());
        // The mark split across reads (found by cargo fuzz), and bytes
        // that only start like one.
        let bytes: Vec<&[u8]> = bom.chunks(1).collect();
        assert_eq!(collect(&bytes), expected());
        assert_eq!(collect(&[&bom[..2], &bom[2..]]), expected());
        assert_eq!(collect(&[&bom[..1], &[], &bom[1..]]), expected());
        let not_bom = [b"\xEF".as_slice(), b"\xBBdata: x\n\ndata: y\n\n"];
        assert_eq!(collect(&not_bom), collect(&[&not_bom.concat()]));
        for cut in 0..crlf.len() {
            let b = crlf.as_bytes();
            assert_eq!(
                collect(&[&b[..cut], &b[cut..]]),
                expected(),
                "crlf cut at {cut}"
            );
        }
    }

    #[test]
    fn raw_covers_the_event_and_single_data_is_borrowed() {
        let mut p = SseParser::new();
        let mut raws = Vec::new();
        p.feed(b"data: x\n\ndata: y\n\n", |e| {
            assert!(matches!(e.data, Cow::Borrowed(_)));
            raws.push(e.raw.to_vec());
        })
        .unwrap();
        assert_eq!(raws, vec![b"data: x\n\n".to_vec(), b"data: y\n\n".to_vec()]);
    }

    #[test]
    fn oversized_events_are_refused_and_finish_flushes() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT + 10];
        assert_eq!(p.feed(&big, |_| {}), Err(SseError::TooLarge));
        let mut p = SseParser::new();
        p.feed(b"data: tail", |_| panic!("incomplete")).unwrap();
        let mut got = Vec::new();
        p.finish(|e| got.push(e.data.into_owned()));
        assert_eq!(got, vec![b"tail".to_vec()]);
    }
}
