//! A chunked upstream body: decoding never panics, and however the bytes
//! are split across reads, the data, the end and any error are the same as
//! when they come in one read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::chunked_body(data));
