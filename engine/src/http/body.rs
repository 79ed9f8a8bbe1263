//! Incremental decoding of a message body by its framing (Content-Length,
//! chunked, or close-delimited), consuming bytes from the front of a
//! buffer and handing out the data, for code that needs the payload itself
//! (the AI relay) rather than the framed bytes.

use bytes::{Buf, BytesMut};

use super::chunked::ChunkedDecoder;
use super::{HttpError, ResponseFraming};

#[derive(Debug)]
pub enum BodyDecoder {
    None,
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
}

impl BodyDecoder {
    pub fn new(framing: ResponseFraming) -> BodyDecoder {
        match framing {
            ResponseFraming::None | ResponseFraming::Length(0) => BodyDecoder::None,
            ResponseFraming::Length(n) => BodyDecoder::Length(n),
            ResponseFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            ResponseFraming::Close => BodyDecoder::Close,
        }
    }

    /// The decoder for a request body.
    pub fn for_request(framing: super::BodyFraming) -> BodyDecoder {
        match framing {
            super::BodyFraming::None | super::BodyFraming::Length(0) => BodyDecoder::None,
            super::BodyFraming::Length(n) => BodyDecoder::Length(n),
            super::BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
        }
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::None => true,
            BodyDecoder::Length(left) => *left == 0,
            BodyDecoder::Chunked(d) => d.is_done(),
            BodyDecoder::Close => false,
        }
    }

    /// Decodes what `buf` holds, passing data to `f` and consuming the
    /// bytes used. Returns whether the body is complete. Bytes after the end
    /// stay in `buf`.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        mut f: impl FnMut(&[u8]),
    ) -> Result<bool, HttpError> {
        match self {
            BodyDecoder::None => {}
            BodyDecoder::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                if n > 0 {
                    f(&buf[..n]);
                    buf.advance(n);
                    *left -= n as u64;
                }
            }
            BodyDecoder::Chunked(dec) => {
                while !buf.is_empty() && !dec.is_done() {
                    let d = dec.decode(buf)?;
                    if let Some(r) = d.data {
                        f(&buf[r.clone()]);
                    }
                    buf.advance(d.consumed);
                }
            }
            BodyDecoder::Close => {
                if !buf.is_empty() {
                    f(buf);
                    buf.clear();
                }
            }
        }
        Ok(self.is_done())
    }

    /// Whether reaching end-of-stream now is a proper end of the body.
    pub fn eof_is_end(&self) -> bool {
        matches!(self, BodyDecoder::Close) || self.is_done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut d: BodyDecoder, chunks: &[&[u8]]) -> (Vec<u8>, bool, Vec<u8>) {
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        let mut done = false;
        for c in chunks {
            buf.extend_from_slice(c);
            done = d.decode(&mut buf, |x| out.extend_from_slice(x)).unwrap();
        }
        (out, done, buf.to_vec())
    }

    #[test]
    fn framings() {
        assert_eq!(
            run(
                BodyDecoder::new(ResponseFraming::Length(5)),
                &[b"he", b"lloXX"]
            ),
            (b"hello".to_vec(), true, b"XX".to_vec())
        );
        assert_eq!(
            run(
                BodyDecoder::new(ResponseFraming::Chunked),
                &[b"3\r\nab", b"c\r\n0\r\n\r\nNEXT"]
            ),
            (b"abc".to_vec(), true, b"NEXT".to_vec())
        );
        let (out, done, _) = run(BodyDecoder::new(ResponseFraming::Close), &[b"a", b"b"]);
        assert_eq!((out, done), (b"ab".to_vec(), false));
        assert!(BodyDecoder::new(ResponseFraming::Close).eof_is_end());
        assert!(!BodyDecoder::new(ResponseFraming::Length(3)).eof_is_end());
    }
}
