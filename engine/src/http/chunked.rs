//! Strict decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! Sans-IO: [`ChunkedDecoder::decode`] consumes bytes and reports data ranges
//! inside the input it was given; [`ChunkedDecoder::scan`] only finds where
//! the message ends, for relaying chunked bytes through unchanged. Bad chunk
//! sizes, bare LF, oversized sizes, and oversized trailers are errors, never
//! guesses.

use std::ops::Range;

use super::HttpError;

/// Longest chunk-size line (size + extensions) and trailer section accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the chunk size.
    Size,
    /// Optional whitespace after the size, before `;` or CR.
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Inside chunk data; `remaining` bytes left.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// Result of one [`ChunkedDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input consumed (including any data range reported).
    pub consumed: usize,
    /// Chunk data found, as a range of the input.
    pub data: Option<Range<usize>>,
    /// The terminating chunk and trailers have been consumed.
    pub done: bool,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    size_digits: u32,
    line_len: usize,
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            remaining: 0,
            size_digits: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes from `input` until it can report a data range,
    /// reaches the end of the message, or runs out of input.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let take = (input.len() - i).min(self.remaining.min(usize::MAX as u64) as usize);
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Decoded {
                    consumed: i + take,
                    data: Some(i..i + take),
                    done: false,
                });
            }
            self.step(input[i])?;
            i += 1;
            if self.state == State::Done {
                return Ok(Decoded {
                    consumed: i,
                    data: None,
                    done: true,
                });
            }
        }
        Ok(Decoded {
            consumed: i,
            data: None,
            done: false,
        })
    }

    /// Advances over `input` without reporting data; returns the offset just
    /// past the end of the message once it is complete.
    pub fn scan(&mut self, input: &[u8]) -> Result<Option<usize>, HttpError> {
        let mut pos = 0;
        while pos < input.len() {
            let d = self.decode(&input[pos..])?;
            pos += d.consumed;
            if d.done {
                return Ok(Some(pos));
            }
        }
        Ok(None)
    }

    /// Advances the state machine over one framing byte.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        match self.state {
            State::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => self.push_size_digit(b)?,
                b' ' | b'\t' if self.size_digits > 0 => self.state = State::SizeWs,
                b';' if self.size_digits > 0 => self.state = State::Ext,
                b'\r' if self.size_digits > 0 => self.state = State::SizeLf,
                b'\n' => return Err(HttpError::BadChunk("bare LF in chunk size line")),
                _ => return Err(HttpError::BadChunk("invalid chunk size")),
            },
            State::SizeWs => match b {
                b' ' | b'\t' => self.bump_line()?,
                b';' => self.state = State::Ext,
                b'\r' => self.state = State::SizeLf,
                _ => return Err(HttpError::BadChunk("invalid chunk size")),
            },
            State::Ext => match b {
                b'\r' => self.state = State::SizeLf,
                b'\n' => return Err(HttpError::BadChunk("bare LF in chunk extension")),
                b'\t' | b' '..=b'~' | 0x80..=0xff => self.bump_line()?,
                _ => return Err(HttpError::BadChunk("control character in chunk extension")),
            },
            State::SizeLf => {
                expect(b, b'\n', "expected LF after chunk size")?;
                self.end_size_line();
            }
            State::Data => {}
            State::DataCr => {
                expect(b, b'\r', "chunk data longer than its size")?;
                self.state = State::DataLf;
            }
            State::DataLf => {
                expect(b, b'\n', "expected LF after chunk data")?;
                self.state = State::Size;
            }
            State::TrailerStart => match b {
                b'\r' => self.state = State::FinalLf,
                b'\n' => return Err(HttpError::BadChunk("bare LF in trailers")),
                _ => {
                    self.state = State::Trailer;
                    self.bump_trailer()?;
                }
            },
            State::Trailer => match b {
                b'\r' => self.state = State::TrailerLf,
                b'\n' => return Err(HttpError::BadChunk("bare LF in trailers")),
                _ => self.bump_trailer()?,
            },
            State::TrailerLf => {
                expect(b, b'\n', "expected LF after trailer")?;
                self.state = State::TrailerStart;
            }
            State::FinalLf => {
                expect(b, b'\n', "expected LF after last chunk")?;
                self.state = State::Done;
            }
            State::Done => {}
        }
        Ok(())
    }

    /// Adds one hex digit to the chunk size being read.
    #[inline]
    fn push_size_digit(&mut self, b: u8) -> Result<(), HttpError> {
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        self.remaining = self
            .remaining
            .checked_mul(16)
            .and_then(|v| v.checked_add(d))
            .ok_or(HttpError::BadChunk("chunk size overflows"))?;
        self.size_digits += 1;
        self.line_len += 1;
        Ok(())
    }

    /// After the size line's LF: the data, or the trailers after the last
    /// (zero-size) chunk.
    #[inline]
    fn end_size_line(&mut self) {
        self.line_len = 0;
        self.size_digits = 0;
        self.state = if self.remaining == 0 {
            State::TrailerStart
        } else {
            State::Data
        };
    }

    fn bump_line(&mut self) -> Result<(), HttpError> {
        self.line_len += 1;
        if self.line_len > MAX_LINE {
            return Err(HttpError::BadChunk("chunk size line too long"));
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), HttpError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILERS {
            return Err(HttpError::BadChunk("trailers too large"));
        }
        Ok(())
    }
}

/// `b` must be `want`; `missing` says what the framing lacked otherwise.
#[inline]
fn expect(b: u8, want: u8, missing: &'static str) -> Result<(), HttpError> {
    if b != want {
        return Err(HttpError::BadChunk(missing));
    }
    Ok(())
}

/// Writes the chunk header for `len` data bytes (`{len:x}\r\n`) into `out`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The last-chunk marker with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(mut input: &[u8]) -> Result<(Vec<u8>, bool, usize), HttpError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let total = input.len();
        loop {
            let r = d.decode(input)?;
            if let Some(range) = r.data.clone() {
                out.extend_from_slice(&input[range]);
            }
            input = &input[r.consumed..];
            if r.done || input.is_empty() {
                return Ok((out, r.done, total - input.len()));
            }
        }
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers() {
        let (body, done, used) =
            decode_all(b"5;name=val\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT").unwrap();
        assert_eq!(body, b"hello world");
        assert!(done);
        assert_eq!(used, 43);
    }

    #[test]
    fn byte_at_a_time_matches_whole() {
        let raw = b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for (i, b) in raw.iter().enumerate() {
            let one = [*b];
            let r = d.decode(&one).unwrap();
            if let Some(range) = r.data {
                out.extend_from_slice(&one[range]);
            }
            if r.done {
                assert_eq!(i, raw.len() - 1);
            }
        }
        assert!(d.is_done());
        assert_eq!(out, b"0123456789abc");
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n",
            b"fffffffffffffffff\r\n",
            b" 5\r\nhello\r\n",
            b"0\r\n\n",
            b"3\r\nabc\r\n0\r\nX: y\n\r\n",
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scan_finds_end() {
        let raw = b"3\r\nabc\r\n0\r\n\r\nGET";
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.scan(&raw[..5]).unwrap(), None);
        assert_eq!(d.scan(&raw[5..]).unwrap(), Some(raw.len() - 3 - 5));
    }

    #[test]
    fn chunk_header_is_hex() {
        let mut v = Vec::new();
        write_chunk_header(&mut v, 255);
        assert_eq!(v, b"ff\r\n");
        v.clear();
        write_chunk_header(&mut v, 0);
        assert_eq!(v, b"0\r\n");
    }
}
