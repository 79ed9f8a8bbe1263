//! The GCP token endpoint's answer: a header-safe token, kept at most a
//! day and at most `max_ttl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::gcp_token(data));
