//! An upstream event stream: the SSE parser yields the same events however
//! the bytes are split, and the stream transform (all four format
//! directions, with text collection) never panics on any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::sse_stream(data));
