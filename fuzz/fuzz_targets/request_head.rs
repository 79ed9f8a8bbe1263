//! A client's request head: parsing never panics, and a parsed head's
//! accessors stay inside the buffer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::request_head(data));
