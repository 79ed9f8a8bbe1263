//! A chunked upstream body: decoding never panics, and however the bytes
//! are split across reads, the data, the end and any error are the same as
//! when they come in one read.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway::http::body::BodyDecoder;
use ringway::http::ResponseFraming;

fn decode(pieces: &[&[u8]]) -> (Vec<u8>, bool, bool) {
    let mut dec = BodyDecoder::new(ResponseFraming::Chunked);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        match dec.decode(&mut buf, |d| out.extend_from_slice(d)) {
            Ok(true) => return (out, true, false),
            Ok(false) => {}
            Err(_) => return (out, false, true),
        }
    }
    (out, false, false)
}

fuzz_target!(|input: (u8, &[u8])| {
    let (step, data) = input;
    let whole = decode(&[data]);
    let step = usize::from(step.max(1));
    let pieces: Vec<&[u8]> = data.chunks(step).collect();
    let split = decode(&pieces);
    // An error found in one read may be found later (or, for a line that
    // is too long, only once enough bytes are in) when split; the data
    // before it and whether the body ended are the same.
    assert_eq!(whole.1, split.1, "end differs");
    assert_eq!(whole.2, split.2, "error differs");
    if !whole.2 {
        assert_eq!(whole.0, split.0, "data differs");
    }
});
